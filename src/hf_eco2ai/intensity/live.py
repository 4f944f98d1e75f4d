"""Shared parts of the live intensity providers: HTTP with short timeouts, a cache within each
source's resolution, and a fallback to the bundled table. Intensities in g/kWh; times in UTC.

Side effects: network requests (only when a provider is asked and its cache is stale) and one
WARNING log line the first time a live source fails.
"""

from __future__ import annotations

import logging
import math
import ssl
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import httpx

from hf_eco2ai.errors import ConfigError, IntensityUnavailableError
from hf_eco2ai.intensity.base import IntensityKind, IntensityProvider, IntensityReading

if TYPE_CHECKING:
    from hf_eco2ai.config import CarbonConfig

logger = logging.getLogger(__name__)

#: Seconds each phase of a request (connect, read, write, pool) may take: the tracker's sampler
#: must never stall on a slow API.
DEFAULT_TIMEOUT_SECONDS = 3.0

#: Seconds to keep using the bundled table after a live source failed, before trying it again.
DEFAULT_RETRY_AFTER_SECONDS = 300.0

LIVE_PROVIDERS = ("uk", "electricitymaps", "watttime")

Clock = Callable[[], datetime]
Monotonic = Callable[[], float]


@runtime_checkable
class ForecastProvider(IntensityProvider, Protocol):
    """A provider that also answers a forecast: readings with ``valid_from``/``valid_to`` set."""

    def forecast(self, start: datetime, end: datetime) -> list[IntensityReading]: ...


class HttpStatusError(IntensityUnavailableError):
    """An API answered with an error status.

    Attributes:
        status_code: The HTTP status.
        retry_after_seconds: The server's ``Retry-After`` in seconds, if it sent one.
    """

    def __init__(self, message: str, status_code: int, retry_after_seconds: float | None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after_seconds = retry_after_seconds


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)


def to_utc(when: datetime) -> datetime:
    """``when`` in UTC; a naive datetime is taken as local time (as ``datetime.now()`` gives)."""
    if when.tzinfo is None or when.tzinfo.utcoffset(when) is None:
        when = when.astimezone()
    return when.astimezone(timezone.utc)


def parse_utc(text: str) -> datetime:
    """Parse an API timestamp (``2023-03-16T12:00Z``, ``...00.000Z``, ``...+00:00``) to UTC.

    Raises:
        ValueError: The text is not ISO 8601 or carries no zone offset.
    """
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no zone offset")
    return parsed.astimezone(timezone.utc)


