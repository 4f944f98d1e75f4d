"""Estimated CPU and RAM energy (joules, with a low..high range) where no counter can be read.

CPU: busy CPU-seconds of this process (and its children) times watts per busy hardware thread,
derived from the CPU's TDP (bundled table ``cpu_tdp.csv`` or configured). RAM: resident memory
in GB times watts per GB, integrated over time. Side effects: reads ``/proc/cpuinfo`` once.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import math
import os
import platform
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psutil

from hf_eco2ai.energy.base import DeviceEnergy, EstimateNote
from hf_eco2ai.errors import ConfigError, MeterError
from hf_eco2ai.units import BYTES_PER_GB

logger = logging.getLogger(__name__)

DEFAULT_CPUINFO = Path("/proc/cpuinfo")

#: Under sustained all-core load a package draws somewhat less than its TDP.
SUSTAINED_TDP_FRACTION = 0.7
#: Watts per busy hardware thread for a CPU not in the table: (low, central, high).
UNKNOWN_WATTS_PER_THREAD = (2.0, 6.0, 15.0)
#: 0.375 W/GB is 3 W per 8 GB module, a common rule of thumb; the range spans DDR generations.
DEFAULT_RAM_WATTS_PER_GB = 0.375
RAM_WATTS_PER_GB_RANGE = (0.2, 0.6)
#: Listing child processes scans /proc; do it at most this often.
CHILDREN_REFRESH_SECONDS = 5.0

_HOW_TO_MEASURE_CPU = (
    "Measure instead of estimating: grant read access to the RAPL counters (e.g. sudo chmod o+r "
    "/sys/class/powercap/intel-rapl:*/energy_uj; see the warning at start for permanent ways). "
    "VMs and most containers do not expose RAPL; there, pass cpu_tdp_watts=<your CPU's TDP> to "
    "narrow the range."
)
_HOW_TO_MEASURE_RAM = (
    "Measure instead of estimating: on Intel servers the RAPL 'dram' zone measures memory "
    "energy; grant read access to /sys/class/powercap/intel-rapl:*:*/energy_uj."
)


@dataclass(frozen=True)
class CpuSpec:
    """One row of the bundled table: a CPU model's TDP per package and its thread counts."""

    pattern: re.Pattern[str]
    tdp_watts: float
    cores: int
    threads: int
    source_url: str


@dataclass(frozen=True)
class CpuPowerModel:
    """Watts per busy hardware thread, with its plausible range and where it comes from."""

    cpu_model: str | None
    watts_per_thread_low: float
    watts_per_thread: float
    watts_per_thread_high: float
    basis: str


@functools.cache
def load_cpu_tdp_table() -> tuple[CpuSpec, ...]:
    """The bundled ``cpu_tdp.csv`` (read once; see ``CPU_TDP_SOURCES.md``)."""
    text = resources.files("hf_eco2ai.energy").joinpath("cpu_tdp.csv").read_text("utf-8")
    return tuple(
        CpuSpec(
            pattern=re.compile(row["model_pattern"], re.IGNORECASE),
            tdp_watts=float(row["tdp_watts"]),
            cores=int(row["cores"]),
            threads=int(row["threads"]),
            source_url=row["source_url"],
        )
        for row in csv.DictReader(io.StringIO(text))
    )


def find_cpu_spec(cpu_model: str | None) -> CpuSpec | None:
    """The table row whose pattern occurs in ``cpu_model``, if any."""
    if not cpu_model:
        return None
    return next((spec for spec in load_cpu_tdp_table() if spec.pattern.search(cpu_model)), None)


def detect_cpu_model(cpuinfo_path: Path = DEFAULT_CPUINFO) -> str | None:
    """The CPU's marketing name from ``/proc/cpuinfo`` (``model name``), else the platform's."""
    try:
        text = cpuinfo_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or None


