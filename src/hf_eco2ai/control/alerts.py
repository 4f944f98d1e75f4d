"""In-process alerts on a run's rates and totals, evaluated on every sample of the tracker.

Side effects when an alert fires or clears: a log record, the exporter's
``hf_training_alert_active`` series, user hooks, and (optionally) a JSON POST to a webhook made
on a background thread. Nothing here raises into the sampler or the training loop.
"""

from __future__ import annotations

import logging
import queue
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import httpx

from hf_eco2ai.config import ALERT_THRESHOLD_KEYS
from hf_eco2ai.tracking.snapshot import TrackerSnapshot

if TYPE_CHECKING:
    from hf_eco2ai.tracking.tracker import CarbonTracker

logger = logging.getLogger(__name__)

#: An active alert clears only once its value drops below this share of the threshold, so a
#: value hovering at the threshold fires once, not on every sample.
CLEAR_FRACTION = 0.9

#: Seconds one webhook POST may take; the sampler never waits for it.
WEBHOOK_TIMEOUT_SECONDS = 3.0

#: Webhook notifications waiting beyond this are dropped (with one warning): a dead endpoint
#: must not grow memory without bound.
WEBHOOK_QUEUE_SIZE = 100


@dataclass(frozen=True)
class AlertEvent:
    """One alert firing or clearing.

    Attributes:
        alert: The threshold key, e.g. ``co2_rate_kg_per_hour`` (its unit is in the name).
        state: ``firing`` when the value rose above the threshold, ``resolved`` when it fell.
        value: The value that crossed, in the unit the key names.
        threshold: The configured threshold, same unit.
        project_name: The run's project.
        run_id: The run.
        timestamp: Unix time of the sample that crossed.
        window_seconds: The trailing window of rate alerts (None for totals).
    """

    alert: str
    state: Literal["firing", "resolved"]
    value: float
    threshold: float
    project_name: str
    run_id: str
    timestamp: float
    window_seconds: float | None

    def to_json(self) -> dict[str, Any]:
        """The webhook body: every field, plus ``source`` naming this package."""
        return {"source": "hf-eco2ai", **asdict(self)}


AlertHook = Callable[[AlertEvent], None]


class RateAlerts:
    """A tracker listener that fires each configured alert once per crossing.

    Args:
        thresholds: Threshold per key of :data:`hf_eco2ai.config.ALERT_THRESHOLD_KEYS`.
        project_name: Put in every event.
        run_id: Put in every event.
        window_seconds: The tracker's trailing rate window, put in rate events.
        webhook_url: Where to POST each event as JSON, or None.
        hooks: Called with each event on the sampler thread; keep them quick.
        exporter: Returns the exporter to set ``hf_training_alert_active`` on, or None.
    """

    def __init__(
        self,
        thresholds: Mapping[str, float],
        *,
        project_name: str,
        run_id: str,
        window_seconds: float,
        webhook_url: str | None = None,
        hooks: Iterable[AlertHook] = (),
        exporter: Callable[[], Any] = lambda: None,
    ) -> None:
        unknown = sorted(set(thresholds) - set(ALERT_THRESHOLD_KEYS))
        if unknown:
            raise ValueError(f"unknown alert threshold key(s) {unknown!r}")
        self.thresholds = dict(thresholds)
        self._who = (project_name, run_id)
        self._window_seconds = window_seconds
        self._hooks = list(hooks)
        self._exporter = exporter
        self.active: dict[str, bool] = dict.fromkeys(self.thresholds, False)
        self._webhook = _WebhookSender(webhook_url) if webhook_url else None
        self._hook_failed = False

    def add_hook(self, hook: AlertHook) -> None:
        """Also call ``hook`` for every later event."""
        self._hooks.append(hook)

    def publish_state(self) -> None:
        """Set every configured alert's exported series to its current state (0 or 1)."""
        exporter = self._exporter()
        if exporter is None:
            return
        for name, active in self.active.items():
            exporter.set_alert(name, active)

    def __call__(self, snapshot: TrackerSnapshot) -> None:
        """Evaluate every threshold on ``snapshot`` (the tracker calls this after each sample)."""
        for key, threshold in self.thresholds.items():
            value = float(getattr(snapshot, key))
            if not self.active[key] and value > threshold:
                self._change(key, "firing", value, threshold, snapshot.timestamp)
            elif self.active[key] and value < threshold * CLEAR_FRACTION:
                self._change(key, "resolved", value, threshold, snapshot.timestamp)

    def close(self) -> None:
        """Deliver queued webhook notifications (at most one timeout each) and stop the sender."""
        if self._webhook is not None:
            self._webhook.close()

    def _change(
        self,
        key: str,
        state: Literal["firing", "resolved"],
        value: float,
        threshold: float,
        at: float,
    ) -> None:
        self.active[key] = state == "firing"
        window = self._window_seconds if "rate" in key else None
        event = AlertEvent(key, state, value, threshold, *self._who, at, window)
        if state == "firing":
            logger.warning(
                "hf-eco2ai: alert %s firing: %.6g > %.6g (%s)",
                key,
                value,
                threshold,
                ALERT_THRESHOLD_KEYS[key],
            )
        else:
            logger.info(
                "hf-eco2ai: alert %s resolved: %.6g < %.6g", key, value, threshold * CLEAR_FRACTION
            )
        self.publish_state()
        self._call_hooks(event)
        if self._webhook is not None:
            self._webhook.send(event)

    def _call_hooks(self, event: AlertEvent) -> None:
        for hook in self._hooks:
            try:
                hook(event)
            except Exception as err:  # noqa: BLE001 - a user hook must not stop the sampler
                if not self._hook_failed:
                    logger.warning(
                        "hf-eco2ai: alert hook %r failed: %r; later failures at DEBUG", hook, err
                    )
                self._hook_failed = True
                logger.debug("alert hook failure", exc_info=True)


