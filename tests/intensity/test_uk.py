"""UK Carbon Intensity provider against a local server serving recorded API responses."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from tests.http_fixtures import FIXTURES, FixtureServer, Reply

from hf_eco2ai.errors import ConfigError, IntensityUnavailableError
from hf_eco2ai.intensity.live import FallbackProvider, HttpStatusError
from hf_eco2ai.intensity.table import resolve_zone
from hf_eco2ai.intensity.uk import UKCarbonIntensityProvider, index_bands, intensity_index

T0 = datetime(2023, 3, 16, 12, 1, tzinfo=timezone.utc)
FW48H = "uk/uk_ci_national_fw48h_2023-03-16T1201Z.json"
PT24H = "uk/uk_ci_national_pt24h_2023-03-15T1201Z.json"


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server() -> Iterator[FixtureServer]:
    with FixtureServer() as srv:
        srv.route_file("/intensity/2023-03-16T12:01Z/fw48h", FW48H)
        srv.route_file("/intensity/2023-03-15T12:01Z/pt24h", PT24H)
        srv.route_file(
            "/regional/intensity/2023-03-16T12:01Z/fw48h/regionid/13",
            "uk/built_regional_regionid13_fw48h_2023-03-16T1201Z.json",
        )
        srv.route_file(
            "/regional/intensity/2023-03-16T12:01Z/fw48h/postcode/RG10",
            "uk/built_regional_postcode_RG10_fw48h_2023-03-16T1201Z.json",
        )
        srv.route_file(
            "/regional/regionid/13", "uk/built_regional_regionid13_current_2023-03-16T1200Z.json"
        )
        srv.route_file(
            "/regional/postcode/NG1", "uk/uk_ci_regional_postcode_NG1_current_2023-09-02T1600Z.json"
        )
        yield srv


def _periods(fixture: str) -> list[dict[str, object]]:
    data: list[dict[str, object]] = json.loads((FIXTURES / fixture).read_text())["data"]
    return data


def _provider(server: FixtureServer, **kwargs: object) -> Iterator[UKCarbonIntensityProvider]:
    provider = UKCarbonIntensityProvider(base_url=server.url, **kwargs)  # type: ignore[arg-type]
    yield provider
    provider.close()


@pytest.fixture
def monotonic() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
def national(
    server: FixtureServer, monotonic: FakeMonotonic
) -> Iterator[UKCarbonIntensityProvider]:
    yield from _provider(server, monotonic=monotonic)


def test_intensity_at_uses_forecast_while_actual_is_null(
    national: UKCarbonIntensityProvider,
) -> None:
    reading = national.intensity_at(T0)

    assert reading.g_per_kwh == 95  # the recorded forecast of the 12:00-12:30 period
    assert reading.is_forecast
    assert reading.valid_from == datetime(2023, 3, 16, 12, 0, tzinfo=timezone.utc)
    assert reading.valid_to == datetime(2023, 3, 16, 12, 30, tzinfo=timezone.utc)
    assert (reading.zone, reading.kind) == ("GB", "average")
    assert "CC BY 4.0" in reading.source


def test_settled_actual_wins_over_forecast(national: UKCarbonIntensityProvider) -> None:
    readings = national.history(datetime(2023, 3, 15, 12, 1, tzinfo=timezone.utc))

    periods = _periods(PT24H)
    assert len(readings) == len(periods) == 48
    for reading, period in zip(readings, periods, strict=True):
        intensity = period["intensity"]
        assert isinstance(intensity, dict)
        expected = intensity["actual"] if intensity["actual"] is not None else intensity["forecast"]
        assert reading.g_per_kwh == expected
        assert reading.is_forecast == (intensity["actual"] is None)
    assert readings[0].g_per_kwh == 101 and not readings[0].is_forecast
    assert readings[-1].is_forecast  # the last period was not settled yet


def test_cache_holds_within_the_half_hour_then_refreshes(
    national: UKCarbonIntensityProvider, server: FixtureServer, monotonic: FakeMonotonic
) -> None:
    national.intensity_at(T0)
    national.intensity_at(T0 + timedelta(hours=3))  # inside the 48 h already fetched
    assert len(server.requests) == 1

    monotonic.now += 1800.0
    national.intensity_at(T0)
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("hours", "path"),
    [
        (48, "/intensity/2023-03-16T12:01Z/fw48h"),
        (49, "/intensity/2023-03-16T12:01Z/2023-03-18T13:01Z"),
    ],
)
def test_spans_over_48_hours_use_the_range_endpoint(
    national: UKCarbonIntensityProvider, server: FixtureServer, hours: int, path: str
) -> None:
    # The fixture server has no recording for the range; only the path asked matters.
    with contextlib.suppress(IntensityUnavailableError):
        national.forecast(T0, T0 + timedelta(hours=hours))
    assert server.paths() == [path]


def test_more_than_14_days_is_refused(national: UKCarbonIntensityProvider) -> None:
    with pytest.raises(ConfigError, match="14 days"):
        national.forecast(T0, T0 + timedelta(days=15))


def test_naive_datetime_is_local_time(national: UKCarbonIntensityProvider) -> None:
    naive_local = T0.astimezone().replace(tzinfo=None)

    assert national.intensity_at(naive_local) == national.intensity_at(T0)


def test_forecast_is_clipped_sorted_and_half_hourly(national: UKCarbonIntensityProvider) -> None:
    readings = national.forecast(T0, T0 + timedelta(hours=6))

    assert len(readings) == 13  # 12:00-12:30 (contains 12:01) through 18:00-18:30
    for a, b in zip(readings, readings[1:], strict=False):
        assert a.valid_to == b.valid_from
        assert b.valid_to - b.valid_from == timedelta(minutes=30)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("kwargs", "zone"),
    [({"region_id": 13}, "GB-region-13"), ({"postcode": "rg10 9ab"}, "GB-postcode-RG10")],
)
def test_regional_range_data_is_an_object(
    server: FixtureServer, kwargs: dict[str, object], zone: str
) -> None:
    provider = UKCarbonIntensityProvider(base_url=server.url, **kwargs)  # type: ignore[arg-type]
    readings = provider.forecast(T0, T0 + timedelta(hours=48))
    provider.close()

    assert len(readings) == 96
    assert readings[0].g_per_kwh == 95 and readings[0].zone == zone
    assert all(r.is_forecast for r in readings)  # regional figures are forecasts only


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [({"region_id": 13}, 95.0), ({"postcode": "NG1"}, 312.0)],
)
def test_regional_current_data_is_a_list(
    server: FixtureServer, kwargs: dict[str, object], expected: float
) -> None:
    provider = UKCarbonIntensityProvider(base_url=server.url, **kwargs)  # type: ignore[arg-type]
    reading = provider.current()
    provider.close()

    assert reading.g_per_kwh == expected


@pytest.mark.parametrize(
    ("zone", "attrs"),
    [
        (None, {"region_id": None, "postcode": None}),
        ("national", {"region_id": None, "postcode": None}),
        ("13", {"region_id": 13}),
        ("SW1A 1AA", {"postcode": "SW1A"}),
    ],
)
def test_from_zone(zone: str | None, attrs: dict[str, object]) -> None:
    provider = UKCarbonIntensityProvider.from_zone(zone)
    provider.close()

    for name, value in attrs.items():
        assert getattr(provider, name) == value


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"region_id": 0}, "region_id"),
        ({"region_id": 18}, "region_id"),
        ({"postcode": "12345"}, "postcode"),
        ({"region_id": 1, "postcode": "RG10"}, "postcode"),
        ({"base_url": "ftp://example"}, "base_url"),
    ],
)
def test_bad_configuration_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        UKCarbonIntensityProvider(**kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


@pytest.mark.parametrize("fixture", [FW48H, PT24H])
def test_band_table_reproduces_the_apis_index(fixture: str) -> None:
    for period in _periods(fixture):
        intensity = period["intensity"]
        assert isinstance(intensity, dict)
        value = intensity["actual"] if intensity["actual"] is not None else intensity["forecast"]
        assert intensity_index(value, 2023) == intensity["index"], period


@pytest.mark.parametrize(
    ("value", "year", "band"),
    [
        (39, 2023, "very low"),
        (39.5, 2023, "low"),  # between integer bounds: the higher band
        (40, 2023, "low"),
        (290, 2023, "high"),
        (291, 2023, "very high"),
        (300, 2017, "high"),  # the same figure bands differently as the bands tighten
        (300, 2022, "high"),
        (300, 2024, "very high"),
    ],
)
def test_index_bands_change_by_year(value: float, year: int, band: str) -> None:
    assert intensity_index(value, year) == band


def test_bands_tighten_every_year() -> None:
    highs = [index_bands(year).high_max for year in range(2017, 2031)]
    assert highs == sorted(highs, reverse=True) and len(set(highs)) == len(highs)
    with pytest.raises(ConfigError):
        index_bands(2016)


@pytest.mark.parametrize(
    ("switch", "value", "message"),
    [
        ("fail_status", 500, "HTTP 500"),
        ("fail_status", 400, "HTTP 400"),
        ("rate_limit_retry_after", 120.0, "rate limited"),
        ("malformed", True, "not JSON"),
    ],
)
def test_failures_become_intensity_unavailable(
    national: UKCarbonIntensityProvider,
    server: FixtureServer,
    switch: str,
    value: object,
    message: str,
) -> None:
    setattr(server, switch, value)

    with pytest.raises(IntensityUnavailableError, match=message):
        national.intensity_at(T0)


def test_rate_limit_carries_retry_after(
    national: UKCarbonIntensityProvider, server: FixtureServer
) -> None:
    server.rate_limit_retry_after = 120.0

    with pytest.raises(HttpStatusError) as err:
        national.intensity_at(T0)
    assert (err.value.status_code, err.value.retry_after_seconds) == (429, 120.0)


def test_slow_answer_times_out_quickly(server: FixtureServer) -> None:
    server.delay_seconds = 1.0
    provider = UKCarbonIntensityProvider(base_url=server.url, timeout_seconds=0.2)

    with pytest.raises(IntensityUnavailableError, match="within 0.2 s"):
        provider.intensity_at(T0)
    provider.close()


def test_wrong_shape_is_unavailable_not_a_crash(
    national: UKCarbonIntensityProvider, server: FixtureServer
) -> None:
    server.route("/intensity/2023-03-16T12:01Z/fw48h", Reply({"data": [{"from": "x"}]}))

    with pytest.raises(IntensityUnavailableError, match="unexpected response shape"):
        national.intensity_at(T0)


def test_fallback_warns_once_and_labels_readings(
    national: UKCarbonIntensityProvider, server: FixtureServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.fail_status = 503
    table = resolve_zone(country="GBR")
    ticks = FakeMonotonic()
    provider = FallbackProvider(national, table, retry_after_seconds=60.0, monotonic=ticks)

    with caplog.at_level(logging.WARNING):
        first = [provider.intensity_at(T0 + timedelta(minutes=k)) for k in range(5)]
    assert all(r.fallback and r.g_per_kwh == table.intensity_at(T0).g_per_kwh for r in first)
    assert len(server.requests) == 1  # backing off: the API is not hammered
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
    assert [e.reason for e in provider.fallback_events] == [
        "UK Carbon Intensity API: /intensity/2023-03-16T12:01Z/fw48h answered HTTP 503 "
        "Service Unavailable"
    ]

    server.fail_status = None
    ticks.now += 61.0
    recovered = provider.intensity_at(T0)
    assert not recovered.fallback and recovered.g_per_kwh == 95
