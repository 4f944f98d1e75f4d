"""A prometheus-client collector that renders the catalogue from the latest snapshot on each scrape.

Writers only swap references (a snapshot, a loss, a budget), so the training loop and the
sampler thread never format metrics; the cost lands on the scrape or push thread. Values are
converted from the snapshot's joules and grams to the catalogue's units here, at the edge.
"""

from __future__ import annotations

import math
import socket
import threading
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from hf_eco2ai.exporters import catalogue as cat
from hf_eco2ai.exporters.catalogue import MetricSpec
from hf_eco2ai.tracking.snapshot import DeviceTotal, TrackerSnapshot
from hf_eco2ai.units import GRAMS_PER_KG, JOULES_PER_KWH


def package_version() -> str:
    """The installed hf-eco2ai version, or ``0+unknown`` when running from a source tree."""
    try:
        return version("hf-eco2ai")
    except PackageNotFoundError:
        return "0+unknown"


def new_family(spec: MetricSpec) -> Metric:
    """An empty family for ``spec`` whose samples carry ``spec.all_labels``."""
    labels = list(cat.RUN_LABELS)
    if spec.type == "info":
        # Info families take the run labels as labels and the rest as the info dict.
        return InfoMetricFamily(spec.name.removesuffix("_info"), spec.help, labels=labels)
    labels += spec.labels
    if spec.type == "counter":
        # CounterMetricFamily strips "_total" from the family and adds it back to the sample.
        return CounterMetricFamily(spec.name, spec.help, labels=labels)
    return GaugeMetricFamily(spec.name, spec.help, labels=labels)


