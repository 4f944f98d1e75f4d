"""Electricity Maps provider against a local server answering in the API v3 shape.

Response shapes follow the v3 reference (``/carbon-intensity/latest``, ``/past``, ``/forecast``:
``zone``, ``carbonIntensity``, ``datetime``, ``updatedAt``, ``emissionFactorType``,
``isEstimated``...). No recording is available, so the values are illustrative.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from tests.http_fixtures import FixtureServer, Reply

from hf_eco2ai.errors import ConfigError, IntensityUnavailableError
from hf_eco2ai.intensity.electricitymaps import ElectricityMapsProvider
from hf_eco2ai.intensity.live import FallbackProvider
from hf_eco2ai.intensity.table import resolve_zone

TOKEN = "em-test-token-0123456789"
NOW = datetime(2024, 5, 21, 10, 20, tzinfo=timezone.utc)


def _point(hour: int, value: float | None, **extra: object) -> dict[str, object]:
    return {"carbonIntensity": value, "datetime": f"2024-05-21T{hour:02d}:00:00.000Z", **extra}


LATEST = {
    "zone": "DE",
    **_point(10, 322),
    "updatedAt": "2024-05-21T10:05:21.002Z",
    "createdAt": "2024-05-18T10:04:11.331Z",
    "emissionFactorType": "lifecycle",
    "isEstimated": True,
    "estimationMethod": "TIME_SLICER_AVERAGE",
}
PAST = {**LATEST, **_point(3, 401), "isEstimated": False, "estimationMethod": None}
FORECAST = {
    "zone": "DE",
    "forecast": [_point(h, 300 - 10 * h) for h in range(11, 24)],
    "updatedAt": "2024-05-21T10:05:21.002Z",
}


@pytest.fixture
def server() -> Iterator[FixtureServer]:
    with FixtureServer() as srv:
        srv.route("/v3/carbon-intensity/latest", Reply(LATEST))
        srv.route("/v3/carbon-intensity/past", Reply(PAST))
        srv.route("/v3/carbon-intensity/forecast", Reply(FORECAST))
        yield srv


@pytest.fixture
def provider(server: FixtureServer) -> Iterator[ElectricityMapsProvider]:
    p = ElectricityMapsProvider("DE", token=TOKEN, base_url=f"{server.url}/v3", clock=lambda: NOW)
    yield p
    p.close()


def test_latest_sends_token_in_auth_token_header(
    provider: ElectricityMapsProvider, server: FixtureServer
) -> None:
    reading = provider.intensity_at(NOW)

    assert reading.g_per_kwh == 322 and reading.kind == "average" and not reading.is_forecast
    assert reading.valid_from == datetime(2024, 5, 21, 10, tzinfo=timezone.utc)
    request = server.requests[0]
    assert request.headers["auth-token"] == TOKEN
    assert request.query == {"zone": "DE"}
    assert TOKEN not in request.path


def test_latest_lagging_the_clock_is_still_used_and_cached(
    provider: ElectricityMapsProvider, server: FixtureServer
) -> None:
    later = NOW + timedelta(minutes=50)  # 11:10, past the 10:00-11:00 hour the API reported

    assert provider.intensity_at(later).g_per_kwh == 322
    assert provider.intensity_at(later).g_per_kwh == 322
    assert len(server.requests) == 1


def test_older_moments_ask_past(provider: ElectricityMapsProvider, server: FixtureServer) -> None:
    reading = provider.intensity_at(datetime(2024, 5, 21, 3, 30, tzinfo=timezone.utc))

    assert reading.g_per_kwh == 401
    assert server.requests[0].path == "/v3/carbon-intensity/past"
    assert server.requests[0].query["datetime"] == "2024-05-21T03:30:00Z"


def test_forecast_is_hourly_and_labelled(provider: ElectricityMapsProvider) -> None:
    readings = provider.forecast(NOW, NOW + timedelta(hours=6))

    assert [r.g_per_kwh for r in readings] == [322, 190, 180, 170, 160, 150, 140]
    assert not readings[0].is_forecast  # the current hour is the latest figure
    assert all(
        r.is_forecast and r.valid_to - r.valid_from == timedelta(hours=1) for r in readings[1:]
    )  # type: ignore[operator]


def test_token_from_environment(monkeypatch: pytest.MonkeyPatch, server: FixtureServer) -> None:
    monkeypatch.setenv("ELECTRICITYMAPS_TOKEN", TOKEN)
    p = ElectricityMapsProvider("DE", base_url=f"{server.url}/v3", clock=lambda: NOW)
    p.intensity_at(NOW)
    p.close()

    assert server.requests[0].headers["auth-token"] == TOKEN


def test_missing_token_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ELECTRICITYMAPS_TOKEN", raising=False)

    with pytest.raises(ConfigError, match="ELECTRICITYMAPS_TOKEN") as err:
        ElectricityMapsProvider("DE")
    assert err.value.field == "carbon_api_token" and err.value.value is None


@pytest.mark.parametrize(
    ("switch", "value", "message"),
    [
        ("fail_status", 401, "credentials refused"),
        ("fail_status", 502, "HTTP 502"),
        ("rate_limit_retry_after", 30.0, "rate limited"),
        ("malformed", True, "not JSON"),
    ],
)
def test_failures_never_show_the_token(
    provider: ElectricityMapsProvider,
    server: FixtureServer,
    caplog: pytest.LogCaptureFixture,
    switch: str,
    value: object,
    message: str,
) -> None:
    setattr(server, switch, value)
    fallback = FallbackProvider(provider, resolve_zone(country="DEU"))

    with caplog.at_level(logging.DEBUG):
        reading = fallback.intensity_at(NOW)
        flat = fallback.forecast(NOW, NOW + timedelta(hours=2))

    assert reading.fallback and all(r.fallback for r in flat)
    assert message in fallback.fallback_events[0].reason
    shown = caplog.text + " ".join(e.reason for e in fallback.fallback_events) + repr(provider)
    assert TOKEN not in shown


@pytest.mark.parametrize(
    "body",
    [
        {"zone": "DE"},
        {**LATEST, "carbonIntensity": None},
        {**LATEST, "carbonIntensity": -5},
        {**LATEST, "datetime": "yesterday"},
    ],
)
def test_bad_bodies_are_unavailable(
    provider: ElectricityMapsProvider, server: FixtureServer, body: dict[str, object]
) -> None:
    server.route("/v3/carbon-intensity/latest", Reply(body))

    with pytest.raises(IntensityUnavailableError, match="unexpected response shape"):
        provider.intensity_at(NOW)