def finite_intensity(value: object, what: str) -> float:
    """``value`` as a finite, non-negative g/kWh figure, or ValueError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} is {value!r}, not a number")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{what} is {value!r}, not a finite non-negative intensity")
    return number


class JsonClient:
    """GETs JSON from one API. Every failure becomes :class:`IntensityUnavailableError`.

    Secrets travel only in the headers or auth given here; error messages name the path and
    the status, never headers, query values or response bodies (which may echo a token).
    """

    def __init__(
        self,
        base_url: str,
        *,
        source: str,
        headers: Mapping[str, str] | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError("base_url", base_url, "give an http:// or https:// URL")
        self.source = source
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        # Shortcoming: httpx times each phase, so a server trickling bytes can exceed the total.
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=dict(headers or {}),
            timeout=timeout_seconds,
            verify=_tls_context(),
        )

    def get_json(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
    ) -> Any:
        """GET ``path`` (relative to the base URL) and return the decoded JSON body.

        Raises:
            HttpStatusError: The server answered with a non-2xx status.
            IntensityUnavailableError: Timeout, network failure, or a body that is not JSON.
        """
        response = self._send(path, params, headers, auth)
        if not response.is_success:
            raise self._status_error(path, response)

        try:
            return response.json()
        except ValueError:
            raise IntensityUnavailableError(
                f"{self.source}: {path} answered a body that is not JSON; "
                "check base_url points at the API itself, not a proxy's error page"
            ) from None

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def _send(
        self,
        path: str,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        auth: httpx.Auth | None,
    ) -> httpx.Response:
        try:
            if auth is None:
                return self._client.get(path, params=params, headers=headers)
            return self._client.get(path, params=params, headers=headers, auth=auth)
        except httpx.TimeoutException:
            raise IntensityUnavailableError(
                f"{self.source}: no answer from {self.base_url}{path} within "
                f"{self.timeout_seconds:g} s"
            ) from None
        except httpx.HTTPError as err:
            # The exception text can hold the full URL with its query, so only its type is kept.
            raise IntensityUnavailableError(
                f"{self.source}: cannot reach {self.base_url}{path} ({type(err).__name__})"
            ) from None

    def _status_error(self, path: str, response: httpx.Response) -> HttpStatusError:
        status = response.status_code
        retry_after = _retry_after_seconds(response.headers.get("retry-after"))
        if status == 429:
            wait = f"; it asks to wait {retry_after:g} s" if retry_after is not None else ""
            message = f"{self.source}: rate limited on {path} (HTTP 429){wait}"
        elif status in (401, 403):
            message = (
                f"{self.source}: credentials refused on {path} (HTTP {status}); "
                "check the token or login for this API and its plan's access"
            )
        else:
            message = f"{self.source}: {path} answered HTTP {status} {response.reason_phrase}"
        return HttpStatusError(message, status, retry_after)


@lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """One TLS context for all clients: building one loads the CA bundle (~0.1 s)."""
    return httpx.create_ssl_context()


def _retry_after_seconds(header: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header in its delta-seconds form (dates are ignored)."""
    if header is None:
        return None
    try:
        seconds = float(header)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class _BucketCache:
    """Readings by time bucket (the source's resolution), each fresh for ``ttl_seconds``."""

    _MAX_ENTRIES = 4096

    def __init__(self, bucket_seconds: float, ttl_seconds: float, monotonic: Monotonic) -> None:
        self._bucket_seconds = bucket_seconds
        self._ttl_seconds = ttl_seconds
        self._monotonic = monotonic
        # (fetched at, reading, pinned): a pinned reading answers its bucket even when its own
        # period does not cover the moment (a "latest" figure that lags the clock).
        self._entries: dict[int, tuple[float, IntensityReading, bool]] = {}

    def get(self, when: datetime) -> IntensityReading | None:
        entry = self._entries.get(self._bucket(when.timestamp()))
        if entry is None or self._monotonic() - entry[0] >= self._ttl_seconds:
            return None

        fetched, reading, pinned = entry
        return reading if pinned or _covers(reading, when) else None

    def put(self, readings: list[IntensityReading]) -> None:
        now = self._monotonic()
        if len(self._entries) > self._MAX_ENTRIES:
            self._entries = {
                key: entry
                for key, entry in self._entries.items()
                if now - entry[0] < self._ttl_seconds
            }
        for reading in readings:
            if reading.valid_from is None or reading.valid_to is None:
                continue
            first = self._bucket(reading.valid_from.timestamp())
            last = self._bucket(reading.valid_to.timestamp() - 1e-6)
            for key in range(first, last + 1):
                self._entries[key] = (now, reading, False)

    def put_at(self, when: datetime, reading: IntensityReading) -> None:
        self._entries[self._bucket(when.timestamp())] = (self._monotonic(), reading, True)

    def _bucket(self, seconds: float) -> int:
        return math.floor(seconds / self._bucket_seconds)


def _covers(reading: IntensityReading, when: datetime) -> bool:
    if reading.valid_from is None or reading.valid_to is None:
        return False
    return reading.valid_from <= when < reading.valid_to


