"""``LowCarbonScheduler``: when to start a job (one window, or pause-and-resume slots) so its
time-weighted grid intensity (g/kWh) is least, from a provider's forecast. Asks the provider
once per search; no other side effects."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from hf_eco2ai.errors import ConfigError, UnknownZoneError
from hf_eco2ai.intensity.base import IntensityKind, IntensityProvider, IntensityReading
from hf_eco2ai.intensity.live import ForecastProvider, flat_forecast, to_utc, utc_now
from hf_eco2ai.scheduling.curve import Curve, WindowChoice, best_window
from hf_eco2ai.scheduling.slots import SlotPlan, best_slots

logger = logging.getLogger(__name__)

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class ScheduleResult:
    """The chosen start of a job and what it is expected to save.

    Formats as its ISO start time, so ``f"{result}"`` reads as a time.

    Attributes:
        start: Chosen start (UTC, timezone-aware).
        end: ``start`` plus the job's duration.
        expected_intensity_g_per_kwh: Time-weighted mean intensity over the window, or None
            when the forecast covers no window at all.
        baseline_intensity_g_per_kwh: The same for starting at ``start_after``, or None.
        carbon_reduction: Fraction of CO2 saved against starting at ``start_after`` (same
            energy, so the ratio of mean intensities); 0.0 when nothing can be compared.
        meets_threshold: The window's mean is at most ``max_carbon_intensity`` (True when
            no threshold is set; False when nothing is known).
        forecast_covers_window: The forecast spans all of flexibility plus duration.
        has_forecast: The provider gave a time-varying forecast (not an annual figure or a
            fallback).
        reason: One plain sentence or two on what was found and why.
        region: The region or zone asked for.
        source: Who published the figures.
        kind: ``average`` or ``marginal`` intensity.
        start_after: The earliest start allowed (UTC).
        max_carbon_intensity: The threshold, g/kWh, or None.
    """

    start: datetime
    end: datetime
    expected_intensity_g_per_kwh: float | None
    baseline_intensity_g_per_kwh: float | None
    carbon_reduction: float
    meets_threshold: bool
    forecast_covers_window: bool
    has_forecast: bool
    reason: str
    region: str
    source: str
    kind: IntensityKind
    start_after: datetime
    max_carbon_intensity: float | None

    def __str__(self) -> str:
        return self.start.isoformat()

    def __format__(self, spec: str) -> str:
        return format(self.start, spec) if spec else str(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, times as ISO 8601 strings."""
        data = asdict(self)
        for key in ("start", "end", "start_after"):
            data[key] = data[key].isoformat()
        return data


@dataclass(frozen=True)
class SlotSchedule:
    """A pause-and-resume plan: run only in ``slots``, which add up to the job's duration.

    Attributes:
        slots: ``(start, end)`` pairs, UTC, in order; adjacent slots are merged.
        expected_intensity_g_per_kwh: Time-weighted mean over the slots, or None if no plan.
        reduction_vs_start_now: Fraction of CO2 saved against running from ``start_after``.
        reduction_vs_best_window: Fraction saved against the best single window.
        best_window: The single-window result it is compared with.
        grid_seconds: The time grid the plan is exact on.
        min_slot_seconds: The shortest run allowed.
        reason: What was found, plainly.
    """

    slots: list[tuple[datetime, datetime]]
    expected_intensity_g_per_kwh: float | None
    reduction_vs_start_now: float
    reduction_vs_best_window: float
    best_window: ScheduleResult
    grid_seconds: float
    min_slot_seconds: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, times as ISO 8601 strings."""
        return {
            "slots": [{"start": a.isoformat(), "end": b.isoformat()} for a, b in self.slots],
            "expected_intensity_g_per_kwh": self.expected_intensity_g_per_kwh,
            "reduction_vs_start_now": self.reduction_vs_start_now,
            "reduction_vs_best_window": self.reduction_vs_best_window,
            "best_window": self.best_window.to_dict(),
            "grid_seconds": self.grid_seconds,
            "min_slot_seconds": self.min_slot_seconds,
            "reason": self.reason,
        }


@dataclass
class _Search:
    """One search's inputs in seconds, and the curve the provider gave."""

    duration: float
    earliest: float
    latest_start: float
    curve: Curve | None
    readings: list[IntensityReading] = field(default_factory=list)
    has_forecast: bool = True


