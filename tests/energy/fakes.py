"""Fakes for hardware CI lacks: NVML (pynvml's API) and RAPL powercap sysfs, on a fake clock.

They reproduce what the real interfaces do, units included: NVML gives energy in integer
millijoules and power in integer milliwatts and raises ``NVMLError`` with pynvml's codes;
powercap gives microjoule counters that wrap at ``max_energy_range_uj`` and files a normal user
cannot read. Energy accrues as fake time advances, so a test says "250 W for 60 s" and gets
exactly 15 kJ from the counters.

Usage::

    clock = FakeClock()
    nvml = FakeNvml.uniform(8, clock, power_watts=250.0)
    meter = NvmlMeter(nvml=nvml, environ={"CUDA_VISIBLE_DEVICES": "3"}, clock=clock)

    rapl = fake_powercap(tmp_path, clock, packages=2, dram=True)
    meter = rapl.meter()  # RaplMeter(rapl.root, clock=clock, read_file=rapl.read_file)
"""

from __future__ import annotations

import errno
import uuid as uuid_module
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_eco2ai.energy.rapl import RaplMeter, read_sysfs

# pynvml's return codes (nvml.h); test_fakes checks them against the installed nvidia-ml-py.
NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999

_ERROR_NAMES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}

#: A real Intel package counter's range (2^32 units of 61.035 µJ), as sysfs reports it.
INTEL_MAX_ENERGY_RANGE_UJ = 262143328850


class FakeClock:
    """Monotonic seconds that move only when a test calls :meth:`advance`."""

    def __init__(self, start: float = 10_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward (never back: the real clock is monotonic)."""
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back ({seconds!r} s)")
        self.now += seconds


class NVMLError(Exception):
    """pynvml's error: ``.value`` holds the NVML return code."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _ERROR_NAMES.get(self.value, f"NVML Error with code {self.value}")


class _Accumulator:
    """Energy that accrues at a settable power on a fake clock; exact to the unit asked for."""

    def __init__(self, clock: FakeClock, power_watts: float, initial_joules: float = 0.0) -> None:
        self._clock = clock
        self._power_watts = power_watts
        self._joules = initial_joules
        self._since = clock()

    @property
    def power_watts(self) -> float:
        return self._power_watts

    def set_power(self, watts: float) -> None:
        """Change the power from now on; energy so far is kept."""
        self._joules = self.joules()
        self._since = self._clock()
        self._power_watts = watts

    def joules(self) -> float:
        return self._joules + self._power_watts * (self._clock() - self._since)


@dataclass
class FakeUtilization:
    """What ``nvmlDeviceGetUtilizationRates`` returns (percent)."""

    gpu: int
    memory: int


@dataclass
class FakeGpu:
    """One fake GPU. Attach to a :class:`FakeNvml`, which binds it to the clock.

    Attributes:
        power_watts: Draw from the start; change later with :meth:`set_power`.
        name: What ``nvmlDeviceGetName`` returns.
        uuid: What ``nvmlDeviceGetUUID`` returns; default derived from the index.
        has_energy_counter: False makes ``nvmlDeviceGetTotalEnergyConsumption`` raise
            NOT_SUPPORTED, as on GPUs older than Volta.
        lost_at: Fake time from which every call on this GPU raises GPU_IS_LOST.
        utilization_percent: What ``nvmlDeviceGetUtilizationRates().gpu`` returns.
        initial_energy_mj: Counter value at creation (real counters count since driver load).
        energy_reads: How many times the energy counter was read (to check selection).
        power_reads: How many times power was read.
    """

    power_watts: float = 250.0
    name: str = "NVIDIA A100-SXM4-80GB"
    uuid: str = ""
    has_energy_counter: bool = True
    lost_at: float | None = None
    utilization_percent: int = 90
    initial_energy_mj: int = 987_654_321
    energy_reads: int = 0
    power_reads: int = 0
    _energy: _Accumulator | None = field(default=None, repr=False)
    _clock: FakeClock | None = field(default=None, repr=False)
    _energy_glitches: deque[float] = field(default_factory=deque, repr=False)
    _power_glitches: deque[float] = field(default_factory=deque, repr=False)

    def bind(self, clock: FakeClock, index: int) -> None:
        """Start accruing energy on ``clock`` (done by FakeNvml)."""
        self._clock = clock
        self._energy = _Accumulator(clock, self.power_watts, self.initial_energy_mj / 1000.0)
        if not self.uuid:
            self.uuid = "GPU-" + str(uuid_module.uuid5(uuid_module.NAMESPACE_URL, f"gpu{index}"))

    def set_power(self, watts: float) -> None:
        """Draw ``watts`` from now on."""
        self.power_watts = watts
        self._accumulator().set_power(watts)

    def glitch(self, *, energy_mj: float | None = None, power_mw: float | None = None) -> None:
        """Make the next read of energy and/or power return this value once (garbage tests)."""
        if energy_mj is not None:
            self._energy_glitches.append(energy_mj)
        if power_mw is not None:
            self._power_glitches.append(power_mw)

    def energy_mj(self) -> float:
        """The total-energy counter now, in whole millijoules (or a queued glitch)."""
        self._check_alive()
        if not self.has_energy_counter:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        self.energy_reads += 1
        if self._energy_glitches:
            return self._energy_glitches.popleft()
        return int(round(self._accumulator().joules() * 1000.0))

    def power_mw(self) -> float:
        """Instantaneous power in whole milliwatts (or a queued glitch)."""
        self._check_alive()
        self.power_reads += 1
        if self._power_glitches:
            return self._power_glitches.popleft()
        return int(round(self.power_watts * 1000.0))

    def check_alive(self) -> None:
        """Raise GPU_IS_LOST once the fake clock reaches ``lost_at``."""
        self._check_alive()

    def _check_alive(self) -> None:
        if self.lost_at is not None and self._clock is not None and self._clock() >= self.lost_at:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)

    def _accumulator(self) -> _Accumulator:
        if self._energy is None:
            raise RuntimeError("FakeGpu is not attached to a FakeNvml yet")
        return self._energy


