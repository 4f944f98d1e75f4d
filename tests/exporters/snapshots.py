"""Snapshots of a run with known power, as the tracker would publish them (no hardware needed)."""

from __future__ import annotations

from dataclasses import dataclass

from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.energy.base import DeviceEnergy
from hf_eco2ai.intensity.base import IntensityReading
from hf_eco2ai.tracking.snapshot import ComponentTotal, DeviceTotal, TrackerSnapshot
from hf_eco2ai.units import SECONDS_PER_HOUR, co2_grams

START_TIME = 1_700_000_000.0


@dataclass(frozen=True)
class RunShape:
    """A run drawing constant power: ``gpus`` GPUs of ``gpu_watts`` plus an estimated CPU."""

    gpus: int = 2
    gpu_watts: float = 300.0
    cpu_watts: float = 65.0
    g_per_kwh: float = 400.0
    samples_per_second: float = 32.0

    @property
    def watts(self) -> float:
        return self.gpus * self.gpu_watts + self.cpu_watts

    def co2_kg_per_hour(self) -> float:
        return co2_grams(self.watts * SECONDS_PER_HOUR, self.g_per_kwh) / 1000.0

    def snapshot(self, elapsed: float) -> TrackerSnapshot:
        """The run's totals ``elapsed`` seconds in."""
        gpus = {f"gpu:{i}": self._gpu(i, elapsed) for i in range(self.gpus)}
        cpu_joules = self.cpu_watts * elapsed
        gpu_joules = self.gpu_watts * self.gpus * elapsed
        joules = gpu_joules + cpu_joules
        grams = co2_grams(joules, self.g_per_kwh)
        components = {
            "gpu": ComponentTotal(
                "gpu",
                "measured",
                gpu_joules,
                gpu_joules,
                gpu_joules,
                co2_grams(gpu_joules, self.g_per_kwh),
            ),
            "cpu": ComponentTotal(
                "cpu",
                "estimated",
                cpu_joules,
                cpu_joules * 0.7,
                cpu_joules * 1.3,
                co2_grams(cpu_joules, self.g_per_kwh),
            ),
        }
        samples = int(self.samples_per_second * elapsed)
        return TrackerSnapshot(
            elapsed_seconds=elapsed,
            timestamp=START_TIME + elapsed,
            energy_joules=joules,
            energy_joules_low=joules,
            energy_joules_high=joules,
            co2_grams=grams,
            co2_grams_low=grams,
            co2_grams_high=grams,
            intensity=IntensityReading(self.g_per_kwh, "test table", "FRA", year=2023),
            components=components,
            devices=gpus,
            power_watts=self.watts,
            energy_rate_kwh_per_hour=self.watts / 1000.0,
            co2_rate_kg_per_hour=self.co2_kg_per_hour(),
            steps=samples // 8,
            samples=samples,
        )

    def _gpu(self, index: int, elapsed: float) -> DeviceTotal:
        joules = self.gpu_watts * elapsed
        reading = DeviceEnergy(
            device=f"gpu:{index}",
            component="gpu",
            source="measured",
            joules=joules,
            joules_low=joules,
            joules_high=joules,
            power_watts=self.gpu_watts,
            utilization_percent=90.0 + index,
            labels={
                "index": str(index),
                "uuid": f"GPU-{index:08d}",
                "name": "NVIDIA H100 80GB HBM3",
            },
        )
        return DeviceTotal(reading, co2_grams(joules, self.g_per_kwh))


def settings(**overrides: object) -> CarbonConfig:
    """A run's config exporting on loopback and an ephemeral port (overrides win)."""
    values: dict[str, object] = {
        "project_name": "proj",
        "run_id": "run-1",
        "grid_carbon_intensity": 400.0,
        "export_prometheus": True,
        "prometheus_port": 0,
        "prometheus_host": "127.0.0.1",
    }
    values.update(overrides)
    return CarbonConfig(**values)
