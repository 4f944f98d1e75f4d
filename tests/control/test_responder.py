"""The responder over real HTTP, acting through the official Kubernetes client on a fake API server.

No cluster runs here: ``fake_k8s.FakeKubernetes`` speaks the Deployment and Scale endpoints with
complete objects, and the tests check the exact requests the client sends.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from hf_eco2ai.cli import app
from hf_eco2ai.control import responder as responder_module
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


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [("PUT", "/webhook", "POST"), ("GET", "/webhook", "POST"), ("POST", "/healthz", "GET")],
)
def test_other_methods_are_405_and_audited(
    stack: Stack, caplog: pytest.LogCaptureFixture, method: str, path: str, allow: str
) -> None:
    response = stack.client.request(method, path, content=VALID)

    assert response.status_code == 405 and response.headers["Allow"] == allow
    assert f"use {allow}" in response.json()["error"]
    assert stack.api.requests == []
    (entry,) = stack.audit()
    assert entry["decision"] == "refused" and entry["result"] == "http 405"
    assert "refused a request from 127.0.0.1 with 405" in caplog.text


def test_unknown_path_on_get_is_a_404_and_audited(stack: Stack) -> None:
    response = stack.client.get("/admin")

    assert response.status_code == 404 and "post to /webhook" in response.json()["error"]
    (entry,) = stack.audit()
    assert entry["decision"] == "refused" and entry["result"] == "http 404"


SHORT_BODY_REQUEST = (
    b"POST /webhook HTTP/1.1\r\nHost: responder\r\nAuthorization: Bearer " + TOKEN.encode()
    + b"\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n" + VALID[:20]
)  # fmt: skip


def send_raw(server: ResponderServer, request: bytes) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=10.0)
    connection.sendall(request)
    return connection


def receive_all(connection: socket.socket) -> bytes:
    chunks = []
    while chunk := connection.recv(65536):
        chunks.append(chunk)
    connection.close()
    return b"".join(chunks)


def test_a_body_shorter_than_its_content_length_is_refused_not_parsed(stack: Stack) -> None:
    connection = send_raw(stack.server, SHORT_BODY_REQUEST)
    connection.shutdown(socket.SHUT_WR)  # the client's side ends after 20 bytes

    head, _, body = receive_all(connection).partition(b"\r\n\r\n")

    assert head.startswith(b"HTTP/1.0 400 ")
    assert json.loads(body) == {
        "error": "the body ended after 20 of its Content-Length of 10000 bytes"
    }
    (entry,) = stack.audit()
    assert entry["decision"] == "refused" and entry["result"] == "http 400"
    assert stack.api.requests == []


def test_a_body_that_stalls_past_the_timeout_is_a_408(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(responder_module, "SOCKET_TIMEOUT_SECONDS", 0.2)
    with FakeKubernetes(TOKEN, [training_job()]) as api:
        stack = start_stack(tmp_path, api)
        try:
            head, _, body = receive_all(send_raw(stack.server, SHORT_BODY_REQUEST)).partition(
                b"\r\n\r\n"
            )
        finally:
            stack.server.close()

    assert head.startswith(b"HTTP/1.0 408 ")
    assert "Content-Length of 10000 bytes within 0.2 seconds" in json.loads(body)["error"]
    assert stack.audit()[0]["result"] == "http 408"
    assert api.requests == []


def wait_for_log(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        records = [r for r in caplog.records if text in r.getMessage()]
        if records:
            return records
        time.sleep(0.02)
    return []


@pytest.mark.parametrize("close", ["close", "reset"])
def test_a_client_that_went_away_is_one_log_line_and_no_traceback(
    stack: Stack, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], close: str
) -> None:
    caplog.set_level(logging.INFO, logger="hf_eco2ai.control.responder")
    connection = send_raw(stack.server, SHORT_BODY_REQUEST)
    if close == "reset":
        # SO_LINGER with a zero timeout makes close() send a TCP reset instead of a FIN.
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()

    (record,) = wait_for_log(caplog, "client 127.0.0.1 went away before the answer")

    assert record.levelno == logging.WARNING and record.exc_info is None
    assert capfd.readouterr().err == ""
    entries = stack.audit() if stack.audit_path.exists() else []
    # A reset arrives while the body is read (nothing to record); a close ends it short (a 400).
    assert [e["result"] for e in entries] == (["http 400"] if close == "close" else [])
    assert stack.api.requests == []
    assert stack.client.get("/healthz").status_code == 200  # it still serves


def test_empty_token_file_is_named(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("\n")

    result = CliRunner().invoke(app, ["responder", "--token-file", str(token_file)])

    assert result.exit_code == 2
    expected = f"--token-file {str(token_file)!r} is empty; write the bearer token in it"
    assert result.stderr == f"hf-eco2ai responder: {expected}\n"


@pytest.mark.parametrize(
    ("args", "prefix"), [(["--dry-run"], "dry run still reads the Deployment: "), ([], "")]
)
def test_a_missing_kubernetes_configuration_says_what_to_pass(
    tmp_path: Path, args: list[str], prefix: str
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    argv = ["responder", "--token-file", str(token_file), "--audit-log", str(tmp_path / "a.jsonl")]

    result = CliRunner().invoke(app, [*argv, "--kubeconfig", str(tmp_path / "missing"), *args])

    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        f"hf-eco2ai responder: {prefix}cannot load the Kubernetes configuration ("
    )
    assert line.endswith(
        "); pass --kubeconfig PATH (and --context NAME) or --in-cluster inside a pod"
    )


def test_empty_token_is_refused_at_construction(tmp_path: Path) -> None:
    responder = Responder(ResponderSettings(dry_run=True), None, AuditLog(tmp_path / "a.jsonl"))
    with pytest.raises(ValueError, match="non-empty bearer token"):
        ResponderServer(responder, "", port=0)