class FakeNvml:
    """A module-like stand-in for ``pynvml`` with the calls the meters use.

    Handles are the :class:`FakeGpu` objects. Calls before ``nvmlInit`` raise UNINITIALIZED,
    like the real library; ``nvmlInit``/``nvmlShutdown`` are reference-counted.

    Args:
        clock: The fake clock energy accrues on.
        gpus: The GPUs, in NVML index order.
        library_missing: ``nvmlInit`` raises LIBRARY_NOT_FOUND (no libnvidia-ml).
        driver_loaded: False makes ``nvmlInit`` raise DRIVER_NOT_LOADED.
    """

    NVMLError = NVMLError
    NVML_ERROR_UNINITIALIZED = NVML_ERROR_UNINITIALIZED
    NVML_ERROR_INVALID_ARGUMENT = NVML_ERROR_INVALID_ARGUMENT
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_NO_PERMISSION = NVML_ERROR_NO_PERMISSION
    NVML_ERROR_NOT_FOUND = NVML_ERROR_NOT_FOUND
    NVML_ERROR_DRIVER_NOT_LOADED = NVML_ERROR_DRIVER_NOT_LOADED
    NVML_ERROR_LIBRARY_NOT_FOUND = NVML_ERROR_LIBRARY_NOT_FOUND
    NVML_ERROR_GPU_IS_LOST = NVML_ERROR_GPU_IS_LOST
    NVML_ERROR_UNKNOWN = NVML_ERROR_UNKNOWN

    def __init__(
        self,
        clock: FakeClock,
        gpus: Sequence[FakeGpu] = (),
        *,
        library_missing: bool = False,
        driver_loaded: bool = True,
    ) -> None:
        self.clock = clock
        self.gpus = list(gpus)
        self.library_missing = library_missing
        self.driver_loaded = driver_loaded
        self.init_count = 0
        for index, gpu in enumerate(self.gpus):
            gpu.bind(clock, index)

    @classmethod
    def uniform(cls, count: int, clock: FakeClock, **gpu_options: Any) -> FakeNvml:
        """``count`` identical GPUs, e.g. ``FakeNvml.uniform(8, clock, power_watts=250.0)``."""
        return cls(clock, [FakeGpu(**gpu_options) for _ in range(count)])

    def nvmlInit(self) -> None:
        if self.library_missing:
            raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
        if not self.driver_loaded:
            raise NVMLError(NVML_ERROR_DRIVER_NOT_LOADED)
        self.init_count += 1

    def nvmlShutdown(self) -> None:
        self._check_init()
        self.init_count -= 1

    def nvmlDeviceGetCount(self) -> int:
        self._check_init()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self._check_init()
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return self.gpus[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> FakeGpu:
        self._check_init()
        wanted = uuid.decode() if isinstance(uuid, bytes) else uuid
        for gpu in self.gpus:
            if gpu.uuid == wanted:
                return gpu
        raise NVMLError(NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetUUID(self, handle: FakeGpu) -> str:
        self._check_init()
        handle.check_alive()
        return handle.uuid

    def nvmlDeviceGetName(self, handle: FakeGpu) -> str:
        self._check_init()
        handle.check_alive()
        return handle.name

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeGpu) -> float:
        self._check_init()
        return handle.energy_mj()

    def nvmlDeviceGetPowerUsage(self, handle: FakeGpu) -> float:
        self._check_init()
        return handle.power_mw()

    def nvmlDeviceGetUtilizationRates(self, handle: FakeGpu) -> FakeUtilization:
        self._check_init()
        handle.check_alive()
        return FakeUtilization(gpu=handle.utilization_percent, memory=40)

    def _check_init(self) -> None:
        if self.init_count <= 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)


