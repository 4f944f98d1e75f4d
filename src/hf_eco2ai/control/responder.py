"""An Alertmanager webhook receiver that suspends a Kubernetes Deployment (runbook Option 1).

For each firing alert it is configured for, it scales the Deployment named by the alert's labels
to zero replicas and annotates it ``emergency-stop=carbon-emissions-critical-<unix time>``.
Side effects: a listening socket (127.0.0.1 unless told otherwise), Kubernetes API calls, and
one JSON line per decision appended to the audit log. Deliveries are at least once, so every
action is keyed on (group key, fingerprint, start time) and reads the Deployment first.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

logger = logging.getLogger(__name__)

ANNOTATION_KEY = "emergency-stop"
ANNOTATION_PREFIX = "carbon-emissions-critical-"
#: The patch type sent for both calls: RFC 7386 JSON merge patch, which Deployments and their
#: scale subresource accept, with the same meaning in every client version.
MERGE_PATCH = "application/merge-patch+json"
#: Recorded in the Deployment's managedFields, so ``kubectl`` shows who changed it.
FIELD_MANAGER = "hf-eco2ai-responder"

WEBHOOK_PATH = "/webhook"
HEALTH_PATH = "/healthz"
#: Alertmanager caps a notification at a few hundred alerts; 1 MiB holds that with room to spare.
DEFAULT_MAX_BODY_BYTES = 1 << 20
#: Port 9467, next to the exporter's 9466; unassigned in Prometheus's port registry.
DEFAULT_PORT = 9467
#: Seconds a client may take to send its request, and one Kubernetes call may take.
SOCKET_TIMEOUT_SECONDS = 10.0
KUBERNETES_TIMEOUT_SECONDS = 5.0


# -- Alertmanager's webhook payload (version 4) ------------------------------------------------


class WebhookAlert(BaseModel):
    """One alert of a notification; fields Alertmanager adds in later versions are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    startsAt: datetime  # noqa: N815 - Alertmanager's field names
    endsAt: datetime | None = None  # noqa: N815
    generatorURL: str = ""  # noqa: N815
    fingerprint: str = Field(min_length=1)


class WebhookMessage(BaseModel):
    """An Alertmanager webhook notification (payload ``version`` "4")."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: Literal["4"]
    groupKey: str  # noqa: N815
    truncatedAlerts: int = 0  # noqa: N815
    status: Literal["firing", "resolved"]
    receiver: str
    groupLabels: dict[str, str] = {}  # noqa: N815
    commonLabels: dict[str, str] = {}  # noqa: N815
    commonAnnotations: dict[str, str] = {}  # noqa: N815
    externalURL: str = ""  # noqa: N815
    alerts: list[WebhookAlert]


# -- settings, Kubernetes access and the audit log ----------------------------------------------


@dataclass(frozen=True)
class ResponderSettings:
    """What the responder acts on.

    Attributes:
        alert_names: Alert names that suspend a Deployment; every other alert is ignored.
        deployment_label: The alert label holding the Deployment's name.
        namespace_label: The alert label holding its namespace.
        default_namespace: Namespace used when the alert has no ``namespace_label``.
        allowed_namespaces: Namespaces it may act in; None allows any (RBAC still applies).
        dry_run: Read the Deployment and log what would be done, but change nothing.
    """

    alert_names: frozenset[str] = frozenset({"CriticalCarbonEmissions"})
    deployment_label: str = "deployment"
    namespace_label: str = "namespace"
    default_namespace: str = "default"
    allowed_namespaces: frozenset[str] | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class DeploymentState:
    """What the responder reads before acting: desired replicas and annotations."""

    replicas: int
    annotations: dict[str, str]


class DeploymentNotFoundError(LookupError):
    """The Deployment does not exist (retrying will not help)."""


class KubernetesUnavailableError(RuntimeError):
    """A Kubernetes call failed in a way a retry may fix (network, 5xx, 403 before an RBAC fix)."""


class Deployments(Protocol):
    """The three Kubernetes operations the responder needs."""

    def read(self, namespace: str, name: str) -> DeploymentState: ...

    def scale_to_zero(self, namespace: str, name: str) -> None: ...

    def annotate(self, namespace: str, name: str, key: str, value: str) -> None: ...


class KubernetesDeployments:
    """:class:`Deployments` through the official client's ``AppsV1Api``.

    Args:
        api_client: A ``kubernetes.client.ApiClient`` (see :func:`load_api_client`).
    """

    def __init__(self, api_client: Any) -> None:
        from kubernetes.client import AppsV1Api

        self._apps = AppsV1Api(api_client)

    def read(self, namespace: str, name: str) -> DeploymentState:
        deployment = self._call(
            self._apps.read_namespaced_deployment,
            name,
            namespace,
            _request_timeout=KUBERNETES_TIMEOUT_SECONDS,
        )
        replicas = deployment.spec.replicas
        # The API server defaults an unset spec.replicas to 1.
        return DeploymentState(
            replicas=1 if replicas is None else int(replicas),
            annotations=dict(deployment.metadata.annotations or {}),
        )

    def scale_to_zero(self, namespace: str, name: str) -> None:
        self._patch(
            self._apps.patch_namespaced_deployment_scale, namespace, name, {"spec": {"replicas": 0}}
        )

    def annotate(self, namespace: str, name: str, key: str, value: str) -> None:
        body = {"metadata": {"annotations": {key: value}}}
        self._patch(self._apps.patch_namespaced_deployment, namespace, name, body)

    def _patch(
        self, method: Callable[..., Any], namespace: str, name: str, body: dict[str, Any]
    ) -> None:
        self._call(
            method,
            name,
            namespace,
            body,
            field_manager=FIELD_MANAGER,
            _content_type=MERGE_PATCH,
            _request_timeout=KUBERNETES_TIMEOUT_SECONDS,
        )

    @staticmethod
    def _call(method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return method(*args, **kwargs)
        except ApiException as err:
            if err.status == 404:
                raise DeploymentNotFoundError(f"{args[1]}/{args[0]}") from err
            raise KubernetesUnavailableError(
                f"Kubernetes API answered {err.status} {err.reason}"
            ) from err
        except HTTPError as err:
            raise KubernetesUnavailableError(f"Kubernetes API unreachable: {err}") from err


def load_api_client(
    kubeconfig: str | None = None, context: str | None = None, in_cluster: bool = False
) -> Any:
    """A ``kubernetes.client.ApiClient`` from the pod's service account or a kubeconfig file."""
    from kubernetes import client, config

    if in_cluster:
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return client.ApiClient(configuration)
    return config.new_client_from_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]