class LiveProvider(ABC):
    """Base of the live providers: caching and clipping around two fetches a source defines.

    Subclasses set ``source``, ``zone`` and ``kind`` and implement ``_fetch_at`` (readings that
    cover a moment) and ``_fetch_range`` (a forecast or history over a span). Both raise
    :class:`IntensityUnavailableError` on any failure.

    Attributes:
        requests_made: How many fetches reached the source (for tests and diagnostics).
    """

    source: str
    zone: str
    kind: IntensityKind = "average"
    _http: JsonClient

    def __init__(
        self,
        *,
        resolution_seconds: float,
        clock: Clock = utc_now,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        self.resolution_seconds = resolution_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._cache = _BucketCache(resolution_seconds, resolution_seconds, monotonic)
        self._forecast_cache: tuple[float, datetime, datetime, list[IntensityReading]] | None = None
        self.requests_made = 0

    def intensity_at(self, when: datetime) -> IntensityReading:
        """The figure covering ``when`` (naive means local time), from cache when fresh."""
        when = to_utc(when)
        cached = self._cache.get(when)
        if cached is not None:
            return cached

        self.requests_made += 1
        readings = self._fetch_at(when)
        self._cache.put(readings)
        return self._covering(readings, when)

    def forecast(self, start: datetime, end: datetime) -> list[IntensityReading]:
        """Readings overlapping ``[start, end)``, sorted, each with ``valid_from``/``valid_to``.

        The source may return less than asked (a forecast horizon ends); callers check coverage.
        """
        start, end = to_utc(start), to_utc(end)
        if end <= start:
            raise ValueError(
                f"forecast end {end.isoformat()} is not after start {start.isoformat()}"
            )
        cached = self._cached_forecast(start, end)
        if cached is not None:
            return cached

        self.requests_made += 1
        readings = sorted(self._fetch_range(start, end), key=_valid_from)
        self._cache.put(readings)
        self._forecast_cache = (self._monotonic(), start, end, readings)
        return _clip(readings, start, end)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def _cached_forecast(self, start: datetime, end: datetime) -> list[IntensityReading] | None:
        if self._forecast_cache is None:
            return None
        fetched, cached_start, cached_end, readings = self._forecast_cache
        fresh = self._monotonic() - fetched < self.resolution_seconds
        if fresh and cached_start <= start and end <= cached_end:
            return _clip(readings, start, end)
        return None

    def _covering(self, readings: list[IntensityReading], when: datetime) -> IntensityReading:
        for reading in readings:
            if _covers(reading, when):
                return reading

        # A "latest" endpoint answers one figure that may lag the clock; it is still the best
        # figure for now, so it is used (and cached for this bucket) rather than refused.
        starts = [r.valid_from for r in readings if r.valid_from is not None]
        if len(readings) == 1 and starts and starts[0] <= when:
            self._cache.put_at(when, readings[0])
            return readings[0]
        raise IntensityUnavailableError(
            f"{self.source}: no figure covers {when:%Y-%m-%dT%H:%MZ} for zone {self.zone!r}"
        )

    @abstractmethod
    def _fetch_at(self, when: datetime) -> list[IntensityReading]:
        """Readings from the source that cover ``when`` (UTC)."""

    @abstractmethod
    def _fetch_range(self, start: datetime, end: datetime) -> list[IntensityReading]:
        """Readings from the source for ``[start, end)`` (UTC), as far as it has them."""


def _valid_from(reading: IntensityReading) -> datetime:
    assert reading.valid_from is not None
    return reading.valid_from


def _clip(
    readings: list[IntensityReading], start: datetime, end: datetime
) -> list[IntensityReading]:
    return [
        r
        for r in readings
        if r.valid_from is not None
        and r.valid_to is not None
        and r.valid_to > start
        and r.valid_from < end
    ]


def flat_forecast(
    provider: IntensityProvider, start: datetime, end: datetime
) -> list[IntensityReading]:
    """One reading spanning ``[start, end)``: what a provider without a forecast can say."""
    reading = provider.intensity_at(start)
    return [replace(reading, valid_from=to_utc(start), valid_to=to_utc(end), is_forecast=False)]


@dataclass(frozen=True)
class FallbackEvent:
    """A live source failed and the bundled table answered instead.

    Attributes:
        at: When the failure happened (UTC).
        reason: The error, which never contains a token.
    """

    at: datetime
    reason: str


class FallbackProvider:
    """A live provider that falls back to another (the bundled table) when it fails.

    The first failure logs one WARNING; later ones log at DEBUG. While backing off, the
    fallback answers without asking the primary; after ``retry_after_seconds`` (or the
    server's ``Retry-After``, if longer) the primary is tried again. Fallback readings carry
    ``fallback=True``.

    Attributes:
        primary: The live provider.
        fallback: The provider used while the primary fails.
        fallback_events: Every failure of the primary, for the run's report.
    """

    def __init__(
        self,
        primary: IntensityProvider,
        fallback: IntensityProvider,
        *,
        retry_after_seconds: float = DEFAULT_RETRY_AFTER_SECONDS,
        clock: Clock = utc_now,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.fallback_events: list[FallbackEvent] = []
        self._retry_after_seconds = retry_after_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._retry_at: float | None = None
        self._warned = False

    @property
    def kind(self) -> IntensityKind:
        """The kind of figure the primary gives (``average`` or ``marginal``)."""
        kind: IntensityKind = getattr(self.primary, "kind", "average")
        return kind

    def intensity_at(self, when: datetime) -> IntensityReading:
        """The primary's figure, or the fallback's labelled ``fallback=True``; never raises
        :class:`IntensityUnavailableError` unless the fallback itself fails."""
        if not self._backing_off():
            try:
                reading = self.primary.intensity_at(when)
            except IntensityUnavailableError as err:
                self._record(err)
            else:
                self._recovered()
                return reading
        return replace(self.fallback.intensity_at(when), fallback=True)

    def forecast(self, start: datetime, end: datetime) -> list[IntensityReading]:
        """The primary's forecast, or a flat one from the fallback labelled ``fallback=True``."""
        if not self._backing_off() and isinstance(self.primary, ForecastProvider):
            try:
                readings = self.primary.forecast(start, end)
            except IntensityUnavailableError as err:
                self._record(err)
            else:
                self._recovered()
                return readings
        return [replace(r, fallback=True) for r in flat_forecast(self.fallback, start, end)]

    def _backing_off(self) -> bool:
        return self._retry_at is not None and self._monotonic() < self._retry_at

    def _record(self, err: IntensityUnavailableError) -> None:
        reason = str(err)
        self.fallback_events.append(FallbackEvent(at=self._clock(), reason=reason))
        wait = self._retry_after_seconds
        if isinstance(err, HttpStatusError) and err.retry_after_seconds is not None:
            wait = max(wait, err.retry_after_seconds)
        self._retry_at = self._monotonic() + wait

        if not self._warned:
            self._warned = True
            logger.warning(
                "Live grid intensity unavailable (%s); using the bundled table and retrying "
                "every %g s. CO2 figures meanwhile are labelled as fallback.",
                reason,
                wait,
            )
        else:
            logger.debug("Live grid intensity still unavailable: %s", reason)

    def _recovered(self) -> None:
        if self._retry_at is not None:
            logger.info("Live grid intensity is answering again")
        self._retry_at = None


def make_live_provider(
    name: str,
    zone: str | None,
    *,
    base_url: str | None = None,
    token: str | None = None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> LiveProvider:
    """Build a live provider by name.

    Args:
        name: ``uk``, ``electricitymaps`` or ``watttime``.
        zone: UK: ``national`` (or None), a region id ``1``-``17`` or a postcode; Electricity
            Maps: a zone such as ``DE``; WattTime: a region such as ``CAISO_NORTH``.
        base_url: The API's base URL (a mirror, proxy or test server); None for the real one.
        token: Electricity Maps token (else ``ELECTRICITYMAPS_TOKEN``); unused by the others.
        timeout_seconds: Per-phase HTTP timeout.

    Raises:
        ConfigError: Unknown name, missing zone or missing credentials.
    """
    extra: dict[str, Any] = {"timeout_seconds": timeout_seconds}
    if base_url is not None:
        extra["base_url"] = base_url

    if name == "uk":
        from hf_eco2ai.intensity.uk import UKCarbonIntensityProvider

        return UKCarbonIntensityProvider.from_zone(zone, **extra)
    if name not in LIVE_PROVIDERS:
        raise ConfigError("carbon_provider", name, f"use one of {', '.join(LIVE_PROVIDERS)}")
    if not zone:
        raise ConfigError("carbon_zone", zone, f"the {name} provider needs a zone or region")
    if name == "electricitymaps":
        from hf_eco2ai.intensity.electricitymaps import ElectricityMapsProvider

        return ElectricityMapsProvider(zone, token=token, **extra)

    from hf_eco2ai.intensity.watttime import WattTimeProvider

    return WattTimeProvider(zone, **extra)


def build_live_provider(config: CarbonConfig, *, fallback: IntensityProvider) -> FallbackProvider:
    """The tracker's provider when ``use_real_time_carbon`` is set: live, falling back to
    ``fallback`` (the bundled table) with one warning."""
    token = config.carbon_api_token.get_secret_value() if config.carbon_api_token else None
    primary = make_live_provider(
        config.carbon_provider or "",
        config.carbon_zone,
        base_url=config.carbon_api_base_url,
        token=token,
    )
    logger.info("Grid intensity from %s (zone %s), live", primary.source, primary.zone)
    return FallbackProvider(primary, fallback)
