"""LowCarbonScheduler end to end: the runbook snippet, the recorded UK forecast on a local
server, plain answers when there is no forecast, and region ranking."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from tests.http_fixtures import FIXTURES, FixtureServer

from hf_eco2ai.errors import ConfigError, UnknownZoneError
from hf_eco2ai.intensity.base import IntensityReading
from hf_eco2ai.intensity.live import FallbackProvider
from hf_eco2ai.intensity.table import resolve_zone
from hf_eco2ai.intensity.uk import UKCarbonIntensityProvider
from hf_eco2ai.scheduling import LowCarbonScheduler, rank_regions

T0 = datetime(2023, 3, 16, 12, 1, tzinfo=timezone.utc)
FW48H = "uk/uk_ci_national_fw48h_2023-03-16T1201Z.json"


@pytest.fixture
def uk() -> Iterator[tuple[FixtureServer, UKCarbonIntensityProvider]]:
    with FixtureServer() as server:
        server.route_file("/intensity/2023-03-16T12:01Z/fw48h", FW48H)
        provider = UKCarbonIntensityProvider(base_url=server.url)
        yield server, provider
        provider.close()


class Curve:
    """A provider with a given forecast (a real provider's interface, fixed data)."""

    def __init__(
        self, values: list[float], start: datetime = T0, hours: float = 1.0, kind: str = "average"
    ) -> None:
        step = timedelta(hours=hours)
        self.readings = [
            IntensityReading(
                v,
                "fixed",
                "X",
                kind,
                valid_from=start + i * step,
                valid_to=start + (i + 1) * step,
                is_forecast=True,
            )  # type: ignore[arg-type]
            for i, v in enumerate(values)
        ]

    def intensity_at(self, when: datetime) -> IntensityReading:
        return next(r for r in self.readings if r.valid_from <= when < r.valid_to)  # type: ignore[operator]

    def forecast(self, start: datetime, end: datetime) -> list[IntensityReading]:
        return [r for r in self.readings if r.valid_to > start and r.valid_from < end]  # type: ignore[operator]


def test_runbook_snippet_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    scheduler = LowCarbonScheduler(region="us-west1", max_carbon_intensity=300, flexibility_hours=8)
    best_time = scheduler.find_low_carbon_window(duration_hours=6, start_after=datetime.now())
    print(f"Schedule training at {best_time} for {scheduler.carbon_reduction:.1%} less CO2")

    out = capsys.readouterr().out
    assert out == f"Schedule training at {best_time.start.isoformat()} for 0.0% less CO2\n"
    assert best_time.start.tzinfo is not None
    assert not best_time.has_forecast and not best_time.forecast_covers_window
    assert "No forecast for 'us-west1'" in best_time.reason
    assert best_time.meets_threshold  # Google's 2023 figure for us-west1 is below 300


def test_naive_start_after_is_local_time() -> None:
    scheduler = LowCarbonScheduler("X", flexibility_hours=2, provider=Curve([5, 1, 1, 5, 5]))
    naive = T0.astimezone().replace(tzinfo=None)

    assert scheduler.find_low_carbon_window(1, naive).start_after == T0


def test_recorded_uk_forecast(uk: tuple[FixtureServer, UKCarbonIntensityProvider]) -> None:
    server, provider = uk
    scheduler = LowCarbonScheduler(
        "GB", max_carbon_intensity=90, flexibility_hours=8, provider=provider
    )

    result = scheduler.find_low_carbon_window(6, T0)

    assert result.start == datetime(2023, 3, 16, 13, tzinfo=timezone.utc)
    assert result.expected_intensity_g_per_kwh == pytest.approx(83.5)
    # Starting at 12:01: 29 min of the first period, 11 whole periods, 1 min of the 13th.
    v = [p["intensity"]["forecast"] for p in json.loads((FIXTURES / FW48H).read_text())["data"]]
    baseline = (29 * v[0] + 30 * sum(v[1:12]) + 1 * v[12]) / 360
    assert result.baseline_intensity_g_per_kwh == pytest.approx(baseline)
    assert result.carbon_reduction == pytest.approx(1 - 83.5 / baseline)
    assert scheduler.carbon_reduction == result.carbon_reduction
    assert result.meets_threshold and result.forecast_covers_window and result.has_forecast
    assert f"{result}" == "2023-03-16T13:00:00+00:00"
    assert len(server.requests) == 1


def test_threshold_not_met_is_said_plainly() -> None:
    scheduler = LowCarbonScheduler("X", 100, 3, provider=Curve([300, 200, 250, 400, 400, 400]))

    result = scheduler.find_low_carbon_window(2, T0)

    assert not result.meets_threshold
    assert "No window meets the maximum of 100 g/kWh" in result.reason
    assert result.start == T0 + timedelta(hours=1)


def test_short_forecast_is_said_plainly() -> None:
    scheduler = LowCarbonScheduler("X", None, 8, provider=Curve([300, 100, 200, 300]))

    result = scheduler.find_low_carbon_window(2, T0)

    assert not result.forecast_covers_window
    assert "later starts were not considered" in result.reason
    assert result.start == T0 + timedelta(hours=1)
    assert result.carbon_reduction == pytest.approx(1 - 150 / 200)


def test_forecast_covering_no_window_claims_nothing() -> None:
    scheduler = LowCarbonScheduler("X", None, 8, provider=Curve([300, 100]))

    result = scheduler.find_low_carbon_window(6, T0)

    assert (result.carbon_reduction, result.expected_intensity_g_per_kwh) == (0.0, None)
    assert result.start == T0 and "covers no 6 h window" in result.reason


def test_failed_live_forecast_falls_back_to_no_shift(
    uk: tuple[FixtureServer, UKCarbonIntensityProvider],
) -> None:
    server, provider = uk
    server.fail_status = 503
    fallback = FallbackProvider(provider, resolve_zone(country="GBR"))

    result = LowCarbonScheduler("GB", None, 8, provider=fallback).find_low_carbon_window(6, T0)

    assert not result.has_forecast and result.carbon_reduction == 0.0
    assert "a fallback figure" in result.reason


def test_slots_beat_the_single_window(uk: tuple[FixtureServer, UKCarbonIntensityProvider]) -> None:
    _, provider = uk
    scheduler = LowCarbonScheduler("GB", None, 24, provider=provider)

    plan = scheduler.find_low_carbon_slots(6, T0, min_slot_hours=1)

    assert plan.grid_seconds == 60  # 12:01 is off the half-hour grid
    assert sum((b - a for a, b in plan.slots), timedelta()) == timedelta(hours=6)
    assert all(b - a >= timedelta(hours=1) for a, b in plan.slots)
    assert (
        plan.reduction_vs_best_window >= 0
        and plan.reduction_vs_start_now >= plan.reduction_vs_best_window
    )
    window_mean = plan.best_window.expected_intensity_g_per_kwh
    assert window_mean is not None and plan.expected_intensity_g_per_kwh is not None
    assert plan.expected_intensity_g_per_kwh <= window_mean


def test_slots_without_forecast_say_so() -> None:
    plan = LowCarbonScheduler("us-west1", None, 8).find_low_carbon_slots(6, T0)

    assert plan.slots == [] and "No forecast" in plan.reason


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"flexibility_hours": -1}, "flexibility_hours"),
        ({"max_carbon_intensity": 0}, "max_carbon_intensity"),
        ({"step_minutes": -5}, "step_minutes"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        LowCarbonScheduler("us-west1", **kwargs)
    assert err.value.field == field


def test_unknown_region_suggests() -> None:
    with pytest.raises(UnknownZoneError):
        LowCarbonScheduler("us-wset1")


def test_rank_regions_by_best_window() -> None:
    ranking = rank_regions(
        {"dirty": Curve([500] * 10), "clean": Curve([90, 10, 10, 90] + [90] * 6), "us-west1": None},
        duration_hours=2,
        flexibility_hours=4,
        start_after=T0,
    )

    assert [r.region for r in ranking] == ["clean", "us-west1", "dirty"]
    assert ranking[0].rank == 1 and ranking[0].extra_co2_vs_best == 0.0
    assert ranking[0].result.expected_intensity_g_per_kwh == 10
    assert ranking[2].extra_co2_vs_best == pytest.approx(500 / 10 - 1)


def test_rank_regions_refuses_to_mix_marginal_and_average() -> None:
    with pytest.raises(ConfigError, match="marginal"):
        rank_regions(
            {"a": Curve([1.0] * 5), "b": Curve([1.0] * 5, kind="marginal")},
            duration_hours=1,
            flexibility_hours=1,
            start_after=T0,
        )
