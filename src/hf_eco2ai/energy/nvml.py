"""NVIDIA GPU energy via NVML: joules from the total-energy counter (mJ) or integrated power (mW).

Side effects: ``start`` initialises NVML (``nvmlInit``) and ``close`` shuts it down; nothing else.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_eco2ai.energy.base import DeviceEnergy, EnergySource, EstimateNote
from hf_eco2ai.errors import ConfigError, MeterError
from hf_eco2ai.units import MILLIJOULES_PER_JOULE, MILLIWATTS_PER_WATT

logger = logging.getLogger(__name__)

# NVML return codes, as in nvml.h and pynvml (checked against nvidia-ml-py 13 by the tests).
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15

#: No single GPU draws more than this; a larger reading or counter step is garbage.
MAX_PLAUSIBLE_WATTS = 5000.0

# The NVIDIA kernel driver creates these; without them importing pynvml (~60 ms) is wasted time.
_DRIVER_MARKERS = (Path("/dev/nvidiactl"), Path("/proc/driver/nvidia/version"))

GpuId = int | str


@dataclass
class _Gpu:
    """Mutable per-GPU state, touched only by the sampler thread."""

    index: int
    uuid: str
    name: str
    handle: Any
    has_counter: bool
    last_time: float
    last_counter_mj: float = 0.0
    last_power_watts: float = 0.0
    joules: float = 0.0
    power_watts: float | None = None
    utilization_percent: float | None = None
    lost: bool = False
    garbage_warned: bool = False
    implausible_steps: int = 0
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def source(self) -> EnergySource:
        return "measured" if self.has_counter else "sampled"

    def energy(self) -> DeviceEnergy:
        """This GPU's figure as the meter contract wants it."""
        return DeviceEnergy(
            device=f"gpu:{self.index}",
            component="gpu",
            source=self.source,
            joules=self.joules,
            joules_low=self.joules,
            joules_high=self.joules,
            power_watts=self.power_watts,
            utilization_percent=self.utilization_percent,
            labels=dict(self.labels),
            lost=self.lost,
        )


def _text(value: object) -> str:
    """NVML strings arrive as ``str`` in recent bindings and ``bytes`` in old ones."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _error_code(err: BaseException) -> int | None:
    code = getattr(err, "value", None)
    return code if isinstance(code, int) else None


def _plausible_watts(watts: float) -> bool:
    return math.isfinite(watts) and 0.0 <= watts <= MAX_PLAUSIBLE_WATTS


def parse_cuda_visible_devices(value: str, uuids: Sequence[str]) -> tuple[list[int], list[str]]:
    """Resolve ``CUDA_VISIBLE_DEVICES`` the way the CUDA runtime does, to NVML indices.

    Entries are NVML indices or GPU UUIDs (``GPU-...``, full or a unique prefix). Like CUDA, the
    list ends at the first invalid entry (out of range, ``-1``, unknown or ambiguous UUID, a
    repeat), so ``"1,-1,0"`` selects only GPU 1. ``MIG-...`` entries are skipped with a warning.

    Args:
        value: The variable's value.
        uuids: UUID of every GPU, by NVML index.

    Returns:
        The selected NVML indices in CUDA order, and warnings for the caller to log.
    """
    selected: list[int] = []
    warnings: list[str] = []
    if not value.strip():
        return selected, warnings

    for raw in value.split(","):
        entry = raw.strip()
        if entry.upper().startswith("MIG-"):
            warnings.append(
                f"CUDA_VISIBLE_DEVICES entry {entry!r} is a MIG instance; NVML has no energy "
                "counter per MIG instance, so it is not measured."
            )
            continue

        index = _resolve_entry(entry, uuids)
        if index is None or index in selected:
            break
        selected.append(index)
    return selected, warnings


def _resolve_entry(entry: str, uuids: Sequence[str]) -> int | None:
    """One ``CUDA_VISIBLE_DEVICES`` entry to an NVML index, or None where CUDA would stop."""
    if entry.isdigit():
        index = int(entry)
        return index if index < len(uuids) else None

    if not entry.upper().startswith("GPU-"):
        return None
    matches = [i for i, uuid in enumerate(uuids) if uuid.lower().startswith(entry.lower())]
    return matches[0] if len(matches) == 1 else None


def _validate_gpu_ids(gpu_ids: Sequence[GpuId] | None) -> list[GpuId] | None:
    """Check types at construction so a typo fails before training starts."""
    if gpu_ids is None:
        return None
    if isinstance(gpu_ids, str | int):
        raise ConfigError("gpu_ids", gpu_ids, "expected a list of NVML indices or GPU UUIDs.")

    checked: list[GpuId] = []
    for gpu_id in gpu_ids:
        if isinstance(gpu_id, str) and gpu_id.strip().isdigit():
            gpu_id = int(gpu_id.strip())
        valid_int = isinstance(gpu_id, int) and not isinstance(gpu_id, bool) and gpu_id >= 0
        valid_str = isinstance(gpu_id, str) and gpu_id.strip().upper().startswith("GPU-")
        if not (valid_int or valid_str):
            raise ConfigError(
                "gpu_ids",
                gpu_id,
                f"{gpu_id!r} is neither an NVML index (int >= 0) nor a GPU UUID ('GPU-...').",
            )
        checked.append(gpu_id.strip() if isinstance(gpu_id, str) else gpu_id)
    return checked


def nvidia_driver_present() -> bool | None:
    """Whether the NVIDIA kernel driver is loaded (Linux); None where this cannot be told."""
    if not sys.platform.startswith("linux"):
        return None
    return any(path.exists() for path in _DRIVER_MARKERS)


def _load_pynvml() -> Any:
    """Import nvidia-ml-py only when a driver is there, and say how to fix what is missing."""
    driver = nvidia_driver_present()
    if driver is False:
        raise MeterError(
            "No NVIDIA driver found (neither /dev/nvidiactl nor /proc/driver/nvidia exists); "
            "GPU energy is not measured. In a container, run it with the NVIDIA container "
            "runtime (e.g. `docker run --gpus all`)."
        )
    try:
        import pynvml
    except ImportError as err:
        found = "An NVIDIA driver is present but n" if driver else "N"
        raise MeterError(
            f"{found}vidia-ml-py is not installed, so GPU energy is not measured. "
            "Install it: pip install 'hf-eco2ai[gpu]' (or pip install nvidia-ml-py)."
        ) from err
    return pynvml


class NvmlMeter:
    """Energy of the NVIDIA GPUs this process may use, per GPU.

    Where the GPU has a total-energy counter (Volta and newer) the figure is ``measured``;
    otherwise instantaneous power is integrated with the trapezoid rule (``sampled``).

    Args:
        gpu_ids: NVML indices or GPU UUIDs to measure; default: those ``CUDA_VISIBLE_DEVICES``
            selects, or every GPU when it is unset.
        nvml: A module-like object with the pynvml API (tests); default imports ``pynvml``.
        environ: Environment to read ``CUDA_VISIBLE_DEVICES``/``CUDA_DEVICE_ORDER`` from.
        clock: Monotonic seconds; injected by tests.

    Raises:
        ConfigError: ``gpu_ids`` holds something that is neither an index nor a UUID.
    """

    name = "nvml"

    def __init__(
        self,
        gpu_ids: Sequence[GpuId] | None = None,
        nvml: Any = None,
        environ: Mapping[str, str] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._gpu_ids = _validate_gpu_ids(gpu_ids)
        self._injected_nvml = nvml
        self._environ = os.environ if environ is None else environ
        self._clock = clock
        self._nvml: Any = None
        self._gpus: list[_Gpu] = []

    @staticmethod
    def available(nvml: Any = None) -> bool:
        """Whether NVML answers and sees at least one GPU (initialises and shuts NVML down)."""
        try:
            module = _load_pynvml() if nvml is None else nvml
        except MeterError as err:
            logger.debug("NVML unavailable: %s", err)
            return False

        try:
            module.nvmlInit()
        except module.NVMLError as err:
            logger.debug("NVML unavailable: %s", err)
            return False

        try:
            return int(module.nvmlDeviceGetCount()) > 0
        except module.NVMLError:
            return False
        finally:
            module.nvmlShutdown()

    @property
    def devices(self) -> list[str]:
        """Device ids being measured, e.g. ``["gpu:3"]`` (empty before ``start``)."""
        return [f"gpu:{gpu.index}" for gpu in self._gpus]

    def start(self) -> None:
        """Initialise NVML, select the GPUs and take each one's baseline.

        Raises:
            MeterError: No NVML library, no driver, no GPU selected, or none readable.
        """
        nvml = self._injected_nvml if self._injected_nvml is not None else _load_pynvml()
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as err:
            raise MeterError(_init_failure_message(err)) from err

        self._nvml = nvml
        try:
            self._gpus = self._open_selected()
        except (MeterError, nvml.NVMLError) as err:
            self.close()
            if isinstance(err, MeterError):
                raise
            raise MeterError(f"NVML failed while listing GPUs: {err}.") from err

        logger.info(
            "Measuring %d GPU(s) through NVML: %s",
            len(self._gpus),
            ", ".join(f"{g.index} ({g.name}, {g.source})" for g in self._gpus),
        )

    def read(self) -> list[DeviceEnergy]:
        """Joules since ``start`` per GPU; a GPU that stops answering keeps its last figure."""
        if self._nvml is None:  # closed: the last figures stand
            return [gpu.energy() for gpu in self._gpus]
        for gpu in self._gpus:
            if not gpu.lost:
                self._sample(gpu)
        return [gpu.energy() for gpu in self._gpus]

    def notes(self) -> list[EstimateNote]:
        """NVML figures are measured or sampled, never estimated: nothing to note."""
        return []

    def close(self) -> None:
        """Shut NVML down (balanced with ``start``'s ``nvmlInit``); safe to call twice."""
        nvml, self._nvml = self._nvml, None
        if nvml is None:
            return
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError as err:
            logger.debug("nvmlShutdown failed: %s", err)

    def _open_selected(self) -> list[_Gpu]:
        """Pick the GPUs this process owns and take their baselines."""
        nvml = self._nvml
        count = int(nvml.nvmlDeviceGetCount())
        identities = [self._identify(i) for i in range(count)]
        uuids = [uuid for _, uuid in identities]

        indices = self._select(uuids)
        opened = (self._open(i, *identities[i]) for i in indices)
        gpus = [gpu for gpu in opened if gpu is not None]
        if not gpus:
            raise MeterError(
                f"None of the selected GPUs {indices!r} can report energy or power through NVML."
            )
        return gpus

    def _select(self, uuids: list[str]) -> list[int]:
        """NVML indices to measure: explicit ``gpu_ids``, else ``CUDA_VISIBLE_DEVICES``."""
        if not uuids:
            raise MeterError("NVML reports no GPU on this host; GPU energy is not measured.")
        if self._gpu_ids is not None:
            # dict.fromkeys drops repeats so no GPU is counted twice.
            return list(dict.fromkeys(_explicit_index(g, uuids) for g in self._gpu_ids))

        visible = self._environ.get("CUDA_VISIBLE_DEVICES")
        if visible is None:
            return list(range(len(uuids)))

        indices, warnings = parse_cuda_visible_devices(visible, uuids)
        for message in warnings:
            logger.warning(message)
        self._warn_device_order(visible, len(uuids))
        if not indices:
            raise MeterError(
                f"CUDA_VISIBLE_DEVICES={visible!r} selects no GPU that NVML knows "
                f"({len(uuids)} present); GPU energy is not measured."
            )
        return indices

    def _warn_device_order(self, visible: str, gpu_count: int) -> None:
        # Shortcoming: CUDA numbers GPUs fastest-first unless CUDA_DEVICE_ORDER=PCI_BUS_ID, while
        # NVML numbers them by PCI bus id; without that setting an index may name another GPU.
        uses_indices = any(entry.strip().isdigit() for entry in visible.split(","))
        order = self._environ.get("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
        if uses_indices and order != "PCI_BUS_ID" and gpu_count > 1:
            logger.warning(
                "CUDA_VISIBLE_DEVICES=%r uses indices but CUDA_DEVICE_ORDER=%r: CUDA's index "
                "order matches NVML's only with CUDA_DEVICE_ORDER=PCI_BUS_ID, so the measured "
                "GPU may not be the one training. Set CUDA_DEVICE_ORDER=PCI_BUS_ID or use UUIDs.",
                visible,
                order,
            )

    def _identify(self, index: int) -> tuple[Any, str]:
        """A GPU's handle and UUID; ``(None, "")`` for one that does not answer."""
        try:
            handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
            return handle, _text(self._nvml.nvmlDeviceGetUUID(handle))
        except self._nvml.NVMLError as err:
            logger.debug("GPU %d does not answer NVML: %s", index, err)
            return None, ""

    def _open(self, index: int, handle: Any, uuid: str) -> _Gpu | None:
        """Take one GPU's baseline: energy counter if it has one, else its power."""
        nvml = self._nvml
        try:
            name = _text(nvml.nvmlDeviceGetName(handle)) if handle is not None else ""
        except nvml.NVMLError as err:
            logger.warning("GPU %d cannot be read through NVML: %s", index, err)
            return None
        if handle is None:
            logger.warning("GPU %d does not answer NVML; it is not measured.", index)
            return None
        gpu = _Gpu(index, uuid, name, handle, has_counter=True, last_time=self._clock())
        gpu.labels = {"index": str(index), "uuid": uuid, "name": name}

        try:
            # A garbage baseline is kept as NaN: the first good read then becomes the baseline.
            counter_mj = float(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
            gpu.last_counter_mj = counter_mj if counter_mj >= 0 else math.nan
            return gpu
        except nvml.NVMLError as err:
            if _error_code(err) != NVML_ERROR_NOT_SUPPORTED:
                logger.warning("GPU %d (%s) cannot be read through NVML: %s", index, uuid, err)
                return None

        gpu.has_counter = False
        try:
            gpu.last_power_watts = float(nvml.nvmlDeviceGetPowerUsage(handle)) / MILLIWATTS_PER_WATT
        except nvml.NVMLError as err:
            logger.warning("GPU %d (%s) reports neither energy nor power: %s", index, uuid, err)
            return None
        if not _plausible_watts(gpu.last_power_watts):
            gpu.last_power_watts = 0.0
        return gpu

    def _sample(self, gpu: _Gpu) -> None:
        """Advance one GPU's joules; any NVML error marks it lost with its joules kept."""
        nvml = self._nvml
        try:
            if gpu.has_counter:
                self._sample_counter(gpu)
            else:
                self._sample_power(gpu)
            gpu.utilization_percent = self._utilization(gpu)
        except nvml.NVMLError as err:
            gpu.lost = True
            gpu.power_watts = None
            gpu.utilization_percent = None
            logger.warning(
                "GPU %d (%s) stopped answering NVML (%s); keeping the %.1f J measured so far "
                "and no longer reading it.",
                gpu.index,
                gpu.uuid,
                err,
                gpu.joules,
            )

    def _sample_counter(self, gpu: _Gpu) -> None:
        """Add the counter's step since the last good read, unless the step is implausible."""
        now = self._clock()
        counter_mj = float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle))
        gpu.power_watts = self._power(gpu)
        if not math.isfinite(counter_mj) or counter_mj < 0:
            self._warn_garbage(gpu, f"energy counter read {counter_mj!r} mJ")
            return
        if math.isnan(gpu.last_counter_mj):
            # No good baseline yet: count from here (the time before this read is not measured).
            self._warn_garbage(gpu, "energy counter baseline unreadable")
            gpu.last_counter_mj, gpu.last_time = counter_mj, now
            return

        step_joules = (counter_mj - gpu.last_counter_mj) / MILLIJOULES_PER_JOULE
        elapsed = max(now - gpu.last_time, 1e-3)
        if not 0.0 <= step_joules <= MAX_PLAUSIBLE_WATTS * elapsed:
            self._skip_counter_step(gpu, counter_mj, now, step_joules)
            return

        gpu.joules += step_joules
        gpu.last_counter_mj, gpu.last_time = counter_mj, now
        gpu.implausible_steps = 0

    def _skip_counter_step(self, gpu: _Gpu, counter_mj: float, now: float, step: float) -> None:
        """Skip an implausible step; re-base after two in a row (the counter was reset)."""
        self._warn_garbage(gpu, f"energy counter stepped by {step:.1f} J")
        gpu.implausible_steps += 1
        # One bad value is a glitch: the next good read spans the gap, nothing is lost. Two in a
        # row mean the counter itself moved (driver reload resets it): re-base, losing the gap.
        if gpu.implausible_steps >= 2:
            gpu.last_counter_mj, gpu.last_time = counter_mj, now
            gpu.implausible_steps = 0

    def _sample_power(self, gpu: _Gpu) -> None:
        """Trapezoid between the last good power reading and this one."""
        now = self._clock()
        watts = float(self._nvml.nvmlDeviceGetPowerUsage(gpu.handle)) / MILLIWATTS_PER_WATT
        if not _plausible_watts(watts):
            # Keep the last good sample: the next good one bridges the gap.
            self._warn_garbage(gpu, f"power read {watts!r} W")
            gpu.power_watts = None
            return

        gpu.joules += (gpu.last_power_watts + watts) / 2.0 * max(now - gpu.last_time, 0.0)
        gpu.last_power_watts, gpu.last_time = watts, now
        gpu.power_watts = watts

    def _power(self, gpu: _Gpu) -> float | None:
        """Power gauge in watts, or None where unsupported or implausible."""
        try:
            watts = float(self._nvml.nvmlDeviceGetPowerUsage(gpu.handle)) / MILLIWATTS_PER_WATT
        except self._nvml.NVMLError as err:
            if _error_code(err) == NVML_ERROR_NOT_SUPPORTED:
                return None
            raise
        return watts if _plausible_watts(watts) else None

    def _utilization(self, gpu: _Gpu) -> float | None:
        """GPU utilisation gauge in percent, or None where unsupported or out of range."""
        try:
            percent = float(self._nvml.nvmlDeviceGetUtilizationRates(gpu.handle).gpu)
        except self._nvml.NVMLError as err:
            if _error_code(err) == NVML_ERROR_NOT_SUPPORTED:
                return None
            raise
        return percent if 0.0 <= percent <= 100.0 else None

    def _warn_garbage(self, gpu: _Gpu, what: str) -> None:
        if not gpu.garbage_warned:
            gpu.garbage_warned = True
            logger.warning(
                "GPU %d (%s): NVML returned an implausible value (%s); such samples are skipped.",
                gpu.index,
                gpu.uuid,
                what,
            )


def _explicit_index(gpu_id: GpuId, uuids: list[str]) -> int:
    """An explicit ``gpu_ids`` entry to an NVML index, or a MeterError naming it."""
    if isinstance(gpu_id, int):
        if gpu_id < len(uuids):
            return gpu_id
        raise MeterError(f"gpu_ids entry {gpu_id!r} is out of range: NVML sees {len(uuids)} GPUs.")

    matches = [i for i, uuid in enumerate(uuids) if uuid.lower().startswith(gpu_id.lower())]
    if len(matches) == 1:
        return matches[0]
    problem = "matches several GPUs" if matches else "matches no GPU"
    raise MeterError(f"gpu_ids entry {gpu_id!r} {problem}; known UUIDs: {', '.join(uuids)}.")


def _init_failure_message(err: BaseException) -> str:
    """Say why ``nvmlInit`` failed and what to do about it."""
    code = _error_code(err)
    if code == NVML_ERROR_LIBRARY_NOT_FOUND:
        return (
            "The NVML library (libnvidia-ml) was not found, so GPU energy is not measured. "
            "Install the NVIDIA driver, or in a container use the NVIDIA container runtime."
        )
    if code == NVML_ERROR_DRIVER_NOT_LOADED:
        return (
            "The NVIDIA kernel driver is not loaded, so GPU energy is not measured. Check "
            "`nvidia-smi`; load the driver (modprobe nvidia) or reboot after a driver update."
        )
    return f"nvmlInit failed ({err}); GPU energy is not measured. Check `nvidia-smi`."
