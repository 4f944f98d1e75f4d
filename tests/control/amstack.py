"""A real Alertmanager whose webhook sends a bearer token, for the responder's end-to-end test.

``tests.promstack.start_alertmanager`` configures a webhook without ``http_config``; this one
adds the ``authorization`` block the responder requires, and reuses promstack's process handle.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from tests.promstack import ALERTMANAGER, Alertmanager, free_port, require_binary


def start_alertmanager_with_token(tmp_path: Path, webhook_url: str, token: str) -> Alertmanager:
    """Start Alertmanager routing every alert to ``webhook_url`` with ``Bearer <token>``."""
    binary = require_binary(ALERTMANAGER)
    workdir = tmp_path / "alertmanager"
    workdir.mkdir(parents=True, exist_ok=True)
    webhook = {
        "url": webhook_url,
        "send_resolved": True,
        "http_config": {"authorization": {"type": "Bearer", "credentials": token}},
    }
    config = {
        "route": {
            "receiver": "responder",
            "group_by": ["alertname", "namespace", "deployment"],
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [{"name": "responder", "webhook_configs": [webhook]}],
    }
    (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    argv = [
        binary,
        f"--config.file={workdir / 'alertmanager.yml'}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    service = Alertmanager("alertmanager", argv, port, workdir)
    try:
        service.wait_ready()
    except BaseException:
        service.stop()
        raise
    return service


def post_alert(am: Alertmanager, name: str, ends_in_seconds: float = 300.0, **labels: str) -> None:
    """Send one alert to Alertmanager as Prometheus does (``POST /api/v2/alerts``).

    A non-positive ``ends_in_seconds`` resolves an alert sent earlier with the same labels.
    """
    now = datetime.now(timezone.utc)
    alert: dict[str, Any] = {
        "labels": {"alertname": name, **labels},
        "annotations": {"summary": f"{name} (test)"},
        "endsAt": (now + timedelta(seconds=ends_in_seconds)).isoformat(),
    }
    if ends_in_seconds > 0:
        alert["startsAt"] = now.isoformat()
    am.client.post("/api/v2/alerts", json=[alert]).raise_for_status()
