"""The one definition of every exported metric: name, type, unit, help and labels; no side effects.

The exporter, the alert rules, the Grafana dashboard and ``docs/metrics.md`` all read this table,
so a name changes in one place. Names the runbook fixes keep the runbook's kg and kWh units;
the others follow Prometheus's naming guide (base units, ``_total`` counters, ``_info`` series).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MetricType = Literal["counter", "gauge", "info"]

#: Labels every series carries, so concurrent runs never mix.
RUN_LABELS: tuple[str, ...] = ("project_name", "run_id")


@dataclass(frozen=True)
class MetricSpec:
    """One exported series family.

    Attributes:
        name: The sample name as Prometheus stores it (``_total`` and ``_info`` included).
        type: ``counter`` (only grows within a process), ``gauge`` or ``info`` (value 1).
        unit: Human unit for docs and dashboards, e.g. ``kg``, ``W``; empty when unitless.
        help: The HELP text.
        labels: Labels beyond :data:`RUN_LABELS`, in order.
        runbook: True when the runbook fixes this name; it is then kept even where the naming
            guide would choose another unit.
    """

    name: str
    type: MetricType
    unit: str
    help: str
    labels: tuple[str, ...] = ()
    runbook: bool = False

    @property
    def all_labels(self) -> tuple[str, ...]:
        """:data:`RUN_LABELS` followed by the family's own labels."""
        return RUN_LABELS + self.labels


def _spec(
    name: str,
    type_: MetricType,
    unit: str,
    help_: str,
    labels: tuple[str, ...] = (),
    runbook: bool = False,
) -> MetricSpec:
    return MetricSpec(name, type_, unit, help_, labels, runbook)


CO2_TOTAL = _spec(
    "hf_training_co2_kg_total",
    "counter",
    "kg",
    "CO2eq emitted by the run's owned devices since the tracker started, in kg "
    "(energy of each interval times the grid intensity of that interval).",
    runbook=True,
)
ENERGY_KWH_TOTAL = _spec(
    "hf_training_energy_kwh_total",
    "counter",
    "kWh",
    "Electricity used by the run's owned devices since the tracker started, in kWh.",
    runbook=True,
)
ENERGY_JOULES_TOTAL = _spec(
    "hf_training_energy_joules_total",
    "counter",
    "J",
    "Energy by component (gpu, cpu, dram, ram) and how it was obtained "
    "(measured, sampled, estimated), in joules.",
    labels=("component", "source"),
)
GPU_ENERGY_JOULES_TOTAL = _spec(
    "hf_training_gpu_energy_joules_total",
    "counter",
    "J",
    "Energy of one GPU since the tracker started, in joules.",
    labels=("gpu", "source"),
)
CARBON_BUDGET = _spec(
    "hf_training_carbon_budget_kg",
    "gauge",
    "kg",
    "The run's CO2eq budget in kg; absent when no budget is set.",
    runbook=True,
)
ENERGY_BUDGET = _spec(
    "hf_training_energy_budget_kwh",
    "gauge",
    "kWh",
    "The run's energy budget in kWh (same unit as hf_training_energy_kwh_total, which it is "
    "compared with); absent when no budget is set.",
)
GPU_UTILIZATION = _spec(
    "hf_training_gpu_utilization_percent",
    "gauge",
    "%",
    "Latest utilisation of one GPU, 0 to 100, as the driver reports it.",
    labels=("gpu",),
    runbook=True,
)
GPU_POWER = _spec(
    "hf_training_gpu_power_watts",
    "gauge",
    "W",
    "Latest power draw of one GPU, in watts.",
    labels=("gpu",),
    runbook=True,
)
GPU_INFO = _spec(
    "hf_training_gpu_info",
    "info",
    "",
    "Identity of each GPU the run owns; join on gpu.",
    labels=("gpu", "gpu_uuid", "gpu_name"),
)
GRID_INTENSITY = _spec(
    "hf_training_grid_carbon_intensity_g_per_kwh",
    "gauge",
    "g/kWh",
    "Grid carbon intensity used for the latest interval, in g CO2eq per kWh, with its "
    "publisher, zone, kind (average or marginal) and whether it is a fallback.",
    labels=("intensity_source", "zone", "kind", "fallback"),
    runbook=True,
)
LOSS = _spec(
    "hf_training_loss",
    "gauge",
    "",
    "Latest training loss the trainer logged.",
    runbook=True,
)
SAMPLES_PER_KWH = _spec(
    "hf_training_samples_per_kwh",
    "gauge",
    "samples/kWh",
    "Training samples processed per kWh so far; 0 while no energy is counted.",
    runbook=True,
)
POWER = _spec(
    "hf_training_power_watts",
    "gauge",
    "W",
    "Mean power of all owned devices over the tracker's trailing window, in watts.",
)
CO2_RATE = _spec(
    "hf_training_co2_rate_kg_per_hour",
    "gauge",
    "kg/h",
    "CO2eq rate over the tracker's trailing window, in kg per hour (computed in process; "
    "rate(hf_training_co2_kg_total[5m]) * 3600 is the Prometheus-side equivalent).",
)
ENERGY_RATE = _spec(
    "hf_training_energy_rate_kwh_per_hour",
    "gauge",
    "kWh/h",
    "Energy rate over the tracker's trailing window, in kWh per hour.",
)
STEPS_TOTAL = _spec(
    "hf_training_steps_total", "counter", "", "Optimizer steps the trainer reported."
)
SAMPLES_TOTAL = _spec(
    "hf_training_samples_total", "counter", "", "Training samples the trainer reported."
)
START_TIME = _spec(
    "hf_training_start_time_seconds",
    "gauge",
    "s",
    "Unix time the tracker started; a change means the process restarted.",
)
LAST_SAMPLE_TIME = _spec(
    "hf_training_last_sample_timestamp_seconds",
    "gauge",
    "s",
    "Unix time of the latest sample; on a Pushgateway, time() minus this shows a run that "
    "stopped pushing.",
)
ALERT_ACTIVE = _spec(
    "hf_training_alert_active",
    "gauge",
    "",
    "1 while the tracker's in-process alert is active, 0 once it cleared.",
    labels=("alert",),
)
RUN_INFO = _spec(
    "hf_training_run_info",
    "info",
    "",
    "Identity of the run: host, package version, grid-intensity publisher and zone.",
    labels=("host", "version", "intensity_source", "zone"),
)

#: Every exported family, in the order ``/metrics`` renders them.
CATALOGUE: tuple[MetricSpec, ...] = (
    CO2_TOTAL,
    ENERGY_KWH_TOTAL,
    ENERGY_JOULES_TOTAL,
    GPU_ENERGY_JOULES_TOTAL,
    CARBON_BUDGET,
    ENERGY_BUDGET,
    GPU_UTILIZATION,
    GPU_POWER,
    GPU_INFO,
    GRID_INTENSITY,
    LOSS,
    SAMPLES_PER_KWH,
    POWER,
    CO2_RATE,
    ENERGY_RATE,
    STEPS_TOTAL,
    SAMPLES_TOTAL,
    START_TIME,
    LAST_SAMPLE_TIME,
    ALERT_ACTIVE,
    RUN_INFO,
)


def by_name(name: str) -> MetricSpec:
    """The spec whose sample name is ``name``.

    Raises:
        KeyError: ``name`` is not in :data:`CATALOGUE`.
    """
    for spec in CATALOGUE:
        if spec.name == name:
            return spec
    raise KeyError(f"{name!r} is not in the metric catalogue")
