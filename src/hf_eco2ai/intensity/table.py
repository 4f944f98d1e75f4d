"""Bundled annual grid intensity (g CO2eq/kWh) by country, grid region and cloud region.

Reads the CSV files in ``intensity/data`` (origins and licences in ``data/SOURCES.md``) once,
lazily, on first use; no network. Side effect: :func:`resolve_zone` logs a WARNING when it
has to fall back to the world average.
"""

from __future__ import annotations

import csv
import difflib
import functools
import io
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Literal

from hf_eco2ai.errors import ConfigError, UnknownZoneError
from hf_eco2ai.intensity.base import IntensityReading

logger = logging.getLogger(__name__)

CloudProvider = Literal["aws", "azure", "gcp"]
CLOUD_PROVIDERS: tuple[CloudProvider, ...] = ("aws", "azure", "gcp")
ZoneKind = Literal["country", "region", "cloud"]

#: Used only when nothing locates the run. The IEA figure is a CO2 (not CO2e) generation
#: average, so it is a rough stand-in next to the lifecycle figures of the country table.
WORLD_AVERAGE = IntensityReading(
    g_per_kwh=475.0,
    source="IEA Global Energy & CO2 Status Report 2019, world average (via CodeCarbon 3.3.2)",
    zone="WORLD",
    year=2018,
)

_USER_SOURCE = "user-configured"
_USER_ZONE = "custom"

_COUNTRY_FILE = "country_intensity_owid.csv"
_GOOGLE_FILE = "gcp_region_intensity_google.csv"
_CCF_FILE = "cloud_region_intensity_ccf.csv"
_REGION_FILE = "grid_region_intensity.csv"

# "UK" is ISO's exceptionally reserved code for the United Kingdom: common, but not in pycountry.
_COUNTRY_ALIASES = {"UK": "GBR"}

# CCF's source_name -> (publisher and dataset, data year); see data/SOURCES.md.
_CCF_SOURCES: dict[str, tuple[str, int | None]] = {
    "EPA": ("US EPA eGRID2020", 2020),
    "EEA": ("EEA CO2 emission intensity of electricity generation", None),
    "carbonfootprint.com": ("carbonfootprint.com 2021 electricity factors", 2021),
    "Google": ("Google Cloud region carbon data 2020", 2020),
}

# An availability zone names a data centre inside a region: "us-east-1a", "us-west1-b".
_AVAILABILITY_ZONE = {"aws": re.compile(r"^(.*\d)[a-z]$"), "gcp": re.compile(r"^(.*\d)-[a-z]$")}


@dataclass(frozen=True)
class StaticIntensityProvider:
    """An intensity provider whose figure does not change over the run.

    Attributes:
        reading: The figure answered for every moment.
    """

    reading: IntensityReading

    def intensity_at(self, when: datetime) -> IntensityReading:
        """Return the fixed reading, whatever ``when`` is."""
        return self.reading


@dataclass(frozen=True)
class ZoneEntry:
    """One row of the bundled table, for listings such as the CLI's.

    Attributes:
        kind: ``country``, ``region`` (sub-national grid) or ``cloud`` (provider region).
        zone: The identifier to configure, e.g. ``"FRA"``, ``"US-WECC"``, ``"aws:eu-west-3"``.
        name: A human-readable name, e.g. ``"France"``, ``"West Europe"``.
        reading: The intensity figure with its source and year.
    """

    kind: ZoneKind
    zone: str
    name: str
    reading: IntensityReading


@dataclass(frozen=True)
class _Tables:
    countries: dict[str, ZoneEntry]  # by ISO alpha-3
    country_names: dict[str, str]  # casefolded name -> alpha-3
    regions: dict[str, ZoneEntry]  # by zone, e.g. "US-WECC"
    region_codes: dict[str, str]  # unique bare code ("WECC") -> zone
    cloud: dict[str, dict[str, ZoneEntry]]  # provider -> lookup key -> entry


