"""A small Kubernetes API server on 127.0.0.1 speaking the Deployment endpoints the responder uses.

It serves complete ``apps/v1`` Deployment and ``autoscaling/v1`` Scale objects (the official
client deserialises responses strictly), applies JSON merge patches (RFC 7386) as the API server
does for these objects, bumps ``resourceVersion`` and ``generation`` like it, answers errors as
``Status`` objects, checks the bearer token, and records every request for assertions.
"""

from __future__ import annotations

import copy
import json
import os
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

FIXTURE = Path(__file__).parents[1] / "fixtures" / "k8s" / "deployment-training-job.json"

_PATH = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments/([^/]+)(/scale)?$")
_PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")


def require_kubernetes() -> None:
    """Skip without the Kubernetes client; under CI (``CI`` set) fail, since CI must install it."""
    try:
        import kubernetes  # noqa: F401
    except ImportError:
        message = "the Kubernetes client is not installed (pip install kubernetes)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message, allow_module_level=True)


@dataclass(frozen=True)
class ApiRequest:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str | None
    authorization: str | None
    body: Any


def training_job(
    namespace: str = "ml", name: str = "training-job", replicas: int = 2
) -> dict[str, Any]:
    """The fixture Deployment, renamed and with ``replicas`` desired and running."""
    deployment: dict[str, Any] = json.loads(FIXTURE.read_text())
    deployment["metadata"].update(name=name, namespace=namespace)
    deployment["spec"]["replicas"] = replicas
    for key in ("replicas", "readyReplicas", "availableReplicas", "updatedReplicas"):
        deployment["status"][key] = replicas
    return deployment


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def status(code: int, reason: str, message: str, name: str = "") -> dict[str, Any]:
    details = {"name": name, "group": "apps", "kind": "deployments"} if name else {}
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }


class FakeKubernetes:
    """Holds Deployments by (namespace, name); ``requests`` lists what clients sent.

    Args:
        token: The bearer token clients must present.
        deployments: Initial objects (see :func:`training_job`).
    """

    def __init__(self, token: str, deployments: list[dict[str, Any]]) -> None:
        self.token = token
        self.deployments = {
            (d["metadata"]["namespace"], d["metadata"]["name"]): d for d in deployments
        }
        self.requests: list[ApiRequest] = []
        self._failures: dict[tuple[str, str], list[int]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def fail(self, method: str, path_end: str, *codes: int) -> None:
        """Answer the next requests of ``method`` to paths ending in ``path_end`` with ``codes``."""
        self._failures[(method, path_end)] = list(codes)

    def kubeconfig(self, folder: Path) -> Path:
        """A kubeconfig file pointing at this server with the bearer token."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "responder", "user": {"token": self.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "responder"}}],
            "current-context": "fake",
        }
        path = folder / "kubeconfig.json"  # JSON is YAML, and kubeconfig loaders read YAML
        path.write_text(json.dumps(config))
        return path

    def writes(self) -> list[ApiRequest]:
        """The requests that could change something (not GET)."""
        return [r for r in self.requests if r.method != "GET"]

    def handle(self, request: ApiRequest) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(request)
            return self._route(request)

    def _route(self, request: ApiRequest) -> tuple[int, dict[str, Any]]:
        if request.authorization != f"Bearer {self.token}":
            return 401, status(401, "Unauthorized", "Unauthorized")
        for (method, end), codes in self._failures.items():
            if codes and request.method == method and request.path.endswith(end):
                code = codes.pop(0)
                return code, status(code, "InternalError", "etcdserver: request timed out")
        match = _PATH.match(request.path)
        if match is None:
            return 404, status(404, "NotFound", "the server could not find the requested resource")
        namespace, name, scale = match.groups()
        deployment = self.deployments.get((namespace, name))
        if deployment is None:
            return 404, status(404, "NotFound", f'deployments.apps "{name}" not found', name)
        if request.method == "PATCH":
            return self._patch(request, deployment, bool(scale))
        if request.method != "GET":
            return 405, status(405, "MethodNotAllowed", f"{request.method} is not supported here")
        return 200, (_scale_of(deployment) if scale else copy.deepcopy(deployment))

    def _patch(
        self, request: ApiRequest, deployment: dict[str, Any], scale: bool
    ) -> tuple[int, dict[str, Any]]:
        if request.content_type not in _PATCH_TYPES:
            accepted = ", ".join(_PATCH_TYPES)
            message = f"the body of the request was in an unknown format - accepted: {accepted}"
            return 415, status(415, "UnsupportedMediaType", message)
        if scale:
            replicas = merge_patch(_scale_of(deployment), request.body)["spec"]["replicas"]
            patched = merge_patch(deployment, {"spec": {"replicas": replicas}})
        else:
            patched = merge_patch(deployment, request.body)
        _bump(deployment, patched)
        self.deployments[(patched["metadata"]["namespace"], patched["metadata"]["name"])] = patched
        return 200, (_scale_of(patched) if scale else copy.deepcopy(patched))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeKubernetes:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _bump(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Advance resourceVersion on any change and generation on a spec change, as etcd would."""
    if after == before:
        return
    meta = after["metadata"]
    meta["resourceVersion"] = str(int(before["metadata"]["resourceVersion"]) + 1)
    if after["spec"] != before["spec"]:
        meta["generation"] = before["metadata"]["generation"] + 1


def _scale_of(deployment: dict[str, Any]) -> dict[str, Any]:
    """The ``autoscaling/v1`` Scale the API server derives from a Deployment."""
    meta = deployment["metadata"]
    labels = deployment["spec"]["selector"]["matchLabels"]
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": deployment["spec"]["replicas"]},
        "status": {
            "replicas": deployment["status"]["replicas"],
            "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        },
    }


def _handler(api: FakeKubernetes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            request = ApiRequest(
                method=self.command,
                path=url.path,
                query=parse_qs(url.query),
                content_type=self.headers.get("Content-Type"),
                authorization=self.headers.get("Authorization"),
                body=json.loads(raw) if raw else None,
            )
            code, body = api.handle(request)
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PATCH = do_PUT = do_POST = do_DELETE = _serve  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler
