"""An immutable picture of a run's totals, replaced whole by the sampler so readers never lock."""

from __future__ import annotations

from dataclasses import dataclass, field

from hf_eco2ai.energy.base import DeviceEnergy
from hf_eco2ai.intensity.base import IntensityReading
from hf_eco2ai.units import GRAMS_PER_KG, JOULES_PER_KWH


@dataclass(frozen=True)
class ComponentTotal:
    """Energy and CO2 of one component (``gpu``, ``cpu``, ``dram``, ``ram``) since start.

    ``source`` is the least certain source among the component's devices
    (``estimated`` beats ``sampled`` beats ``measured``).
    """

    component: str
    source: str
    joules: float
    joules_low: float
    joules_high: float
    co2_grams: float


@dataclass(frozen=True)
class DeviceTotal:
    """One device's energy and the CO2 attributed to it since start."""

    reading: DeviceEnergy
    co2_grams: float


#: The snapshot's cumulative totals (joules and grams, with their ranges): what adds up across
#: processes and across the segments of a resumed run.
TOTAL_FIELDS = (
    "energy_joules",
    "energy_joules_low",
    "energy_joules_high",
    "co2_grams",
    "co2_grams_low",
    "co2_grams_high",
)


@dataclass(frozen=True)
class TrackerSnapshot:
    """Totals at ``elapsed_seconds`` into the run; all fields in base units, kWh/kg as properties.

    Attributes:
        elapsed_seconds: Seconds since the tracker started (monotonic clock).
        timestamp: Unix time of the sample.
        energy_joules: Total energy of all owned devices.
        energy_joules_low: Lower end of the plausible range (estimates widen it).
        energy_joules_high: Upper end of the plausible range.
        co2_grams: Energy integrated with the intensity of each interval.
        co2_grams_low: CO2 of ``energy_joules_low``.
        co2_grams_high: CO2 of ``energy_joules_high``.
        intensity: The grid-intensity reading used for the latest interval.
        components: Per-component totals, keyed by component.
        devices: Per-device totals, keyed by device id.
        power_watts: Mean power over the trailing window.
        energy_rate_kwh_per_hour: Energy rate over the trailing window.
        co2_rate_kg_per_hour: CO2 rate over the trailing window.
        steps: Training steps reported by the integration (0 outside training).
        samples: Training samples reported by the integration.
        samples_per_kwh: ``samples`` per kWh so far, 0.0 while no energy is counted.
    """

    elapsed_seconds: float = 0.0
    timestamp: float = 0.0
    energy_joules: float = 0.0
    energy_joules_low: float = 0.0
    energy_joules_high: float = 0.0
    co2_grams: float = 0.0
    co2_grams_low: float = 0.0
    co2_grams_high: float = 0.0
    intensity: IntensityReading | None = None
    components: dict[str, ComponentTotal] = field(default_factory=dict)
    devices: dict[str, DeviceTotal] = field(default_factory=dict)
    power_watts: float = 0.0
    energy_rate_kwh_per_hour: float = 0.0
    co2_rate_kg_per_hour: float = 0.0
    steps: int = 0
    samples: int = 0

    @property
    def energy_kwh(self) -> float:
        return self.energy_joules / JOULES_PER_KWH

    @property
    def co2_kg(self) -> float:
        return self.co2_grams / GRAMS_PER_KG

    @property
    def samples_per_kwh(self) -> float:
        kwh = self.energy_kwh
        return self.samples / kwh if kwh > 0 else 0.0