def resolve_zone(
    *,
    grid_carbon_intensity: float | None = None,
    cloud_provider: str | None = None,
    cloud_region: str | None = None,
    region: str | None = None,
    country: str | None = None,
) -> StaticIntensityProvider:
    """Pick the grid intensity for a run from its configuration.

    Precedence: an explicit ``grid_carbon_intensity``, then the cloud region, then the
    sub-national ``region``, then the ``country``, then the world average (with a WARNING).
    Fields below the one that decides are not checked, so an explicit intensity can stand in
    for a zone the table lacks. Blank strings count as not set.

    Args:
        grid_carbon_intensity: Grams CO2eq per kWh to use as is.
        cloud_provider: ``aws``, ``azure`` or ``gcp`` (case-insensitive).
        cloud_region: A region id of that provider (Azure also by display name); without a
            provider it is looked up across all providers.
        region: A sub-national grid region, e.g. ``"US-WECC"`` or ``"WECC"``.
        country: ISO 3166 alpha-3, alpha-2 or English name, case-insensitive.

    Returns:
        A provider answering the chosen reading at any time.

    Raises:
        ConfigError: The intensity is negative or not finite, the provider is unknown, or a
            cloud region without a provider exists at several providers.
        UnknownZoneError: The cloud region, region or country is not in the table.
    """
    if grid_carbon_intensity is not None:
        return StaticIntensityProvider(_user_reading(grid_carbon_intensity))

    provider = _provider_or_none(cloud_provider)
    reading = _zone_reading(provider, _clean(cloud_region), _clean(region), _clean(country))
    if reading is None:
        logger.warning(
            "No cloud region, region or country configured: using the world average of "
            "%.0f g CO2/kWh (%s). Set `country` (or `cloud_region`) for a better estimate.",
            WORLD_AVERAGE.g_per_kwh,
            WORLD_AVERAGE.source,
        )
        reading = WORLD_AVERAGE

    logger.debug(
        "Grid intensity %s: %.1f g/kWh (%s)", reading.zone, reading.g_per_kwh, reading.source
    )
    return StaticIntensityProvider(reading)


def lookup_country(code_or_name: str) -> IntensityReading:
    """Return a country's annual intensity.

    Args:
        code_or_name: ISO 3166 alpha-3 (``"FRA"``), alpha-2 (``"FR"``) or name
            (``"France"``), case-insensitive.

    Raises:
        UnknownZoneError: The country is unknown or not in the table; carries close matches.
    """
    tables = _tables()
    return tables.countries[_country_iso3(code_or_name, tables)].reading


def lookup_region(code: str) -> IntensityReading:
    """Return a sub-national grid region's intensity, e.g. ``"US-WECC"`` or ``"wecc"``.

    Raises:
        UnknownZoneError: The region is not in the table; carries close matches.
    """
    tables = _tables()
    key = code.strip().upper().replace("_", "-")
    zone = key if key in tables.regions else tables.region_codes.get(key)
    if zone is None:
        raise UnknownZoneError("region", code, _region_suggestions(key, tables))
    return tables.regions[zone].reading


def lookup_cloud_region(provider: str | None, region: str) -> IntensityReading:
    """Return a cloud region's intensity.

    Args:
        provider: ``aws``, ``azure`` or ``gcp`` (case-insensitive); None searches all three.
        region: The provider's region id (``"eu-west-3"``, ``"westeurope"``,
            ``"europe-west9"``), an Azure display name (``"West Europe"``) or an availability
            zone (``"us-east-1a"``, ``"us-west1-b"``).

    Raises:
        ConfigError: Unknown provider, or ``provider`` is None and several providers have
            a region of that name.
        UnknownZoneError: The region is not in the table; carries close matches.
    """
    providers = CLOUD_PROVIDERS if provider is None else (_provider(provider),)
    return _find_cloud_region(_tables().cloud, providers, region).reading


def list_zones(kind: ZoneKind | None = None) -> list[ZoneEntry]:
    """Return every bundled zone (or those of one kind), sorted by kind then zone."""
    tables = _tables()
    # Azure entries are indexed under two keys: dedupe.
    cloud = dict.fromkeys(e for by_key in tables.cloud.values() for e in by_key.values())
    entries = [*tables.countries.values(), *tables.regions.values(), *cloud]
    order = {"country": 0, "region": 1, "cloud": 2}
    chosen = [e for e in entries if kind is None or e.kind == kind]
    return sorted(chosen, key=lambda e: (order[e.kind], e.zone))


def _user_reading(g_per_kwh: float) -> IntensityReading:
    if isinstance(g_per_kwh, bool) or not isinstance(g_per_kwh, int | float):
        raise ConfigError(
            "grid_carbon_intensity", g_per_kwh, f"{g_per_kwh!r} is not a number of g CO2/kWh."
        )
    if not math.isfinite(g_per_kwh) or g_per_kwh < 0:
        raise ConfigError(
            "grid_carbon_intensity",
            g_per_kwh,
            f"{g_per_kwh!r} is not a usable intensity: give a finite number of g CO2/kWh >= 0.",
        )
    return IntensityReading(g_per_kwh=float(g_per_kwh), source=_USER_SOURCE, zone=_USER_ZONE)


def _zone_reading(
    provider: CloudProvider | None,
    cloud_region: str | None,
    region: str | None,
    country: str | None,
) -> IntensityReading | None:
    if cloud_region is not None:
        return lookup_cloud_region(provider, cloud_region)
    if provider is not None:
        logger.debug("cloud_provider %r given without cloud_region: not used", provider)
    if region is not None:
        return lookup_region(region)
    if country is not None:
        return lookup_country(country)
    return None


