"""The UK Carbon Intensity API (NESO, carbonintensity.org.uk, no key): national, by region id
or by postcode; half-hourly average intensity in g/kWh, settled ``actual`` or ``forecast``.

Side effects: HTTP GETs to the API (cached for one half-hour period).
"""

from __future__ import annotations

import csv
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from importlib import resources
from typing import Any

from hf_eco2ai.errors import ConfigError, IntensityUnavailableError
from hf_eco2ai.intensity.base import IntensityReading
from hf_eco2ai.intensity.live import (
    DEFAULT_TIMEOUT_SECONDS,
    Clock,
    JsonClient,
    LiveProvider,
    Monotonic,
    finite_intensity,
    parse_utc,
    to_utc,
    utc_now,
)

UK_BASE_URL = "https://api.carbonintensity.org.uk"
UK_SOURCE = "NESO Carbon Intensity API (carbonintensity.org.uk, CC BY 4.0)"
PERIOD_SECONDS = 1800.0
REGION_IDS = range(1, 18)

#: The API's range endpoints accept at most 14 days (its documentation's limit).
MAX_RANGE = timedelta(days=14)
FORWARD_48H = timedelta(hours=48)

_OUTWARD_CODE = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]?$")
BAND_NAMES = ("very low", "low", "moderate", "high", "very high")


