"""In-process alerts: once per crossing, with hysteresis, to the exporter, hooks and a webhook."""

from __future__ import annotations

import json
import logging
import time

import pytest

from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.control.alerts import AlertEvent, RateAlerts, attach_rate_alerts
from hf_eco2ai.exporters.prometheus import PrometheusExporter
from hf_eco2ai.tracking.snapshot import TrackerSnapshot
from hf_eco2ai.tracking.tracker import CarbonTracker
from tests.control.capture import CaptureServer
from tests.control.trainers import config, meter
from tests.promstack import free_port


def rates(co2_kg_per_hour: float, kwh_per_hour: float = 1.0, at: float = 1.7e9) -> TrackerSnapshot:
    return TrackerSnapshot(
        timestamp=at, co2_rate_kg_per_hour=co2_kg_per_hour, energy_rate_kwh_per_hour=kwh_per_hour
    )


RUNBOOK_THRESHOLDS = {"co2_rate_kg_per_hour": 5.0, "energy_rate_kwh_per_hour": 15.0}


def new_alerts(**kwargs: object) -> RateAlerts:
    return RateAlerts(
        RUNBOOK_THRESHOLDS,
        project_name="p",
        run_id="r1",
        window_seconds=300.0,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("co2_rates", "expected"),
    [
        # Above once, stays above: one firing, however many samples.
        ([4.0, 6.0, 7.0, 5.5, 6.0], [("firing", 6.0)]),
        # 4.6 is below 5 but above the 4.5 clearing level: still one alert, not two.
        ([6.0, 4.6, 5.2, 4.4, 6.5], [("firing", 6.0), ("resolved", 4.4), ("firing", 6.5)]),
        # Exactly at the threshold is not over it.
        ([5.0, 5.0], []),
    ],
)
def test_fires_once_per_crossing(co2_rates: list[float], expected: list[tuple[str, float]]) -> None:
    seen: list[AlertEvent] = []
    alerts = new_alerts(hooks=[seen.append])
    for value in co2_rates:
        alerts(rates(value))
    assert [(e.state, e.value) for e in seen] == expected
    assert all(e.alert == "co2_rate_kg_per_hour" and e.threshold == 5.0 for e in seen)
    assert all(e.window_seconds == 300.0 for e in seen)


def test_firing_sets_the_exported_series_and_posts_the_webhook(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = PrometheusExporter(CarbonConfig(project_name="p", run_id="r1"))
    with CaptureServer() as hook_server:
        alerts = new_alerts(webhook_url=f"{hook_server.url}/carbon", exporter=lambda: exporter)
        alerts.publish_state()
        assert (
            'hf_training_alert_active{alert="energy_rate_kwh_per_hour"'
            in exporter.render().decode()
        )
        with caplog.at_level(logging.WARNING, logger="hf_eco2ai.control.alerts"):
            alerts(rates(1.0, kwh_per_hour=20.0, at=1_700_000_000.0))
            alerts(rates(1.0, kwh_per_hour=21.0))
        alerts.close()

        assert len(hook_server.requests) == 1
        request = hook_server.requests[0]
    assert (request.method, request.path) == ("POST", "/carbon")
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.body) == {
        "source": "hf-eco2ai",
        "alert": "energy_rate_kwh_per_hour",
        "state": "firing",
        "value": 20.0,
        "threshold": 15.0,
        "project_name": "p",
        "run_id": "r1",
        "timestamp": 1_700_000_000.0,
        "window_seconds": 300.0,
    }
    text = exporter.render().decode()
    assert 'alert="energy_rate_kwh_per_hour",project_name="p",run_id="r1"} 1.0' in text
    assert 'alert="co2_rate_kg_per_hour",project_name="p",run_id="r1"} 0.0' in text
    assert caplog.text.count("alert energy_rate_kwh_per_hour firing: 20 > 15") == 1


@pytest.mark.parametrize("status", [None, 500])
def test_a_failing_webhook_is_one_warning(
    caplog: pytest.LogCaptureFixture, status: int | None
) -> None:
    server = CaptureServer(status=status or 200)
    url = server.url if status else f"http://127.0.0.1:{free_port()}"
    alerts = new_alerts(webhook_url=url)
    with caplog.at_level(logging.WARNING, logger="hf_eco2ai.control.alerts"):
        for value in [6.0, 1.0, 6.0, 1.0, 6.0]:
            alerts(rates(value))
        alerts.close()
    server.close()
    assert caplog.text.count("alert webhook") == 1
    assert len(server.requests) == (5 if status else 0)


def test_a_failing_hook_is_one_warning_and_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[AlertEvent] = []

    def broken(event: AlertEvent) -> None:
        raise RuntimeError("pager down")

    alerts = new_alerts(hooks=[broken, seen.append])
    with caplog.at_level(logging.WARNING, logger="hf_eco2ai.control.alerts"):
        for value in [6.0, 1.0, 6.0]:
            alerts(rates(value))
    assert len(seen) == 3
    assert caplog.text.count("pager down") == 1


def test_attached_to_a_live_tracker_fires_once_however_often_attached() -> None:
    # 1 kW at 400 g/kWh passes 2e-5 kg in about 0.2 s.
    tracker = CarbonTracker(config(alert_thresholds={"co2_kg": 2e-5}), meters=[meter()])
    first: list[AlertEvent] = []
    second: list[AlertEvent] = []
    tracker.start()
    alerts = attach_rate_alerts(tracker, hooks=[first.append])
    assert attach_rate_alerts(tracker, hooks=[second.append]) is alerts
    deadline = time.monotonic() + 5.0
    while not second and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    tracker.stop()

    assert [e.state for e in first] == [e.state for e in second] == ["firing"]
    assert first[0].value > 2e-5 and first[0].window_seconds is None
    assert attach_rate_alerts(CarbonTracker(config())) is None


def test_a_plain_tracker_evaluates_its_config_thresholds_and_posts_the_webhook() -> None:
    # No callback and no attach call: the thresholds in the config are enough.
    with CaptureServer() as hook_server:
        cfg = config(alert_thresholds={"co2_kg": 2e-5}, alert_webhook_url=hook_server.url)
        with CarbonTracker(cfg, meters=[meter()]) as tracker:
            deadline = time.monotonic() + 5.0
            while tracker.snapshot.co2_kg <= 4e-5 and time.monotonic() < deadline:
                time.sleep(0.05)
        # stop() delivered the queued notification before returning.
        bodies = [json.loads(r.body) for r in hook_server.requests]

    assert [(b["alert"], b["state"]) for b in bodies] == [("co2_kg", "firing")]
