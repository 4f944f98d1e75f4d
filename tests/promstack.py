"""Start real Prometheus, Pushgateway and Alertmanager binaries on 127.0.0.1 for tests.

Each ``start_*`` function picks a free loopback port, writes its config and data under the
given temporary directory, waits until the service answers ``/-/ready`` and returns a handle
with ``.url`` and ``.stop()`` (handles are also context managers). A missing binary fails the
test when the ``CI`` environment variable is set (CI must install it) and skips it otherwise.

Usage::

    with start_prometheus(tmp_path, scrape_targets=["127.0.0.1:9466"]) as prom:
        prom.wait_for("hf_training_co2_kg_total")
        print(prom.query("rate(hf_training_co2_kg_total[5s])"))
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
import pytest
import yaml

PROMETHEUS = "prometheus"
PUSHGATEWAY = "prometheus-pushgateway"
ALERTMANAGER = "prometheus-alertmanager"
PROMTOOL = "promtool"

STARTUP_TIMEOUT_SECONDS = 20.0

S = TypeVar("S", bound="Service")


def require_binary(name: str) -> str:
    """The path of executable ``name``; fails the test under CI, skips it elsewhere."""
    path = shutil.which(name)
    if path is not None:
        return path
    packages = "prometheus prometheus-pushgateway prometheus-alertmanager"
    message = f"{name!r} is not installed (Debian: apt-get install {packages})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    """A loopback port that was free a moment ago (the OS hands out a fresh ephemeral one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """A running binary: its base ``url`` (``http://127.0.0.1:PORT``), log file and process."""

    def __init__(self, name: str, argv: list[str], port: int, workdir: Path) -> None:
        self.name = name
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.url = f"http://{self.address}"
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=workdir
        )
        self.client = httpx.Client(base_url=self.url, timeout=5.0)

    def wait_ready(self, path: str = "/-/ready") -> None:
        """Block until ``path`` answers 200; fail with the service's log if it never does."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                pytest.fail(f"{self.name} exited with {self._process.returncode}:\n{self.log()}")
            try:
                if self.client.get(path).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"{self.name} not ready after {STARTUP_TIMEOUT_SECONDS} s:\n{self.log()}")

    def log(self) -> str:
        """The service's combined output so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """Terminate the process (kill it after 5 s) and close the log; idempotent."""
        self.client.close()
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class Prometheus(Service):
    """A Prometheus server with helpers over its HTTP API."""

    def __enter__(self) -> Prometheus:
        return self

    def api(self, path: str, **params: Any) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data``; fail on an API error."""
        body = self.client.get(f"/api/v1/{path}", params=params).json()
        if body.get("status") != "success":
            pytest.fail(f"Prometheus API {path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant-query result vector (``data.result``) of ``expr``."""
        return list(self.api("query", query=expr)["result"])

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """The range-query result matrix of ``expr``."""
        return list(self.api("query_range", query=expr, start=start, end=end, step=step)["result"])

    def value(self, expr: str) -> float:
        """The value of the first series ``expr`` returns; fail when it returns none."""
        result = self.query(expr)
        if not result:
            pytest.fail(f"{expr!r} returned no data")
        return float(result[0]["value"][1])

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts as ``/api/v1/alerts`` lists them (state pending or firing)."""
        return list(self.api("alerts")["alerts"])

    def wait_for(
        self,
        expr: str,
        predicate: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 15.0,
    ) -> list[dict[str, Any]]:
        """Poll ``expr`` until ``predicate(result)`` holds; fail with the last result if not."""
        return poll(lambda: self.query(expr), predicate, timeout, f"query {expr!r}")

    def wait_for_alert(
        self, name: str, state: str = "firing", timeout: float = 15.0
    ) -> dict[str, Any]:
        """Poll until alert ``name`` is in ``state``; return it."""

        def matching() -> list[dict[str, Any]]:
            return [
                a
                for a in self.alerts()
                if a["labels"].get("alertname") == name and a["state"] == state
            ]

        return poll(matching, bool, timeout, f"alert {name} {state}")[0]


class Alertmanager(Service):
    """An Alertmanager with a helper over its v2 API."""

    def __enter__(self) -> Alertmanager:
        return self

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts Alertmanager holds now (``/api/v2/alerts``)."""
        return list(self.client.get("/api/v2/alerts").json())


