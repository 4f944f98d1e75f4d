"""The catalogue holds the runbook's names and follows the naming guide everywhere else."""

from __future__ import annotations

import re

import pytest

from hf_eco2ai.exporters.catalogue import CATALOGUE, RUN_LABELS, by_name

RUNBOOK_NAMES = [
    "hf_training_co2_kg_total",
    "hf_training_energy_kwh_total",
    "hf_training_carbon_budget_kg",
    "hf_training_gpu_utilization_percent",
    "hf_training_gpu_power_watts",
    "hf_training_grid_carbon_intensity_g_per_kwh",
    "hf_training_loss",
    "hf_training_samples_per_kwh",
]


@pytest.mark.parametrize("name", RUNBOOK_NAMES)
def test_runbook_names_are_kept_and_marked(name: str) -> None:
    assert by_name(name).runbook


def test_only_runbook_names_are_marked() -> None:
    assert sorted(s.name for s in CATALOGUE if s.runbook) == sorted(RUNBOOK_NAMES)


@pytest.mark.parametrize("spec", CATALOGUE, ids=lambda s: s.name)
def test_names_follow_type_conventions(spec: object) -> None:
    name, kind = spec.name, spec.type  # type: ignore[attr-defined]
    assert re.fullmatch(r"hf_training_[a-z0-9_]+", name)
    assert name.endswith("_total") == (kind == "counter")
    assert name.endswith("_info") == (kind == "info")
    assert spec.all_labels[:2] == RUN_LABELS  # type: ignore[attr-defined]
    assert len(set(spec.all_labels)) == len(spec.all_labels)  # type: ignore[attr-defined]


def test_names_are_unique_and_unknown_names_raise() -> None:
    assert len({s.name for s in CATALOGUE}) == len(CATALOGUE)
    with pytest.raises(KeyError, match="hf_training_nope"):
        by_name("hf_training_nope")


@pytest.mark.parametrize(
    "name", [s.name for s in CATALOGUE if "gpu" in s.name and not s.name.endswith("_info")]
)
def test_per_gpu_series_carry_gpu(name: str) -> None:
    assert "gpu" in by_name(name).labels
