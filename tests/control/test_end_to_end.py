"""End to end on 127.0.0.1 with the real Prometheus and Alertmanager binaries (Debian packages).

1. A real Trainer run exports its metrics through its tracker's exporter; Prometheus scrapes
   them and evaluates the generated rules with a scaled-down critical threshold; Alertmanager
   holds the alert; the budget callback sees it and stops the run cleanly.
2. Alertmanager delivers its webhook, with a bearer token, to ``hf-eco2ai responder`` running
   as a subprocess, which scales and annotates the Deployment on a fake Kubernetes API server.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hf_eco2ai.ops.rules import RuleSettings, render_rules
from tests.control.fake_k8s import FakeKubernetes, require_kubernetes, training_job
from tests.promstack import free_port, poll, post_alert, start_alertmanager, start_prometheus

pytestmark = pytest.mark.integration

# 1 kW at 400 g/kWh is 0.111 g/s, so the run passes 0.3 g about 3 s after it starts.
CRITICAL_CO2_KG = 3e-4


def test_fleet_alert_stops_the_training_run(tmp_path: Path, one_torch_thread: None) -> None:
    pytest.importorskip("transformers")
    from transformers import TrainerCallback

    from hf_eco2ai import CarbonBudgetCallback, Eco2AICallback
    from tests.control.trainers import config, meter, tiny_trainer

    run = {"project_name": "e2e-llm", "run_id": "e2e-run-1"}
    port = free_port()
    exported = config(
        **run, export_prometheus=True, prometheus_port=port, prometheus_host="127.0.0.1"
    )

    class Deadline(TrainerCallback):  # type: ignore[misc]
        """Ends a run the alert never stopped, so the test fails instead of hanging."""

        def __init__(self) -> None:
            self.t0 = time.monotonic()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if time.monotonic() - self.t0 > 45:
                control.should_training_stop = True

    settings = RuleSettings(
        critical_co2_kg=CRITICAL_CO2_KG,
        critical_for="0s",
        evaluation_interval="1s",
        scrape_interval="1s",
        rate_window="4s",
        total_window="5m",
    )
    rules = tmp_path / "rules.yml"
    rules.write_text(render_rules(settings))
    with (
        start_alertmanager(tmp_path) as am,
        start_prometheus(tmp_path, [f"127.0.0.1:{port}"], [rules], alertmanager_url=am.url) as prom,
    ):
        budget = CarbonBudgetCallback(
            max_co2_kg=1.0,  # far away: the alert, not the budget, must stop this run
            alertmanager_url=am.url,
            alertmanager_poll_seconds=0.2,
            check_frequency=1,
            grace_period=1,
        )
        callbacks = [budget, Eco2AICallback(exported, meters=[meter()]), Deadline()]
        trainer = tiny_trainer(tmp_path / "run", callbacks, max_steps=20_000)
        trainer.train()
        firing = prom.alerts()
        budget_series = prom.query("last_over_time(hf_training_carbon_budget_kg[5m])")

    report = json.loads((tmp_path / "run" / "carbon_report.json").read_text())
    reason = report["stop_reason"]
    assert report["status"] == "stopped_by_budget", report["stop_reason"]
    assert reason["reason"] == "Alertmanager alert CriticalCarbonEmissions firing"
    assert reason["alert_labels"]["project_name"] == "e2e-llm"
    assert reason["alert_labels"]["run_id"] == "e2e-run-1"
    assert reason["alert_labels"]["severity"] == "critical"
    assert reason["stopped_at_step"] == reason["step"] + 1 == trainer.state.global_step
    # The alert fired on the exported total crossing the scaled-down threshold.
    assert reason["co2_kg"] > CRITICAL_CO2_KG
    assert any(a["labels"]["alertname"] == "CriticalCarbonEmissions" for a in firing)
    # The budget reached Prometheus under the runbook's name, with the run's labels.
    assert [(s["metric"]["run_id"], float(s["value"][1])) for s in budget_series] == [
        ("e2e-run-1", 1.0)
    ]


TOKEN = "e2e-webhook-token"


@pytest.fixture
def responder_process(tmp_path: Path) -> Iterator[tuple[str, FakeKubernetes, Path]]:
    """``hf-eco2ai responder`` in a subprocess, talking to a fake API server via kubeconfig."""
    require_kubernetes()
    api = FakeKubernetes("k8s-token", [training_job()])
    port = free_port()
    audit = tmp_path / "audit.jsonl"
    argv = [
        sys.executable,
        "-c",
        "from hf_eco2ai.cli import main; main()",
        "responder",
        f"--port={port}",
        f"--kubeconfig={api.kubeconfig(tmp_path)}",
        f"--audit-log={audit}",
        "--namespace=ml",
    ]
    env = {**os.environ, "HF_ECO2AI_RESPONDER_TOKEN": TOKEN}
    log = (tmp_path / "responder.log").open("wb")
    process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: _health(url), bool, 20.0, "responder ready")
        yield url, api, audit
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
        api.close()


def _health(url: str) -> list[dict[str, Any]]:
    try:
        return [httpx.get(f"{url}/healthz", timeout=1.0).json()]
    except httpx.TransportError:
        return []


def test_alertmanager_webhook_reaches_the_responder(
    tmp_path: Path, responder_process: tuple[str, FakeKubernetes, Path]
) -> None:
    url, api, audit = responder_process

    def decisions() -> list[dict[str, Any]]:
        if not audit.exists():
            return []
        return [json.loads(line) for line in audit.read_text().splitlines()]

    def has(decision: str) -> Any:
        return lambda found: any(d["decision"] == decision for d in found)

    target = {"namespace": "ml", "deployment": "training-job", "project_name": "llm"}
    t0 = int(time.time())
    with start_alertmanager(
        tmp_path,
        f"{url}/webhook",
        bearer_token=TOKEN,
        group_by=["alertname", "namespace", "deployment"],
    ) as am:
        post_alert(am, "CarbonEmissionsWarning", severity="warning", **target)
        post_alert(am, "CriticalCarbonEmissions", severity="critical", **target)
        poll(decisions, has("suspend"), 15.0, "the responder acts")
        poll(decisions, has("ignored_unknown_alert"), 15.0, "the warning is ignored")
        post_alert(am, "CriticalCarbonEmissions", ends_in_seconds=-1, severity="critical", **target)
        poll(decisions, has("ignored_resolved"), 15.0, "the resolution is recorded")
    t1 = int(time.time())

    path = "/apis/apps/v1/namespaces/ml/deployments/training-job"
    calls = [(r.method, r.path, r.content_type) for r in api.requests]
    assert calls == [
        ("GET", path, None),
        ("PATCH", path + "/scale", "application/merge-patch+json"),
        ("PATCH", path, "application/merge-patch+json"),
    ]
    scale, annotate = api.writes()
    assert scale.body == {"spec": {"replicas": 0}}
    value = annotate.body["metadata"]["annotations"]["emergency-stop"]
    match = re.fullmatch(r"carbon-emissions-critical-(\d+)", value)
    assert match is not None and t0 <= int(match.group(1)) <= t1
    assert api.deployments[("ml", "training-job")]["spec"]["replicas"] == 0

    suspend = next(d for d in decisions() if d["decision"] == "suspend")
    assert suspend["result"] == "scaled" and suspend["deployment"] == "ml/training-job"
    assert suspend["dry_run"] is False and len(suspend["fingerprint"]) == 16
    assert "CriticalCarbonEmissions" in suspend["group_key"]
    assert not any(d["decision"] == "refused" for d in decisions())