class AuditLog:
    """Appends one JSON object per line to ``path`` (flushed at once); thread-safe.

    Every record has: time, decision, alert, fingerprint, group_key, deployment, dry_run,
    result; more fields where they apply.
    """

    FIELDS = (
        "time",
        "decision",
        "alert",
        "fingerprint",
        "group_key",
        "deployment",
        "dry_run",
        "result",
    )

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def write(self, **record: Any) -> dict[str, Any]:
        entry = {name: record.pop(name, None) for name in self.FIELDS}
        entry["time"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        entry.update(record)
        line = json.dumps(entry, sort_keys=False, default=str) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(line)
        return entry

    def completed_keys(self) -> set[str]:
        """Keys of alerts already acted on for real, so a restart stays idempotent."""
        if not self.path.exists():
            return set()
        keys = set()
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a crash; the decision it held is retried
            if entry.get("key") and entry.get("result") in _COMPLETED and not entry.get("dry_run"):
                keys.add(entry["key"])
        return keys


_COMPLETED = frozenset({"scaled", "annotated", "already_suspended", "not_found"})


# -- decisions ---------------------------------------------------------------------------------


def alert_key(group_key: str, alert: WebhookAlert) -> str:
    """The idempotency key of one alert in one group: a hash of group key, fingerprint, start."""
    raw = "\x1f".join((group_key, alert.fingerprint, alert.startsAt.isoformat()))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]


