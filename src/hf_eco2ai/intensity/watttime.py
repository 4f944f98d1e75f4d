"""WattTime API v3: the marginal emissions rate (MOER) and its forecast, converted from lbs/MWh
to g/kWh and labelled ``kind="marginal"``. Credentials from ``WATTTIME_USERNAME`` and
``WATTTIME_PASSWORD``; the short-lived bearer token from ``/login`` is renewed on expiry or 401.

Side effects: HTTP GETs to the API (cached for one 5-minute data period).
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from typing import Any

import httpx

from hf_eco2ai.errors import ConfigError, IntensityUnavailableError
from hf_eco2ai.intensity.base import IntensityReading
from hf_eco2ai.intensity.live import (
    DEFAULT_TIMEOUT_SECONDS,
    Clock,
    HttpStatusError,
    JsonClient,
    LiveProvider,
    Monotonic,
    finite_intensity,
    parse_utc,
    utc_now,
)
from hf_eco2ai.units import GRAMS_PER_POUND

WATTTIME_BASE_URL = "https://api.watttime.org"
USERNAME_ENV = "WATTTIME_USERNAME"
PASSWORD_ENV = "WATTTIME_PASSWORD"
KWH_PER_MWH = 1000.0
UNITS = "lbs_co2_per_mwh"
DATA_PERIOD = timedelta(minutes=5)

#: WattTime tokens last 30 minutes; renewing a minute early avoids a request failing mid-way.
TOKEN_LIFETIME_SECONDS = 30 * 60 - 60


def lbs_per_mwh_to_g_per_kwh(lbs_per_mwh: float) -> float:
    """Convert pounds CO2 per MWh to grams per kWh (x 453.59237 / 1000, exact)."""
    return lbs_per_mwh * GRAMS_PER_POUND / KWH_PER_MWH


class WattTimeProvider(LiveProvider):
    """Marginal operating emissions rate (``co2_moer``) for one WattTime region.

    Marginal and average intensities answer different questions and must not be mixed: every
    reading says ``kind="marginal"``. ``intensity_at`` uses ``/v3/forecast`` for the present
    (its first point is the current period) and ``/v3/historical`` for the past.

    Args:
        region: A WattTime region such as ``CAISO_NORTH`` (the free plan's region).
        username: Account name; None reads ``WATTTIME_USERNAME``.
        password: Password; None reads ``WATTTIME_PASSWORD``.
        signal_type: The WattTime signal; only ``co2_moer`` is in lbs/MWh.
        base_url: The API root (a mirror, proxy or test server).
        timeout_seconds: Per-phase HTTP timeout.
        clock: Current UTC time.
        monotonic: Monotonic seconds for cache and token ageing.

    Raises:
        ConfigError: Missing credentials or an empty region.
    """

    kind = "marginal"

    def __init__(
        self,
        region: str,
        *,
        username: str | None = None,
        password: str | None = None,
        signal_type: str = "co2_moer",
        base_url: str = WATTTIME_BASE_URL,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        clock: Clock = utc_now,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        super().__init__(
            resolution_seconds=DATA_PERIOD.total_seconds(), clock=clock, monotonic=monotonic
        )
        if not region.strip():
            raise ConfigError("carbon_zone", region, "give a WattTime region such as 'CAISO_NORTH'")
        user = username or os.environ.get(USERNAME_ENV)
        secret = password or os.environ.get(PASSWORD_ENV)
        if not user or not secret:
            raise ConfigError(
                "watttime_credentials",
                None,
                f"WattTime needs {USERNAME_ENV} and {PASSWORD_ENV} set",
            )
        self.zone = region.strip()
        self.signal_type = signal_type
        self.source = f"WattTime {signal_type} (marginal)"
        self._auth = httpx.BasicAuth(user, secret)
        self._token: str | None = None
        self._token_expires = 0.0
        self._http = JsonClient(base_url, source="WattTime API", timeout_seconds=timeout_seconds)
        self.logins = 0

    def _fetch_at(self, when: datetime) -> list[IntensityReading]:
        if when >= self._clock() - DATA_PERIOD:
            return self._forecast()
        return self._historical(when - DATA_PERIOD, when + DATA_PERIOD)

    def _fetch_range(self, start: datetime, end: datetime) -> list[IntensityReading]:
        now = self._clock()
        past = self._historical(start, min(end, now)) if start < now - DATA_PERIOD else []
        future = self._forecast() if end > now else []
        # Where both cover the current period, the measured history wins.
        settled_until = max((r.valid_to for r in past if r.valid_to), default=start)
        return past + [
            r for r in future if r.valid_from is not None and r.valid_from >= settled_until
        ]

    def _forecast(self) -> list[IntensityReading]:
        body = self._get("/v3/forecast", {"region": self.zone, "signal_type": self.signal_type})
        return self._parse("/v3/forecast", body, is_forecast=True)

    def _historical(self, start: datetime, end: datetime) -> list[IntensityReading]:
        params = {
            "region": self.zone,
            "signal_type": self.signal_type,
            "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        return self._parse("/v3/historical", self._get("/v3/historical", params), is_forecast=False)

    def _get(self, path: str, params: dict[str, str]) -> Any:
        try:
            return self._http.get_json(path, params, headers=self._bearer())
        except HttpStatusError as err:
            if err.status_code != 401:
                raise
        # The token expired early or was revoked: log in again once, then retry.
        self._token = None
        return self._http.get_json(path, params, headers=self._bearer())

    def _bearer(self) -> dict[str, str]:
        if self._token is None or self._monotonic() >= self._token_expires:
            self._login()
        assert self._token is not None
        return {"Authorization": f"Bearer {self._token}"}

    def _login(self) -> None:
        try:
            body = self._http.get_json("/login", auth=self._auth)
        except HttpStatusError as err:
            if err.status_code in (401, 403):
                raise IntensityUnavailableError(
                    f"WattTime API: login refused (HTTP {err.status_code}); "
                    f"check {USERNAME_ENV} and {PASSWORD_ENV}"
                ) from None
            raise
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise IntensityUnavailableError("WattTime API: /login answered without a token")
        self._token = token
        self._token_expires = self._monotonic() + TOKEN_LIFETIME_SECONDS
        self.logins += 1

    def _parse(self, path: str, body: Any, *, is_forecast: bool) -> list[IntensityReading]:
        try:
            return self._readings(body, is_forecast)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise IntensityUnavailableError(
                f"WattTime API: unexpected response shape from {path} ({err!r})"
            ) from None

    def _readings(self, body: Any, is_forecast: bool) -> list[IntensityReading]:
        meta = body["meta"]
        if meta["units"] != UNITS:
            raise ValueError(f"units {meta['units']!r}, expected {UNITS!r}")
        period = timedelta(seconds=float(meta.get("data_point_period_seconds", 300)))
        model = (meta.get("model") or {}).get("date")
        source = f"{self.source}, model {model}" if model else self.source
        return [self._reading(point, period, source, is_forecast) for point in body["data"]]

    def _reading(
        self, point: dict[str, Any], period: timedelta, source: str, is_forecast: bool
    ) -> IntensityReading:
        start = parse_utc(point["point_time"])
        lbs = finite_intensity(point["value"], "value")
        return IntensityReading(
            g_per_kwh=lbs_per_mwh_to_g_per_kwh(lbs),
            source=source,
            zone=self.zone,
            kind="marginal",
            valid_from=start,
            valid_to=start + period,
            is_forecast=is_forecast,
        )