class LowCarbonScheduler:
    """Finds when to run a job so that its electricity is cleanest.

    Args:
        region: Where the job runs: a cloud region (``us-west1``), grid region or country for
            the bundled table, or a label for ``provider``.
        max_carbon_intensity: Highest acceptable mean intensity, g/kWh; None for no limit.
        flexibility_hours: How long after ``start_after`` the job may start.
        provider: Where intensities come from; a provider with ``forecast(start, end)``
            (UK, Electricity Maps, WattTime) lets the search shift the job. None uses the
            bundled table for ``region``, which has only an annual average: no forecast, so
            no shift can help, and results say so.
        step_minutes: Also try starts every this many minutes (besides interval boundaries).

    Attributes:
        carbon_reduction: The fraction saved by the last search (0.0 before any).
        last_result: The last window search's result.

    Raises:
        ConfigError: A negative flexibility, a non-positive threshold or step.
        UnknownZoneError: ``provider`` is None and ``region`` is not in the bundled table.
    """

    def __init__(
        self,
        region: str,
        max_carbon_intensity: float | None = None,
        flexibility_hours: float = 8.0,
        *,
        provider: IntensityProvider | None = None,
        step_minutes: float | None = None,
    ) -> None:
        _check_positive("max_carbon_intensity", max_carbon_intensity, allow_none=True)
        _check_positive("step_minutes", step_minutes, allow_none=True)
        if not (math.isfinite(flexibility_hours) and flexibility_hours >= 0):
            raise ConfigError("flexibility_hours", flexibility_hours, "give hours >= 0")
        self.region = region
        self.max_carbon_intensity = max_carbon_intensity
        self.flexibility_hours = flexibility_hours
        self.provider = provider if provider is not None else table_provider(region)
        self.step_seconds = step_minutes * 60.0 if step_minutes else None
        self.carbon_reduction = 0.0
        self.last_result: ScheduleResult | None = None

    def find_low_carbon_window(
        self, duration_hours: float, start_after: datetime | None = None
    ) -> ScheduleResult:
        """The start within the flexibility whose ``duration_hours`` window is cleanest.

        Args:
            duration_hours: How long the job runs.
            start_after: Earliest start; naive datetimes (``datetime.now()``) are local time
                and converted to UTC. None means now.

        Returns:
            A :class:`ScheduleResult`; it formats as its start time. ``carbon_reduction``
            is also kept on the scheduler.
        """
        search = self._search(duration_hours, start_after)
        result = self._window_result(search)
        self.carbon_reduction = result.carbon_reduction
        self.last_result = result
        logger.info("Low-carbon window for %s: %s", self.region, result.reason)
        return result

    def find_low_carbon_slots(
        self,
        duration_hours: float,
        start_after: datetime | None = None,
        *,
        min_slot_hours: float = 0.5,
    ) -> SlotSchedule:
        """The cleanest set of slots (each at least ``min_slot_hours``) for a job that can
        checkpoint, pause and resume, within the flexibility window.

        Compared against starting at ``start_after`` and against the best single window.
        """
        _check_positive("min_slot_hours", min_slot_hours)
        search = self._search(duration_hours, start_after)
        window = self._window_result(search)
        min_slot = min_slot_hours * SECONDS_PER_HOUR
        if search.curve is None or not search.has_forecast:
            return _no_slots(window, min_slot, window.reason)

        horizon = search.latest_start + search.duration
        plan = best_slots(search.curve, search.duration, min_slot, search.earliest, horizon)
        if plan is None:
            reason = "The forecast is too short to hold the job in slots; " + window.reason
            return _no_slots(window, min_slot, reason)
        return _slot_schedule(search, window, plan, min_slot)

    def _search(self, duration_hours: float, start_after: datetime | None) -> _Search:
        _check_positive("duration_hours", duration_hours)
        earliest_dt = to_utc(start_after) if start_after is not None else utc_now()
        duration = duration_hours * SECONDS_PER_HOUR
        flexibility = self.flexibility_hours * SECONDS_PER_HOUR
        earliest = earliest_dt.timestamp()
        end_dt = earliest_dt + timedelta(seconds=flexibility + duration)

        if isinstance(self.provider, ForecastProvider):
            readings = self.provider.forecast(earliest_dt, end_dt)
            has_forecast = bool(readings) and not any(r.fallback for r in readings)
        else:
            readings = flat_forecast(self.provider, earliest_dt, end_dt)
            has_forecast = False
        curve = Curve.from_readings(readings) if readings else None
        return _Search(duration, earliest, earliest + flexibility, curve, readings, has_forecast)

    def _window_result(self, search: _Search) -> ScheduleResult:
        curve = search.curve
        choice = None
        if curve is not None and search.has_forecast:
            choice = best_window(
                curve, search.duration, search.earliest, search.latest_start, self.step_seconds
            )
        if curve is None or choice is None or not search.has_forecast:
            return self._unshifted(search)
        return self._shifted(search, curve, choice)

    def _shifted(self, search: _Search, curve: Curve, choice: WindowChoice) -> ScheduleResult:
        mean = choice.integral / search.duration
        baseline = _baseline_mean(curve, search)
        reduction = _reduction(mean, baseline)
        horizon = search.latest_start + search.duration
        covers = curve.start <= search.earliest and curve.end >= horizon
        meets = self._meets(mean)
        reason = self._describe(search, curve, choice.start, mean, baseline, reduction, covers)
        return self._result(search, choice.start, mean, baseline, reduction, meets, covers, reason)

    def _unshifted(self, search: _Search) -> ScheduleResult:
        """No forecast (or none covering a window): start at ``start_after``, claim nothing."""
        reading = search.readings[0] if search.readings else None
        value = reading.g_per_kwh if reading is not None and not search.has_forecast else None
        if not search.has_forecast:
            what = "a fallback figure" if reading is not None and reading.fallback else "one figure"
            reason = (
                f"No forecast for {self.region!r}: {reading.source if reading else 'the source'} "
                f"gives {what}"
                + (f" ({value:.0f} g/kWh)" if value is not None else "")
                + ", so no start time can reduce CO2; start at start_after."
            )
        else:
            reason = (
                f"The forecast for {self.region!r} covers no {search.duration / 3600:g} h window "
                "from start_after; nothing can be compared, so start at start_after."
            )
        meets = self._meets(value) if value is not None else self.max_carbon_intensity is None
        return self._result(search, search.earliest, value, value, 0.0, meets, False, reason)

    def _result(
        self,
        search: _Search,
        start: float,
        mean: float | None,
        baseline: float | None,
        reduction: float,
        meets: bool,
        covers: bool,
        reason: str,
    ) -> ScheduleResult:
        reading = search.readings[0] if search.readings else None
        start_dt = datetime.fromtimestamp(start, timezone.utc)
        return ScheduleResult(
            start=start_dt,
            end=start_dt + timedelta(seconds=search.duration),
            expected_intensity_g_per_kwh=mean,
            baseline_intensity_g_per_kwh=baseline,
            carbon_reduction=reduction,
            meets_threshold=meets,
            forecast_covers_window=covers,
            has_forecast=search.has_forecast,
            reason=reason,
            region=self.region,
            source=reading.source if reading else "",
            kind=reading.kind if reading else "average",
            start_after=datetime.fromtimestamp(search.earliest, timezone.utc),
            max_carbon_intensity=self.max_carbon_intensity,
        )

    def _meets(self, mean: float) -> bool:
        return self.max_carbon_intensity is None or mean <= self.max_carbon_intensity

    def _describe(
        self,
        search: _Search,
        curve: Curve,
        start: float,
        mean: float,
        baseline: float | None,
        reduction: float,
        covers: bool,
    ) -> str:
        hours = search.duration / SECONDS_PER_HOUR
        when = datetime.fromtimestamp(start, timezone.utc).isoformat()
        parts = [f"Cleanest {hours:g} h window starts {when}, mean {mean:.1f} g/kWh"]
        if baseline is not None:
            parts.append(f"vs {baseline:.1f} starting at start_after ({reduction:.1%} less CO2)")
        else:
            parts.append("(starting at start_after is not covered by the forecast)")
        sentences = [" ".join(parts) + "."]
        if self.max_carbon_intensity is not None and not self._meets(mean):
            sentences.append(f"No window meets the maximum of {self.max_carbon_intensity:g} g/kWh.")
        if not covers:
            ends = datetime.fromtimestamp(curve.end, timezone.utc).isoformat()
            sentences.append(
                f"The forecast ends at {ends}, before start_after + flexibility + duration; "
                "later starts were not considered."
            )
        return " ".join(sentences)