def count_sockets(cpuinfo_path: Path = DEFAULT_CPUINFO) -> int:
    """Number of CPU packages (distinct ``physical id``), 1 where unknown."""
    try:
        text = cpuinfo_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return 1
    ids = {line.partition(":")[2].strip() for line in text.splitlines() if "physical id" in line}
    return max(len(ids), 1)


def cpu_power_model(
    cpu_model: str | None,
    tdp_watts: float | None = None,
    *,
    cpuinfo_path: Path = DEFAULT_CPUINFO,
) -> CpuPowerModel:
    """Watts per busy hardware thread for ``cpu_model``, from a configured TDP or the table.

    With a TDP and the package's ``cores``/``threads``: low = TDP/threads x 0.7 (sustained draw
    under TDP), high = TDP/cores (each busy thread owning a whole core), central = the mean of
    TDP/threads and TDP/cores. An unknown model gets a wide range (2 to 15 W, central 6 W).
    """
    spec = find_cpu_spec(cpu_model)
    if tdp_watts is not None:
        cores, threads = _package_counts(spec, cpuinfo_path)
        basis = f"the configured TDP of {tdp_watts:g} W for {cores} cores / {threads} threads"
        return _from_tdp(cpu_model, tdp_watts, cores, threads, basis)
    if spec is not None:
        basis = (
            f"TDP {spec.tdp_watts:g} W for {spec.cores} cores / {spec.threads} threads "
            f"({spec.source_url})"
        )
        return _from_tdp(cpu_model, spec.tdp_watts, spec.cores, spec.threads, basis)

    low, central, high = UNKNOWN_WATTS_PER_THREAD
    basis = (
        f"CPU model {cpu_model!r} is not in the bundled TDP table, so a wide generic range is "
        "assumed; pass cpu_tdp_watts to narrow it"
    )
    return CpuPowerModel(cpu_model, low, central, high, basis)


@functools.lru_cache(maxsize=16)
def _host_power_model(
    cpu_model: str | None, tdp_watts: float | None, cpuinfo_path: Path
) -> CpuPowerModel:
    """The power model a meter starts with; the CPU is a host fact, so read once per process.

    Trackers started around many short tasks would otherwise re-read ``/proc/cpuinfo`` twice
    each (about 80 us here).
    """
    cpu_model = cpu_model or detect_cpu_model(cpuinfo_path)
    return cpu_power_model(cpu_model, tdp_watts, cpuinfo_path=cpuinfo_path)


def _from_tdp(
    cpu_model: str | None, tdp_watts: float, cores: int, threads: int, basis: str
) -> CpuPowerModel:
    per_thread = tdp_watts / threads
    per_core = tdp_watts / cores
    low = per_thread * SUSTAINED_TDP_FRACTION
    return CpuPowerModel(cpu_model, low, (per_thread + per_core) / 2.0, per_core, basis)


