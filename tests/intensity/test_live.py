"""Shared live-provider parts: time parsing, the fallback wrapper, and building from config."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from tests.http_fixtures import FixtureServer

from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.errors import ConfigError, IntensityUnavailableError
from hf_eco2ai.intensity.base import IntensityReading
from hf_eco2ai.intensity.live import (
    FallbackProvider,
    HttpStatusError,
    build_live_provider,
    make_live_provider,
    parse_utc,
    to_utc,
)
from hf_eco2ai.intensity.table import resolve_zone

T0 = datetime(2023, 3, 16, 12, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "text",
    [
        "2023-03-16T12:01Z",
        "2023-03-16T12:01:00.000Z",
        "2023-03-16T12:01:00+00:00",
        "2023-03-16T13:01+01:00",
    ],
)
def test_parse_utc(text: str) -> None:
    assert parse_utc(text) == T0 and parse_utc(text).tzinfo == timezone.utc


def test_parse_utc_refuses_naive() -> None:
    with pytest.raises(ValueError, match="no zone offset"):
        parse_utc("2023-03-16T12:01")


def test_to_utc_takes_naive_as_local() -> None:
    assert to_utc(T0.astimezone().replace(tzinfo=None)) == T0


class Failing:
    """A primary that fails a set number of times, then answers."""

    def __init__(self, failures: int, retry_after: float | None = None) -> None:
        self.failures, self.retry_after, self.calls = failures, retry_after, 0

    def intensity_at(self, when: datetime) -> IntensityReading:
        self.calls += 1
        if self.calls <= self.failures:
            raise HttpStatusError("source: rate limited (HTTP 429)", 429, self.retry_after)
        return IntensityReading(42.0, "live", "X")


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("retry_after", "wait"), [(None, 300.0), (900.0, 900.0), (10.0, 300.0)])
def test_back_off_honours_the_longer_of_ours_and_retry_after(
    retry_after: float | None, wait: float
) -> None:
    ticks, primary = Ticks(), Failing(1, retry_after)
    provider = FallbackProvider(primary, resolve_zone(country="FRA"), monotonic=ticks)

    assert provider.intensity_at(T0).fallback
    ticks.now = wait - 1
    assert provider.intensity_at(T0).fallback and primary.calls == 1
    ticks.now = wait
    assert provider.intensity_at(T0).g_per_kwh == 42.0 and primary.calls == 2


def test_every_failure_is_recorded_but_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    ticks = Ticks()
    provider = FallbackProvider(Failing(3), resolve_zone(country="FRA"), monotonic=ticks)

    for _ in range(3):
        provider.intensity_at(T0)
        ticks.now += 301

    assert len(provider.fallback_events) == 3
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 1


@pytest.fixture
def server() -> Iterator[FixtureServer]:
    with FixtureServer() as srv:
        srv.route_file(
            "/intensity/2023-03-16T12:01Z/fw48h", "uk/uk_ci_national_fw48h_2023-03-16T1201Z.json"
        )
        yield srv


def test_build_live_provider_from_config(server: FixtureServer) -> None:
    config = CarbonConfig(
        country="GBR",
        use_real_time_carbon=True,
        carbon_provider="uk",
        carbon_api_base_url=server.url,
    )
    provider = build_live_provider(config, fallback=config.intensity_provider_static())

    assert provider.intensity_at(T0).g_per_kwh == 95
    server.fail_status = 500
    reading = provider.intensity_at(T0 + timedelta(hours=49))  # beyond the cached 48 h
    provider.primary.close()  # type: ignore[attr-defined]
    assert reading.fallback and reading.zone == "GBR"


@pytest.mark.parametrize(
    ("name", "zone", "field"),
    [
        ("nope", "X", "carbon_provider"),
        ("electricitymaps", None, "carbon_zone"),
        ("watttime", "", "carbon_zone"),
    ],
)
def test_make_live_provider_names_the_bad_field(name: str, zone: str | None, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_live_provider(name, zone)
    assert err.value.field == field


def test_unreachable_host_is_unavailable() -> None:
    provider = make_live_provider("uk", None, base_url="http://127.0.0.1:9", timeout_seconds=0.5)

    with pytest.raises(IntensityUnavailableError, match="cannot reach"):
        provider.intensity_at(T0)
    provider.close()