def _no_slots(window: ScheduleResult, min_slot: float, reason: str) -> SlotSchedule:
    return SlotSchedule([], None, 0.0, 0.0, window, 0.0, min_slot, reason)


def _slot_schedule(
    search: _Search,
    window: ScheduleResult,
    plan: SlotPlan,
    min_slot: float,
) -> SlotSchedule:
    mean, grid = plan.integral / search.duration, plan.grid_seconds
    vs_now = _reduction(mean, window.baseline_intensity_g_per_kwh)
    vs_window = _reduction(mean, window.expected_intensity_g_per_kwh)
    pairs = [
        (datetime.fromtimestamp(a, timezone.utc), datetime.fromtimestamp(b, timezone.utc))
        for a, b in plan.slots
    ]
    reason = (
        f"{len(pairs)} slot(s), mean {mean:.1f} g/kWh: {vs_now:.1%} less CO2 than starting at "
        f"start_after and {vs_window:.1%} less than the best single window (exact on a "
        f"{grid / 60:g}-minute grid)."
    )
    return SlotSchedule(pairs, mean, vs_now, vs_window, window, grid, min_slot, reason)


def _baseline_mean(curve: Curve, search: _Search) -> float | None:
    end = search.earliest + search.duration
    if search.earliest < curve.start or end > curve.end:
        return None
    return curve.mean(search.earliest, end)


