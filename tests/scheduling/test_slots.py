"""The slot planner against exhaustive search on small inputs, and its grid rules."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_eco2ai.errors import ConfigError
from hf_eco2ai.scheduling.curve import Curve, best_window
from hf_eco2ai.scheduling.slots import best_slots, grid_step

CELL = 300.0


def brute_force(values: list[float], k: int, m: int) -> float:
    """Try every set of k cells; keep those whose runs are all at least m long."""
    best = math.inf
    for chosen in itertools.combinations(range(len(values)), k):
        runs: list[list[int]] = []
        for i in chosen:
            if runs and runs[-1][1] == i:
                runs[-1][1] = i + 1
            else:
                runs.append([i, i + 1])
        if min(b - a for a, b in runs) >= m:
            best = min(best, sum(values[i] for i in chosen))
    return best


def _curve(values: list[float]) -> Curve:
    return Curve.from_arrays([i * CELL for i in range(len(values) + 1)], values)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.integers(0, 50).map(float), min_size=1, max_size=11),
    data=st.data(),
)
def test_exact_against_exhaustive_search(values: list[float], data: st.DataObject) -> None:
    k = data.draw(st.integers(1, len(values)))
    m = data.draw(st.integers(1, k))
    curve = _curve(values)

    plan = best_slots(curve, k * CELL, m * CELL, 0.0, curve.end, grid_seconds=CELL)

    expected = brute_force(values, k, m)
    if math.isinf(expected):
        assert plan is None
        return
    assert plan is not None
    assert plan.integral == pytest.approx(expected * CELL)
    assert sum(b - a for a, b in plan.slots) == pytest.approx(k * CELL)
    assert all(b - a >= m * CELL for a, b in plan.slots)
    assert sum(curve.integral(a, b) for a, b in plan.slots) == pytest.approx(plan.integral)


def test_greedy_cleanest_cells_would_break_the_minimum_slot() -> None:
    # The two cleanest cells are isolated; with a 2-cell minimum the plan must take a pair.
    values = [0.0, 9.0, 0.0, 9.0, 3.0, 3.0, 9.0]
    plan = best_slots(_curve(values), 2 * CELL, 2 * CELL, 0.0, 7 * CELL, grid_seconds=CELL)

    assert plan is not None and plan.slots == [(4 * CELL, 6 * CELL)]


def test_slots_never_cost_more_than_the_best_window() -> None:
    values = [5.0, 1.0, 1.0, 7.0, 7.0, 0.0, 0.0, 6.0, 2.0, 2.0, 8.0]
    curve = _curve(values)

    plan = best_slots(curve, 4 * CELL, 2 * CELL, 0.0, curve.end, grid_seconds=CELL)
    window = best_window(curve, 4 * CELL, 0.0, curve.end)

    assert plan is not None and window is not None
    assert plan.integral == pytest.approx(2 * CELL)  # cells 1+1 and 0+0: two slots
    assert plan.integral < window.integral


@pytest.mark.parametrize(
    ("bounds", "origin", "duration", "min_slot", "step"),
    [
        ([0, 1800, 3600], 0, 3600, 1800, 1800),
        ([0, 1800, 3600], 60, 3600, 1800, 60),  # start_after off the half-hour grid
        ([0, 300, 600], 0, 600, 900, 300),
        ([0, 7, 14], 0, 14, 7, 60),  # never finer than a minute
    ],
)
def test_grid_step(
    bounds: list[float], origin: float, duration: float, min_slot: float, step: float
) -> None:
    curve = Curve.from_arrays(bounds, [1.0] * (len(bounds) - 1))

    assert grid_step(curve, origin, duration, min_slot) == step


def test_too_short_a_span_is_none() -> None:
    assert best_slots(_curve([1.0, 2.0]), 3 * CELL, CELL, 0.0, 2 * CELL) is None


def test_a_minimum_slot_longer_than_the_job_is_an_error_not_none() -> None:
    with pytest.raises(ConfigError, match="min_slot_seconds: a minimum slot of 900 s") as info:
        best_slots(_curve([1.0, 2.0, 3.0]), 2 * CELL, 3 * CELL, 0.0, 3 * CELL)

    assert info.value.field == "min_slot_seconds" and "duration_seconds of 600 s" in str(info.value)
