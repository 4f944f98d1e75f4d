"""Serving and pushing: real sockets, a real Pushgateway, and never an exception into training."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hf_eco2ai.exporters import PrometheusExporter
from tests.exporters.snapshots import RunShape, settings
from tests.promstack import free_port, start_pushgateway

LOGGER = "hf_eco2ai.exporters.prometheus"


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def co2_in(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "hf_training_co2_kg_total":
                return sample.value
    raise AssertionError("hf_training_co2_kg_total missing")


def test_serves_the_latest_snapshot_and_stops_on_close() -> None:
    exporter = PrometheusExporter(settings())
    exporter.start()
    url = exporter.url
    assert url is not None and url.startswith("http://127.0.0.1:")
    try:
        exporter.update(RunShape().snapshot(3600.0))
        first = co2_in(httpx.get(url).text)
        exporter.update(RunShape().snapshot(7200.0))
        assert co2_in(httpx.get(url).text) == pytest.approx(2 * first)
    finally:
        exporter.close()

    assert exporter.url is None
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)


def test_a_busy_port_falls_back_to_an_ephemeral_one_with_one_warning(
    busy_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = PrometheusExporter(settings(prometheus_port=busy_port))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        exporter.start()
    url = exporter.url
    try:
        assert url is not None and f":{busy_port}/" not in url
        assert httpx.get(url).status_code == 200
    finally:
        exporter.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(busy_port) in warnings[0].getMessage()
    assert url in warnings[0].getMessage()  # says where /metrics went
    assert any(
        exporter_url_logged(r.getMessage()) for r in caplog.records if r.levelno == logging.INFO
    )


def exporter_url_logged(message: str) -> bool:
    return message.startswith("Serving Prometheus metrics at http://127.0.0.1:")


def test_an_unusable_host_is_a_warning_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    exporter = PrometheusExporter(settings(prometheus_host="192.0.2.1"))  # TEST-NET, not ours

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        exporter.start()

    assert exporter.url is None
    assert "192.0.2.1" in caplog.text
    exporter.close()


def test_each_exporter_has_its_own_registry_so_two_runs_coexist() -> None:
    first = PrometheusExporter(settings(run_id="a"))
    second = PrometheusExporter(settings(run_id="b"))

    assert first.registry is not second.registry
    assert 'run_id="a"' in first.render().decode() and 'run_id="b"' not in first.render().decode()


def test_a_down_gateway_costs_training_nothing_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    exporter = PrometheusExporter(
        settings(export_prometheus=False, pushgateway_url=dead, push_interval_seconds=0.05)
    )

    snapshots = [RunShape().snapshot(float(second)) for second in range(1000)]

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        exporter.start()
        began = time.perf_counter()
        for snapshot in snapshots:
            exporter.update(snapshot)
        updating = time.perf_counter() - began
        time.sleep(0.3)  # several failed pushes
        exporter.close(RunShape().snapshot(1000.0))

    # Not a speed test: 1000 updates would take seconds if any waited on the dead gateway.
    assert updating < 0.5
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and dead in warnings[0].getMessage()


@pytest.mark.integration
def test_pushes_on_start_on_interval_and_at_close_under_a_per_run_group(tmp_path: Path) -> None:
    with start_pushgateway(tmp_path) as gateway:
        exporter = PrometheusExporter(
            settings(
                export_prometheus=False, pushgateway_url=gateway.url, push_interval_seconds=0.2
            )
        )
        exporter.update(RunShape().snapshot(10.0))
        exporter.start()
        assert wait_for_group(gateway.url, "run-1")
        exporter.close(RunShape().snapshot(20.0))

        text = httpx.get(f"{gateway.url}/metrics").text

    pushed = [
        s
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "hf_training_co2_kg_total"
    ]
    assert len(pushed) == 1
    assert pushed[0].labels == {
        "job": "hf_eco2ai",
        "instance": "",
        "project_name": "proj",
        "run_id": "run-1",
    }
    assert pushed[0].value == pytest.approx(RunShape().snapshot(20.0).co2_kg)


def wait_for_group(url: str, run_id: str, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f'run_id="{run_id}"' in httpx.get(f"{url}/metrics").text:
            return True
        time.sleep(0.05)
    return False
