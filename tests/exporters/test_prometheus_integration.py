"""A real Prometheus scrapes the exporter (directly and through a real Pushgateway), answers every
runbook query and fires the generated alerts. Snapshots come from a run of known power."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from hf_eco2ai.exporters import PrometheusExporter
from hf_eco2ai.ops.rules import RuleSettings, render_rules
from hf_eco2ai.tracking.snapshot import TrackerSnapshot
from tests.exporters.runbook_queries import unanswered
from tests.exporters.snapshots import RunShape, settings
from tests.promstack import start_prometheus, start_pushgateway

pytestmark = pytest.mark.integration

SCRAPE_SECONDS = 1.0
FEED_SECONDS = 0.1

#: Thresholds scaled to a run of RunShape() (0.27 kg/h, 7.4e-5 kg/s) that lasts seconds.
SCALED = RuleSettings(
    critical_co2_kg=1e-4,
    critical_for="1s",
    warning_co2_kg=5e-5,
    warning_for="1s",
    rate_kg_per_hour=0.1,
    rate_window="4s",
    rate_for="1s",
    budget_for="1s",
    evaluation_interval="1s",
    scrape_interval="1s",
    total_window="1h",
)
BUDGET_KG = 1.5e-4


class Feeder:
    """Publishes the run's snapshot every FEED_SECONDS of real time, as the sampler thread would."""

    def __init__(self, exporter: PrometheusExporter, shape: RunShape) -> None:
        self.exporter, self.shape = exporter, shape
        self.began = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.last = shape.snapshot(0.0)

    def _run(self) -> None:
        while not self._stop.wait(FEED_SECONDS):
            self.last = self.shape.snapshot(time.monotonic() - self.began)
            self.exporter.update(self.last)
            self.exporter.set_loss(3.0 / (1.0 + self.last.elapsed_seconds))

    def __enter__(self) -> Feeder:
        self.exporter.update(self.last)
        self._thread.start()
        return self

    def stop(self) -> TrackerSnapshot:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return self.last

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yml"
    path.write_text(render_rules(SCALED))
    return path


@pytest.fixture
def scraped_exporter() -> Iterator[PrometheusExporter]:
    exporter = PrometheusExporter(settings())
    exporter.set_budget(BUDGET_KG, 1.0)
    exporter.start()
    yield exporter
    exporter.close()


def target(url: str) -> str:
    return url.removeprefix("http://").removesuffix("/metrics")


def test_scraped_run_answers_the_runbook_and_fires_its_alerts(
    tmp_path: Path, rules_file: Path, scraped_exporter: PrometheusExporter
) -> None:
    assert scraped_exporter.url is not None
    shape = RunShape()
    with (
        Feeder(scraped_exporter, shape) as feeder,
        start_prometheus(tmp_path, [target(scraped_exporter.url)], [rules_file]) as prom,
    ):
        prom.wait_for("count_over_time(hf_training_co2_kg_total[1m]) >= 3")
        assert unanswered(prom, "proj") == []

        for name in (
            "CarbonEmissionsWarning",
            "CriticalCarbonEmissions",
            "CarbonRateHigh",
            "CarbonBudgetExceeded",
        ):
            alert = prom.wait_for_alert(name, "firing")
            assert alert["labels"]["run_id"] == "run-1"
            assert alert["annotations"]["runbook_url"].startswith("https://")

        final = feeder.stop()
        scraped = prom.value("hf_training_co2_kg_total")

    # The last scrape is at most one scrape interval (plus one feed) behind the run's total.
    worth = shape.co2_kg_per_hour() / 3600.0 * (SCRAPE_SECONDS + FEED_SECONDS)
    assert final.co2_kg - worth <= scraped <= final.co2_kg


def test_pushed_runs_answer_the_runbook_apart_and_keep_their_final_value(
    tmp_path: Path, rules_file: Path
) -> None:
    shape = RunShape()
    with ExitStack() as stack:
        gateway = stack.enter_context(start_pushgateway(tmp_path))
        runs = {}
        for run_id in ("run-a", "run-b"):
            config = settings(
                run_id=run_id,
                export_prometheus=False,
                pushgateway_url=gateway.url,
                push_interval_seconds=0.25,
            )
            runs[run_id] = PrometheusExporter(config)
            stack.callback(runs[run_id].close)
        runs["run-a"].set_budget(BUDGET_KG, None)
        feeders = {run_id: stack.enter_context(Feeder(e, shape)) for run_id, e in runs.items()}
        for exporter in runs.values():
            exporter.start()
        prom = stack.enter_context(
            start_prometheus(tmp_path, [gateway.address], [rules_file], honor_labels=True)
        )

        prom.wait_for("count_over_time(hf_training_co2_kg_total[1m]) >= 3", lambda r: len(r) == 2)
        assert unanswered(prom, "proj") == []
        alert = prom.wait_for_alert("CarbonBudgetExceeded", "firing")
        assert alert["labels"]["run_id"] == "run-a"

        for run_id, exporter in runs.items():
            final = feeders[run_id].stop()
            exporter.close(final)
            expr = f'hf_training_co2_kg_total{{run_id="{run_id}"}}'
            prom.wait_for(
                expr, lambda r, f=final: float(r[0]["value"][1]) == pytest.approx(f.co2_kg)
            )
