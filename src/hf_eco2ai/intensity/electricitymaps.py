"""Electricity Maps API v3: latest, past and forecast average (lifecycle) intensity in g/kWh per
zone. Needs a token (argument or ``ELECTRICITYMAPS_TOKEN``), sent only in the ``auth-token`` header.

Side effects: HTTP GETs to the API (cached for one hour, the API's default granularity).
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
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
    utc_now,
)

ELECTRICITYMAPS_BASE_URL = "https://api.electricitymap.org/v3"
TOKEN_ENV = "ELECTRICITYMAPS_TOKEN"
GRANULARITY = timedelta(hours=1)


class ElectricityMapsProvider(LiveProvider):
    """Hourly grid intensity for one Electricity Maps zone (``DE``, ``FR``, ``US-CAL-CISO``...).

    ``intensity_at`` asks ``/carbon-intensity/latest`` for the last hour and
    ``/carbon-intensity/past`` for older moments; ``forecast`` asks
    ``/carbon-intensity/forecast`` (a paid-plan endpoint; a refusal raises and the fallback
    takes over).

    Args:
        zone: The Electricity Maps zone key.
        token: The API token; None reads ``ELECTRICITYMAPS_TOKEN``.
        base_url: The API root including ``/v3`` (a mirror, proxy or test server).
        timeout_seconds: Per-phase HTTP timeout.
        clock: Current UTC time.
        monotonic: Monotonic seconds for cache ageing.

    Raises:
        ConfigError: No token given or in the environment, or an empty zone.
    """

    kind = "average"

    def __init__(
        self,
        zone: str,
        *,
        token: str | None = None,
        base_url: str = ELECTRICITYMAPS_BASE_URL,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        clock: Clock = utc_now,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        super().__init__(
            resolution_seconds=GRANULARITY.total_seconds(), clock=clock, monotonic=monotonic
        )
        if not zone.strip():
            raise ConfigError("carbon_zone", zone, "give an Electricity Maps zone such as 'DE'")
        secret = token or os.environ.get(TOKEN_ENV)
        if not secret:
            # The value is never echoed, even when present, so errors cannot leak it.
            raise ConfigError(
                "carbon_api_token",
                None,
                f"Electricity Maps needs a token: pass token= or set {TOKEN_ENV}",
            )
        self.zone = zone.strip()
        self.source = "Electricity Maps"
        self._http = JsonClient(
            base_url,
            source="Electricity Maps API",
            headers={"auth-token": secret},
            timeout_seconds=timeout_seconds,
        )

    def _fetch_at(self, when: datetime) -> list[IntensityReading]:
        if when >= self._clock() - GRANULARITY:
            path, params = "/carbon-intensity/latest", {"zone": self.zone}
        else:
            path = "/carbon-intensity/past"
            params = {"zone": self.zone, "datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
        body = self._http.get_json(path, params)
        return self._parse(path, lambda: [self._point(body, is_forecast=False)])

    def _fetch_range(self, start: datetime, end: datetime) -> list[IntensityReading]:
        path = "/carbon-intensity/forecast"
        body = self._http.get_json(path, {"zone": self.zone})
        forecast = self._parse(path, lambda: self._forecast(body))

        # The forecast begins at the next hour; the current hour comes from "latest".
        first = min((r.valid_from for r in forecast if r.valid_from), default=end)
        if start < first:
            current = [r for r in self._fetch_at(start) if r.valid_to and r.valid_to <= first]
            forecast = current + forecast
        return forecast

    def _forecast(self, body: Any) -> list[IntensityReading]:
        points = [self._point(point, is_forecast=True) for point in body["forecast"]]
        return points

    # Shortcoming: points are taken as hourly (the API default); other granularities are not asked.
    def _point(self, point: dict[str, Any], *, is_forecast: bool) -> IntensityReading:
        start = parse_utc(point["datetime"])
        factor = point.get("emissionFactorType", "lifecycle")
        return IntensityReading(
            g_per_kwh=finite_intensity(point["carbonIntensity"], "carbonIntensity"),
            source=f"{self.source} ({factor})",
            zone=self.zone,
            kind="average",
            valid_from=start,
            valid_to=start + GRANULARITY,
            is_forecast=is_forecast,
        )

    def _parse(self, path: str, build: Any) -> list[IntensityReading]:
        try:
            readings: list[IntensityReading] = build()
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise IntensityUnavailableError(
                f"Electricity Maps API: unexpected response shape from {path} ({err!r})"
            ) from None
        return readings