class SnapshotCollector(Collector):
    """Renders every :data:`~hf_eco2ai.exporters.catalogue.CATALOGUE` family for one run.

    Args:
        project_name: Value of the ``project_name`` label.
        run_id: Value of the ``run_id`` label.
        host: Value of ``host`` in the run-info series; the machine's hostname by default.
        job_series: Render the job-wide series (steps, samples, samples per kWh, loss); False
            on the other processes of a multi-process job, which would repeat them.
    """

    def __init__(
        self, project_name: str, run_id: str, *, host: str | None = None, job_series: bool = True
    ) -> None:
        self._run = (project_name, run_id)
        self._job_series = job_series
        self._samples_per_kwh: float | None = None
        self._host = host if host is not None else socket.gethostname()
        self._version = package_version()
        self._snapshot = TrackerSnapshot()
        self._loss: float | None = None
        self._budget: tuple[float | None, float | None] = (None, None)
        self._alerts: Mapping[str, bool] = {}
        self._alerts_lock = threading.Lock()
        self._final_scraped = threading.Event()
        self._final_scraped.set()

    def update(self, snapshot: TrackerSnapshot) -> None:
        """Make ``snapshot`` the one the next scrape renders (a reference swap)."""
        self._snapshot = snapshot

    def set_loss(self, value: float) -> None:
        """Record the latest training loss; a non-finite loss is rendered as absent."""
        self._loss = value

    def set_samples_per_kwh(self, value: float) -> None:
        """Record the job's samples per kWh, rendered instead of the snapshot's own."""
        self._samples_per_kwh = value

    def set_budget(self, co2_kg: float | None, energy_kwh: float | None) -> None:
        """Record the run's budgets; None leaves that budget series out."""
        self._budget = (co2_kg, energy_kwh)

    def set_alert(self, name: str, active: bool) -> None:
        """Record whether the in-process alert ``name`` is active."""
        with self._alerts_lock:
            # Copy on write, so a scrape iterating the old mapping is never disturbed.
            self._alerts = {**self._alerts, name: active}

    def expect_final_scrape(self) -> threading.Event:
        """An event set by the next scrape: it then carries the final snapshot."""
        self._final_scraped.clear()
        return self._final_scraped

    def describe(self) -> Iterable[Metric]:
        """Empty families, so the registry can detect name clashes without a snapshot."""
        return [new_family(spec) for spec in cat.CATALOGUE]

    def collect(self) -> Iterable[Metric]:
        """Every family rendered from the references held at this instant."""
        snapshot = self._snapshot
        families = {spec.name: new_family(spec) for spec in cat.CATALOGUE}
        self._add_totals(families, snapshot)
        self._add_devices(families, snapshot.devices.values())
        self._add_intensity(families, snapshot)
        self._add_training(families, snapshot)
        self._add_controls(families)
        self._final_scraped.set()
        return [families[spec.name] for spec in cat.CATALOGUE if families[spec.name].samples]

    def _add(
        self, families: dict[str, Metric], spec: MetricSpec, value: float, *extra: str
    ) -> None:
        if math.isfinite(value):
            _add_metric(families[spec.name], [*self._run, *extra], value)

    def _add_totals(self, families: dict[str, Metric], snapshot: TrackerSnapshot) -> None:
        self._add(families, cat.CO2_TOTAL, snapshot.co2_grams / GRAMS_PER_KG)
        self._add(families, cat.ENERGY_KWH_TOTAL, snapshot.energy_joules / JOULES_PER_KWH)
        for total in snapshot.components.values():
            self._add(
                families, cat.ENERGY_JOULES_TOTAL, total.joules, total.component, total.source
            )
        self._add(families, cat.POWER, snapshot.power_watts)
        self._add(families, cat.CO2_RATE, snapshot.co2_rate_kg_per_hour)
        self._add(families, cat.ENERGY_RATE, snapshot.energy_rate_kwh_per_hour)

    def _add_devices(self, families: dict[str, Metric], devices: Iterable[DeviceTotal]) -> None:
        for total in devices:
            reading = total.reading
            if reading.component != "gpu":
                continue
            gpu = reading.labels.get("index", reading.device)
            self._add(families, cat.GPU_ENERGY_JOULES_TOTAL, reading.joules, gpu, reading.source)
            if reading.power_watts is not None:
                self._add(families, cat.GPU_POWER, reading.power_watts, gpu)
            if reading.utilization_percent is not None:
                self._add(families, cat.GPU_UTILIZATION, reading.utilization_percent, gpu)
            info = {
                "gpu": gpu,
                "gpu_uuid": reading.labels.get("uuid", ""),
                "gpu_name": reading.labels.get("name", ""),
            }
            _add_metric(families[cat.GPU_INFO.name], list(self._run), info)

    def _add_intensity(self, families: dict[str, Metric], snapshot: TrackerSnapshot) -> None:
        reading = snapshot.intensity
        source, zone = (reading.source, reading.zone) if reading else ("", "")
        info = {"host": self._host, "version": self._version}
        info |= {"intensity_source": source, "zone": zone}
        _add_metric(families[cat.RUN_INFO.name], list(self._run), info)
        if reading is None:
            return
        fallback = "true" if reading.fallback else "false"
        labels = (reading.source, reading.zone, reading.kind, fallback)
        self._add(families, cat.GRID_INTENSITY, reading.g_per_kwh, *labels)

    def _add_training(self, families: dict[str, Metric], snapshot: TrackerSnapshot) -> None:
        if self._job_series:
            spk = self._samples_per_kwh
            self._add(families, cat.STEPS_TOTAL, snapshot.steps)
            self._add(families, cat.SAMPLES_TOTAL, snapshot.samples)
            self._add(
                families, cat.SAMPLES_PER_KWH, snapshot.samples_per_kwh if spk is None else spk
            )
            if self._loss is not None:
                self._add(families, cat.LOSS, self._loss)
        if snapshot.timestamp > 0:
            start = snapshot.timestamp - snapshot.elapsed_seconds
            self._add(families, cat.START_TIME, start)
            self._add(families, cat.LAST_SAMPLE_TIME, snapshot.timestamp)

    def _add_controls(self, families: dict[str, Metric]) -> None:
        co2_kg, energy_kwh = self._budget
        if co2_kg is not None:
            self._add(families, cat.CARBON_BUDGET, co2_kg)
        if energy_kwh is not None:
            self._add(families, cat.ENERGY_BUDGET, energy_kwh)
        for name, active in self._alerts.items():
            self._add(families, cat.ALERT_ACTIVE, 1.0 if active else 0.0, name)


def _add_metric(family: Metric, labels: list[str], value: float | dict[str, str]) -> None:
    # The three family classes share add_metric(labels, value) but not a typed base method.
    family.add_metric(labels, value)  # type: ignore[attr-defined]
