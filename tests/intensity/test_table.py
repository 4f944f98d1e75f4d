"""Tests of the bundled grid-intensity table: lookups, precedence, errors, data sanity, speed."""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import math
import subprocess
import sys
from datetime import datetime, timezone
from importlib import resources
from typing import Any

import pytest

from hf_eco2ai.errors import ConfigError, UnknownZoneError
from hf_eco2ai.intensity import table
from hf_eco2ai.intensity.base import IntensityProvider
from hf_eco2ai.intensity.table import (
    CLOUD_PROVIDERS,
    WORLD_AVERAGE,
    StaticIntensityProvider,
    list_zones,
    lookup_cloud_region,
    lookup_country,
    lookup_region,
    resolve_zone,
)

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files("hf_eco2ai.intensity").joinpath("data", name).read_text("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def test_france_offline_is_56_g_per_kwh_for_2023_with_its_source() -> None:
    reading = resolve_zone(country="FRA").intensity_at(NOW)

    assert reading.g_per_kwh == pytest.approx(56.039)
    assert reading.year == 2023
    assert reading.zone == "FRA"
    assert reading.source == "Our World in Data / Ember 2023 (via CodeCarbon 3.3.2)"
    assert reading.kind == "average"
    assert not reading.fallback and not reading.is_forecast


def test_static_provider_is_an_intensity_provider_that_never_changes() -> None:
    provider = resolve_zone(country="DEU")

    assert isinstance(provider, IntensityProvider)
    assert (
        provider.intensity_at(NOW)
        == provider.intensity_at(datetime(1999, 1, 1))
        == provider.reading
    )


# Each level present or absent, all 16 combinations: the highest one present decides.
LEVELS: list[tuple[str, dict[str, Any], str]] = [
    ("explicit", {"grid_carbon_intensity": 123.0}, "custom"),
    ("cloud", {"cloud_provider": "aws", "cloud_region": "eu-west-3"}, "aws:eu-west-3"),
    ("region", {"region": "US-WECC"}, "US-WECC"),
    ("country", {"country": "FRA"}, "FRA"),
]


@pytest.mark.parametrize(
    "present",
    list(itertools.product([True, False], repeat=len(LEVELS))),
    ids=lambda p: "+".join(n for (n, _, _), on in zip(LEVELS, p, strict=True) if on) or "none",
)
def test_precedence_highest_configured_level_wins(
    present: tuple[bool, ...], caplog: pytest.LogCaptureFixture
) -> None:
    kwargs: dict[str, Any] = {}
    for (_, fields, _), on in zip(LEVELS, present, strict=True):
        if on:
            kwargs.update(fields)
    expected = next((zone for (_, _, zone), on in zip(LEVELS, present, strict=True) if on), "WORLD")

    with caplog.at_level(logging.WARNING, logger="hf_eco2ai.intensity.table"):
        reading = resolve_zone(**kwargs).intensity_at(NOW)

    assert reading.zone == expected
    assert bool(caplog.records) == (expected == "WORLD")


@pytest.mark.parametrize(
    ("expected", "kwargs"),
    [
        (123.0, {"grid_carbon_intensity": 123.0}),
        (51.1, {"cloud_provider": "aws", "cloud_region": "eu-west-3"}),
        (322.17, {"region": "US-WECC"}),
        (56.039, {"country": "FRA"}),
    ],
)
def test_each_level_gives_its_own_figure(expected: float, kwargs: dict[str, Any]) -> None:
    assert resolve_zone(**kwargs).reading.g_per_kwh == pytest.approx(expected)


def test_explicit_intensity_is_labelled_user_configured() -> None:
    reading = resolve_zone(grid_carbon_intensity=0, country="FRA").reading

    assert (reading.g_per_kwh, reading.source, reading.zone) == (0.0, "user-configured", "custom")
    assert reading.year is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"grid_carbon_intensity": 200.0, "country": "Atlantis", "cloud_region": "moon-1"},
        {"cloud_region": "eu-west-3", "region": "XX-NOPE", "country": "Atlantis"},
        {"region": "WECC", "country": "Atlantis"},
    ],
)
def test_fields_below_the_deciding_one_are_not_checked(kwargs: dict[str, Any]) -> None:
    # An explicit figure must be able to stand in for a zone the table lacks.
    resolve_zone(**kwargs)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, -math.inf, True, "300"])
def test_unusable_explicit_intensity_raises_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_zone(grid_carbon_intensity=bad)

    assert caught.value.field == "grid_carbon_intensity"
    assert repr(bad) in str(caught.value)


