"""Watch Alertmanager (API v2) for firing alerts about this run, on a background thread.

Side effects: one daemon thread making a GET every ``poll_interval_seconds``. Training reads the
latest answer as an attribute; it never waits for the network. An unreachable or misbehaving
Alertmanager is one warning (and an INFO line when it answers again), never an exception.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from datetime import datetime

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

logger = logging.getLogger(__name__)

DEFAULT_ALERT_NAMES: tuple[str, ...] = ("CriticalCarbonEmissions",)

#: Seconds one poll may take. Short: a slow Alertmanager only delays our view of it.
POLL_TIMEOUT_SECONDS = 2.0


class _AlertStatus(BaseModel):
    model_config = ConfigDict(extra="ignore")

    state: str


class AlertmanagerAlert(BaseModel):
    """The parts of a ``gettableAlert`` (``GET /api/v2/alerts``) we use; other fields ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    labels: dict[str, str]
    annotations: dict[str, str] = {}
    fingerprint: str
    startsAt: datetime  # noqa: N815 - Alertmanager's field name
    status: _AlertStatus

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")


class _AlertList(BaseModel):
    alerts: list[AlertmanagerAlert]


class AlertmanagerWatcher:
    """Polls Alertmanager for firing alerts named ``alert_names`` about ``project_name``.

    An alert matches when its ``alertname`` is one of ``alert_names``, its ``project_name``
    label equals ours, and, when it carries a ``run_id`` label and ``run_id`` is given, that
    label equals ours too (an alert about another run of the project must not stop this one).
    Silenced and inhibited alerts are left out.

    Args:
        url: Alertmanager's base URL, e.g. ``http://alertmanager:9093``.
        project_name: The run's ``project_name`` label.
        run_id: The run's ``run_id`` label, or None to match any run of the project.
        alert_names: Alert names that should suspend the run.
        poll_interval_seconds: Seconds between polls.
        client: HTTP client to use (tests); one with a short timeout by default.

    Attributes:
        firing: The first matching alert seen, or None; set once and kept.
    """

    def __init__(
        self,
        url: str,
        *,
        project_name: str,
        run_id: str | None = None,
        alert_names: Iterable[str] = DEFAULT_ALERT_NAMES,
        poll_interval_seconds: float = 15.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.project_name = project_name
        self.run_id = run_id
        self.alert_names = frozenset(alert_names)
        self.poll_interval_seconds = poll_interval_seconds
        self._client = client if client is not None else httpx.Client(timeout=POLL_TIMEOUT_SECONDS)
        self.firing: AlertmanagerAlert | None = None
        self._failing = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="hf-eco2ai-alertmanager", daemon=True
        )

    def start(self) -> AlertmanagerWatcher:
        """Start polling in the background; returns at once."""
        logger.info(
            "hf-eco2ai: watching %s every %.3g s for %s about project %r",
            self.url,
            self.poll_interval_seconds,
            sorted(self.alert_names),
            self.project_name,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling (waits at most one poll timeout) and close the client."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=POLL_TIMEOUT_SECONDS + 1.0)
        self._client.close()

    def poll_once(self) -> list[AlertmanagerAlert]:
        """Fetch the matching firing alerts now; logs and returns [] when Alertmanager fails."""
        try:
            response = self._client.get(f"{self.url}/api/v2/alerts", params=self._params())
            response.raise_for_status()
            alerts = _AlertList(alerts=response.json()).alerts
        except (httpx.HTTPError, json.JSONDecodeError, ValidationError) as err:
            self._report_failure(err)
            return []
        if self._failing:
            logger.info("hf-eco2ai: Alertmanager %s answers again", self.url)
            self._failing = False
        return [a for a in alerts if self._matches(a)]

    def _params(self) -> httpx.QueryParams:
        # The server-side filter narrows the answer; _matches re-checks every label anyway.
        project = json.dumps(self.project_name, ensure_ascii=False)
        return httpx.QueryParams(
            [
                ("active", "true"),
                ("silenced", "false"),
                ("inhibited", "false"),
                ("filter", f"project_name={project}"),
            ]
        )

    def _matches(self, alert: AlertmanagerAlert) -> bool:
        labels = alert.labels
        if alert.status.state != "active" or alert.name not in self.alert_names:
            return False
        if labels.get("project_name") != self.project_name:
            return False
        return self.run_id is None or labels.get("run_id", self.run_id) == self.run_id

    def _run(self) -> None:
        while True:
            found = self.poll_once()
            if found and self.firing is None:
                self.firing = found[0]
                logger.warning(
                    "hf-eco2ai: Alertmanager reports %s firing for project %r (since %s)",
                    found[0].name,
                    self.project_name,
                    found[0].startsAt.isoformat(),
                )
            if self._stopping.wait(self.poll_interval_seconds):
                return

    def _report_failure(self, err: Exception) -> None:
        if self._failing:
            logger.debug("Alertmanager %s still failing: %s", self.url, err)
            return
        self._failing = True
        logger.warning(
            "hf-eco2ai: cannot read alerts from Alertmanager at %s (%s); training continues "
            "and the check is retried every %.3g s",
            self.url,
            err,
            self.poll_interval_seconds,
        )