class UKCarbonIntensityProvider(LiveProvider):
    """Half-hourly grid intensity for Great Britain, its 17 regions, or a postcode's region.

    National figures are the settled ``actual`` when published (``is_forecast=False``) and
    the ``forecast`` otherwise; regional figures are forecasts only (the API has no regional
    actuals). One request fetches 48 hours from the asked moment, cached for 30 minutes.

    Args:
        region_id: A region id 1-17 (13 is London), or None.
        postcode: A UK postcode or its outward code (``RG10``, ``RG10 9AB``), or None.
        base_url: The API root (a mirror, proxy or test server).
        timeout_seconds: Per-phase HTTP timeout.
        clock: Current UTC time (tests pass a fixed one).
        monotonic: Monotonic seconds for cache ageing.

    Raises:
        ConfigError: Both region_id and postcode given, or either is invalid.
    """

    kind = "average"

    def __init__(
        self,
        *,
        region_id: int | None = None,
        postcode: str | None = None,
        base_url: str = UK_BASE_URL,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        clock: Clock = utc_now,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        super().__init__(resolution_seconds=PERIOD_SECONDS, clock=clock, monotonic=monotonic)
        if region_id is not None and postcode is not None:
            raise ConfigError("postcode", postcode, "give a region id or a postcode, not both")
        self.region_id = _check_region_id(region_id) if region_id is not None else None
        self.postcode = _outward_code(postcode) if postcode is not None else None
        self.source = UK_SOURCE
        self.zone = self._zone_name()
        self._http = JsonClient(
            base_url, source="UK Carbon Intensity API", timeout_seconds=timeout_seconds
        )

    @classmethod
    def from_zone(cls, zone: str | None, **kwargs: Any) -> UKCarbonIntensityProvider:
        """Build from one string: ``national``/``GB``/None, a region id (``13``) or a postcode."""
        text = (zone or "").strip()
        if text.lower() in ("", "national", "gb", "uk"):
            return cls(**kwargs)
        if text.isdigit():
            return cls(region_id=int(text), **kwargs)
        return cls(postcode=text, **kwargs)

    def current(self) -> IntensityReading:
        """The figure for the current half-hour, from the API's current-period endpoint."""
        body = self._get(self._current_path())
        readings = self._parse(body, self._current_path())
        if not readings:
            raise IntensityUnavailableError(f"{self._http.source}: no current period returned")
        return readings[0]

    def history(self, end: datetime) -> list[IntensityReading]:
        """The 24 hours before ``end`` (``pt24h``): settled actuals where published."""
        path = self._range_path(_api_time(to_utc(end)), "pt24h")
        readings = self._parse(self._get(path), path)
        self._cache.put(readings)
        return readings

    def _fetch_at(self, when: datetime) -> list[IntensityReading]:
        # The first period returned is the one containing ``when``, so this also covers it.
        return self._fetch_range(when, when + FORWARD_48H)

    def _fetch_range(self, start: datetime, end: datetime) -> list[IntensityReading]:
        if end - start > MAX_RANGE:
            # Shortcoming: longer spans are refused rather than fetched in 14-day chunks.
            raise ConfigError(
                "end", end, f"the UK API serves at most 14 days per request; asked {end - start}"
            )
        span = "fw48h" if end - start <= FORWARD_48H else _api_time(end)
        path = self._range_path(_api_time(start), span)
        return self._parse(self._get(path), path)

    def _zone_name(self) -> str:
        if self.region_id is not None:
            return f"GB-region-{self.region_id}"
        if self.postcode is not None:
            return f"GB-postcode-{self.postcode}"
        return "GB"

    def _range_path(self, start: str, span: str) -> str:
        if self.region_id is not None:
            return f"/regional/intensity/{start}/{span}/regionid/{self.region_id}"
        if self.postcode is not None:
            return f"/regional/intensity/{start}/{span}/postcode/{self.postcode}"
        return f"/intensity/{start}/{span}"

    def _current_path(self) -> str:
        if self.region_id is not None:
            return f"/regional/regionid/{self.region_id}"
        if self.postcode is not None:
            return f"/regional/postcode/{self.postcode}"
        return "/intensity"

    def _get(self, path: str) -> Any:
        return self._http.get_json(path, headers={"Accept": "application/json"})

    def _parse(self, body: Any, path: str) -> list[IntensityReading]:
        try:
            return [self._reading(period) for period in _periods(body)]
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise IntensityUnavailableError(
                f"{self._http.source}: unexpected response shape from {path} ({err!r})"
            ) from None

    def _reading(self, period: dict[str, Any]) -> IntensityReading:
        intensity = period["intensity"]
        actual = intensity.get("actual")
        value = actual if actual is not None else intensity["forecast"]
        return IntensityReading(
            g_per_kwh=finite_intensity(value, "intensity"),
            source=self.source,
            zone=self.zone,
            kind="average",
            valid_from=parse_utc(period["from"]),
            valid_to=parse_utc(period["to"]),
            is_forecast=actual is None,
        )


def _periods(body: Any) -> list[dict[str, Any]]:
    """The half-hour periods of any endpoint's body.

    National endpoints give ``data`` as a list of periods; regional ones nest the periods in
    a region object, which is itself in a list for the current period but bare for a range.
    """
    data = body["data"]
    if isinstance(data, dict):
        return list(data["data"])
    if not isinstance(data, list):
        raise TypeError(f"'data' is a {type(data).__name__}")
    if data and "data" in data[0]:
        return [period for region in data for period in region["data"]]
    return data


def _api_time(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%MZ")


def _check_region_id(region_id: int) -> int:
    if isinstance(region_id, bool) or region_id not in REGION_IDS:
        raise ConfigError("region_id", region_id, "UK region ids run from 1 to 17 (13 is London)")
    return region_id


def _outward_code(postcode: str) -> str:
    """The outward code (first half) of a UK postcode, upper case: ``rg10 9ab`` -> ``RG10``."""
    parts = postcode.strip().upper().split()
    outward = parts[0] if parts else ""
    if not _OUTWARD_CODE.match(outward):
        raise ConfigError(
            "postcode", postcode, "give a UK postcode or its first half, e.g. 'RG10' or 'SW1A 1AA'"
        )
    return outward


@dataclass(frozen=True)
class IndexBands:
    """Upper bounds (g/kWh, inclusive) of the API's intensity index bands for one year.

    Values above ``high_max`` are "very high". Between two integer bounds (e.g. 39.5 when
    "very low" ends at 39 and "low" starts at 40) a value belongs to the higher band.
    """

    year: int
    very_low_max: float
    low_max: float
    moderate_max: float
    high_max: float

    def index(self, g_per_kwh: float) -> str:
        """The band name the API would give ``g_per_kwh`` in this year."""
        for name, bound in zip(BAND_NAMES, self._bounds(), strict=False):
            if g_per_kwh <= bound:
                return name
        return BAND_NAMES[-1]

    def _bounds(self) -> tuple[float, float, float, float]:
        return (self.very_low_max, self.low_max, self.moderate_max, self.high_max)


@lru_cache(maxsize=1)
def _band_table() -> dict[int, IndexBands]:
    text = resources.files("hf_eco2ai.intensity").joinpath("data/uk_ci_index_bands.csv").read_text()
    table: dict[int, IndexBands] = {}
    for row in csv.DictReader(text.splitlines()):
        year = int(row["year"])
        table[year] = IndexBands(
            year=year,
            very_low_max=float(row["very_low_max"]),
            low_max=float(row["low_max"]),
            moderate_max=float(row["moderate_max"]),
            high_max=float(row["high_max"]),
        )
    return table


def index_bands(year: int) -> IndexBands:
    """The UK API's index bands for ``year`` (they tighten every year, 2017-2030).

    Raises:
        ConfigError: ``year`` is outside the published table.
    """
    table = _band_table()
    if year not in table:
        raise ConfigError(
            "year", year, f"UK index bands are published for {min(table)}-{max(table)}"
        )
    return table[year]


def intensity_index(g_per_kwh: float, year: int) -> str:
    """The UK index band name (``very low`` ... ``very high``) of ``g_per_kwh`` in ``year``."""
    return index_bands(year).index(g_per_kwh)