def _reduction(mean: float | None, baseline: float | None) -> float:
    """Fraction of CO2 saved; 0.0 when either side is unknown or the baseline is zero."""
    if mean is None or baseline is None or baseline <= 0:
        return 0.0
    return 1.0 - mean / baseline


def _check_positive(name: str, value: float | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or isinstance(value, bool) or not (math.isfinite(value) and value > 0):
        raise ConfigError(name, value, f"give a finite number > 0, got {value!r}")


def table_provider(region: str) -> IntensityProvider:
    """The bundled table's provider for ``region`` (see :func:`table_lookup`)."""
    return table_lookup(region)[1]


def table_lookup(region: str) -> tuple[str, IntensityProvider]:
    """Find ``region`` in the bundled table as a cloud region, then a grid region, then a
    country; returns the config field that knows it and the provider.

    Raises:
        UnknownZoneError: None of the three knows it; suggestions from all of them.
    """
    from hf_eco2ai.intensity.table import resolve_zone

    suggestions: list[str] = []
    attempts: tuple[tuple[str, Callable[[], IntensityProvider]], ...] = (
        ("cloud_region", lambda: resolve_zone(cloud_region=region)),
        ("region", lambda: resolve_zone(region=region)),
        ("country", lambda: resolve_zone(country=region)),
    )
    for field_name, attempt in attempts:
        try:
            provider = attempt()
        except UnknownZoneError as err:
            suggestions.extend(s for s in err.suggestions if s not in suggestions)
        else:
            return field_name, provider
    raise UnknownZoneError("region", region, suggestions[:5])
