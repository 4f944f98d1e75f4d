"""Exact pause-and-resume planning: the cleanest set of slots, each at least a minimum length,
adding up to a job's duration, on a fixed time grid. Dynamic programming in O(cells x job
cells) time and O(cells x job cells) small integers of memory. Intensities in g/kWh, seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hf_eco2ai.errors import ConfigError
from hf_eco2ai.scheduling.curve import Curve

#: The grid never gets finer than a minute: slots are for jobs that checkpoint, and a finer
#: grid only multiplies the work.
MIN_GRID_SECONDS = 60


@dataclass(frozen=True)
class SlotPlan:
    """Chosen slots as ``(start_s, end_s)`` pairs (Unix seconds, merged when adjacent), their
    integral (g/kWh x s) and the grid step the plan is exact on."""

    slots: list[tuple[float, float]]
    integral: float
    grid_seconds: float


def grid_step(curve: Curve, origin: float, duration: float, min_slot: float) -> float:
    """The coarsest grid on which boundaries, duration and minimum slot all fall (>= 60 s).

    When a boundary lies off every whole-minute grid from ``origin``, the step is 60 s and
    cells straddling it use their exact mean, so plans stay exact in CO2 but only
    grid-optimal (not continuous-optimal).
    """
    step = 0
    for value in (duration, min_slot, *(b - origin for b in curve.bounds)):
        step = math.gcd(step, abs(round(value)))
    return float(max(step, MIN_GRID_SECONDS))


def best_slots(
    curve: Curve,
    duration_seconds: float,
    min_slot_seconds: float,
    earliest: float,
    latest_end: float,
    grid_seconds: float | None = None,
) -> SlotPlan | None:
    """The cleanest slots of total ``duration_seconds`` within ``[earliest, latest_end]``.

    Each maximal run of chosen time is at least ``min_slot_seconds`` long. Exact on the grid
    (from ``earliest``, step ``grid_seconds`` or :func:`grid_step`): duration and minimum slot
    are rounded up to whole cells. None when they do not fit in the covered span.

    Raises:
        ConfigError: ``min_slot_seconds`` is longer than ``duration_seconds``.
    """
    if min_slot_seconds > duration_seconds:
        raise ConfigError(
            "min_slot_seconds",
            min_slot_seconds,
            f"a minimum slot of {min_slot_seconds:g} s is longer than the job's "
            f"duration_seconds of {duration_seconds:g} s; give one no longer than the job",
        )

    step = grid_seconds or grid_step(curve, earliest, duration_seconds, min_slot_seconds)
    horizon = min(latest_end, curve.end)
    cells = int(math.floor((horizon - earliest) / step + 1e-9))
    k_cells = math.ceil(duration_seconds / step - 1e-9)
    m_cells = max(1, math.ceil(min_slot_seconds / step - 1e-9))
    if earliest < curve.start or cells < k_cells or k_cells < m_cells:
        return None

    prefix = _grid_prefix(curve, earliest, step, cells)
    picked = _solve(prefix, k_cells, m_cells)
    if picked is None:
        return None
    total, runs = picked
    slots = [(earliest + a * step, earliest + b * step) for a, b in runs]
    return SlotPlan(slots, total, step)


def _grid_prefix(curve: Curve, origin: float, step: float, cells: int) -> np.ndarray:
    """Integral from ``origin`` to each grid point (``cells + 1`` values), vectorised."""
    points = origin + step * np.arange(cells + 1, dtype=float)
    cumulative = curve.cumulative(points)
    relative: np.ndarray = cumulative - cumulative[0]
    return relative


def _solve(
    prefix: np.ndarray, k_cells: int, m_cells: int
) -> tuple[float, list[tuple[int, int]]] | None:
    """Minimum-cost choice of ``k_cells`` cells in runs of at least ``m_cells``.

    ``g[c][i]``: least cost of ``c`` cells among the first ``i`` with every run closed.
    A run ending at ``i`` of length ``L >= m`` costs ``P[i] - P[i-L]``, so
    ``h[c][i] = P[i] + min_{L>=m} (g[c-L][i-L] - P[i-L])``; the inner minimum runs along a
    diagonal (``i - c`` fixed) and is carried from ``c - 1``: O(1) per state, no loop over L.
    """
    n = len(prefix)
    inf = np.inf
    # Only the last m rows of g are read again; older ones are dropped to keep memory O(m n).
    g_rows: dict[int, np.ndarray] = {0: np.zeros(n)}
    diag_min = np.full(n, inf)
    diag_len = np.zeros(n, dtype=np.int32)
    run_len = np.zeros((k_cells + 1, n), dtype=np.int16 if k_cells < 2**15 else np.int32)
    source = np.zeros((k_cells + 1, n), dtype=np.int32)
    positions = np.arange(n, dtype=np.int32)

    for c in range(1, k_cells + 1):
        fresh = np.full(n, inf)
        if c >= m_cells:
            fresh[m_cells:] = (g_rows[c - m_cells] - prefix)[: n - m_cells]
        carried = np.full(n, inf)
        carried[1:] = diag_min[:-1]
        carried_len = np.zeros(n, dtype=np.int32)
        carried_len[1:] = diag_len[:-1] + 1
        take_fresh = fresh <= carried
        diag_min = np.where(take_fresh, fresh, carried)
        diag_len = np.where(take_fresh, m_cells, carried_len).astype(np.int32)
        run_len[c] = diag_len

        ends_here = prefix + diag_min
        g_row = np.minimum.accumulate(ends_here)
        before = np.concatenate(([inf], g_row[:-1]))
        source[c] = np.maximum.accumulate(np.where(ends_here < before, positions, 0))
        g_rows[c] = g_row
        g_rows.pop(c - m_cells, None)

    if not math.isfinite(g_rows[k_cells][-1]):
        return None
    return float(g_rows[k_cells][-1]), _backtrack(run_len, source, k_cells, n - 1)


def _backtrack(
    run_len: np.ndarray, source: np.ndarray, k_cells: int, last: int
) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    c, end = k_cells, int(source[k_cells][last])
    while c > 0:
        length = int(run_len[c][end])
        runs.append((end - length, end))
        c -= length
        if c > 0:
            end = int(source[c][end - length])
    return _merge(sorted(runs))


def _merge(runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in runs:
        if merged and merged[-1][1] == a:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged
