"""The harness itself: a missing binary fails under CI; Alertmanager starts and answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.promstack import require_binary, start_alertmanager


@pytest.mark.parametrize(
    ("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)]
)
def test_a_missing_binary_fails_under_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("CI", ci)

    with pytest.raises(outcome, match="prometheus"):
        require_binary("prometheus")


@pytest.mark.integration
def test_alertmanager_starts_on_loopback_and_accepts_an_alert(tmp_path: Path) -> None:
    with start_alertmanager(tmp_path, webhook_url="http://127.0.0.1:9/hook") as am:
        posted = am.client.post("/api/v2/alerts", json=[{"labels": {"alertname": "Probe"}}])
        assert posted.status_code == 200
        assert [a["labels"]["alertname"] for a in am.alerts()] == ["Probe"]
