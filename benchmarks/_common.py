"""Helpers shared by the benchmarks: medians, fresh-interpreter timing, a uniform table."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable


def median_of(fn: Callable[[], float], repeats: int) -> float:
    return statistics.median(fn() for _ in range(repeats))


def run_python(code: str, timeout: float = 600) -> str:
    """Run ``code`` in a fresh interpreter and return its stdout (raises on failure)."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


def wall(fn: Callable[[], object]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def row(name: str, ours: float, baseline: float, unit: str, baseline_name: str) -> str:
    ratio = baseline / ours if ours > 0 else float("inf")
    return f"{name:<44} ours {ours:>10.4g} {unit:<6} {baseline_name} {baseline:>10.4g} {unit:<6} ratio {ratio:>7.2f}x"
