"""AlertmanagerWatcher against a real Alertmanager (Debian package) on 127.0.0.1."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hf_eco2ai.control.alertmanager import AlertmanagerWatcher
from tests.control.capture import CaptureServer
from tests.promstack import Alertmanager, free_port, poll, post_alert, start_alertmanager


def silence(am: Alertmanager, label: str, value: str) -> None:
    now = datetime.now(timezone.utc)
    body = {
        "matchers": [{"name": label, "value": value, "isRegex": False, "isEqual": True}],
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=5)).isoformat(),
        "createdBy": "test",
        "comment": "maintenance",
    }
    am.client.post("/api/v2/silences", json=body).raise_for_status()


@pytest.mark.integration
def test_only_active_alerts_about_this_run_match(tmp_path: Path) -> None:
    with start_alertmanager(tmp_path) as am:
        post_alert(am, "CriticalCarbonEmissions", project_name="p", run_id="r1")
        post_alert(am, "CriticalCarbonEmissions", project_name="other", run_id="r1")
        post_alert(am, "CriticalCarbonEmissions", project_name="p", run_id="r2")
        post_alert(am, "CarbonEmissionsWarning", project_name="p", run_id="r1")
        post_alert(am, "CriticalCarbonEmissions", project_name="p", run_id="r3")
        post_alert(am, "CriticalCarbonEmissions", project_name='q "x" \\ é', run_id="r1")
        silence(am, "run_id", "r3")
        poll(am.alerts, lambda alerts: len(alerts) == 6, 10.0, "alerts stored")

        def found(
            run_id: str | None,
            names: tuple[str, ...] = ("CriticalCarbonEmissions",),
            project: str = "p",
        ) -> list[str]:
            watcher = AlertmanagerWatcher(
                am.url, project_name=project, run_id=run_id, alert_names=names
            )
            try:
                return sorted(a.labels["run_id"] + ":" + a.name for a in watcher.poll_once())
            finally:
                watcher.stop()

        assert found("r1") == ["r1:CriticalCarbonEmissions"]
        assert found("r3") == []  # silenced
        assert found(None) == ["r1:CriticalCarbonEmissions", "r2:CriticalCarbonEmissions"]
        assert found("r1", ("CarbonEmissionsWarning", "CriticalCarbonEmissions")) == [
            "r1:CarbonEmissionsWarning",
            "r1:CriticalCarbonEmissions",
        ]
        # Quotes, backslashes and non-ASCII survive the server-side filter.
        assert found("r1", project='q "x" \\ é') == ["r1:CriticalCarbonEmissions"]


@pytest.mark.integration
def test_background_polling_records_the_first_firing_alert(tmp_path: Path) -> None:
    with start_alertmanager(tmp_path) as am:
        watcher = AlertmanagerWatcher(
            am.url, project_name="p", run_id="r1", poll_interval_seconds=0.1
        )
        watcher.start()
        assert watcher.firing is None
        post_alert(am, "CriticalCarbonEmissions", project_name="p", run_id="r1")
        poll(
            lambda: [watcher.firing] if watcher.firing else [], bool, 10.0, "watcher sees the alert"
        )
        watcher.stop()
    assert watcher.firing is not None
    assert watcher.firing.labels["project_name"] == "p"
    assert len(watcher.firing.fingerprint) == 16


@pytest.mark.parametrize(
    "answer",
    [None, b"<html>busy</html>", b'{"alerts": []}', b'[{"labels": {"alertname": "x"}}]'],
    ids=["refused", "html", "object", "incomplete"],
)
def test_a_failing_alertmanager_is_one_warning(
    caplog: pytest.LogCaptureFixture, answer: bytes | None
) -> None:
    server = CaptureServer(body=answer or b"[]")
    url = server.url if answer else f"http://127.0.0.1:{free_port()}"
    watcher = AlertmanagerWatcher(url, project_name="p")
    with caplog.at_level(logging.WARNING, logger="hf_eco2ai.control.alertmanager"):
        results = [watcher.poll_once() for _ in range(3)]
    watcher.stop()
    server.close()
    assert results == [[], [], []]
    assert caplog.text.count("cannot read alerts from Alertmanager") == 1
    assert "training continues" in caplog.text


def test_the_query_asks_for_active_unsilenced_alerts_of_the_project() -> None:
    with CaptureServer(body=b"[]") as server:
        watcher = AlertmanagerWatcher(server.url + "/", project_name='my "proj"')
        watcher.poll_once()
        watcher.stop()
    path = server.requests[0].path
    assert path.startswith("/api/v2/alerts?active=true&silenced=false&inhibited=false&filter=")
    assert "filter=project_name%3D%22my+%5C%22proj%5C%22%22" in path