@dataclass
class Responder:
    """Turns notifications into decisions and, for configured firing alerts, Kubernetes calls.

    Args:
        settings: What to act on.
        deployments: Kubernetes access (None only makes sense with ``dry_run``).
        audit: Where each decision is recorded.
        clock: Unix time for the annotation (injectable for tests).
    """

    settings: ResponderSettings
    deployments: Deployments | None
    audit: AuditLog
    clock: Callable[[], float] = time.time
    _done: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._done = self.audit.completed_keys()

    def handle(self, message: WebhookMessage) -> list[dict[str, Any]]:
        """Decide and act for each alert of ``message``; returns the audit records.

        Raises:
            KubernetesUnavailableError: A call failed in a retryable way (after every alert of
                the message was tried), so the sender should deliver it again.
        """
        records, failed = [], None
        with self._lock:
            for alert in message.alerts:
                try:
                    records.append(self._decide(message.groupKey, alert))
                except KubernetesUnavailableError as err:
                    failed = err
                    records.append(
                        self._record(message.groupKey, alert, "suspend", f"failed: {err}")
                    )
        if failed is not None:
            raise failed
        return records

    def refuse(self, status: int, reason: str, client: str) -> None:
        """Record a refused request (bad token, bad payload...)."""
        # Shortcoming: refusals are not rate-limited; keep the port behind a NetworkPolicy.
        logger.warning("responder: refused a request from %s with %d: %s", client, status, reason)
        self.audit.write(decision="refused", result=f"http {status}", reason=reason, client=client)

    def _decide(self, group_key: str, alert: WebhookAlert) -> dict[str, Any]:
        name = alert.labels.get("alertname", "")
        if alert.status != "firing":
            return self._record(group_key, alert, "ignored_resolved", "no_action")
        if name not in self.settings.alert_names:
            return self._record(group_key, alert, "ignored_unknown_alert", "no_action")
        target = self._target(alert)
        if target is None:
            return self._record(group_key, alert, "ignored_no_deployment_label", "no_action")
        namespace, deployment = target
        allowed = self.settings.allowed_namespaces
        if allowed is not None and namespace not in allowed:
            return self._record(group_key, alert, "refused_namespace", "no_action")
        if alert_key(group_key, alert) in self._done:
            return self._record(group_key, alert, "duplicate", "no_action")
        return self._suspend(group_key, alert, namespace, deployment)

    def _target(self, alert: WebhookAlert) -> tuple[str, str] | None:
        deployment = alert.labels.get(self.settings.deployment_label)
        if not deployment:
            return None
        return alert.labels.get(
            self.settings.namespace_label
        ) or self.settings.default_namespace, deployment

    def _suspend(
        self, group_key: str, alert: WebhookAlert, namespace: str, name: str
    ) -> dict[str, Any]:
        if self.deployments is None:
            return self._record(group_key, alert, "suspend", "would_scale_unread")
        try:
            state = self.deployments.read(namespace, name)
        except DeploymentNotFoundError:
            return self._done_record(group_key, alert, "suspend", "not_found")
        annotated = ANNOTATION_KEY in state.annotations
        if state.replicas == 0 and annotated:
            return self._done_record(group_key, alert, "suspend", "already_suspended", state)
        if self.settings.dry_run:
            result = "would_scale" if state.replicas else "would_annotate"
            return self._record(group_key, alert, "suspend", result, replicas_before=state.replicas)
        return self._act(group_key, alert, namespace, name, state)

    def _act(
        self, group_key: str, alert: WebhookAlert, namespace: str, name: str, state: DeploymentState
    ) -> dict[str, Any]:
        assert self.deployments is not None
        # Scale first: stopping the emissions matters more than documenting them. If the
        # annotation then fails, the redelivery finds 0 replicas without it and adds it.
        if state.replicas:
            self.deployments.scale_to_zero(namespace, name)
        value = f"{ANNOTATION_PREFIX}{int(self.clock())}"
        self.deployments.annotate(namespace, name, ANNOTATION_KEY, value)
        result = "scaled" if state.replicas else "annotated"
        logger.warning(
            "responder: %s/%s %s (%s=%s)", namespace, name, result, ANNOTATION_KEY, value
        )
        return self._done_record(group_key, alert, "suspend", result, state, annotation=value)

    def _done_record(
        self,
        group_key: str,
        alert: WebhookAlert,
        decision: str,
        result: str,
        state: DeploymentState | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        self._done.add(alert_key(group_key, alert))
        if state is not None:
            extra["replicas_before"] = state.replicas
        return self._record(group_key, alert, decision, result, **extra)

    def _record(
        self, group_key: str, alert: WebhookAlert, decision: str, result: str, **extra: Any
    ) -> dict[str, Any]:
        target = self._target(alert)
        entry = self.audit.write(
            decision=decision,
            alert=alert.labels.get("alertname"),
            fingerprint=alert.fingerprint,
            group_key=group_key,
            deployment=None if target is None else f"{target[0]}/{target[1]}",
            dry_run=self.settings.dry_run,
            result=result,
            key=alert_key(group_key, alert),
            status=alert.status,
            starts_at=alert.startsAt.isoformat(),
            **extra,
        )
        logger.info("responder: %s %s -> %s", entry["alert"], decision, result)
        return entry


# -- HTTP ----------------------------------------------------------------------------------------


class ResponderServer:
    """Serves ``POST /webhook`` (bearer token) and ``GET /healthz`` on a threading HTTP server.

    The standard library's server is enough for one small endpoint that Alertmanager calls a
    few times a minute, and adds no dependency to the image.

    Args:
        responder: Makes the decisions.
        token: The bearer token Alertmanager must send (its ``http_config.authorization``).
        host: Address to bind; 127.0.0.1 unless told otherwise.
        port: Port to bind; 0 picks a free one.
        max_body_bytes: Larger requests are refused with 413 before being read.
    """

    def __init__(
        self,
        responder: Responder,
        token: str,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        if not token:
            raise ValueError("the responder needs a non-empty bearer token")
        self.responder = responder
        self._token = token.encode("utf-8")
        self.max_body_bytes = max_body_bytes
        self._server = _Server((host, port), _handler_for(self))
        self.url = f"http://{host}:{self._server.server_port}"
        self._thread: threading.Thread | None = None

    def token_matches(self, header: str | None) -> bool:
        """Constant-time comparison of an ``Authorization`` header with the expected token."""
        scheme, _, given = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("utf-8"), self._token
        )

    def start(self) -> ResponderServer:
        """Serve on a daemon thread and return at once."""
        self._thread = threading.Thread(
            target=self.serve_forever, name="hf-eco2ai-responder", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        logger.info("responder: listening on %s%s", self.url, WEBHOOK_PATH)
        # A short poll keeps close() quick; an idle wake-up ten times a second costs nothing.
        self._server.serve_forever(poll_interval=0.1)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log what a handler raised, instead of printing a traceback to stderr."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            _log_client_gone(client_address[0], error)
            return
        logger.error("responder: error serving %s", client_address[0], exc_info=True)


def _log_client_gone(client: str, error: OSError) -> None:
    # Nothing to answer: the sender retries a notification it got no answer to.
    logger.warning("responder: client %s went away before the answer: %s", client, error)


class _Refusal(Exception):
    def __init__(self, status: int, reason: str, allow: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.allow = allow


def _handler_for(owner: ResponderServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = SOCKET_TIMEOUT_SECONDS
        server_version = "hf-eco2ai-responder"
        sys_version = ""

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == HEALTH_PATH:
                self._answer(200, {"status": "ok"})
            else:
                self._refuse(self._wrong_method_or_path())

        def do_POST(self) -> None:  # noqa: N802
            try:
                message = self._message()
            except _Refusal as refusal:
                self._refuse(refusal)
                return
            try:
                records = owner.responder.handle(message)
            except KubernetesUnavailableError as err:
                # 5xx makes Alertmanager deliver again; the retry is safe (see Responder).
                self._answer(502, {"error": str(err)})
                return
            self._answer(
                200,
                {
                    "decisions": [
                        {k: r[k] for k in ("alert", "decision", "result")} for r in records
                    ]
                },
            )

        def _refuse_method(self) -> None:
            self._refuse(self._wrong_method_or_path())

        do_PUT = do_DELETE = do_PATCH = _refuse_method  # noqa: N815

        def _wrong_method_or_path(self) -> _Refusal:
            allowed = {WEBHOOK_PATH: "POST", HEALTH_PATH: "GET"}.get(self.path)
            if allowed is None:
                return _Refusal(404, f"no such path {self.path[:100]!r}; post to {WEBHOOK_PATH}")
            return _Refusal(
                405, f"{self.command} is not allowed on {self.path}; use {allowed}", allow=allowed
            )

        def _refuse(self, refusal: _Refusal) -> None:
            owner.responder.refuse(refusal.status, refusal.reason, self.client_address[0])
            self._answer(refusal.status, {"error": refusal.reason}, allow=refusal.allow)

        def _message(self) -> WebhookMessage:
            if self.path != WEBHOOK_PATH:
                raise self._wrong_method_or_path()
            if not owner.token_matches(self.headers.get("Authorization")):
                raise _Refusal(401, "missing or wrong bearer token")
            return _parse(self._body())

        def _body(self) -> bytes:
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                raise _Refusal(411, "a Content-Length header is required")
            if int(length) > owner.max_body_bytes:
                raise _Refusal(
                    413, f"body of {length} bytes is over the {owner.max_body_bytes}-byte limit"
                )
            content_type = self.headers.get_content_type()
            if content_type != "application/json":
                raise _Refusal(415, f"content type {content_type!r} is not application/json")
            return self._read(int(length))

        def _read(self, length: int) -> bytes:
            try:
                body = self.rfile.read(length)
            except TimeoutError:
                raise _Refusal(
                    408,
                    f"the body did not reach its Content-Length of {length} bytes"
                    f" within {self.timeout:g} seconds",
                ) from None
            if len(body) < length:
                # The client closed its side early: a partial body must not be parsed.
                raise _Refusal(
                    400, f"the body ended after {len(body)} of its Content-Length of {length} bytes"
                )
            return body

        def _answer(self, status: int, body: dict[str, Any], allow: str | None = None) -> None:
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Bearer realm="hf-eco2ai-responder"')
            if allow is not None:
                self.send_header("Allow", allow)
            if status >= 400:
                # An unread body must not be taken for the next request on this connection.
                self.close_connection = True
                self.send_header("Connection", "close")
            try:
                self.end_headers()
                self.wfile.write(data)
            except ConnectionError as err:
                self.close_connection = True
                _log_client_gone(self.client_address[0], err)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            logger.debug("responder: %s %s", self.client_address[0], format % args)

    return Handler


def _parse(body: bytes) -> WebhookMessage:
    try:
        return WebhookMessage.model_validate_json(body)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise _Refusal(
            400, f"not an Alertmanager v4 webhook payload: {where}: {first['msg']}"
        ) from None
