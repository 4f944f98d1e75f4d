"""Serve the run's metrics on ``/metrics`` and/or push them to a Pushgateway, off the training loop.

Side effects: :meth:`PrometheusExporter.start` opens a listening socket and starts daemon
threads (HTTP server, pusher); :meth:`PrometheusExporter.close` stops them. Nothing here raises
into training: a busy port or an unreachable gateway is logged once as a warning.
"""

from __future__ import annotations

import errno
import http.client
import logging
import threading
from collections.abc import Mapping
from typing import Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, push_to_gateway, start_http_server

from hf_eco2ai.exporters.collector import SnapshotCollector
from hf_eco2ai.tracking.snapshot import TrackerSnapshot

logger = logging.getLogger(__name__)

#: The Pushgateway job label; the grouping key adds project_name and run_id under it.
PUSH_JOB = "hf_eco2ai"

#: Seconds one push may take before it is abandoned (the final push blocks close() this long).
PUSH_TIMEOUT_SECONDS = 3.0

#: Ports other Prometheus components customarily own, named in the busy-port warning.
_WELL_KNOWN_PORTS = {
    9090: "Prometheus",
    9091: "the Pushgateway",
    9093: "Alertmanager",
    9100: "node_exporter",
}


class ExporterSettings(Protocol):
    """The configuration fields the exporter reads (``CarbonConfig`` satisfies it)."""

    @property
    def project_name(self) -> str: ...

    @property
    def run_id(self) -> str: ...

    @property
    def export_prometheus(self) -> bool: ...

    @property
    def prometheus_port(self) -> int | None: ...

    @property
    def prometheus_host(self) -> str: ...

    @property
    def pushgateway_url(self) -> str | None: ...

    @property
    def push_interval_seconds(self) -> float: ...


class PrometheusExporter:
    """Exports one run's metrics by serving ``/metrics``, pushing to a Pushgateway, or both.

    Args:
        settings: Where and how to export (see :class:`ExporterSettings`).
        registry: The registry to render from; a private one by default, never the global.
        process_key: Extra Pushgateway grouping labels naming this process in a multi-process
            job (``{"rank": "3"}``), so the processes' pushes never replace each other.
        job_series: Export the job-wide series (steps, samples, samples per kWh, loss); in a
            multi-process job only the main process does, so sums over processes stay right.

    Attributes:
        registry: The registry holding this run's collector.
        url: The ``/metrics`` URL actually bound, or None while not serving.
    """

    def __init__(
        self,
        settings: ExporterSettings,
        *,
        registry: CollectorRegistry | None = None,
        process_key: Mapping[str, str] | None = None,
        job_series: bool = True,
    ) -> None:
        self._settings = settings
        self._process_key = dict(process_key or {})
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._collector = SnapshotCollector(
            settings.project_name, settings.run_id, job_series=job_series
        )
        self.registry.register(self._collector)
        self.url: str | None = None
        self._server: tuple[WSGIServer, threading.Thread] | None = None
        self._pusher: _Pusher | None = None

    @property
    def grouping_key(self) -> dict[str, str]:
        """The Pushgateway grouping key under job ``hf_eco2ai``: one group per run and process."""
        key = {"project_name": self._settings.project_name, "run_id": self._settings.run_id}
        return key | self._process_key

    def start(self) -> None:
        """Start serving and/or pushing as configured; never raises for a busy port or gateway."""
        if self._settings.export_prometheus and self._server is None:
            self._serve()
        if self._settings.pushgateway_url and self._pusher is None:
            self._pusher = _Pusher(
                self._settings.pushgateway_url,
                self.registry,
                self.grouping_key,
                self._settings.push_interval_seconds,
            )
            self._pusher.start()

    def update(self, snapshot: TrackerSnapshot) -> None:
        """Publish ``snapshot`` to the next scrape or push; O(1), safe from any thread."""
        self._collector.update(snapshot)

    def set_loss(self, value: float) -> None:
        """Publish the latest training loss (non-finite values are left out of the output)."""
        self._collector.set_loss(value)

    def set_samples_per_kwh(self, value: float) -> None:
        """Publish the job's samples per kWh (from totals over every process) instead of ours."""
        self._collector.set_samples_per_kwh(value)

    def set_budget(self, co2_kg: float | None, energy_kwh: float | None) -> None:
        """Publish the run's CO2 (kg) and energy (kWh) budgets; None leaves one out."""
        self._collector.set_budget(co2_kg, energy_kwh)

    def set_alert(self, name: str, active: bool) -> None:
        """Publish whether the in-process alert ``name`` is active."""
        self._collector.set_alert(name, active)

    def render(self) -> bytes:
        """The text exposition a scrape would receive now."""
        return generate_latest(self.registry)

    def close(self, final_snapshot: TrackerSnapshot | None = None) -> None:
        """Publish ``final_snapshot``, make the final push, and stop the server and pusher.

        Pushed groups are not deleted: the last values stay visible on the Pushgateway (and so
        in Prometheus) until someone deletes the group, which is what a finished batch job
        needs, at the price that a finished run's series never go stale by themselves.
        """
        if final_snapshot is not None:
            self.update(final_snapshot)
        linger = float(getattr(self._settings, "prometheus_linger_seconds", 0.0))
        # Give Prometheus one scrape of the final figures before the endpoint disappears.
        scraped = self._server is None or linger <= 0
        if not scraped and not self._collector.expect_final_scrape().wait(linger):
            logger.info(
                "No scrape within %.1f s of the end; the last figures were not scraped", linger
            )
        if self._pusher is not None:
            self._pusher.stop()
            self._pusher = None
        if self._server is not None:
            server, thread = self._server
            server.shutdown()
            server.server_close()
            thread.join()
            self._server = None
            self.url = None

    def _serve(self) -> None:
        host = self._settings.prometheus_host
        port = self._settings.prometheus_port or 0
        server, busy = self._bind(host, port)
        if server is None and busy:
            server, _ = self._bind(host, 0)
        if server is None:
            return
        self._server = server
        self.url = _metrics_url(host, server[0].server_port)
        if busy:
            # One warning that says where /metrics went: no scrape config points there yet.
            logger.warning(
                "Port %s is in use (customarily by %s); serving /metrics at %s instead. "
                "Set prometheus_port to a free port so Prometheus finds it.",
                port,
                _WELL_KNOWN_PORTS.get(port, "another process"),
                self.url,
            )
        logger.info("Serving Prometheus metrics at %s (bound to %s)", self.url, host)

    def _bind(
        self, host: str, port: int
    ) -> tuple[tuple[WSGIServer, threading.Thread] | None, bool]:
        """The server, or None with whether the port was merely busy (else: warned here)."""
        try:
            return start_http_server(port, addr=host, registry=self.registry), False
        except OSError as err:
            if err.errno == errno.EADDRINUSE and port != 0:
                return None, True
            logger.warning("Cannot serve /metrics on %s:%s (%s); not serving.", host, port, err)
            return None, False


