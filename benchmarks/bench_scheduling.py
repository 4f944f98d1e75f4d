"""Benchmark the scheduler's searches on a year of 5-minute intensity data (105,120 points).

Job: 6 hours, any start in the year. Prints medians of repeated runs, the peak memory
(tracemalloc) of each search, and the ratio against a naive baseline measured in the same run
(each candidate window integrated interval by interval, no prefix sums).

    .venv/bin/python benchmarks/bench_scheduling.py
"""

from __future__ import annotations

import math
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable

from hf_eco2ai.scheduling.curve import Curve, best_window
from hf_eco2ai.scheduling.slots import best_slots

POINTS = 365 * 24 * 12
STEP = 300.0
DURATION = 6 * 3600.0
MIN_SLOT = 1800.0
START = 1_672_531_200.0  # 2023-01-01T00:00Z


def synthetic_year(seed: int = 7) -> tuple[list[float], list[float]]:
    """A daily and seasonal cycle with noise: not real data, but the shape scheduling sees."""
    rng = random.Random(seed)
    bounds = [START + STEP * i for i in range(POINTS + 1)]
    values = []
    for i in range(POINTS):
        day = math.sin(2 * math.pi * i / 288)
        season = math.cos(2 * math.pi * i / POINTS)
        values.append(max(0.0, 200 + 80 * day + 60 * season + rng.gauss(0, 25)))
    return bounds, values


def naive_best_window(bounds: list[float], values: list[float], duration: float) -> float:
    """Every boundary start, integrated by walking its intervals: O(n x window length)."""
    best = math.inf
    n = len(values)
    for i in range(n):
        end = bounds[i] + duration
        if end > bounds[-1]:
            break
        total, j = 0.0, i
        while j < n and bounds[j] < end:
            total += values[j] * (min(end, bounds[j + 1]) - bounds[j])
            j += 1
        best = min(best, total)
    return best


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_mib(fn: Callable[[], object]) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    bounds, values = synthetic_year()
    build = median_seconds(lambda: Curve.from_arrays(bounds, values), 5)
    curve = Curve.from_arrays(bounds, values)
    input_mib = (len(bounds) + len(values)) * 8 / 2**20

    window = lambda: best_window(curve, DURATION, curve.start, curve.end)  # noqa: E731
    slots = lambda: best_slots(curve, DURATION, MIN_SLOT, curve.start, curve.end)  # noqa: E731
    window_s = median_seconds(window, 21)
    slots_s = median_seconds(slots, 5)
    naive_s = median_seconds(lambda: naive_best_window(bounds, values, DURATION), 1)

    found = best_window(curve, DURATION, curve.start, curve.end)
    assert found is not None
    exact = naive_best_window(bounds, values, DURATION)
    assert math.isclose(found.integral, exact, rel_tol=1e-9), (found.integral, exact)

    print(f"input: {POINTS} points of {STEP:g} s ({input_mib:.1f} MiB as float64), 6 h job")
    _row("curve build (prefix sums)", build, "")
    _row("best window", window_s, f"peak {peak_mib(window):6.1f} MiB")
    _row("naive window (same answer)", naive_s, f"ratio {naive_s / window_s:6.0f}x")
    _row("slots, min 30 min", slots_s, f"peak {peak_mib(slots):6.1f} MiB")


def _row(label: str, seconds: float, extra: str) -> None:
    print(f"{label:<28} median {seconds * 1e3:8.1f} ms  {extra}")


if __name__ == "__main__":
    main()
