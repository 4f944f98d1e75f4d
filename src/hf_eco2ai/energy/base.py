"""What every energy meter reports: joules since start, per device, and how it got them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

#: How a figure was obtained. ``measured``: a hardware energy counter (NVML total energy, RAPL);
#: ``sampled``: instantaneous power integrated over time; ``estimated``: a model (TDP, W per GB).
EnergySource = Literal["measured", "sampled", "estimated"]

#: What a device is. ``dram`` is measured memory power (RAPL); ``ram`` is the memory estimate.
Component = Literal["gpu", "cpu", "dram", "ram"]


@dataclass(frozen=True)
class DeviceEnergy:
    """One device's energy since its meter started.

    Attributes:
        device: Stable id within the host, e.g. ``"gpu:3"``, ``"package-0"``, ``"cpu"``.
        component: What kind of device it is.
        source: How ``joules`` was obtained.
        joules: Energy since the meter started; never negative, never decreasing.
        joules_low: Lower end of the plausible range (equals ``joules`` unless estimated).
        joules_high: Upper end of the plausible range (equals ``joules`` unless estimated).
        power_watts: Latest instantaneous power, if the device reports one.
        utilization_percent: Latest utilisation (0 to 100), if the device reports one.
        labels: Identity of the device (``index``, ``uuid``, ``name`` for GPUs).
        lost: True once the device stopped answering; ``joules`` then stays at its last value.
    """

    device: str
    component: Component
    source: EnergySource
    joules: float
    joules_low: float
    joules_high: float
    power_watts: float | None = None
    utilization_percent: float | None = None
    labels: dict[str, str] = field(default_factory=dict)
    lost: bool = False


@dataclass(frozen=True)
class EstimateNote:
    """How an estimate was made and what would turn it into a measurement."""

    component: Component
    assumption: str
    how_to_measure: str


@runtime_checkable
class Meter(Protocol):
    """An energy meter. ``read`` is called from the tracker's sampler thread only.

    ``start`` takes the baseline and may raise :class:`~hf_eco2ai.errors.MeterError` when the
    hardware cannot be read at all; ``read`` must not raise for a single failing device (it
    marks the device ``lost`` instead), and may raise ``MeterError`` if the whole meter broke.
    """

    name: str

    def start(self) -> None: ...

    def read(self) -> list[DeviceEnergy]: ...

    def close(self) -> None: ...

    def notes(self) -> list[EstimateNote]: ...
