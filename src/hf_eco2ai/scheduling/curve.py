"""A piecewise-constant intensity curve (g/kWh over Unix seconds) and the exact best-window search:
prefix sums of intensity x seconds, vectorised with numpy; O(n log n) time, O(n) memory. No I/O."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from hf_eco2ai.intensity.base import IntensityReading

#: Window integrals within this fraction of the best are a tie; the earliest start wins.
TIE_RELATIVE = 1e-9


@dataclass(frozen=True, eq=False)
class Curve:
    """Intensity ``values[i]`` (g/kWh) over ``[bounds[i], bounds[i + 1])`` (Unix seconds).

    Build with :meth:`from_arrays`, :meth:`from_intervals` or :meth:`from_readings`; the last
    two sort, check and keep only the contiguous run from the first interval (a gap ends what
    the curve can say, and ``truncated_at`` records where).

    Attributes:
        bounds: ``n + 1`` strictly increasing instants (float64 array).
        values: ``n`` finite non-negative intensities (float64 array).
        prefix: ``n + 1`` running integrals, g/kWh x seconds from ``bounds[0]``.
        truncated_at: Where a gap cut the input short (seconds), or None.
    """

    bounds: np.ndarray
    values: np.ndarray
    prefix: np.ndarray
    truncated_at: float | None = None

    @classmethod
    def from_arrays(
        cls, bounds: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray
    ) -> Curve:
        """A curve from ready boundaries and values.

        Raises:
            ValueError: Lengths disagree, bounds do not increase, or a value is bad.
        """
        b = np.asarray(bounds, dtype=np.float64)
        v = np.asarray(values, dtype=np.float64)
        if b.ndim != 1 or v.ndim != 1 or len(b) != len(v) + 1 or len(v) == 0:
            raise ValueError("need n + 1 bounds for n >= 1 values")
        lengths = np.diff(b)
        if not np.all(lengths > 0):
            raise ValueError("interval bounds must strictly increase")
        if not (np.all(np.isfinite(v)) and np.all(v >= 0)):
            raise ValueError("intensities must be finite and non-negative")

        prefix = np.concatenate(([0.0], np.cumsum(v * lengths)))
        return cls(b, v, prefix)

    @classmethod
    def from_intervals(cls, intervals: Iterable[tuple[float, float, float]]) -> Curve:
        """A curve from ``(start_s, end_s, g_per_kwh)`` intervals of any lengths.

        Raises:
            ValueError: No intervals, an empty or reversed one, overlaps, or a bad value.
        """
        ordered = sorted(intervals)
        if not ordered:
            raise ValueError("the forecast has no intervals")
        starts, ends, values = (
            np.asarray(col, dtype=np.float64) for col in zip(*ordered, strict=True)
        )
        if np.any(ends <= starts):
            raise ValueError("an interval is empty or reversed")
        if np.any(starts[1:] < ends[:-1]):
            raise ValueError("forecast intervals overlap")

        gaps = np.flatnonzero(starts[1:] > ends[:-1])
        count = int(gaps[0]) + 1 if len(gaps) else len(starts)
        truncated_at = float(ends[count - 1]) if len(gaps) else None
        bounds = np.concatenate((starts[:count], ends[count - 1 : count]))
        curve = cls.from_arrays(bounds, values[:count])
        return cls(curve.bounds, curve.values, curve.prefix, truncated_at)

    @classmethod
    def from_readings(cls, readings: Iterable[IntensityReading]) -> Curve:
        """A curve from readings that carry ``valid_from`` and ``valid_to``."""
        intervals = []
        for r in readings:
            if r.valid_from is None or r.valid_to is None:
                raise ValueError(f"reading from {r.source!r} has no validity period")
            intervals.append((r.valid_from.timestamp(), r.valid_to.timestamp(), r.g_per_kwh))
        return cls.from_intervals(intervals)

    @property
    def start(self) -> float:
        return float(self.bounds[0])

    @property
    def end(self) -> float:
        return float(self.bounds[-1])

    def integral(self, a: float, b: float) -> float:
        """Integral of intensity over ``[a, b]`` (g/kWh x s); ``a``, ``b`` within the curve."""
        if not self.start <= a <= b <= self.end:
            raise ValueError(f"[{a}, {b}] is outside the curve [{self.start}, {self.end}]")
        return float(self.cumulative(np.array([b]))[0] - self.cumulative(np.array([a]))[0])

    def mean(self, a: float, b: float) -> float:
        """Time-weighted mean intensity over ``[a, b]`` (g/kWh), ``a < b``."""
        return self.integral(a, b) / (b - a)

    def cumulative(self, x: np.ndarray) -> np.ndarray:
        """Integral from the curve's start to each instant of ``x`` (exact, mid-interval too)."""
        last = len(self.values) - 1
        i = np.clip(np.searchsorted(self.bounds, x, side="right") - 1, 0, last)
        result: np.ndarray = self.prefix[i] + self.values[i] * (x - self.bounds[i])
        return result


@dataclass(frozen=True)
class WindowChoice:
    """The best window found: start (Unix seconds), integral (g/kWh x s), candidates tried."""

    start: float
    integral: float
    candidates: int


def best_window(
    curve: Curve,
    duration_seconds: float,
    earliest: float,
    latest: float,
    step_seconds: float | None = None,
) -> WindowChoice | None:
    """The start in ``[earliest, latest]`` whose window has the least integrated intensity.

    The window's integral is piecewise linear in its start, bending only where the start or
    the end crosses an interval boundary, so its minimum is at one of: ``earliest``, the latest
    feasible start, a boundary (window starts there) or a boundary minus the duration (window
    ends there). Those are the candidates, with (``step_seconds``) every step from
    ``earliest``; the result is the best of all real starts. Near-ties (:data:`TIE_RELATIVE`)
    go to the earliest start. Windows must lie inside the curve; None when none does.
    """
    lo = max(earliest, curve.start)
    hi = min(latest, curve.end - duration_seconds)
    if hi < lo:
        return None

    starts = _candidates(curve, duration_seconds, earliest, lo, hi, step_seconds)
    integrals = curve.cumulative(starts + duration_seconds) - curve.cumulative(starts)
    best = float(integrals.min())
    ties = integrals <= best + TIE_RELATIVE * abs(best)
    start = float(starts[ties].min())
    return WindowChoice(start, float(integrals[ties][starts[ties].argmin()]), len(starts))


def _candidates(
    curve: Curve, duration: float, origin: float, lo: float, hi: float, step: float | None
) -> np.ndarray:
    parts = [np.array([lo, hi]), _within(curve.bounds, lo, hi)]
    parts.append(_within(curve.bounds - duration, lo, hi))  # windows that end on a boundary
    if step:
        first = math.ceil((lo - origin) / step)
        last = math.floor((hi - origin) / step)
        parts.append(origin + step * np.arange(first, last + 1, dtype=np.float64))
    return np.concatenate(parts)


def _within(sorted_values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The values strictly between ``lo`` and ``hi`` of an increasing array."""
    left = np.searchsorted(sorted_values, lo, "right")
    right = np.searchsorted(sorted_values, hi, "left")
    result: np.ndarray = sorted_values[left:right]
    return result