@pytest.mark.parametrize(
    ("given", "iso3"),
    [
        ("FRA", "FRA"),
        ("fra", "FRA"),
        ("FR", "FRA"),
        ("fr", "FRA"),
        ("France", "FRA"),
        ("FRANCE", "FRA"),
        (" france ", "FRA"),
        ("French Republic", "FRA"),
        ("GB", "GBR"),
        ("UK", "GBR"),
        ("united kingdom", "GBR"),
        ("Russia", "RUS"),
        ("Russian Federation", "RUS"),
        ("us", "USA"),
        ("United States of America", "USA"),
        ("cote d'ivoire", "CIV"),
    ],
)
def test_country_by_alpha3_alpha2_or_name_any_case(given: str, iso3: str) -> None:
    assert lookup_country(given).zone == iso3
    assert resolve_zone(country=given).reading == lookup_country(iso3)


@pytest.mark.parametrize(
    ("field", "kwargs", "expected"),
    [
        ("country", {"country": "Frnace"}, ["France (FRA)"]),
        ("country", {"country": "Germny"}, ["Germany (DEU)"]),
        ("region", {"region": "US-WECX"}, ["US-WECC"]),
        ("region", {"region": "serk"}, ["US-SERC"]),
        (
            "cloud_region",
            {"cloud_provider": "aws", "cloud_region": "us-west-9"},
            ["us-west-1", "us-west-2"],
        ),
        ("cloud_region", {"cloud_provider": "azure", "cloud_region": "West Eurpe"}, ["westeurope"]),
        ("cloud_region", {"cloud_region": "europe-west99"}, ["europe-west9"]),
    ],
)
def test_unknown_zone_raises_with_close_matches(
    field: str, kwargs: dict[str, Any], expected: list[str]
) -> None:
    with pytest.raises(UnknownZoneError) as caught:
        resolve_zone(**kwargs)

    error = caught.value
    assert isinstance(error, ConfigError)
    assert error.field == field
    assert set(expected) <= set(error.suggestions)
    assert repr(expected[0]) in str(error)


def test_aws_suggestions_stay_within_aws() -> None:
    with pytest.raises(UnknownZoneError) as caught:
        lookup_cloud_region("aws", "us-west-9")

    aws_ids = {
        e.zone.removeprefix("aws:") for e in list_zones("cloud") if e.zone.startswith("aws:")
    }
    assert set(caught.value.suggestions) <= aws_ids


@pytest.mark.parametrize("given", ["XX", "Atlantis", "CAF", "Central African Republic"])
def test_country_missing_from_table_raises_unknown_zone(given: str) -> None:
    # CAF is a real country, but its source row (0.0 g/kWh) was not usable and is not shipped.
    with pytest.raises(UnknownZoneError) as caught:
        lookup_country(given)

    assert caught.value.field == "country"
    assert caught.value.value == given


def test_world_average_is_used_and_warned_when_nothing_is_configured(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="hf_eco2ai.intensity.table"):
        reading = resolve_zone(country="  ", cloud_region="").intensity_at(NOW)

    assert reading == WORLD_AVERAGE
    assert (reading.g_per_kwh, reading.zone) == (475.0, "WORLD")
    assert "world average" in reading.source
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "world average" in record.getMessage()


def test_no_warning_when_a_zone_is_configured(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="hf_eco2ai.intensity.table"):
        resolve_zone(country="FRA")

    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("given", ["US-WECC", "us-wecc", "US_WECC", "WECC", "wecc", " WECC "])
def test_region_by_zone_or_bare_code(given: str) -> None:
    reading = lookup_region(given)

    assert (reading.zone, reading.g_per_kwh, reading.year) == ("US-WECC", 322.17, 2020)
    assert "eGRID2020" in reading.source


@pytest.mark.parametrize("given", ["West Europe", "westeurope", "WESTEUROPE", "WestEurope"])
def test_azure_accepts_display_name_and_programmatic_id(given: str) -> None:
    reading = lookup_cloud_region("azure", given)

    assert (reading.zone, reading.g_per_kwh) == ("azure:westeurope", 328.4)
    assert lookup_cloud_region(None, given) == reading


@pytest.mark.parametrize(
    ("provider", "given", "zone"),
    [
        ("AWS", "eu-west-3", "aws:eu-west-3"),
        (None, "us-east-1a", "aws:us-east-1"),
        ("gcp", "us-west1-b", "gcp:us-west1"),
        (None, "europe-west9", "gcp:europe-west9"),
        ("Azure", "UK South", "azure:uksouth"),
        ("gcp", "me-central1", "gcp:me-central1"),
    ],
)
def test_cloud_region_forms(provider: str | None, given: str, zone: str) -> None:
    assert lookup_cloud_region(provider, given).zone == zone


