"""``CarbonReport``: the run's versioned JSON record, its CSV series and a plain-text summary.

Files are written atomically (a temporary file in the same folder, then ``os.replace``), so a
crash never leaves half a report. Every energy figure names its source; every CO2 figure names
the grid intensity, its publisher and when it applied.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import socket
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hf_eco2ai import __version__
from hf_eco2ai.units import GRAMS_PER_KG, JOULES_PER_KWH

if TYPE_CHECKING:
    from hf_eco2ai.tracking.tracker import CarbonTracker

SCHEMA_VERSION = 1
REPORT_FILENAME = "carbon_report.json"
SERIES_FILENAME = "carbon_series.csv"

#: US EPA, "Greenhouse Gas Emissions from a Typical Passenger Vehicle" (EPA-420-F-23-014, 2023):
#: about 400 g CO2 per mile, i.e. 400 / 1.609344 g per km.
CAR_G_CO2_PER_KM = 400 / 1.609344
CAR_FACTOR_SOURCE = (
    "US EPA, Greenhouse Gas Emissions from a Typical Passenger Vehicle (2023): 400 g CO2/mile"
)


@dataclass
class CarbonReport:
    """A run's carbon report: ``data`` is the JSON document; properties read its headlines."""

    data: dict[str, Any]

    @classmethod
    def from_tracker(cls, tracker: CarbonTracker, ended_at: datetime | None) -> CarbonReport:
        return cls(_document(tracker, ended_at))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CarbonReport:
        """Read a report written by :meth:`save` (a file, or a folder holding one)."""
        target = Path(path)
        if target.is_dir():
            target = target / REPORT_FILENAME
        data = json.loads(target.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"{str(target)!r} is not an hf-eco2ai report (schema {SCHEMA_VERSION})"
            )
        _check_figures(data, str(target))
        report = cls(data)
        try:
            # Rendering reads every section the summary shows: a report it cannot show is damaged.
            report.summary()
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"{str(target)!r} is damaged: {type(err).__name__}: {err}") from None
        return report

    @property
    def status(self) -> str:
        return str(self.data["status"])

    @property
    def energy_kwh(self) -> float:
        return float(self.data["energy"]["total_kwh"])

    @property
    def co2_kg(self) -> float:
        return float(self.data["emissions"]["total_kg"])

    @property
    def samples_per_kwh(self) -> float:
        return float(self.data["training"]["samples_per_kwh"])

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, sort_keys=False, allow_nan=False) + "\n"

    def series_csv(self) -> str:
        """The per-log-step series as CSV text (empty when nothing was logged)."""
        rows = self.data.get("series", [])
        if not rows:
            return ""
        columns = list(dict.fromkeys(key for row in rows for key in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``carbon_report.json`` (and ``carbon_series.csv`` if any) atomically."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / REPORT_FILENAME
        write_atomic(path, self.to_json())
        series = self.series_csv()
        if series:
            write_atomic(folder / SERIES_FILENAME, series)
        return path

    def summary(self) -> str:
        """A plain-text summary whose figures are those of the JSON document."""
        return _summary(self.data)


#: The figures a saved report must hold, as finite, non-negative numbers.
_REQUIRED_FIGURES = (
    ("energy", "total_kwh"),
    ("energy", "low_kwh"),
    ("energy", "high_kwh"),
    ("emissions", "total_kg"),
    ("training", "samples_per_kwh"),
)


def _check_figures(data: dict[str, Any], name: str) -> None:
    """Refuse a report whose headline figures are missing, negative, NaN or infinite."""
    for section, key in _REQUIRED_FIGURES:
        block = data.get(section)
        value = block.get(key) if isinstance(block, dict) else None
        if not isinstance(value, int | float) or isinstance(value, bool) or not value >= 0:
            raise _damaged(name, section, key, value)
        if not math.isfinite(value):
            raise ValueError(
                f"{name!r} is damaged: {section}.{key} is {value!r}, not a finite number >= 0"
            )
    if not isinstance(data.get("status"), str) or not isinstance(data.get("estimates"), list):
        raise ValueError(f"{name!r} is damaged: status or estimates missing")


def _damaged(name: str, section: str, key: str, value: object) -> ValueError:
    return ValueError(
        f"{name!r} is damaged: {section}.{key} is {value!r}, not a finite number >= 0"
    )


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- building the document -----------------------------------------------------------------------


def _document(tracker: CarbonTracker, ended_at: datetime | None) -> dict[str, Any]:
    snap = tracker.snapshot
    log = tracker.run_log
    started = tracker.started_at
    duration = (
        (ended_at - started).total_seconds() if ended_at and started else snap.elapsed_seconds
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "hf-eco2ai", "version": __version__},
        "run_id": tracker.config.run_id,
        "project_name": tracker.config.project_name,
        "status": tracker.status,
        "stop_reason": tracker.stop_reason,
        "started_at": _iso(started),
        "ended_at": _iso(ended_at),
        "duration_seconds": round(duration, 3),
        "energy": _energy_section(snap),
        "emissions": _emissions_section(snap, log),
        "training": {
            "steps": snap.steps,
            "samples": snap.samples,
            "samples_per_kwh": snap.samples_per_kwh,
        },
        "estimates": [
            {
                "component": n.component,
                "assumption": n.assumption,
                "how_to_measure": n.how_to_measure,
            }
            for n in log.notes
        ],
        "equivalents": equivalents(snap.co2_grams),
        "host": {"hostname": socket.gethostname(), "platform": platform.platform()},
        "meters": list(log.meters),
        "warnings": list(log.warnings),
        "epochs": list(log.epochs),
        "series": list(log.series),
        "extra": dict(tracker.extra),
    }


def _energy_section(snap: Any) -> dict[str, Any]:
    components = {
        name: {
            "source": c.source,
            "joules": c.joules,
            "kwh": c.joules / JOULES_PER_KWH,
            "low_kwh": c.joules_low / JOULES_PER_KWH,
            "high_kwh": c.joules_high / JOULES_PER_KWH,
            "co2_kg": c.co2_grams / GRAMS_PER_KG,
        }
        for name, c in sorted(snap.components.items())
    }
    devices = [
        {
            "device": dev,
            "component": d.reading.component,
            "source": d.reading.source,
            "joules": d.reading.joules,
            "kwh": d.reading.joules / JOULES_PER_KWH,
            "co2_kg": d.co2_grams / GRAMS_PER_KG,
            "lost": d.reading.lost,
            "labels": dict(d.reading.labels),
        }
        for dev, d in sorted(snap.devices.items())
    ]
    return {
        "total_joules": snap.energy_joules,
        "total_kwh": snap.energy_kwh,
        "low_kwh": snap.energy_joules_low / JOULES_PER_KWH,
        "high_kwh": snap.energy_joules_high / JOULES_PER_KWH,
        "sources": sorted({c["source"] for c in components.values()}),
        "components": components,
        "devices": devices,
    }


def _emissions_section(snap: Any, log: Any) -> dict[str, Any]:
    periods = [
        {
            "g_per_kwh": use.reading.g_per_kwh,
            "source": use.reading.source,
            "zone": use.reading.zone,
            "kind": use.reading.kind,
            "year": use.reading.year,
            "is_forecast": use.reading.is_forecast,
            "fallback": use.reading.fallback,
            "first_used_at": _iso(use.first_used),
            "last_used_at": _iso(use.last_used),
            "energy_kwh": use.joules / JOULES_PER_KWH,
        }
        for use in log.intensity_uses
    ]
    mean = snap.co2_grams / snap.energy_kwh if snap.energy_joules > 0 else _latest(periods)
    return {
        "total_kg": snap.co2_grams / GRAMS_PER_KG,
        "total_grams": snap.co2_grams,
        "low_kg": snap.co2_grams_low / GRAMS_PER_KG,
        "high_kg": snap.co2_grams_high / GRAMS_PER_KG,
        "intensity_g_per_kwh": mean,
        "intensity_periods": periods,
        "fallback_used": any(p["fallback"] for p in periods),
        "fallback_events": [
            {"at": _iso(event.at), "reason": event.reason} for event in log.fallback_events()
        ],
    }


def _latest(periods: list[dict[str, Any]]) -> float:
    return float(periods[-1]["g_per_kwh"]) if periods else 0.0


def equivalents(co2_grams: float) -> list[dict[str, Any]]:
    """Everyday equivalents of ``co2_grams``, each with its factor and source."""
    return [
        {
            "what": "distance driven by a typical US passenger car",
            "value": co2_grams / CAR_G_CO2_PER_KM,
            "unit": "km",
            "factor_g_per_unit": CAR_G_CO2_PER_KM,
            "source": CAR_FACTOR_SOURCE,
        }
    ]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


# -- the text summary -----------------------------------------------------------------------------


def _summary(d: dict[str, Any]) -> str:
    energy, emissions = d["energy"], d["emissions"]
    lines = [
        f"hf-eco2ai: project {d['project_name']!r}, run {d['run_id']}, status {d['status']}",
        f"  time      {d['started_at']} to {d['ended_at'] or 'now'} "
        f"({d['duration_seconds']:.1f} s)",
        f"  energy    {_kwh(energy['total_kwh'])} kWh "
        f"(range {_kwh(energy['low_kwh'])} to {_kwh(energy['high_kwh'])} kWh)",
    ]
    for name, comp in energy["components"].items():
        lines.append(f"    {name:<8}{_kwh(comp['kwh'])} kWh  {comp['source']}")
    for node in energy.get("nodes", []):
        lines.append(
            f"    node {node['node_rank']} ({node['host']}, ranks {node['ranks']}): "
            f"{_kwh(node['kwh'])} kWh, {_kg(node['co2_kg'])} kg at "
            f"{node['intensity_g_per_kwh']:.1f} g/kWh {node['intensity_zone']}"
        )
    lines.append(
        f"  CO2eq     {_kg(emissions['total_kg'])} kg "
        f"(range {_kg(emissions['low_kg'])} to {_kg(emissions['high_kg'])} kg)"
    )
    for period in emissions["intensity_periods"][-3:]:
        year = f" {period['year']}" if period["year"] else ""
        fallback = ", fallback" if period["fallback"] else ""
        lines.append(
            f"    grid    {period['g_per_kwh']:.1f} g/kWh, {period['zone']}, "
            f"{period['kind']}{year}, {period['source']}{fallback}"
        )
    resumed = d.get("extra", {}).get("resumed")
    if resumed:
        run_kwh = energy["total_kwh"] + resumed["earlier_energy_kwh"]
        run_kg = emissions["total_kg"] + resumed["earlier_co2_kg"]
        lines.append(
            f"  resumed   at step {resumed['at_step']}; the run so far, with its "
            f"{resumed['earlier_segments']} earlier segment(s): {_kwh(run_kwh)} kWh, "
            f"{_kg(run_kg)} kg"
        )
    training = d["training"]
    if training["samples"]:
        lines.append(
            f"  training  {training['steps']} steps, {training['samples']} samples, "
            f"{training['samples_per_kwh']:.4g} samples/kWh"
        )
    for note in d["estimates"]:
        lines.append(f"  estimate  {note['component']}: {note['assumption']}")
        lines.append(f"            to measure it: {note['how_to_measure']}")
    for eq in d["equivalents"]:
        lines.append(f"  about     {eq['value']:.4g} {eq['unit']} of {eq['what']} ({eq['source']})")
    if d.get("stop_reason"):
        lines.append(f"  stopped   {json.dumps(d['stop_reason'], sort_keys=True)}")
    for warning in d["warnings"]:
        lines.append(f"  warning   {warning}")
    return "\n".join(lines)


def _figure(value: float) -> str:
    """Six decimals, or four significant digits below 0.001, so a small run never shows 0."""
    if value == 0 or value >= 1e-3:
        return f"{value:.6f}"
    return f"{value:.3e}"


_kwh = _kg = _figure
