"""Pick and start the best meter for each component: measured where possible, else estimated.

Side effects: starts meters (NVML init, sysfs and /proc reads) and logs each warning once.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from hf_eco2ai.energy.base import Meter
from hf_eco2ai.energy.estimate import DEFAULT_RAM_WATTS_PER_GB, CpuEstimateMeter, RamEstimateMeter
from hf_eco2ai.energy.nvml import GpuId, NvmlMeter, nvidia_driver_present
from hf_eco2ai.energy.rapl import DEFAULT_POWERCAP_ROOT, RaplMeter, ReadFile, read_sysfs
from hf_eco2ai.errors import MeterError

logger = logging.getLogger(__name__)


def build_meters(
    *,
    track_gpu: bool = True,
    track_cpu: bool = True,
    track_ram: bool = True,
    include_dram: bool = True,
    gpu_ids: Sequence[GpuId] | None = None,
    powercap_root: Path | str = DEFAULT_POWERCAP_ROOT,
    cpu_tdp_watts: float | None = None,
    ram_watts_per_gb: float = DEFAULT_RAM_WATTS_PER_GB,
    nvml: Any = None,
    environ: Mapping[str, str] | None = None,
    process: psutil.Process | None = None,
    clock: Callable[[], float] = time.monotonic,
    powercap_read_file: ReadFile = read_sysfs,
) -> tuple[list[Meter], list[str]]:
    """Start NVML for GPUs, RAPL for CPU and DRAM, and estimates where those cannot read.

    RAM is estimated only when RAPL does not measure DRAM, so memory is never counted twice.

    Args:
        track_gpu: Measure NVIDIA GPUs.
        track_cpu: Measure (RAPL) or estimate the CPU.
        track_ram: Estimate memory when RAPL does not measure DRAM.
        include_dram: Let RAPL measure its ``dram`` zones.
        gpu_ids: NVML indices or UUIDs; default: from ``CUDA_VISIBLE_DEVICES``.
        powercap_root: The powercap sysfs directory.
        cpu_tdp_watts: CPU package TDP for the estimate; default: from the bundled table.
        ram_watts_per_gb: Memory power per GB resident for the estimate.
        nvml: pynvml-like module (tests).
        environ: Environment for ``CUDA_VISIBLE_DEVICES`` (default ``os.environ``).
        process: Process whose CPU time and memory are estimated (default: this one).
        clock: Monotonic seconds (tests).
        powercap_read_file: Reads one sysfs file (tests).

    Returns:
        The started meters, and the warnings given (each already logged once).

    Raises:
        ConfigError: A configured value is invalid (e.g. a negative TDP).
    """
    # Built before anything starts so a bad figure raises even when RAPL makes it unused.
    cpu_estimate = CpuEstimateMeter(cpu_tdp_watts, process=process, clock=clock)
    ram_estimate = RamEstimateMeter(ram_watts_per_gb, process=process, clock=clock)
    warnings: list[str] = []
    meters: list[Meter] = []
    if track_gpu:
        gpu = NvmlMeter(gpu_ids, nvml=nvml, environ=environ, clock=clock)
        expected = gpu_ids is not None or nvml is not None or nvidia_driver_present() is True
        key = None if nvml is not None else ("nvml", repr(gpu_ids), _visible(environ))
        _start(gpu, meters, warnings if expected else None, key)

    rapl = RaplMeter(powercap_root, include_dram, clock=clock, read_file=powercap_read_file)
    rapl_key = ("rapl", str(powercap_root), repr(powercap_read_file))
    if track_cpu and not _start(rapl, meters, warnings, rapl_key):
        _start(cpu_estimate, meters, warnings)

    # Never count memory twice: the estimate only where RAPL does not measure DRAM.
    if track_ram and not (rapl in meters and rapl.measures_dram):
        _start(ram_estimate, meters, warnings)
    return meters, warnings


def estimate_meters(
    components: set[str],
    *,
    cpu_tdp_watts: float | None = None,
    ram_watts_per_gb: float = DEFAULT_RAM_WATTS_PER_GB,
    process: psutil.Process | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[Meter]:
    """Started estimates for ``components`` (``cpu``, ``ram``), for a counter lost mid-run.

    Their baseline is now, so they count only what the lost counter can no longer measure.
    """
    wanted: list[Meter] = []
    if "cpu" in components:
        wanted.append(CpuEstimateMeter(cpu_tdp_watts, process=process, clock=clock))
    if "ram" in components:
        wanted.append(RamEstimateMeter(ram_watts_per_gb, process=process, clock=clock))
    started: list[Meter] = []
    for meter in wanted:
        _start(meter, started, [])
    return started


#: Hardware found missing in this process, by probe: it is not probed (nor warned about) again,
#: so trackers started around many short tasks stay cheap and the log says it once.
_missing: dict[tuple[str, ...], str] = {}


def _start(
    meter: Meter,
    meters: list[Meter],
    warnings: list[str] | None,
    key: tuple[str, ...] | None = None,
) -> bool:
    """Start ``meter`` and keep it; on failure log once (WARNING if ``warnings`` is given)."""
    known = _missing.get(key) if key is not None else None
    if known is not None:
        if warnings is not None:
            warnings.append(known)
        return False
    try:
        meter.start()
    except MeterError as err:
        if warnings is None:
            logger.info("%s", err)
        else:
            logger.warning("%s", err)
            warnings.append(str(err))
        if key is not None:
            _missing[key] = str(err)
        return False

    meters.append(meter)
    return True


def _visible(environ: Mapping[str, str] | None) -> str:
    return str((environ if environ is not None else os.environ).get("CUDA_VISIBLE_DEVICES"))
