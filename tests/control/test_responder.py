"""The responder over real HTTP, acting through the official Kubernetes client on a fake API server.

No cluster runs here: ``fake_k8s.FakeKubernetes`` speaks the Deployment and Scale endpoints with
complete objects, and the tests check the exact requests the client sends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from hf_eco2ai.control.responder import (
    AuditLog,
    KubernetesDeployments,
    Responder,
    ResponderServer,
    ResponderSettings,
    load_api_client,
)
from tests.control.fake_k8s import FakeKubernetes, require_kubernetes, training_job

require_kubernetes()

TOKEN = "s3cret-token-for-tests"
NOW = 1_754_150_400.0  # 2025-08-02T16:00:00Z
MAX_BODY = 16_384
DEPLOYMENT_PATH = "/apis/apps/v1/namespaces/ml/deployments/training-job"


def alert(
    name: str = "CriticalCarbonEmissions",
    status: str = "firing",
    starts: str = "2025-08-02T15:58:30.123Z",
    fingerprint: str = "5c7e8f0a1b2c3d4e",
    **labels: str,
) -> dict[str, Any]:
    labels = {"namespace": "ml", "deployment": "training-job", **labels}
    return {
        "status": status,
        "labels": {"alertname": name, "severity": "critical", "project_name": "llm", **labels},
        "annotations": {"summary": "Critical carbon emissions"},
        "startsAt": starts,
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2025-08-02T16:10:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=...",
        "fingerprint": fingerprint,
        "someFieldFromAFutureAlertmanager": {"x": 1},
    }


def payload(
    *alerts: dict[str, Any],
    status: str = "firing",
    group_key: str = '{}:{alertname="CriticalCarbonEmissions"}',
) -> dict[str, Any]:
    return {
        "receiver": "hf-eco2ai-responder",
        "status": status,
        "alerts": list(alerts) or [alert()],
        "groupLabels": {"alertname": "CriticalCarbonEmissions"},
        "commonLabels": {"alertname": "CriticalCarbonEmissions"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "anotherNewTopLevelField": "ignored",
    }


@dataclass
class Stack:
    api: FakeKubernetes
    server: ResponderServer
    audit_path: Path
    client: httpx.Client

    def post(self, body: Any, token: str | None = TOKEN, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        headers.update(kwargs.pop("headers", {}))
        if isinstance(body, bytes):
            headers.setdefault("Content-Type", "application/json")
            return self.client.post("/webhook", content=body, headers=headers, **kwargs)
        return self.client.post("/webhook", json=body, headers=headers, **kwargs)

    def audit(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]

    def replicas(self) -> int:
        return int(self.api.deployments[("ml", "training-job")]["spec"]["replicas"])


def start_stack(tmp_path: Path, api: FakeKubernetes, **settings: Any) -> Stack:
    kubernetes = KubernetesDeployments(load_api_client(str(api.kubeconfig(tmp_path))))
    audit_path = tmp_path / "audit.jsonl"
    responder = Responder(
        ResponderSettings(**settings), kubernetes, AuditLog(audit_path), clock=lambda: NOW
    )
    server = ResponderServer(responder, TOKEN, port=0, max_body_bytes=MAX_BODY).start()
    return Stack(api, server, audit_path, httpx.Client(base_url=server.url, timeout=10.0))


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with FakeKubernetes(TOKEN, [training_job(), training_job(name="other-job")]) as api:
        stack = start_stack(tmp_path, api)
        yield stack
        stack.client.close()
        stack.server.close()


def test_binds_loopback_by_default(stack: Stack) -> None:
    assert stack.server.url.startswith("http://127.0.0.1:")
    assert stack.client.get("/healthz").json() == {"status": "ok"}


def test_firing_alert_scales_to_zero_then_annotates(stack: Stack) -> None:
    response = stack.post(payload())

    assert response.status_code == 200
    assert response.json() == {
        "decisions": [
            {"alert": "CriticalCarbonEmissions", "decision": "suspend", "result": "scaled"}
        ]
    }
    requests = [(r.method, r.path, r.content_type, r.body) for r in stack.api.requests]
    assert requests == [
        ("GET", DEPLOYMENT_PATH, None, None),
        (
            "PATCH",
            DEPLOYMENT_PATH + "/scale",
            "application/merge-patch+json",
            {"spec": {"replicas": 0}},
        ),
        (
            "PATCH",
            DEPLOYMENT_PATH,
            "application/merge-patch+json",
            {
                "metadata": {
                    "annotations": {"emergency-stop": "carbon-emissions-critical-1754150400"}
                }
            },
        ),
    ]
    assert all(r.query == {"fieldManager": ["hf-eco2ai-responder"]} for r in stack.api.writes())
    assert all(r.authorization == f"Bearer {TOKEN}" for r in stack.api.requests)
    deployment = stack.api.deployments[("ml", "training-job")]
    assert deployment["spec"]["replicas"] == 0
    assert (
        deployment["metadata"]["annotations"]["emergency-stop"]
        == "carbon-emissions-critical-1754150400"
    )
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert stack.api.deployments[("ml", "other-job")]["spec"]["replicas"] == 2

    (entry,) = stack.audit()
    assert {
        k: entry[k] for k in ("decision", "alert", "fingerprint", "deployment", "dry_run", "result")
    } == {
        "decision": "suspend",
        "alert": "CriticalCarbonEmissions",
        "fingerprint": "5c7e8f0a1b2c3d4e",
        "deployment": "ml/training-job",
        "dry_run": False,
        "result": "scaled",
    }
    assert entry["group_key"] == payload()["groupKey"]
    assert entry["replicas_before"] == 2 and entry["time"].endswith("+00:00")


def test_redelivery_and_restart_do_not_act_twice(stack: Stack, tmp_path: Path) -> None:
    assert stack.post(payload()).status_code == 200
    stack.api.deployments[("ml", "training-job")]["spec"]["replicas"] = 3  # an operator restarts it
    assert stack.post(payload()).json()["decisions"][0]["decision"] == "duplicate"

    restarted = start_stack(tmp_path, stack.api)  # same audit log, fresh process state
    try:
        assert restarted.post(payload()).json()["decisions"][0]["decision"] == "duplicate"
    finally:
        restarted.client.close()
        restarted.server.close()
    assert len(stack.api.writes()) == 2
    assert stack.replicas() == 3  # the operator's decision stands until a new alert


def test_a_new_alert_reads_first_and_leaves_a_suspended_deployment_alone(stack: Stack) -> None:
    stack.post(payload())
    later = alert(starts="2025-08-02T17:00:00Z")
    decisions = stack.post(payload(later)).json()["decisions"]

    assert decisions[0]["result"] == "already_suspended"
    assert [r.method for r in stack.api.requests] == ["GET", "PATCH", "PATCH", "GET"]


@pytest.mark.parametrize(
    ("failing", "first_writes", "retry_result"),
    [
        ("/scale", 1, "scaled"),  # nothing changed; the retry does it all
        ("training-job", 2, "annotated"),  # scaled, annotation lost; the retry only annotates
    ],
)
def test_a_kubernetes_failure_is_a_502_and_the_retry_completes(
    stack: Stack, failing: str, first_writes: int, retry_result: str
) -> None:
    stack.api.fail("PATCH", failing, 500)
    first = stack.post(payload())
    assert first.status_code == 502
    assert len(stack.api.writes()) == first_writes
    assert stack.audit()[-1]["result"].startswith("failed: Kubernetes API answered 500")

    second = stack.post(payload())
    assert second.status_code == 200
    assert second.json()["decisions"][0]["result"] == retry_result
    deployment = stack.api.deployments[("ml", "training-job")]
    assert deployment["spec"]["replicas"] == 0
    assert "emergency-stop" in deployment["metadata"]["annotations"]


@pytest.mark.parametrize(
    ("body", "decision"),
    [
        (payload(alert(status="resolved"), status="resolved"), "ignored_resolved"),
        (payload(alert(name="CarbonEmissionsWarning")), "ignored_unknown_alert"),
        (payload(alert(deployment="")), "ignored_no_deployment_label"),
        (payload(alert(namespace="kube-system")), "refused_namespace"),
    ],
)
def test_alerts_it_must_not_act_on_change_nothing(tmp_path: Path, body: Any, decision: str) -> None:
    with FakeKubernetes(TOKEN, [training_job()]) as api:
        stack = start_stack(tmp_path, api, allowed_namespaces=frozenset({"ml"}))
        try:
            response = stack.post(body)
        finally:
            stack.server.close()
    assert response.status_code == 200
    assert response.json()["decisions"][0]["decision"] == decision
    assert api.requests == []
    assert stack.audit()[0]["decision"] == decision


def test_missing_deployment_is_recorded_not_retried(stack: Stack) -> None:
    response = stack.post(payload(alert(deployment="gone")))
    assert response.status_code == 200
    assert response.json()["decisions"][0]["result"] == "not_found"
    assert stack.api.writes() == []


def test_dry_run_only_reads(tmp_path: Path) -> None:
    with FakeKubernetes(TOKEN, [training_job()]) as api:
        stack = start_stack(tmp_path, api, dry_run=True)
        try:
            decisions = stack.post(payload()).json()["decisions"]
        finally:
            stack.server.close()
    assert decisions[0]["result"] == "would_scale"
    assert [r.method for r in api.requests] == ["GET"]
    assert stack.replicas() == 2
    assert stack.audit()[0]["dry_run"] is True


VALID = json.dumps(payload()).encode()


@pytest.mark.parametrize(
    ("send", "status", "reason"),
    [
        (lambda s: s.post(VALID, token=None), 401, "bearer token"),
        (lambda s: s.post(VALID, token="s3cret-token-for-test"), 401, "bearer token"),
        (lambda s: s.post(VALID, headers={"Authorization": f"Basic {TOKEN}"}), 401, "bearer token"),
        (lambda s: s.post(b'{"version": "4", "alerts": [', token=TOKEN), 400, "Invalid JSON"),
        (lambda s: s.post(b"\xff\xfe not json"), 400, "not an Alertmanager"),
        (lambda s: s.post({"version": "4", "alerts": []}), 400, "groupKey"),
        (lambda s: s.post({**payload(), "version": "3"}), 400, "version"),
        (lambda s: s.post({**payload(), "alerts": [{"labels": {}}]}), 400, "alerts.0"),
        (lambda s: s.post(b" " * (MAX_BODY + 1)), 413, "limit"),
        (lambda s: s.post(VALID, headers={"Content-Type": "text/plain"}), 415, "content type"),
        (
            lambda s: s.client.post(
                "/admin", content=VALID, headers={"Authorization": f"Bearer {TOKEN}"}
            ),
            404,
            "path",
        ),
    ],
    ids=[
        "no-token",
        "wrong-token",
        "basic-auth",
        "truncated-json",
        "not-utf8",
        "empty-object",
        "old-version",
        "incomplete-alert",
        "huge-body",
        "text-plain",
        "wrong-path",
    ],
)
def test_bad_requests_are_refused_logged_and_change_nothing(
    stack: Stack, caplog: pytest.LogCaptureFixture, send: Any, status: int, reason: str
) -> None:
    response = send(stack)

    assert response.status_code == status
    assert reason in response.json()["error"]
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert stack.api.requests == []
    (entry,) = stack.audit()
    assert entry["decision"] == "refused" and entry["result"] == f"http {status}"
    assert entry["client"] == "127.0.0.1"
    assert f"refused a request from 127.0.0.1 with {status}" in caplog.text


def test_other_methods_are_405(stack: Stack) -> None:
    response = stack.client.put("/webhook", content=VALID)
    assert response.status_code == 405 and response.headers["Allow"] == "POST"
    assert stack.api.requests == []


def test_empty_token_is_refused_at_construction(tmp_path: Path) -> None:
    responder = Responder(ResponderSettings(dry_run=True), None, AuditLog(tmp_path / "a.jsonl"))
    with pytest.raises(ValueError, match="non-empty bearer token"):
        ResponderServer(responder, "", port=0)
