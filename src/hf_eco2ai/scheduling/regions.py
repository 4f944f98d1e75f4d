"""Where to run: candidate regions ranked by the forecast mean intensity (g/kWh) of their best
window for a job of given length and start flexibility. Asks each provider once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from hf_eco2ai.errors import ConfigError
from hf_eco2ai.intensity.base import IntensityProvider
from hf_eco2ai.scheduling.scheduler import LowCarbonScheduler, ScheduleResult


@dataclass(frozen=True)
class RegionRanking:
    """One candidate's place.

    Attributes:
        rank: 1 for the cleanest; regions with no figure come last, unranked (0).
        region: The candidate.
        result: Its best window (start, mean intensity, saving against starting now there).
        extra_co2_vs_best: Fraction more CO2 than the best candidate for the same energy
            (0.0 for the best; None without a figure).
    """

    rank: int
    region: str
    result: ScheduleResult
    extra_co2_vs_best: float | None


def rank_regions(
    candidates: Sequence[str] | Mapping[str, IntensityProvider | None],
    *,
    duration_hours: float,
    flexibility_hours: float,
    start_after: datetime | None = None,
    max_carbon_intensity: float | None = None,
) -> list[RegionRanking]:
    """Rank regions by the expected mean intensity of each one's best window.

    Args:
        candidates: Region names (resolved in the bundled table), or names mapped to a
            provider (None for the bundled table).
        duration_hours: The job's length.
        flexibility_hours: How long after ``start_after`` it may start.
        start_after: Earliest start; naive is local time. None means now.
        max_carbon_intensity: Threshold reported on each result, g/kWh.

    Raises:
        ConfigError: No candidates, or marginal and average intensities mixed (they measure
            different things and cannot be ranked together).
    """
    providers = dict(candidates) if isinstance(candidates, Mapping) else dict.fromkeys(candidates)
    if not providers:
        raise ConfigError("candidates", candidates, "give at least one region")

    results = []
    for region, provider in providers.items():
        scheduler = LowCarbonScheduler(
            region, max_carbon_intensity, flexibility_hours, provider=provider
        )
        results.append(scheduler.find_low_carbon_window(duration_hours, start_after))
    _check_same_kind(results)
    return _ranked(results)


def _check_same_kind(results: list[ScheduleResult]) -> None:
    kinds = {r.kind for r in results if r.expected_intensity_g_per_kwh is not None}
    if len(kinds) > 1:
        raise ConfigError(
            "candidates",
            sorted(r.region for r in results),
            "marginal (WattTime) and average intensities cannot be ranked together; "
            "use providers of one kind",
        )


def _ranked(results: list[ScheduleResult]) -> list[RegionRanking]:
    known = sorted(
        (r for r in results if r.expected_intensity_g_per_kwh is not None),
        key=lambda r: (r.expected_intensity_g_per_kwh, r.start),
    )
    unknown = [r for r in results if r.expected_intensity_g_per_kwh is None]
    best = known[0].expected_intensity_g_per_kwh if known else None

    ranking = []
    for rank, result in enumerate(known, start=1):
        mean = result.expected_intensity_g_per_kwh
        extra = mean / best - 1.0 if best and mean is not None else 0.0
        ranking.append(RegionRanking(rank, result.region, result, extra))
    ranking.extend(RegionRanking(0, r.region, r, None) for r in unknown)
    return ranking
