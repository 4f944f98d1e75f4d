"""``CarbonTracker``: samples every meter on one background thread and integrates CO2 over time.

Energy is kept in joules and CO2 in grams; each interval's energy is multiplied by the grid
intensity of that interval, so intensity may change during a run. Readers get an immutable
:class:`TrackerSnapshot` swapped in whole by the sampler, so reading never locks or does I/O.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import math
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from hf_eco2ai.config import CarbonConfig, config_or_default
from hf_eco2ai.energy.base import DeviceEnergy, EstimateNote, Meter
from hf_eco2ai.errors import Eco2AIError, IntensityUnavailableError, MeterError
from hf_eco2ai.intensity.base import IntensityProvider, IntensityReading
from hf_eco2ai.tracking.distributed import Placement, build_owned_meters, detect_placement
from hf_eco2ai.tracking.resume import CarriedTotals
from hf_eco2ai.tracking.sampler import shared_sampler
from hf_eco2ai.tracking.snapshot import ComponentTotal, DeviceTotal, TrackerSnapshot
from hf_eco2ai.units import JOULES_PER_KWH, SECONDS_PER_HOUR

if TYPE_CHECKING:
    from hf_eco2ai.exporters.prometheus import PrometheusExporter

logger = logging.getLogger(__name__)

RunStatus = Literal["running", "completed", "interrupted", "error", "stopped_by_budget"]
Listener = Callable[[TrackerSnapshot], None]

_SOURCE_RANK = {"measured": 0, "sampled": 1, "estimated": 2}
#: How long ``stop()`` waits for an in-flight read before giving up on the sampler thread.
_JOIN_GRACE_SECONDS = 10.0


@dataclass
class _DeviceState:
    """What the tracker has counted for one device (joules are the meter's, since start)."""

    last: DeviceEnergy
    co2_grams: float = 0.0
    co2_grams_low: float = 0.0
    co2_grams_high: float = 0.0


@dataclass
class _IntensityUse:
    """One distinct intensity figure and when it was in use, for the report."""

    reading: IntensityReading
    first_used: datetime
    last_used: datetime
    joules: float = 0.0


@dataclass
class TrackerLog:
    """Everything the report needs besides the snapshot; mutated only under the tracker's lock."""

    warnings: list[str] = field(default_factory=list)
    notes: list[EstimateNote] = field(default_factory=list)
    intensity_uses: list[_IntensityUse] = field(default_factory=list)
    series: list[dict[str, Any]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    meters: list[str] = field(default_factory=list)
    intensity_provider: Any = None

    def fallback_events(self) -> list[Any]:
        """When and why a live grid-intensity source failed (empty for the bundled table)."""
        return list(getattr(self.intensity_provider, "fallback_events", []))


class CarbonTracker:
    """Tracks the energy and CO2 of any code, between ``start()`` and ``stop()`` or in a ``with``.

    Args:
        config: Run settings; defaults to ``CarbonConfig()``.
        meters: Meters to use instead of discovering hardware (tests, custom hardware).
        intensity: Grid-intensity provider instead of the one the config selects.
        clock: Monotonic clock in seconds (injectable for tests).
        placement: This process's place in a multi-process job; default: from the launcher's
            environment and ``torch.distributed`` at ``start()``.
    """

    def __init__(
        self,
        config: CarbonConfig | None = None,
        *,
        meters: Sequence[Meter] | None = None,
        intensity: IntensityProvider | None = None,
        clock: Callable[[], float] = time.monotonic,
        placement: Placement | None = None,
    ) -> None:
        self.config = config_or_default(config, "CarbonTracker")
        self._placement = placement
        self._given_meters = list(meters) if meters is not None else None
        self._meters: list[Meter] = []
        self._given_intensity = intensity
        self._intensity: IntensityProvider | None = None
        self._interval_intensity: IntensityReading | None = None
        self._clock = clock
        self._snapshot = TrackerSnapshot()
        self._listeners: list[Listener] = []
        self._log = TrackerLog()
        self._devices: dict[str, _DeviceState] = {}
        self._window: deque[tuple[float, float, float]] = deque()
        self._read_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._setup_lock = threading.Lock()
        self._setup_done = False
        self._job_key = next(_job_keys)
        self._started = False
        self._t0 = 0.0
        self._started_at: datetime | None = None
        self._ended_at: datetime | None = None
        self._report: Any = None
        self._steps = 0
        self._samples = 0
        self._failed_meters: set[str] = set()
        self._meter_devices: dict[str, set[str]] = {}
        self._estimated_after_loss: set[str] = set()
        self._warned: set[str] = set()
        self._status: RunStatus = "running"
        self._stop_reason: dict[str, Any] | None = None
        self._extra: dict[str, Any] = {}
        #: The run's Prometheus exporter once started, when the config asks for one.
        self.exporter: PrometheusExporter | None = None
        #: What earlier segments of a resumed run measured (set by the integration), or None.
        self.carried: CarriedTotals | None = None
        self._alerts: Any = None

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> CarbonTracker:
        """Start sampling in the background and return at once; a second call does nothing."""
        if self._started:
            return self
        self._started = True
        self._t0 = self._clock()
        self._started_at = datetime.now(timezone.utc)
        if self._placement is None:
            self._placement = detect_placement()
        self.exporter = _exporter_for(self.config, self._placement)
        interval = self.config.measurement_interval
        # Set up now where that is a few reads of /proc and sysfs: the baseline is then taken
        # at start, and the sampler's first read comes one interval on.
        set_up_now = self._given_meters is not None or not self._setup_may_be_slow()
        if set_up_now:
            self._ensure_setup()
        if self.config.alert_thresholds:
            # The thresholds are the run's config, so every tracker honours them; the evaluator
            # lives in control/ and is imported only when a run asks for it.
            from hf_eco2ai.control.alerts import attach_rate_alerts

            self._alerts = attach_rate_alerts(self)
        shared_sampler().add(
            self._job_key,
            self._sample_guarded,
            interval,
            setup=None if set_up_now else self._ensure_setup,
            first_in_seconds=interval if set_up_now else 0.0,
        )
        _register_for_exit(self)
        return self

    def _setup_may_be_slow(self) -> bool:
        """Whether set-up may wait (then the sampler thread does it, and start() returns at once).

        The first set-up of a process imports and reads its tables (~30 ms); later ones, without
        an NVIDIA driver or a live grid API, are a few reads of /proc and sysfs (~0.5 ms).
        """
        from hf_eco2ai.energy.nvml import nvidia_driver_present

        if not _setups_done:
            return True
        gpu = self.config.track_gpu and nvidia_driver_present() is not False
        return gpu or self.config.use_real_time_carbon

    def stop(self, status: RunStatus = "completed", *, write: bool = True) -> Any:
        """Stop sampling, take a final reading and return the :class:`CarbonReport`.

        Idempotent: later calls return the same report. Never raises for a meter failure.
        ``write=False`` leaves the file to :meth:`replace_report` (a multi-process job's merge).
        """
        with self._state_lock:
            if self._report is not None:
                return self._report
            if not self._started:
                self.start()
            # After remove() returns, the sampler thread never reads this tracker's meters again.
            finished = shared_sampler().remove(
                self._job_key, timeout=self.config.measurement_interval + _JOIN_GRACE_SECONDS
            )
            self._ensure_setup()
            if finished:
                self._sample_guarded()
            else:
                self._warn_once(
                    "join", "a meter read did not finish in time; the report uses the last sample"
                )
            if self._status == "running":
                self._status = status
            self._ended_at = datetime.now(timezone.utc)
            self._close_parts()
            self._report = self._build_report()
            if self._alerts is not None:
                self._alerts.close()  # delivers queued webhook notifications
        if write:
            self._write_report()
        return self._report

    def replace_report(self, report: Any) -> None:
        """Make ``report`` (the job-wide merge) this run's report and write it as configured."""
        self._report = report
        self._write_report()

    def __enter__(self) -> CarbonTracker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None or (
            issubclass(exc_type, SystemExit) and getattr(exc, "code", None) in (0, None)
        ):
            self.stop("completed")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.stop("interrupted")
        else:
            self._stop_reason = {"reason": "exception", "exception": f"{exc_type.__name__}: {exc}"}
            self.stop("error")

    # -- cheap readers (any thread) ---------------------------------------------------------

    @property
    def snapshot(self) -> TrackerSnapshot:
        """The latest totals: an attribute read, no lock, no I/O."""
        return self._snapshot

    @property
    def running(self) -> bool:
        return self._started and self._report is None

    @property
    def report(self) -> Any:
        """The final report after ``stop()``; before that, a live report of the run so far."""
        if self._report is not None:
            return self._report
        return self._build_report()

    @property
    def placement(self) -> Placement:
        """This process's place in the job (known from ``start()``; one process before)."""
        return self._placement if self._placement is not None else Placement()

    @property
    def run_log(self) -> TrackerLog:
        return self._log

    def set_progress(self, steps: int, samples: int) -> None:
        """Record training progress (two attribute writes; safe from the training loop)."""
        self._steps = steps
        self._samples = samples

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(snapshot)`` on the sampler thread after every sample."""
        self._listeners.append(listener)

    def set_extra(self, key: str, value: Any) -> None:
        """Attach a JSON-serialisable fact to the report (training arguments, budget...)."""
        self._extra[key] = value

    def mark_stopped(self, status: RunStatus, reason: dict[str, Any]) -> None:
        """Record why the run ended early (budget, alert); ``stop()`` keeps this status."""
        self._status = status
        self._stop_reason = reason

    def log_point(
        self, step: int, values: dict[str, float], snapshot: TrackerSnapshot | None = None
    ) -> dict[str, float]:
        """Add a row to the per-log-step series and return the carbon fields for it.

        A second call at the same step (the Trainer logs its end-of-training metrics at the last
        step) updates that step's row, so the series has one row per step.
        ``snapshot`` replaces this process's latest one, e.g. with totals over every process.
        """
        snap = snapshot if snapshot is not None else self._snapshot
        # Energy is as of the last sample; samples are as of now (the job's, when summed).
        samples = snap.samples if snapshot is not None else self._samples
        row = {
            "step": step,
            "elapsed_seconds": round(snap.elapsed_seconds, 3),
            "energy_kwh": snap.energy_kwh,
            "co2_kg": snap.co2_kg,
            "grid_intensity_g_per_kwh": snap.intensity.g_per_kwh if snap.intensity else 0.0,
            "samples_per_kwh": samples / snap.energy_kwh if snap.energy_joules > 0 else 0.0,
            **values,
        }
        series = self._log.series
        if series and series[-1]["step"] == step:
            series[-1] = {**series[-1], **row}
        else:
            series.append(row)
        return row

    def sample_now(self) -> TrackerSnapshot:
        """Take a reading now; blocks for one meter read (log steps and tests, not hot paths)."""
        self._ensure_setup()
        self._sample_guarded()
        return self._snapshot

    # -- sampler thread ---------------------------------------------------------------------

    def _ensure_setup(self) -> None:
        """Set up meters and intensity once, on whichever thread needs them first."""
        # Discovery remembers missing hardware per process, so this costs ~0.2 ms per tracker.
        with self._setup_lock:
            if self._setup_done:
                return
            try:
                self._setup_parts()
            except Exception as err:  # noqa: BLE001 - the tracker must never hurt training
                self._warn_once("setup", f"tracking could not start fully: {err!r}")
                logger.debug("setup failure", exc_info=True)
            finally:
                self._setup_done = True

    def _setup_parts(self) -> None:
        """Discover meters and the intensity provider, then take the baseline (sampler thread)."""
        if self._given_meters is not None:
            self._meters = self._start_meters(self._given_meters)
        else:
            # Only what this process owns: its GPUs, and node counters on the node's main one.
            self._meters, warnings = build_owned_meters(self.config, self.placement)
            self._log.warnings.extend(warnings)
        self._log.meters = [m.name for m in self._meters]
        if not self._meters and self.placement.is_local_main:
            # Other ranks of a node rightly own nothing without a GPU; the node's main one must.
            self._warn_once(
                "no-meters",
                "nothing is measured (no GPU found, and CPU and RAM tracking are off or failed): "
                "energy and CO2 stay 0; enable track_cpu or track_ram, or check the GPU driver",
            )
        for meter in self._meters:
            self._log.notes.extend(meter.notes())
        self._intensity = self._given_intensity or self._live_or_static_intensity()
        self._log.intensity_provider = self._intensity
        static: IntensityProvider = self.config.intensity_provider_static()
        first = static.intensity_at(datetime.now(timezone.utc))
        if self._given_intensity is None and first.zone == "WORLD":
            self._log.warnings.append(
                "no country, region or cloud region configured: CO2 uses the world average "
                f"({first.g_per_kwh:g} g/kWh); set country= for a figure of your grid"
            )
        if self.exporter is not None:
            self.exporter.start()
            self._listeners.insert(0, self.exporter.update)
        self._sample_guarded()
        global _setups_done
        _setups_done += 1

    def _live_or_static_intensity(self) -> IntensityProvider:
        try:
            return _intensity_for(self.config)
        except Eco2AIError as err:
            # Missing credentials or an unknown live zone: say so once, keep the bundled figure.
            self._warn_once("live-intensity", f"live grid intensity not used: {err}")
            provider: IntensityProvider = self.config.intensity_provider_static()
            return provider

    def _start_meters(self, meters: Sequence[Meter]) -> list[Meter]:
        started = []
        for meter in meters:
            try:
                meter.start()
            except MeterError as err:
                self._warn_once(f"start:{meter.name}", f"{meter.name} meter unavailable: {err}")
                continue
            started.append(meter)
        return started

    def _sample_guarded(self) -> None:
        """The one boundary that protects training: a sample never raises."""
        try:
            with self._read_lock:
                self._sample()
        except Exception as err:  # noqa: BLE001 - the tracker must never hurt training
            self._warn_once("sample", f"a measurement failed and was skipped: {err!r}")
            logger.debug("measurement failure", exc_info=True)

    def _sample(self) -> None:
        now = self._clock()
        when = datetime.now(timezone.utc)
        readings = self._read_meters()
        current = self._intensity_reading(when)
        # The interval that just ended ran at the intensity read at its start.
        used = self._interval_intensity or current
        delta_joules = 0.0
        for energy in readings:
            delta_joules += self._account(energy, used.g_per_kwh)
        self._note_intensity(used, when, delta_joules)
        self._interval_intensity = current
        self._publish(now, when, current)

    def _read_meters(self) -> list[DeviceEnergy]:
        readings: list[DeviceEnergy] = []
        for meter in self._meters:
            if meter.name in self._failed_meters:
                continue
            try:
                found = meter.read()
            except Exception as err:  # noqa: BLE001 - one broken meter must not stop the others
                self._meter_failed(meter.name, err)
                continue
            self._meter_devices.setdefault(meter.name, set()).update(e.device for e in found)
            readings.extend(found)
        return readings

    def _meter_failed(self, name: str, err: Exception) -> None:
        """Keep what the meter counted, and mark its devices lost so the report says so."""
        self._failed_meters.add(name)
        if not isinstance(err, MeterError):
            logger.debug("meter %s failed", name, exc_info=True)
        for device in self._meter_devices.get(name, ()):
            state = self._devices.get(device)
            if state is not None:
                state.last = replace(
                    state.last, lost=True, power_watts=None, utilization_percent=None
                )
                self._estimate_after_loss(state.last)
        since = self._clock() - self._t0
        self._warn_once(
            f"read:{name}",
            f"{name} meter stopped answering after {since:.0f} s ({err!r}); its devices keep the "
            "energy counted until then and nothing after",
        )

    def _account(self, energy: DeviceEnergy, g_per_kwh: float) -> float:
        """Add one device's new joules since the last sample; returns the central delta."""
        if not all(
            math.isfinite(v) for v in (energy.joules, energy.joules_low, energy.joules_high)
        ):
            self._warn_once(
                f"garbage:{energy.device}", f"{energy.device} gave a non-finite reading; skipped"
            )
            return 0.0
        state = self._devices.get(energy.device)
        if state is None:
            state = self._devices[energy.device] = _DeviceState(last=_zero_like(energy))
        if energy.lost and not state.last.lost:
            since = self._clock() - self._t0
            self._warn_once(
                f"lost:{energy.device}",
                f"{energy.device} stopped answering after {since:.0f} s; its energy is counted "
                "until then and not after",
            )
            self._estimate_after_loss(energy)
        delta = _non_negative(energy.joules - state.last.joules)
        delta_low = _non_negative(energy.joules_low - state.last.joules_low)
        delta_high = _non_negative(energy.joules_high - state.last.joules_high)
        state.co2_grams += delta / JOULES_PER_KWH * g_per_kwh
        state.co2_grams_low += delta_low / JOULES_PER_KWH * g_per_kwh
        state.co2_grams_high += delta_high / JOULES_PER_KWH * g_per_kwh
        # A meter's figure never goes backwards in our books, even if the device did.
        state.last = _monotonic_merge(state.last, energy)
        return delta

    def _estimate_after_loss(self, lost: DeviceEnergy) -> None:
        """A measured CPU or DRAM counter is gone: estimate that component from now on.

        Only when no other counter of the component still answers (the estimate covers the
        whole process tree), and only for discovered hardware (given meters are the caller's).
        """
        component = {"cpu": "cpu", "dram": "ram"}.get(lost.component)
        wanted = {"cpu": self.config.track_cpu, "ram": self.config.track_ram}
        if (
            component is None
            or lost.source != "measured"
            or self._given_meters is not None
            or not wanted[component]
            or component in self._estimated_after_loss
        ):
            return
        others = (
            s.last
            for d, s in self._devices.items()
            if d != lost.device and s.last.component == lost.component
        )
        if any(o.source == "measured" and not o.lost for o in others):
            return
        self._estimated_after_loss.add(component)
        from hf_eco2ai.energy.discovery import estimate_meters

        meters = estimate_meters(
            {component},
            cpu_tdp_watts=self.config.cpu_tdp_watts,
            ram_watts_per_gb=self.config.ram_watts_per_gb,
            clock=self._clock,
        )
        for meter in meters:
            self._log.notes.extend(meter.notes())
        self._meters.extend(meters)
        if meters:
            self._warn_once(
                f"estimate:{component}",
                f"{component} is estimated from here on, since its counter stopped answering",
            )

    def _intensity_reading(self, when: datetime) -> IntensityReading:
        assert self._intensity is not None
        try:
            return self._intensity.intensity_at(when)
        except IntensityUnavailableError as err:
            static: IntensityProvider = self.config.intensity_provider_static()
            fallback = static.intensity_at(when)
            self._warn_once(
                "intensity", f"grid intensity unavailable ({err}); using {fallback.source}"
            )
            return replace(fallback, fallback=True)

    def _note_intensity(self, reading: IntensityReading, when: datetime, joules: float) -> None:
        uses = self._log.intensity_uses
        if uses and uses[-1].reading == reading:
            uses[-1].last_used = when
            uses[-1].joules += joules
        else:
            uses.append(_IntensityUse(reading, when, when, joules))

    def _publish(self, now: float, when: datetime, reading: IntensityReading) -> None:
        devices = {
            dev: DeviceTotal(reading=state.last, co2_grams=state.co2_grams)
            for dev, state in self._devices.items()
        }
        joules = sum(s.last.joules for s in self._devices.values())
        grams = sum(s.co2_grams for s in self._devices.values())
        power, kwh_per_hour, kg_per_hour = self._rates(now, joules, grams)
        self._snapshot = TrackerSnapshot(
            elapsed_seconds=now - self._t0,
            timestamp=when.timestamp(),
            energy_joules=joules,
            energy_joules_low=sum(s.last.joules_low for s in self._devices.values()),
            energy_joules_high=sum(s.last.joules_high for s in self._devices.values()),
            co2_grams=grams,
            co2_grams_low=sum(s.co2_grams_low for s in self._devices.values()),
            co2_grams_high=sum(s.co2_grams_high for s in self._devices.values()),
            intensity=reading,
            components=_components(self._devices),
            devices=devices,
            power_watts=power,
            energy_rate_kwh_per_hour=kwh_per_hour,
            co2_rate_kg_per_hour=kg_per_hour,
            steps=self._steps,
            samples=self._samples,
        )
        for listener in self._listeners:
            try:
                listener(self._snapshot)
            except Exception as err:  # noqa: BLE001 - a listener must not stop the measurement
                self._warn_once(f"listener:{id(listener)}", f"a snapshot listener failed: {err!r}")
                logger.debug("listener failure", exc_info=True)

    def _rates(self, now: float, joules: float, grams: float) -> tuple[float, float, float]:
        """Mean power (W), kWh per hour and kg per hour over the trailing window."""
        window = self._window
        window.append((now, joules, grams))
        horizon = now - self.config.rate_window_seconds
        while len(window) > 2 and window[1][0] <= horizon:
            window.popleft()
        t_old, j_old, g_old = window[0]
        span = now - t_old
        if span <= 0:
            return 0.0, 0.0, 0.0
        watts = (joules - j_old) / span
        grams_per_second = (grams - g_old) / span
        return watts, watts * SECONDS_PER_HOUR / JOULES_PER_KWH, grams_per_second * 3.6

    def _close_parts(self) -> None:
        if self.exporter is not None:
            try:
                self.exporter.close(self._snapshot)
            except Exception:  # noqa: BLE001 - a failing exporter must not lose the report
                self._warn_once("exporter", "the Prometheus exporter failed to close cleanly")
                logger.debug("exporter close failed", exc_info=True)
        for meter in self._meters:
            try:
                meter.close()
            except Exception:  # noqa: BLE001 - closing must not lose the report
                logger.debug("closing %s failed", meter.name, exc_info=True)

    def _warn_once(self, key: str, message: str) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        self._log.warnings.append(message)
        logger.warning("hf-eco2ai: %s", message)

    # -- report -----------------------------------------------------------------------------

    def _build_report(self) -> Any:
        from hf_eco2ai.reports.report import CarbonReport

        return CarbonReport.from_tracker(self, ended_at=self._ended_at)

    def _write_report(self) -> None:
        if not self.config.save_report or self.config.output_dir is None:
            return
        try:
            self._report.save(self.config.output_dir)
        except OSError as err:
            # A full disk or a read-only folder must not lose the figures: they stay in memory.
            self._warn_once(
                "write", f"could not write the report to {self.config.output_dir!r}: {err}"
            )

    @property
    def started_at(self) -> datetime | None:
        return self._started_at

    @property
    def status(self) -> RunStatus:
        return self._status

    @property
    def stop_reason(self) -> dict[str, Any] | None:
        return self._stop_reason

    @property
    def extra(self) -> dict[str, Any]:
        return self._extra


def _zero_like(energy: DeviceEnergy) -> DeviceEnergy:
    return DeviceEnergy(energy.device, energy.component, energy.source, 0.0, 0.0, 0.0)


def _non_negative(value: float) -> float:
    # NaN compares False, so it is dropped too.
    return value if value > 0 else 0.0


def _monotonic_merge(previous: DeviceEnergy, current: DeviceEnergy) -> DeviceEnergy:
    """Keep ``current``'s gauges and labels but never let counted joules decrease."""
    if (
        current.joules >= previous.joules
        and current.joules_low >= previous.joules_low
        and current.joules_high >= previous.joules_high
    ):
        return current
    return DeviceEnergy(
        device=current.device,
        component=current.component,
        source=current.source,
        joules=max(previous.joules, _non_negative(current.joules)),
        joules_low=max(previous.joules_low, _non_negative(current.joules_low)),
        joules_high=max(previous.joules_high, _non_negative(current.joules_high)),
        power_watts=current.power_watts,
        utilization_percent=current.utilization_percent,
        labels=current.labels,
        lost=current.lost,
    )


def _components(devices: dict[str, _DeviceState]) -> dict[str, ComponentTotal]:
    totals: dict[str, ComponentTotal] = {}
    for state in devices.values():
        e = state.last
        prev = totals.get(e.component)
        if prev is None:
            totals[e.component] = ComponentTotal(
                e.component, e.source, e.joules, e.joules_low, e.joules_high, state.co2_grams
            )
            continue
        source = max(prev.source, e.source, key=lambda s: _SOURCE_RANK[s])
        totals[e.component] = ComponentTotal(
            e.component,
            source,
            prev.joules + e.joules,
            prev.joules_low + e.joules_low,
            prev.joules_high + e.joules_high,
            prev.co2_grams + state.co2_grams,
        )
    return totals


def _exporter_for(config: CarbonConfig, placement: Placement) -> PrometheusExporter | None:
    if not (config.export_prometheus or config.pushgateway_url):
        return None
    from hf_eco2ai.exporters.prometheus import PrometheusExporter

    if not placement.distributed:
        return PrometheusExporter(config)
    if config.prometheus_port:
        # Processes sharing a host each serve on their own port: base port + local rank.
        port = min(config.prometheus_port + placement.local_rank, 65535)
        config = config.model_copy(update={"prometheus_port": port})
    return PrometheusExporter(
        config, process_key={"rank": str(placement.rank)}, job_series=placement.is_main
    )


def _intensity_for(config: CarbonConfig) -> IntensityProvider:
    """The provider the config selects: live (with bundled fallback) or the bundled table."""
    static: IntensityProvider = config.intensity_provider_static()
    if not config.use_real_time_carbon:
        return static
    from hf_eco2ai.intensity.live import build_live_provider

    return build_live_provider(config, fallback=static)


# -- process exit -------------------------------------------------------------------------------

_live_trackers: weakref.WeakSet[CarbonTracker] = weakref.WeakSet()
_job_keys = itertools.count()
_exit_hooks_installed = False
_uncaught: list[BaseException] = []


#: Trackers set up in this process so far (the first one's set-up is the slow one).
_setups_done = 0


def current_tracker() -> CarbonTracker | None:
    """The most recently started tracker of this process that is still running, if any."""
    running = [t for t in _live_trackers if t.running]
    return max(running, key=lambda t: t._t0, default=None)


def _register_for_exit(tracker: CarbonTracker) -> None:
    """Make sure a tracker still running when the interpreter exits writes its report."""
    global _exit_hooks_installed
    _live_trackers.add(tracker)
    if _exit_hooks_installed:
        return
    _exit_hooks_installed = True
    previous_hook = sys.excepthook

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        _uncaught.append(exc)
        previous_hook(exc_type, exc, tb)

    sys.excepthook = hook
    atexit.register(_stop_live_trackers)


def _stop_live_trackers() -> None:
    for tracker in list(_live_trackers):
        if not tracker.running:
            continue
        if _uncaught:
            exc = _uncaught[-1]
            status: RunStatus = "interrupted" if isinstance(exc, KeyboardInterrupt) else "error"
            tracker.mark_stopped(status, {"reason": "uncaught exception", "exception": repr(exc)})
        else:
            tracker.mark_stopped("interrupted", {"reason": "process exited before stop()"})
        tracker.stop()