@dataclass
class FakeZone:
    """One powercap zone directory with a wrapping microjoule counter.

    Attributes:
        path: The zone's directory.
        name: Its ``name`` file (``package-0``, ``dram``, ``core``, ``psys``...).
        max_energy_range_uj: Where ``energy_uj`` wraps to 0.
        unreadable: ``energy_uj`` raises PermissionError, as for a non-root user since the
            CVE-2020-8694 fix (tests run as root, where file modes would not stop the read).
        fail_from: Fake time from which reading ``energy_uj`` raises OSError(ENODEV).
    """

    path: Path
    name: str
    max_energy_range_uj: int
    energy: _Accumulator
    unreadable: bool = False
    fail_from: float | None = None
    glitches: deque[str] = field(default_factory=deque)

    def glitch(self, text: str) -> None:
        """Make the next read of ``energy_uj`` return ``text`` once (garbage tests)."""
        self.glitches.append(text)

    def set_power(self, watts: float) -> None:
        """Draw ``watts`` from now on."""
        self.energy.set_power(watts)

    def counter_uj(self) -> int:
        """What ``energy_uj`` holds now: total microjoules modulo the range (if it has one)."""
        total_uj = int(round(self.energy.joules() * 1e6))
        return total_uj % self.max_energy_range_uj if self.max_energy_range_uj > 0 else total_uj

    def write(self) -> None:
        """Write the current counter into the real ``energy_uj`` file."""
        (self.path / "energy_uj").write_text(f"{self.counter_uj()}\n", encoding="ascii")


@dataclass
class FakePowercap:
    """A fake ``/sys/class/powercap`` tree on disk, its zones, and the file reader to inject."""

    root: Path
    clock: FakeClock
    zones: dict[str, FakeZone]

    def zone(self, name: str) -> FakeZone:
        """A zone by directory name, e.g. ``"intel-rapl:0"`` or ``"intel-rapl:0:2"``."""
        return self.zones[name]

    def read_file(self, path: Path) -> str:
        """Read a sysfs file as a normal user would: counters current, restricted ones denied."""
        zone = self.zones.get(Path(path).parent.name)
        if zone is not None and Path(path).name == "energy_uj":
            if zone.unreadable:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            if zone.fail_from is not None and self.clock() >= zone.fail_from:
                raise OSError(errno.ENODEV, "No such device", str(path))
            if zone.glitches:
                return zone.glitches.popleft()
            zone.write()
        return read_sysfs(Path(path))

    def meter(self, **kwargs: Any) -> RaplMeter:
        """A RaplMeter on this tree, with the fake clock and reader."""
        return RaplMeter(self.root, clock=self.clock, read_file=self.read_file, **kwargs)