def _clean(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    return value.strip()


def _provider_or_none(value: str | None) -> CloudProvider | None:
    cleaned = _clean(value)
    return None if cleaned is None else _provider(cleaned)


def _provider(value: str) -> CloudProvider:
    key = value.strip().lower()
    for provider in CLOUD_PROVIDERS:
        if key == provider:
            return provider
    accepted = ", ".join(CLOUD_PROVIDERS)
    raise ConfigError("cloud_provider", value, f"{value!r} is not one of: {accepted}.")


def _country_iso3(value: str, tables: _Tables) -> str:
    key = value.strip()
    upper = key.upper()
    if upper in tables.countries:
        return upper

    iso3 = tables.country_names.get(key.casefold()) or _COUNTRY_ALIASES.get(upper)
    if iso3 is not None:
        return iso3

    iso3 = _pycountry_alpha3(key)
    if iso3 is None:
        raise UnknownZoneError("country", value, _country_suggestions(key, tables))
    if iso3 not in tables.countries:
        # A real country the table lacks: near-miss spellings would only mislead.
        raise UnknownZoneError("country", value, [])
    return iso3


def _pycountry_alpha3(value: str) -> str | None:
    # Imported here: pycountry takes ~90 ms to load, and alpha-3 codes and our own names
    # (the usual inputs) never need it.
    import pycountry

    try:
        found = pycountry.countries.lookup(value)
    except LookupError:
        return None
    return str(found.alpha_3)


def _country_suggestions(value: str, tables: _Tables) -> list[str]:
    labels = {iso3: f"{e.name} ({iso3})" for iso3, e in tables.countries.items()}
    candidates = {name: iso3 for name, iso3 in tables.country_names.items()}
    candidates.update({iso3.casefold(): iso3 for iso3 in tables.countries})
    return _close(value.casefold(), candidates, labels)


def _region_suggestions(key: str, tables: _Tables) -> list[str]:
    candidates = {zone: zone for zone in tables.regions}
    candidates.update(tables.region_codes)
    candidates.update({e.name.upper(): zone for zone, e in tables.regions.items()})
    return _close(key, candidates, {zone: zone for zone in tables.regions})


def _close(value: str, candidates: Mapping[str, str], labels: Mapping[str, str]) -> list[str]:
    """Close matches of ``value`` among candidate keys, as labels of their targets, deduped."""
    matches = difflib.get_close_matches(value, list(candidates), n=6, cutoff=0.6)
    targets = dict.fromkeys(candidates[m] for m in matches)
    return [labels[t] for t in targets][:3]


def _find_cloud_region(
    cloud: Mapping[str, Mapping[str, ZoneEntry]], providers: Iterable[str], region: str
) -> ZoneEntry:
    providers = tuple(providers)
    found = {p: e for p in providers if (e := _cloud_entry(cloud[p], p, region)) is not None}
    if len(found) == 1:
        return next(iter(found.values()))
    if found:
        listed = ", ".join(sorted(found))
        raise ConfigError(
            "cloud_region",
            region,
            f"{region!r} is a region of several providers ({listed}): set cloud_provider.",
        )
    raise UnknownZoneError("cloud_region", region, _cloud_suggestions(cloud, providers, region))


def _cloud_entry(by_key: Mapping[str, ZoneEntry], provider: str, region: str) -> ZoneEntry | None:
    key = _cloud_key(provider, region)
    if key in by_key:
        return by_key[key]

    pattern = _AVAILABILITY_ZONE.get(provider)
    match = pattern.match(key) if pattern else None
    return by_key.get(match.group(1)) if match else None


def _cloud_key(provider: str, region: str) -> str:
    key = region.strip().casefold()
    # Azure's programmatic ids are its display names, lowercased, without spaces.
    return key.replace(" ", "") if provider == "azure" else key


def _cloud_suggestions(
    cloud: Mapping[str, Mapping[str, ZoneEntry]], providers: tuple[str, ...], region: str
) -> list[str]:
    candidates: dict[str, str] = {}
    for provider in providers:
        for key, entry in cloud[provider].items():
            region_id = entry.zone.split(":", 1)[1]
            candidates.update({key: region_id, entry.name.casefold(): region_id})
    labels = {region_id: region_id for region_id in candidates.values()}
    return _close(region.strip().casefold(), candidates, labels)


@functools.cache
def _tables() -> _Tables:
    countries = {e.zone: e for e in _country_entries(_read_csv(_COUNTRY_FILE))}
    regions = {e.zone: e for e in _region_entries(_read_csv(_REGION_FILE))}
    ccf_rows = _read_csv(_CCF_FILE)
    cloud = {
        "aws": _keyed("aws", _ccf_entries(ccf_rows, "aws")),
        "azure": _keyed("azure", _ccf_entries(ccf_rows, "azure")),
        "gcp": _keyed("gcp", _gcp_entries(_read_csv(_GOOGLE_FILE), ccf_rows)),
    }
    logger.debug("Loaded %d countries and %d grid regions", len(countries), len(regions))
    return _Tables(
        countries=countries,
        country_names={e.name.casefold(): iso3 for iso3, e in countries.items()},
        regions=regions,
        region_codes=_unique_codes(regions),
        cloud=cloud,
    )


def _read_csv(name: str) -> list[dict[str, str]]:
    text = resources.files("hf_eco2ai.intensity").joinpath("data", name).read_text("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def _g_per_kwh(row: Mapping[str, str], name: str) -> float:
    value = float(row["gco2e_per_kwh"])
    if not 0 < value < 2000:
        raise ValueError(f"bundled {name} has an unusable intensity in row {dict(row)!r}")
    return value


def _country_entries(rows: Iterable[Mapping[str, str]]) -> Iterable[ZoneEntry]:
    for row in rows:
        year = int(row["year"])
        reading = IntensityReading(
            g_per_kwh=_g_per_kwh(row, _COUNTRY_FILE),
            source=f"Our World in Data / Ember {year} (via CodeCarbon 3.3.2)",
            zone=row["iso3"],
            year=year,
        )
        yield ZoneEntry("country", row["iso3"], row["country_name"], reading)


def _region_entries(rows: Iterable[Mapping[str, str]]) -> Iterable[ZoneEntry]:
    for row in rows:
        reading = IntensityReading(
            g_per_kwh=_g_per_kwh(row, _REGION_FILE),
            source=row["source"],
            zone=row["zone"],
            year=int(row["year"]) if row["year"] else None,
        )
        yield ZoneEntry("region", row["zone"], row["name"], reading)


def _unique_codes(regions: Mapping[str, ZoneEntry]) -> dict[str, str]:
    """Map each bare code ("WECC") to its zone ("US-WECC") when no other country shares it."""
    by_code: dict[str, list[str]] = {}
    for zone in regions:
        by_code.setdefault(zone.split("-", 1)[1], []).append(zone)
    return {code: zones[0] for code, zones in by_code.items() if len(zones) == 1}


def _ccf_entries(rows: Iterable[Mapping[str, str]], provider: str) -> list[tuple[str, ZoneEntry]]:
    """(display name, entry) for CCF rows of ``provider``; GCP rows only of the grid variant."""
    entries = []
    for row in rows:
        if row["provider"] != provider or row["gcp_variant"] == "cfe_adjusted":
            continue
        region_id = _cloud_key(provider, row["region"])
        publisher, year = _CCF_SOURCES[row["source_name"]]
        reading = IntensityReading(
            g_per_kwh=_g_per_kwh(row, _CCF_FILE),
            source=f"{publisher} (via Cloud Carbon Footprint)",
            zone=f"{provider}:{region_id}",
            year=year,
        )
        entries.append((row["region"], ZoneEntry("cloud", reading.zone, row["region"], reading)))
    return entries


def _gcp_entries(
    google_rows: Iterable[Mapping[str, str]], ccf_rows: Iterable[Mapping[str, str]]
) -> list[tuple[str, ZoneEntry]]:
    """GCP regions: Google's own (newer) figure where published, else CCF's copy of it.

    CCF's ``cfe_adjusted`` variant is never used: it scales the grid factor by
    (1 - Google's carbon-free-energy share), crediting Google's clean-energy purchases. That
    is a market-based figure, not the average intensity of the grid the machines draw from
    that every other row gives, and using it would flatter GCP against AWS and Azure.
    """
    merged = dict(_ccf_entries(ccf_rows, "gcp"))
    for row in google_rows:
        year = int(row["year"])
        reading = IntensityReading(
            g_per_kwh=_g_per_kwh(row, _GOOGLE_FILE),
            source=f"Google Cloud region carbon data {year} (via CodeCarbon 3.3.2)",
            zone=f"gcp:{row['region']}",
            year=year,
        )
        merged[row["region"]] = ZoneEntry("cloud", reading.zone, row["region"], reading)
    return list(merged.items())


def _keyed(provider: str, entries: Iterable[tuple[str, ZoneEntry]]) -> dict[str, ZoneEntry]:
    """Index entries by region id and, for Azure, display name too (both normalised)."""
    keyed: dict[str, ZoneEntry] = {}
    for display, entry in entries:
        keyed[_cloud_key(provider, display)] = entry
        keyed[entry.zone.split(":", 1)[1]] = entry
    return keyed
