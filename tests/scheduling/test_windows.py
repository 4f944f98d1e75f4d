"""The window search against a brute-force oracle: on the recorded UK curves and on random
curves with random interval lengths (hypothesis)."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.http_fixtures import FIXTURES

from hf_eco2ai.scheduling.curve import Curve, best_window

HOUR = 3600.0


def _uk_curve(name: str) -> Curve:
    intervals = []
    for p in json.loads((FIXTURES / "uk" / name).read_text())["data"]:
        i = p["intensity"]
        value = i["actual"] if i["actual"] is not None else i["forecast"]
        start = datetime.fromisoformat(p["from"].replace("Z", "+00:00")).timestamp()
        end = datetime.fromisoformat(p["to"].replace("Z", "+00:00")).timestamp()
        intervals.append((start, end, float(value)))
    return Curve.from_intervals(intervals)


def naive_integral(intervals: list[tuple[float, float, float]], a: float, b: float) -> float:
    """Overlap of [a, b] with each interval times its value: no prefix sums, no bisect."""
    return sum(max(0.0, min(b, e) - max(a, s)) * v for s, e, v in intervals)


def oracle(
    curve: Curve, duration: float, earliest: float, latest: float, grid: float = 1.0
) -> float | None:
    """Best integral over every start on a ``grid`` from ``earliest``, integrated naively.

    When the bounds, the duration and ``earliest`` all lie on the grid, so does the best of all
    real starts (a window's integral bends only where its start or end meets a boundary): the
    oracle is then the true optimum, whatever candidates the search chose to try.
    """
    intervals = list(zip(curve.bounds[:-1], curve.bounds[1:], curve.values, strict=True))
    lo, hi = max(earliest, curve.start), min(latest, curve.end - duration)
    if hi < lo:
        return None
    first = math.ceil((lo - earliest) / grid)
    last = math.floor((hi - earliest) / grid)
    starts = {lo, hi, *(earliest + k * grid for k in range(first, last + 1))}
    return min(naive_integral(intervals, s, s + duration) for s in starts)


UK_CURVES = [
    "uk_ci_national_fw48h_2023-03-16T1201Z.json",
    "uk_ci_national_pt24h_2023-03-15T1201Z.json",
]


@pytest.mark.parametrize("name", UK_CURVES)
@pytest.mark.parametrize("duration_h", [0.5, 1.0, 2.75, 6.0, 12.0])
@pytest.mark.parametrize("offset_min", [0, 1, 17])
def test_matches_oracle_on_recorded_uk_curves(
    name: str, duration_h: float, offset_min: int
) -> None:
    curve = _uk_curve(name)
    earliest = curve.start + offset_min * 60
    latest = earliest + 8 * HOUR

    choice = best_window(curve, duration_h * HOUR, earliest, latest)

    assert choice is not None
    expected = oracle(curve, duration_h * HOUR, earliest, latest, grid=60.0)  # every minute
    assert choice.integral == pytest.approx(expected, rel=1e-12)
    assert choice.integral == pytest.approx(
        curve.integral(choice.start, choice.start + duration_h * HOUR)
    )


def test_recorded_forecast_finds_the_known_cleanest_window() -> None:
    curve = _uk_curve(UK_CURVES[0])
    choice = best_window(curve, 6 * HOUR, curve.start, curve.start + 42 * HOUR)

    assert choice is not None
    # Worked by hand from the recording: periods 13:00-19:00 average 83.5, 12:00-18:00 84.58.
    assert datetime.fromtimestamp(choice.start, timezone.utc) == datetime(
        2023, 3, 16, 13, tzinfo=timezone.utc
    )
    assert choice.integral / (6 * HOUR) == pytest.approx(83.5)
    assert curve.mean(curve.start, curve.start + 6 * HOUR) == pytest.approx(84.5833333)


def test_partial_intervals_at_both_edges_are_exact() -> None:
    curve = Curve.from_intervals([(0, 10, 5.0), (10, 30, 1.0), (30, 35, 9.0)])

    assert curve.integral(7, 32) == pytest.approx(3 * 5 + 20 * 1 + 2 * 9)
    assert curve.mean(10, 30) == 1.0


def test_ties_go_to_the_earliest_start() -> None:
    curve = Curve.from_intervals([(0, 10, 1.0), (10, 20, 1.0), (20, 30, 1.0)])

    choice = best_window(curve, 10, 0, 20)
    assert choice is not None and choice.start == 0


def test_a_window_that_ends_on_a_boundary_is_found_without_a_grid() -> None:
    # The best 10 s window ends where the dirty part begins (t=14): it starts on no boundary.
    curve = Curve.from_intervals([(0, 10, 1.0), (10, 14, 0.0), (14, 30, 9.0)])

    found = best_window(curve, 10, 0, 20)
    on_grid = best_window(curve, 10, 0, 20, step_seconds=3)

    assert found is not None and (found.start, found.integral) == (4, 6)
    assert on_grid is not None and (on_grid.start, on_grid.integral) == (4, 6)


def test_an_hour_and_a_half_job_starts_mid_interval_when_that_is_cleanest() -> None:
    # Hourly 300, 300, 100, 500 g/kWh: 01:30-03:00 averages 166.7; 01:00-02:30 only 233.3.
    curve = Curve.from_intervals(
        [(0, HOUR, 300.0), (HOUR, 2 * HOUR, 300.0), (2 * HOUR, 3 * HOUR, 100.0)]
        + [(3 * HOUR, 4 * HOUR, 500.0)]
    )

    choice = best_window(curve, 1.5 * HOUR, 0, 2 * HOUR)

    assert choice is not None and choice.start == 1.5 * HOUR
    assert choice.integral / (1.5 * HOUR) == pytest.approx(500 / 3)


def test_window_that_does_not_fit_is_none() -> None:
    curve = Curve.from_intervals([(0, 10, 1.0)])

    assert best_window(curve, 20, 0, 100) is None


def test_gap_truncates_the_curve() -> None:
    curve = Curve.from_intervals([(0, 10, 1.0), (10, 20, 2.0), (25, 30, 0.0)])

    assert (curve.end, curve.truncated_at) == (20, 20)


@pytest.mark.parametrize(
    "intervals",
    [[], [(0, 0, 1.0)], [(0, 10, 1.0), (5, 15, 1.0)], [(0, 10, -1.0)], [(0, 10, math.nan)]],
)
def test_bad_intervals_are_refused(intervals: list[tuple[float, float, float]]) -> None:
    with pytest.raises(ValueError):
        Curve.from_intervals(intervals)


curves = st.lists(
    st.tuples(st.integers(1, 180), st.floats(0, 1000, allow_nan=False)), min_size=1, max_size=40
)


@settings(max_examples=150, deadline=None)
@given(
    pieces=curves,
    duration=st.integers(1, 600),
    earliest_offset=st.integers(0, 300),
    flexibility=st.integers(0, 2000),
    step=st.one_of(st.none(), st.integers(1, 120)),
)
def test_matches_oracle_on_random_curves(
    pieces: list[tuple[int, float]],
    duration: int,
    earliest_offset: int,
    flexibility: int,
    step: int | None,
) -> None:
    bounds = [1_700_000_000.0]
    for length, _ in pieces:
        bounds.append(bounds[-1] + length)
    curve = Curve.from_arrays(bounds, [v for _, v in pieces])
    earliest = bounds[0] + earliest_offset
    latest = earliest + flexibility

    choice = best_window(curve, duration, earliest, latest, step)
    expected = oracle(curve, duration, earliest, latest)  # every second: the true optimum

    if expected is None:
        assert choice is None
        return
    assert choice is not None
    assert earliest <= choice.start <= latest and choice.start + duration <= curve.end
    assert choice.integral == pytest.approx(expected, rel=1e-9, abs=1e-6)
