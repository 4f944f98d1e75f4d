"""What a scrape renders from a snapshot: names, labels, units and values, parsed back."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from hf_eco2ai.exporters.collector import SnapshotCollector
from hf_eco2ai.tracking.snapshot import TrackerSnapshot
from hf_eco2ai.units import JOULES_PER_KWH
from tests.exporters.snapshots import START_TIME, RunShape

RUN = {"project_name": "proj", "run_id": "run-1"}


def scrape(collector: SnapshotCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted({**RUN, **labels}.items())))]


@pytest.fixture
def collector() -> SnapshotCollector:
    return SnapshotCollector("proj", "run-1", host="node-7")


@pytest.mark.parametrize("gpus", [0, 1, 8])
def test_totals_are_converted_once_to_the_catalogue_units(
    collector: SnapshotCollector, gpus: int
) -> None:
    shape = RunShape(gpus=gpus)
    snapshot = shape.snapshot(elapsed=3600.0)
    collector.update(snapshot)

    samples = scrape(collector)

    assert value(samples, "hf_training_energy_kwh_total") == pytest.approx(shape.watts / 1000.0)
    assert value(samples, "hf_training_co2_kg_total") == pytest.approx(shape.co2_kg_per_hour())
    cpu = value(samples, "hf_training_energy_joules_total", component="cpu", source="estimated")
    assert cpu == pytest.approx(65.0 * 3600.0)
    gpu_series = [k for k in samples if k[0] == "hf_training_gpu_power_watts"]
    assert len(gpu_series) == gpus


def test_gpu_series_are_labelled_by_index_with_identity_in_the_info_series(
    collector: SnapshotCollector,
) -> None:
    collector.update(RunShape(gpus=2).snapshot(10.0))

    samples = scrape(collector)

    assert value(samples, "hf_training_gpu_utilization_percent", gpu="1") == 91.0
    assert value(samples, "hf_training_gpu_power_watts", gpu="0") == 300.0
    assert (
        value(samples, "hf_training_gpu_energy_joules_total", gpu="0", source="measured") == 3000.0
    )
    info = dict(gpu="1", gpu_uuid="GPU-00000001", gpu_name="NVIDIA H100 80GB HBM3")
    assert value(samples, "hf_training_gpu_info", **info) == 1.0


def test_intensity_and_run_info_name_their_source(collector: SnapshotCollector) -> None:
    collector.update(RunShape().snapshot(10.0))

    samples = scrape(collector)

    labels = dict(intensity_source="test table", zone="FRA", kind="average", fallback="false")
    assert value(samples, "hf_training_grid_carbon_intensity_g_per_kwh", **labels) == 400.0
    info = [k for k in samples if k[0] == "hf_training_run_info"]
    assert len(info) == 1
    assert ("host", "node-7") in info[0][1] and ("zone", "FRA") in info[0][1]
    assert value(samples, "hf_training_start_time_seconds") == START_TIME
    assert value(samples, "hf_training_last_sample_timestamp_seconds") == START_TIME + 10.0


def test_before_any_snapshot_counters_start_at_zero_and_optional_series_are_absent(
    collector: SnapshotCollector,
) -> None:
    samples = scrape(collector)

    assert value(samples, "hf_training_co2_kg_total") == 0.0
    names = {k[0] for k in samples}
    absent = {
        "hf_training_loss",
        "hf_training_carbon_budget_kg",
        "hf_training_grid_carbon_intensity_g_per_kwh",
    }
    assert not names & absent
    assert "hf_training_start_time_seconds" not in names


def test_loss_budget_and_alerts_are_rendered_as_set(collector: SnapshotCollector) -> None:
    collector.set_loss(2.5)
    collector.set_budget(1.5, None)
    collector.set_alert("co2_rate_kg_per_hour", True)
    collector.set_alert("energy_kwh", False)

    samples = scrape(collector)

    assert value(samples, "hf_training_loss") == 2.5
    assert value(samples, "hf_training_carbon_budget_kg") == 1.5
    assert "hf_training_energy_budget_kwh" not in {k[0] for k in samples}
    assert value(samples, "hf_training_alert_active", alert="co2_rate_kg_per_hour") == 1.0
    assert value(samples, "hf_training_alert_active", alert="energy_kwh") == 0.0


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_values_are_left_out_not_exported(
    collector: SnapshotCollector, bad: float
) -> None:
    collector.set_loss(bad)
    collector.update(TrackerSnapshot(energy_joules=JOULES_PER_KWH, co2_grams=bad))

    samples = scrape(collector)

    names = {k[0] for k in samples}
    assert "hf_training_loss" not in names and "hf_training_co2_kg_total" not in names
    assert value(samples, "hf_training_energy_kwh_total") == 1.0


def test_counter_sample_names_are_exactly_the_runbook_names_in_both_formats(
    collector: SnapshotCollector,
) -> None:
    registry = CollectorRegistry()
    registry.register(collector)

    text = generate_latest(registry).decode()
    openmetrics = generate_openmetrics(registry).decode()

    for exposition in (text, openmetrics):
        assert (
            '\nhf_training_co2_kg_total{project_name="proj",run_id="run-1"} 0.0'
            in "\n" + exposition
        )
        assert "hf_training_co2_kg_created" not in exposition
    assert "# TYPE hf_training_co2_kg_total counter" in text
    assert "# TYPE hf_training_co2_kg counter" in openmetrics


def test_registering_twice_in_one_registry_is_refused() -> None:
    registry = CollectorRegistry()
    registry.register(SnapshotCollector("a", "1"))

    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(SnapshotCollector("a", "2"))