def fake_powercap(
    tmp_path: Path,
    clock: FakeClock,
    packages: int = 1,
    *,
    package_watts: float = 40.0,
    dram: bool = True,
    dram_watts: float = 6.0,
    core: bool = True,
    uncore: bool = True,
    psys: bool = False,
    mmio: bool = False,
    package_name: str = "package-{n}",
    max_energy_range_uj: int = INTEL_MAX_ENERGY_RANGE_UJ,
    initial_uj: int = 123_456_789,
    unreadable: bool = False,
) -> FakePowercap:
    """Build a powercap tree shaped like the kernel's under ``tmp_path / "powercap"``.

    Per package ``intel-rapl:N`` (named ``package-N``): subzones ``core`` (80 % of the package),
    ``uncore`` (5 %) and ``dram``. ``psys`` adds a platform zone reading more than everything
    else together; ``mmio`` adds ``intel-rapl-mmio:N`` duplicating each package counter. Like
    sysfs, subzones also appear as links at the top level, and an ``intel-rapl`` control-type
    directory sits next to the zones. AMD Zen: ``dram=False, core=False, uncore=False``.

    Args:
        tmp_path: Pytest's temporary directory.
        clock: The fake clock counters advance on.
        packages: Number of CPU packages.
        package_watts: Each package's draw (subzones excluded from nothing: they are inside).
        dram: Add a ``dram`` subzone per package drawing ``dram_watts``.
        dram_watts: Each DRAM zone's draw.
        core: Add ``core`` subzones.
        uncore: Add ``uncore`` subzones.
        psys: Add a ``psys`` platform zone.
        mmio: Add ``intel-rapl-mmio`` duplicates of the package counters.
        package_name: Format of package zone names (``{n}`` is the package number).
        max_energy_range_uj: Where each counter wraps.
        initial_uj: Every counter's value at creation.
        unreadable: Make every ``energy_uj`` raise PermissionError.
    """
    root = tmp_path / "powercap"
    (root / "intel-rapl").mkdir(parents=True)
    zones: dict[str, FakeZone] = {}

    def add(path: Path, name: str, watts: float) -> None:
        path.mkdir(parents=True)
        (path / "name").write_text(f"{name}\n", encoding="ascii")
        (path / "max_energy_range_uj").write_text(f"{max_energy_range_uj}\n", encoding="ascii")
        energy = _Accumulator(clock, watts, initial_uj / 1e6)
        zone = FakeZone(path, name, max_energy_range_uj, energy, unreadable=unreadable)
        zones[path.name] = zone
        zone.write()

    for n in range(packages):
        package = root / f"intel-rapl:{n}"
        add(package, package_name.format(n=n), package_watts)
        subzones = [("core", 0.8 * package_watts, core), ("uncore", 0.05 * package_watts, uncore)]
        subzones.append(("dram", dram_watts, dram))
        wanted_subzones = [(name, watts) for name, watts, wanted in subzones if wanted]
        for m, (name, watts) in enumerate(wanted_subzones):
            sub = package / f"intel-rapl:{n}:{m}"
            add(sub, name, watts)
            (root / sub.name).symlink_to(sub, target_is_directory=True)
        if mmio:
            add(root / f"intel-rapl-mmio:{n}", package_name.format(n=n), package_watts)

    if psys:
        platform_watts = packages * (package_watts + (dram_watts if dram else 0.0)) + 25.0
        add(root / f"intel-rapl:{packages}", "psys", platform_watts)
    return FakePowercap(root, clock, zones)