def _package_counts(spec: CpuSpec | None, cpuinfo_path: Path) -> tuple[int, int]:
    """Cores and threads of one package: from the table, else this host's divided by sockets."""
    if spec is not None:
        return spec.cores, spec.threads
    sockets = count_sockets(cpuinfo_path)
    threads = psutil.cpu_count(logical=True) or 1
    cores = psutil.cpu_count(logical=False) or threads
    return max(cores // sockets, 1), max(threads // sockets, 1)


def _positive(field: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(field, value, f"expected a positive number of watts, got {value!r}.")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(field, value, f"expected a positive number of watts, got {value!r}.")
    return float(value)


class _ProcessTree:
    """A process and, optionally, its descendants; reuses Process objects between samples."""

    def __init__(
        self, process: psutil.Process, include_children: bool, clock: Callable[[], float]
    ) -> None:
        self._root = process
        self._include_children = include_children
        self._clock = clock
        self._children: list[psutil.Process] = []
        self._children_listed_at = -math.inf

    def cpu_seconds(self) -> float:
        """User + system CPU seconds; raises psutil.NoSuchProcess if the root process is gone.

        With children: each live descendant's own time, plus the time of children already
        reaped (``children_user``/``children_system``), which the kernel adds to their parent.
        """
        total = self._cpu_seconds_of(self._root)
        for child in self._live_children():
            try:
                total += self._cpu_seconds_of(child)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return total

    def rss_bytes(self) -> int:
        """Resident memory; raises psutil.NoSuchProcess if the root process is gone."""
        # Shortcoming: pages shared between parent and children (fork, shared memory) are counted
        # once per process; exact USS/PSS needs /proc/PID/smaps, too slow to read every sample.
        total = int(self._root.memory_info().rss)
        for child in self._live_children():
            try:
                total += int(child.memory_info().rss)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return total

    def _cpu_seconds_of(self, process: psutil.Process) -> float:
        times = process.cpu_times()
        seconds = times.user + times.system
        if self._include_children:
            seconds += times.children_user + times.children_system
        return float(seconds)

    def _live_children(self) -> list[psutil.Process]:
        if not self._include_children:
            return []
        now = self._clock()
        if now - self._children_listed_at >= CHILDREN_REFRESH_SECONDS:
            self._children = self._list_children()
            self._children_listed_at = now
        return self._children

    def _list_children(self) -> list[psutil.Process]:
        """Descendants, keeping the Process objects of those already known (psutil caches)."""
        pids = descendant_pids(self._root.pid)
        if pids is None:
            return list(self._root.children(recursive=True))

        known = {child.pid: child for child in self._children}
        children = []
        for pid in pids:
            try:
                children.append(known.get(pid) or psutil.Process(pid))
            except psutil.NoSuchProcess:
                continue
        return children


def descendant_pids(pid: int, proc: Path = Path("/proc")) -> list[int] | None:
    """PIDs of all descendants from ``/proc/PID/task/TID/children``; None where unavailable.

    Costs a few small reads per process in the tree, where psutil's ``children()`` reads the
    stat file of every process on the host (thousands on a busy node). The kernel documents
    the file as possibly missing a child forked during the read; the next refresh finds it.
    """
    found: list[int] = []
    pending = [pid]
    while pending:
        children = _child_pids(proc / str(pending.pop()) / "task")
        if children is None:
            return None if not found and not pending else found
        found.extend(children)
        pending.extend(children)
    return found


def _child_pids(task_dir: Path) -> list[int] | None:
    """Direct children of one process (all its threads), [] if it is gone, None if no support."""
    try:
        tids = os.listdir(task_dir)
    except OSError:
        return []
    pids: list[int] = []
    for tid in tids:
        try:
            pids.extend(int(word) for word in (task_dir / tid / "children").read_text().split())
        except FileNotFoundError:
            # The thread exited, or the kernel lacks CONFIG_PROC_CHILDREN (no file at all).
            if not (task_dir / tid).exists():
                continue
            return None
        except OSError:
            continue
    return pids


def _process_or_self(process: psutil.Process | None) -> psutil.Process:
    try:
        return process if process is not None else _this_process()
    except psutil.Error as err:  # pragma: no cover - the current process always exists
        raise MeterError(f"Cannot inspect this process with psutil: {err}.") from err


_this: tuple[int, psutil.Process] | None = None


def _this_process() -> psutil.Process:
    """This process's psutil handle, made once per process (~60 us each; trackers start often)."""
    global _this
    pid = os.getpid()  # a forked child gets its own
    if _this is None or _this[0] != pid:
        _this = (pid, psutil.Process(pid))
    return _this[1]


class CpuEstimateMeter:
    """Estimated CPU energy of this process (and its children) from CPU time and TDP.

    Args:
        tdp_watts: TDP of one CPU package; default: looked up from the CPU model.
        cpu_model: CPU name to look up; default: ``/proc/cpuinfo``'s ``model name``.
        process: Process to account; default: this one.
        include_children: Also count descendants (``hf-eco2ai track -- CMD`` runs CMD as one).
        cpuinfo_path: Where to read the CPU model and socket count.
        clock: Monotonic seconds; injected by tests.

    Raises:
        ConfigError: ``tdp_watts`` is not a positive number.
    """

    name = "cpu-estimate"

    def __init__(
        self,
        tdp_watts: float | None = None,
        cpu_model: str | None = None,
        process: psutil.Process | None = None,
        include_children: bool = True,
        *,
        cpuinfo_path: Path = DEFAULT_CPUINFO,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tdp_watts = None if tdp_watts is None else _positive("tdp_watts", tdp_watts)
        self._cpu_model = cpu_model
        self._process = process
        self._include_children = include_children
        self._cpuinfo_path = cpuinfo_path
        self._clock = clock
        self._model: CpuPowerModel | None = None
        self._tree: _ProcessTree | None = None
        self._baseline_seconds = 0.0
        self._busy_seconds = 0.0
        self._last_time = 0.0
        self._power_watts: float | None = None
        self._utilization: float | None = None
        self._lost = False
        self._host_threads = psutil.cpu_count(logical=True) or 1

    @property
    def power_model(self) -> CpuPowerModel | None:
        """The per-thread power assumed (None before ``start``)."""
        return self._model

    @property
    def busy_cpu_seconds(self) -> float:
        """CPU seconds counted since ``start``."""
        return self._busy_seconds

    def start(self) -> None:
        """Pick the power model and take the CPU-time baseline."""
        self._model = _host_power_model(self._cpu_model, self._tdp_watts, self._cpuinfo_path)
        self._tree = _ProcessTree(
            _process_or_self(self._process), self._include_children, self._clock
        )
        try:
            self._baseline_seconds = self._tree.cpu_seconds()
        except psutil.Error as err:
            raise MeterError(f"Cannot read CPU time of the tracked process: {err}.") from err

        self._last_time = self._clock()
        logger.info(
            "Estimating CPU energy at %.2f W per busy thread (%.2f..%.2f W): %s",
            self._model.watts_per_thread,
            self._model.watts_per_thread_low,
            self._model.watts_per_thread_high,
            self._model.basis,
        )

    def read(self) -> list[DeviceEnergy]:
        """Estimated joules since ``start``, with the low..high range."""
        if self._tree is None or self._model is None:
            return []
        if not self._lost:
            self._sample(self._tree, self._model)

        busy = self._busy_seconds
        return [
            DeviceEnergy(
                device="cpu",
                component="cpu",
                source="estimated",
                joules=busy * self._model.watts_per_thread,
                joules_low=busy * self._model.watts_per_thread_low,
                joules_high=busy * self._model.watts_per_thread_high,
                power_watts=self._power_watts,
                utilization_percent=self._utilization,
                labels={"model": self._model.cpu_model or "unknown"},
                lost=self._lost,
            )
        ]

    def notes(self) -> list[EstimateNote]:
        """What was assumed and how to measure instead."""
        if self._model is None:
            return []
        whose = "this process and its children" if self._include_children else "this process"
        model = self._model
        assumption = (
            f"CPU energy is estimated: busy CPU-seconds of {whose} x {model.watts_per_thread:.2f} "
            f"W per busy hardware thread (range {model.watts_per_thread_low:.2f} to "
            f"{model.watts_per_thread_high:.2f} W), from {model.basis}. Idle CPU power and "
            "other processes are not counted."
        )
        return [EstimateNote("cpu", assumption, _HOW_TO_MEASURE_CPU)]

    def close(self) -> None:
        """Nothing to release."""

    def _sample(self, tree: _ProcessTree, model: CpuPowerModel) -> None:
        now = self._clock()
        try:
            seconds = tree.cpu_seconds() - self._baseline_seconds
        except psutil.Error as err:
            self._lost = True
            self._power_watts = self._utilization = None
            logger.warning(
                "The tracked process is gone (%s); CPU estimate stays at %.1f busy seconds.",
                err,
                self._busy_seconds,
            )
            return

        # Children that exit before their parent reaps them drop out for a moment: never go back.
        step = max(seconds - self._busy_seconds, 0.0)
        self._busy_seconds += step
        elapsed = now - self._last_time
        if elapsed > 0:
            self._power_watts = step / elapsed * model.watts_per_thread
            self._utilization = min(step / elapsed / self._host_threads * 100.0, 100.0)
        self._last_time = now


class RamEstimateMeter:
    """Estimated memory energy: resident memory (GB) of this process tree times W per GB.

    Args:
        watts_per_gb: Assumed memory power per GB resident; default 0.375 (3 W per 8 GB).
        process: Process to account; default: this one.
        include_children: Also count descendants' resident memory.
        clock: Monotonic seconds; injected by tests.

    Raises:
        ConfigError: ``watts_per_gb`` is not a positive number.
    """

    name = "ram-estimate"

    def __init__(
        self,
        watts_per_gb: float = DEFAULT_RAM_WATTS_PER_GB,
        process: psutil.Process | None = None,
        include_children: bool = True,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._watts_per_gb = _positive("watts_per_gb", watts_per_gb)
        self._process = process
        self._include_children = include_children
        self._clock = clock
        self._tree: _ProcessTree | None = None
        self._gb_seconds = 0.0
        self._last_gb = 0.0
        self._last_time = 0.0
        self._lost = False

    @property
    def watts_per_gb_range(self) -> tuple[float, float, float]:
        """(low, central, high) W per GB; the range always contains the configured figure."""
        low, high = RAM_WATTS_PER_GB_RANGE
        return min(low, self._watts_per_gb), self._watts_per_gb, max(high, self._watts_per_gb)

    def start(self) -> None:
        """Take the first memory reading."""
        self._tree = _ProcessTree(
            _process_or_self(self._process), self._include_children, self._clock
        )
        try:
            self._last_gb = self._tree.rss_bytes() / BYTES_PER_GB
        except psutil.Error as err:
            raise MeterError(f"Cannot read memory of the tracked process: {err}.") from err
        self._last_time = self._clock()
        logger.info("Estimating RAM energy at %g W per GB resident", self._watts_per_gb)

    def read(self) -> list[DeviceEnergy]:
        """Estimated joules since ``start`` (trapezoid over GB resident), with the range."""
        if self._tree is None:
            return []
        if not self._lost:
            self._sample(self._tree)

        low, central, high = self.watts_per_gb_range
        return [
            DeviceEnergy(
                device="ram",
                component="ram",
                source="estimated",
                joules=self._gb_seconds * central,
                joules_low=self._gb_seconds * low,
                joules_high=self._gb_seconds * high,
                power_watts=None if self._lost else self._last_gb * central,
                labels={"watts_per_gb": f"{central:g}"},
                lost=self._lost,
            )
        ]

    def notes(self) -> list[EstimateNote]:
        """What was assumed and how to measure instead."""
        if self._tree is None:
            return []
        low, central, high = self.watts_per_gb_range
        whose = "this process and its children" if self._include_children else "this process"
        assumption = (
            f"RAM energy is estimated: resident memory of {whose} x {central:g} W per GB "
            f"(range {low:g} to {high:g} W per GB; 0.375 W per GB is 3 W per 8 GB module, a "
            "common rule of thumb). Memory of other processes and idle DIMMs is not counted."
        )
        return [EstimateNote("ram", assumption, _HOW_TO_MEASURE_RAM)]

    def close(self) -> None:
        """Nothing to release."""

    def _sample(self, tree: _ProcessTree) -> None:
        now = self._clock()
        try:
            gb = tree.rss_bytes() / BYTES_PER_GB
        except psutil.Error as err:
            self._lost = True
            logger.warning("The tracked process is gone (%s); RAM estimate stops here.", err)
            return

        self._gb_seconds += (self._last_gb + gb) / 2.0 * max(now - self._last_time, 0.0)
        self._last_gb, self._last_time = gb, now