def _metrics_url(host: str, port: int) -> str:
    # A wildcard bind is reachable on loopback; the URL is for people and tests to open.
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/metrics"


class _Pusher:
    """Pushes the registry to a Pushgateway every ``interval`` seconds on a daemon thread."""

    def __init__(
        self, gateway: str, registry: CollectorRegistry, key: dict[str, str], interval: float
    ) -> None:
        self._gateway = gateway
        self._registry = registry
        self._key = key
        self._interval = interval
        self._stopping = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="hf-eco2ai-push", daemon=True)

    def start(self) -> None:
        logger.info(
            "Pushing metrics to %s every %.3g s, group %s", self._gateway, self._interval, self._key
        )
        self._thread.start()

    def stop(self) -> None:
        """Ask for the final push and wait for it, at most one push timeout more."""
        self._stopping.set()
        self._thread.join(timeout=PUSH_TIMEOUT_SECONDS + 1.0)

    def _run(self) -> None:
        self._push()
        while not self._stopping.wait(self._interval):
            self._push()
        self._push()

    def _push(self) -> None:
        try:
            # PUT replaces the whole group, so series the run no longer has do not linger.
            push_to_gateway(
                self._gateway,
                job=PUSH_JOB,
                registry=self._registry,
                grouping_key=self._key,
                timeout=PUSH_TIMEOUT_SECONDS,
            )
        except (OSError, http.client.HTTPException) as err:
            self._report_failure(err)
            return
        if self._failing:
            logger.info("Pushgateway %s reachable again; pushes resumed.", self._gateway)
            self._failing = False

    def _report_failure(self, err: Exception) -> None:
        if self._failing:
            logger.debug("Push to %s failed again: %s", self._gateway, err)
            return
        self._failing = True
        logger.warning(
            "Cannot push metrics to the Pushgateway at %s (%s); training continues and the "
            "push is retried every %.3g s.",
            self._gateway,
            err,
            self._interval,
        )
