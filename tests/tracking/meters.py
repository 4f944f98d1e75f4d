"""Meters of known power for tracker tests. Hardware fakes (NVML, RAPL) live in tests/energy."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from hf_eco2ai.energy.base import Component, DeviceEnergy, EnergySource, EstimateNote
from hf_eco2ai.errors import MeterError


@dataclass
class ManualClock:
    """A monotonic clock that only moves when told to."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class ConstantPowerMeter:
    """One device drawing ``watts`` as ``clock`` advances; ``spread`` widens estimates (+-)."""

    clock: ManualClock
    watts: float
    device: str = "gpu:0"
    component: Component = "gpu"
    source: EnergySource = "measured"
    spread: float = 0.0
    name: str = "constant"
    fail_after_reads: int | None = None
    read_delay_seconds: float = 0.0
    reads: int = 0
    _t0: float = 0.0
    _concurrent: int = 0
    max_concurrent: int = 0
    read_times: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self._t0 = self.clock()

    def read(self) -> list[DeviceEnergy]:
        with self._lock:
            self._concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self._concurrent)
        try:
            self.read_times.append(time.monotonic())
            if self.read_delay_seconds:
                time.sleep(self.read_delay_seconds)
            self.reads += 1
            if self.fail_after_reads is not None and self.reads > self.fail_after_reads:
                raise MeterError(f"{self.name} went away")
            joules = self.watts * (self.clock() - self._t0)
            return [
                DeviceEnergy(
                    device=self.device,
                    component=self.component,
                    source=self.source,
                    joules=joules,
                    joules_low=joules * (1 - self.spread),
                    joules_high=joules * (1 + self.spread),
                    power_watts=self.watts,
                )
            ]
        finally:
            with self._lock:
                self._concurrent -= 1

    def close(self) -> None:
        pass

    def notes(self) -> list[EstimateNote]:
        if self.source != "estimated":
            return []
        return [EstimateNote(self.component, f"{self.watts} W assumed", "use a real meter")]


@dataclass
class ScriptedMeter:
    """Returns the joules it is given, in order, to test garbage and non-monotonic readings."""

    values: list[float]
    name: str = "scripted"
    index: int = 0

    def start(self) -> None:
        pass

    def read(self) -> list[DeviceEnergy]:
        value = self.values[min(self.index, len(self.values) - 1)]
        self.index += 1
        return [DeviceEnergy("gpu:0", "gpu", "measured", value, value, value)]

    def close(self) -> None:
        pass

    def notes(self) -> list[EstimateNote]:
        return []