def test_cloud_region_of_the_wrong_provider_is_unknown() -> None:
    with pytest.raises(UnknownZoneError):
        lookup_cloud_region("gcp", "eu-west-3")


def test_unknown_cloud_provider_names_accepted_values() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_zone(cloud_provider="ibm", cloud_region="eu-de")

    assert caught.value.field == "cloud_provider"
    assert "aws, azure, gcp" in str(caught.value)


def test_region_at_several_providers_without_provider_is_ambiguous() -> None:
    # No bundled id is shared today; give GCP an alias that AWS also has.
    tables = table._tables()
    cloud = {
        **tables.cloud,
        "gcp": {**tables.cloud["gcp"], "us-east-1": tables.cloud["gcp"]["us-east1"]},
    }

    with pytest.raises(ConfigError) as caught:
        table._find_cloud_region(cloud, CLOUD_PROVIDERS, "us-east-1")

    assert not isinstance(caught.value, UnknownZoneError)
    assert caught.value.field == "cloud_region"
    assert "aws, gcp" in str(caught.value)
    assert table._find_cloud_region(cloud, ("aws",), "us-east-1").zone == "aws:us-east-1"


def test_gcp_prefers_googles_published_figure() -> None:
    reading = lookup_cloud_region("gcp", "us-central1")

    # Google 2023: 430; CCF's copy of Google 2020 grid: 454; CCF cfe_adjusted: 31.78.
    assert (reading.g_per_kwh, reading.year) == (430.0, 2023)
    assert reading.source == "Google Cloud region carbon data 2023 (via CodeCarbon 3.3.2)"


def test_gcp_falls_back_to_ccf_grid_figure_never_cfe_adjusted() -> None:
    google = [r for r in _rows("gcp_region_intensity_google.csv") if r["region"] != "us-central1"]

    merged = dict(table._gcp_entries(google, _rows("cloud_region_intensity_ccf.csv")))

    reading = merged["us-central1"].reading
    assert (reading.g_per_kwh, reading.year) == (454.0, 2020)
    assert reading.source == "Google Cloud region carbon data 2020 (via Cloud Carbon Footprint)"


def test_gcp_without_google_rows_uses_only_grid_variant() -> None:
    ccf = _rows("cloud_region_intensity_ccf.csv")
    grid = {r["region"]: float(r["gco2e_per_kwh"]) for r in ccf if r["gcp_variant"] == "grid"}

    # Both row orders: the choice must not depend on which variant comes last in the file.
    merged = dict(table._gcp_entries([], ccf))
    merged_reversed = dict(table._gcp_entries([], ccf[::-1]))

    assert {region: e.reading.g_per_kwh for region, e in merged.items()} == grid
    assert merged_reversed == merged


DATA_FILES = [
    "country_intensity_owid.csv",
    "gcp_region_intensity_google.csv",
    "cloud_region_intensity_ccf.csv",
    "grid_region_intensity.csv",
]


@pytest.mark.parametrize("name", DATA_FILES)
def test_every_bundled_row_is_positive_and_below_2000(name: str) -> None:
    values = [float(row["gco2e_per_kwh"]) for row in _rows(name)]

    assert values
    assert all(0 < v < 2000 for v in values)


def test_every_zone_has_a_source_year_and_unique_id() -> None:
    entries = list_zones()
    zones = [e.zone for e in entries]

    assert len(zones) == len(set(zones))
    assert {k: len(list_zones(k)) for k in ("country", "region", "cloud")} == {
        "country": 212,
        "region": 5,
        "cloud": 25 + 57 + 40,
    }
    for entry in entries:
        reading = entry.reading
        assert reading.zone == entry.zone and entry.name and reading.source
        assert 0 < reading.g_per_kwh < 2000
        assert reading.year is None or 2009 <= reading.year <= 2023


def test_alpha3_and_own_names_need_no_pycountry() -> None:
    script = """
import json, sys, time
from hf_eco2ai.intensity.table import resolve_zone
start = time.perf_counter()
resolve_zone(country="FRA")
first = time.perf_counter()
for _ in range(200):
    resolve_zone(country="FRA")
    resolve_zone(country="france")
done = time.perf_counter()
print(json.dumps({"first_s": first - start, "each_s": (done - first) / 400,
                  "pycountry": "pycountry" in sys.modules}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    figures = json.loads(out.stdout)

    # Speed itself is a benchmark's business; here only that no slow import happened.
    assert figures["pycountry"] is False


def test_resolve_zone_returns_a_static_provider() -> None:
    assert isinstance(resolve_zone(country="FRA"), StaticIntensityProvider)