def poll(
    fetch: Callable[[], list[dict[str, Any]]],
    predicate: Callable[[list[dict[str, Any]]], bool],
    timeout: float,
    what: str,
) -> list[dict[str, Any]]:
    """Call ``fetch`` every 0.2 s until ``predicate`` holds on its answer, at most ``timeout``."""
    deadline = time.monotonic() + timeout
    result = fetch()
    while not predicate(result):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: condition not met within {timeout} s; last result {result}")
        time.sleep(0.2)
        result = fetch()
    return result


def start_prometheus(
    tmp_path: Path,
    scrape_targets: Sequence[str] = (),
    rule_files: Sequence[Path] = (),
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    alertmanager_url: str | None = None,
    honor_labels: bool = False,
) -> Prometheus:
    """Start Prometheus scraping ``scrape_targets`` (``host:port``) and evaluating ``rule_files``.

    Args:
        tmp_path: Directory for the config, the TSDB and the log (created if missing).
        scrape_targets: ``host:port`` of each ``/metrics`` endpoint (job ``hf_eco2ai``).
        rule_files: Rule files to load.
        scrape_interval: Global scrape interval.
        evaluation_interval: Global rule evaluation interval.
        alertmanager_url: ``http://host:port`` of an Alertmanager to send alerts to.
        honor_labels: Keep the scraped ``job``/``instance`` labels (needed for a Pushgateway).
    """
    binary = require_binary(PROMETHEUS)
    workdir = _workdir(tmp_path, "prometheus")
    config: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
        "rule_files": [str(Path(p).resolve()) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": "hf_eco2ai",
                "honor_labels": honor_labels,
                "static_configs": [{"targets": list(scrape_targets)}],
            }
        ],
    }
    if alertmanager_url is not None:
        target = alertmanager_url.split("://", 1)[-1]
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [target]}]}]}
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    argv = [
        binary,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
        "--log.level=warn",
    ]
    return _started(Prometheus("prometheus", argv, port, workdir))


def start_pushgateway(tmp_path: Path) -> Service:
    """Start a Pushgateway (no persistence); ``.url`` is what ``pushgateway_url`` takes."""
    binary = require_binary(PUSHGATEWAY)
    workdir = _workdir(tmp_path, "pushgateway")
    port = free_port()
    # Debian's build persists to /var/lib/prometheus by default; keep each gateway in memory.
    argv = [
        binary,
        f"--web.listen-address=127.0.0.1:{port}",
        "--persistence.file=",
        "--log.level=warn",
    ]
    return _started(Service("pushgateway", argv, port, workdir))


def start_alertmanager(
    tmp_path: Path,
    webhook_url: str | None = None,
    *,
    bearer_token: str | None = None,
    group_by: list[str] | None = None,
) -> Alertmanager:
    """Start a single-node Alertmanager routing every alert to ``webhook_url`` (if given).

    ``bearer_token`` adds the ``authorization`` block a token-checking receiver requires.
    """
    binary = require_binary(ALERTMANAGER)
    workdir = _workdir(tmp_path, "alertmanager")
    receiver: dict[str, Any] = {"name": "default"}
    if webhook_url is not None:
        webhook: dict[str, Any] = {"url": webhook_url, "send_resolved": True}
        if bearer_token is not None:
            webhook["http_config"] = {
                "authorization": {"type": "Bearer", "credentials": bearer_token}
            }
        receiver["webhook_configs"] = [webhook]
    route: dict[str, Any] = {
        "receiver": "default",
        "group_wait": "0s",
        "group_interval": "1s",
        "repeat_interval": "1h",
    }
    if group_by is not None:
        route["group_by"] = group_by
    config = {"route": route, "receivers": [receiver]}
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
    return _started(Alertmanager("alertmanager", argv, port, workdir))


def _workdir(tmp_path: Path, name: str) -> Path:
    path = Path(tmp_path) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _started(service: S) -> S:
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
