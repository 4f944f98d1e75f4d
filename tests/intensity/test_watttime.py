"""WattTime provider against a local server answering in the API v3 shape.

Shapes follow WattTime's v3 documentation and migration guide (``/login`` -> ``{"token"}``;
``/v3/forecast`` and ``/v3/historical`` -> ``{"data": [{"point_time", "value"}], "meta":
{"data_point_period_seconds", "region", "signal_type", "model", "units", ...}}``). Values are
illustrative; no recording is available.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from tests.http_fixtures import FixtureServer, Recorded, Reply

from hf_eco2ai.errors import ConfigError, IntensityUnavailableError
from hf_eco2ai.intensity.live import FallbackProvider
from hf_eco2ai.intensity.table import resolve_zone
from hf_eco2ai.intensity.watttime import WattTimeProvider, lbs_per_mwh_to_g_per_kwh

USER, PASSWORD = "wt-user", "wt-password-not-a-secret"
NOW = datetime(2024, 5, 21, 10, 0, tzinfo=timezone.utc)


def _body(
    start: datetime, values: list[float], units: str = "lbs_co2_per_mwh"
) -> dict[str, object]:
    points = [
        {"point_time": (start + timedelta(minutes=5 * k)).isoformat(), "value": v}
        for k, v in enumerate(values)
    ]
    meta = {
        "data_point_period_seconds": 300,
        "region": "CAISO_NORTH",
        "warnings": [],
        "signal_type": "co2_moer",
        "model": {"date": "2023-03-01"},
        "units": units,
        "generated_at_period_seconds": 300,
        "generated_at": start.isoformat(),
    }
    return {"data": points, "meta": meta}


class Tokens:
    """Issues a new token per login; the API accepts only the latest."""

    def __init__(self) -> None:
        self.issued = 0

    def login(self, request: Recorded) -> Reply:
        expected = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return Reply({"error": "bad credentials"}, 401)
        self.issued += 1
        return Reply({"token": f"jwt-{self.issued}"})

    def guarded(self, body: dict[str, object]) -> object:
        def reply(request: Recorded) -> Reply:
            if request.headers.get("authorization") != f"Bearer jwt-{self.issued}":
                return Reply({"error": "expired"}, 401)
            return Reply(body)

        return reply


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()


@pytest.fixture
def server(tokens: Tokens) -> Iterator[FixtureServer]:
    with FixtureServer() as srv:
        srv.route("/login", tokens.login)
        srv.route("/v3/forecast", tokens.guarded(_body(NOW, [1000.0, 900.0, 800.0, 700.0])))
        srv.route(
            "/v3/historical", tokens.guarded(_body(NOW - timedelta(hours=1), [1100.0, 1200.0]))
        )
        yield srv


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture
def provider(server: FixtureServer, ticks: Ticks) -> Iterator[WattTimeProvider]:
    p = WattTimeProvider(
        "CAISO_NORTH",
        username=USER,
        password=PASSWORD,
        base_url=server.url,
        clock=lambda: NOW,
        monotonic=ticks,
    )
    yield p
    p.close()


@pytest.mark.parametrize(("lbs", "grams"), [(1000.0, 453.59237), (0.0, 0.0), (2204.62262, 1000.0)])
def test_lbs_per_mwh_to_g_per_kwh(lbs: float, grams: float) -> None:
    assert lbs_per_mwh_to_g_per_kwh(lbs) == pytest.approx(grams, rel=1e-9)


def test_current_moer_is_converted_and_marked_marginal(
    provider: WattTimeProvider, server: FixtureServer
) -> None:
    reading = provider.intensity_at(NOW + timedelta(minutes=2))

    assert reading.g_per_kwh == pytest.approx(453.59237)
    assert reading.kind == "marginal" and reading.is_forecast
    assert reading.valid_to - reading.valid_from == timedelta(minutes=5)  # type: ignore[operator]
    assert "model 2023-03-01" in reading.source
    assert server.paths() == ["/login", "/v3/forecast"]
    assert server.requests[1].query == {"region": "CAISO_NORTH", "signal_type": "co2_moer"}


def test_past_moments_use_historical(provider: WattTimeProvider, server: FixtureServer) -> None:
    reading = provider.intensity_at(NOW - timedelta(minutes=57))

    assert reading.g_per_kwh == pytest.approx(lbs_per_mwh_to_g_per_kwh(1100.0))
    assert not reading.is_forecast
    assert server.requests[-1].query["start"] == "2024-05-21T08:58:00Z"


def test_forecast_spanning_past_and_future_joins_both(provider: WattTimeProvider) -> None:
    readings = provider.forecast(NOW - timedelta(hours=1), NOW + timedelta(minutes=20))

    assert [r.is_forecast for r in readings] == [False, False, True, True, True, True]


def test_token_is_reused_then_renewed_after_expiry(
    provider: WattTimeProvider, server: FixtureServer, ticks: Ticks
) -> None:
    provider.forecast(NOW, NOW + timedelta(minutes=10))
    ticks.now += 400.0  # forecast cache expired, token still valid
    provider.forecast(NOW, NOW + timedelta(minutes=10))
    assert provider.logins == 1

    ticks.now += 30 * 60.0
    provider.forecast(NOW, NOW + timedelta(minutes=10))
    assert provider.logins == 2


def test_a_revoked_token_triggers_one_relogin(
    provider: WattTimeProvider, server: FixtureServer, tokens: Tokens, ticks: Ticks
) -> None:
    provider.forecast(NOW, NOW + timedelta(minutes=10))
    tokens.issued += 1  # the server now only accepts a token we do not have
    ticks.now += 400.0

    assert len(provider.forecast(NOW, NOW + timedelta(minutes=10))) == 2
    assert server.paths()[-3:] == ["/v3/forecast", "/login", "/v3/forecast"]


def test_wrong_password_is_unavailable_and_never_logged(
    server: FixtureServer, caplog: pytest.LogCaptureFixture
) -> None:
    p = WattTimeProvider(
        "CAISO_NORTH", username=USER, password="wrong-secret-pw", base_url=server.url
    )
    fallback = FallbackProvider(p, resolve_zone(country="USA"))

    with caplog.at_level(logging.DEBUG):
        reading = fallback.intensity_at(NOW)
    p.close()

    assert reading.fallback
    assert "login refused" in fallback.fallback_events[0].reason
    assert "wrong-secret-pw" not in caplog.text + fallback.fallback_events[0].reason


@pytest.mark.parametrize(
    "body",
    [
        _body(NOW, [1000.0], units="kg_co2_per_mwh"),  # units we do not convert are refused
        {
            "data": [{"point_time": "2024-05-21T10:00:00+00:00"}],
            "meta": {"units": "lbs_co2_per_mwh"},
        },
        {"data": []},
    ],
)
def test_unexpected_bodies_are_unavailable(
    provider: WattTimeProvider, server: FixtureServer, tokens: Tokens, body: dict[str, object]
) -> None:
    server.route("/v3/forecast", tokens.guarded(body))

    with pytest.raises(IntensityUnavailableError, match="unexpected response shape"):
        provider.intensity_at(NOW)


def test_login_without_token_is_unavailable(
    provider: WattTimeProvider, server: FixtureServer
) -> None:
    server.route("/login", Reply({"message": "ok"}))

    with pytest.raises(IntensityUnavailableError, match="without a token"):
        provider.intensity_at(NOW)


@pytest.mark.parametrize("missing", ["WATTTIME_USERNAME", "WATTTIME_PASSWORD"])
def test_credentials_come_from_environment(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    monkeypatch.setenv("WATTTIME_USERNAME", USER)
    monkeypatch.setenv("WATTTIME_PASSWORD", PASSWORD)
    WattTimeProvider("CAISO_NORTH").close()

    monkeypatch.delenv(missing)
    with pytest.raises(ConfigError, match=missing):
        WattTimeProvider("CAISO_NORTH")
