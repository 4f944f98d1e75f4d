"""What the earlier segments of a resumed run measured, kept in each checkpoint.

A run resumed from a checkpoint is a new process whose meters start at zero. The totals measured
up to a checkpoint are written next to it (``carbon_state.json``, job-wide, by the main process)
so that the resumed run keeps its ``run_id``, its budget counts what was already spent, and its
report says what came before. Side effects: reads and writes that one file; nothing else.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hf_eco2ai.tracking.snapshot import TOTAL_FIELDS, TrackerSnapshot
from hf_eco2ai.units import GRAMS_PER_KG, JOULES_PER_KWH

logger = logging.getLogger(__name__)

STATE_FILENAME = "carbon_state.json"
STATE_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class CarriedTotals:
    """Job-wide totals of a run up to a checkpoint, in joules and grams.

    Attributes:
        run_id: The run's id, which the resumed run keeps.
        step: The checkpoint's global step.
        checkpoint: Where the totals were read from.
        segments: How many process lifetimes (starts) they cover.
        energy_joules: Energy measured before the checkpoint (central figure).
        energy_joules_low: Lower end of its range.
        energy_joules_high: Upper end of its range.
        co2_grams: CO2 of that energy, at the intensities of its time.
        co2_grams_low: CO2 of the low figure.
        co2_grams_high: CO2 of the high figure.
    """

    run_id: str
    step: int
    checkpoint: str
    segments: int
    energy_joules: float
    energy_joules_low: float
    energy_joules_high: float
    co2_grams: float
    co2_grams_low: float
    co2_grams_high: float

    def add_to(self, snap: TrackerSnapshot) -> TrackerSnapshot:
        """``snap`` with these earlier totals added (the run's totals since its first start)."""
        added = {name: getattr(snap, name) + getattr(self, name) for name in TOTAL_FIELDS}
        return replace(snap, **added)

    def report_record(self) -> dict[str, Any]:
        """The ``extra.resumed`` section of the report, in kWh and kg."""
        return {
            "from_checkpoint": self.checkpoint,
            "at_step": self.step,
            "earlier_segments": self.segments,
            "earlier_energy_kwh": self.energy_joules / JOULES_PER_KWH,
            "earlier_co2_kg": self.co2_grams / GRAMS_PER_KG,
        }

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> CarriedTotals:
        return cls(**json.loads(text))


def save_state(
    checkpoint: Path, run_id: str, step: int, snap: TrackerSnapshot, earlier: CarriedTotals | None
) -> None:
    """Write the run's totals so far (``snap`` plus ``earlier``) into ``checkpoint``, atomically."""
    total = earlier.add_to(snap) if earlier is not None else snap
    document = {
        "schema_version": STATE_SCHEMA_VERSION,
        "run_id": run_id,
        "step": step,
        "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "segments": (earlier.segments if earlier is not None else 0) + 1,
        **{name: getattr(total, name) for name in TOTAL_FIELDS},
    }
    try:
        checkpoint.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=checkpoint, prefix=".carbon_state.", suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(document, out, allow_nan=False)
        os.replace(tmp, checkpoint / STATE_FILENAME)
    except (OSError, ValueError) as err:
        logger.warning(
            "hf-eco2ai: could not write %s into %s (%s); a run resumed from it starts its "
            "carbon totals again from zero",
            STATE_FILENAME,
            checkpoint,
            err,
        )


def load_state(checkpoint: Path, step: int) -> CarriedTotals | None:
    """The totals saved with ``checkpoint`` at ``step``; None (with a warning if damaged)."""
    path = checkpoint / STATE_FILENAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        logger.warning("hf-eco2ai: ignoring %s (%s); totals start from zero", path, err)
        return None
    try:
        carried = _carried(data, str(checkpoint))
    except (KeyError, TypeError, ValueError) as err:
        logger.warning("hf-eco2ai: ignoring damaged %s (%s); totals start from zero", path, err)
        return None
    if carried.step != step:
        logger.warning(
            "hf-eco2ai: %s is for step %d, not the resumed step %d; ignored",
            path,
            carried.step,
            step,
        )
        return None
    return carried


def _carried(data: dict[str, Any], checkpoint: str) -> CarriedTotals:
    if data.get("schema_version") != STATE_SCHEMA_VERSION:
        raise ValueError(f"schema {data.get('schema_version')!r}, not {STATE_SCHEMA_VERSION}")
    figures = {name: float(data[name]) for name in TOTAL_FIELDS}
    if not all(math.isfinite(v) and v >= 0 for v in figures.values()):
        raise ValueError("a total is negative or not finite")
    return CarriedTotals(
        run_id=str(data["run_id"]),
        step=int(data["step"]),
        checkpoint=checkpoint,
        segments=int(data["segments"]),
        **figures,
    )