class _WebhookSender:
    """POSTs events as JSON from one daemon thread, in order; failures are logged, not raised."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._queue: queue.Queue[AlertEvent | None] = queue.Queue(maxsize=WEBHOOK_QUEUE_SIZE)
        self._failing = False
        self._dropped = False
        self._thread = threading.Thread(
            target=self._run, name="hf-eco2ai-alert-webhook", daemon=True
        )
        self._thread.start()

    def send(self, event: AlertEvent) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            if not self._dropped:
                logger.warning(
                    "hf-eco2ai: alert webhook %s is not keeping up; dropping events", self.url
                )
            self._dropped = True

    def close(self) -> None:
        try:
            self._queue.put(None, timeout=WEBHOOK_TIMEOUT_SECONDS)
        except queue.Full:
            return
        self._thread.join(timeout=WEBHOOK_TIMEOUT_SECONDS * (self._queue.qsize() + 1))

    def _run(self) -> None:
        with httpx.Client(timeout=WEBHOOK_TIMEOUT_SECONDS) as client:
            while (event := self._queue.get()) is not None:
                self._post(client, event)

    def _post(self, client: httpx.Client, event: AlertEvent) -> None:
        try:
            client.post(self.url, json=event.to_json()).raise_for_status()
        except httpx.HTTPError as err:
            if not self._failing:
                logger.warning(
                    "hf-eco2ai: alert webhook %s failed: %s; training continues", self.url, err
                )
            self._failing = True
            return
        if self._failing:
            logger.info("hf-eco2ai: alert webhook %s reachable again", self.url)
        self._failing = False


_attached: weakref.WeakKeyDictionary[CarbonTracker, RateAlerts] = weakref.WeakKeyDictionary()
_attach_lock = threading.Lock()


def attach_rate_alerts(
    tracker: CarbonTracker, hooks: Iterable[AlertHook] = ()
) -> RateAlerts | None:
    """Evaluate ``tracker.config.alert_thresholds`` on every sample of ``tracker``; idempotent.

    A second call for the same tracker returns the first one's :class:`RateAlerts` with
    ``hooks`` added, so a tracker never fires an alert twice. Returns None when the config has
    no thresholds.
    """
    config = tracker.config
    if not config.alert_thresholds:
        return None
    with _attach_lock:
        alerts = _attached.get(tracker)
        if alerts is None:
            alerts = _attached[tracker] = _new_alerts(tracker)
            tracker.add_listener(alerts)
            logger.info("hf-eco2ai: in-process alerts on %s", sorted(alerts.thresholds))
    for hook in hooks:
        alerts.add_hook(hook)
    return alerts


def _new_alerts(tracker: CarbonTracker) -> RateAlerts:
    config = tracker.config
    tracker_ref = weakref.ref(tracker)
    alerts = RateAlerts(
        config.alert_thresholds,
        project_name=config.project_name,
        run_id=config.run_id,
        window_seconds=config.rate_window_seconds,
        webhook_url=config.alert_webhook_url,
        exporter=lambda: getattr(tracker_ref(), "exporter", None),
    )
    alerts.publish_state()
    return alerts
