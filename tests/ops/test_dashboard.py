"""The Grafana dashboard: its structure, its variable, and PromQL that promtool parses."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from hf_eco2ai.exporters.catalogue import CATALOGUE
from hf_eco2ai.ops.dashboard import DASHBOARD_UID, render_dashboard
from tests.promstack import PROMTOOL, require_binary

PANEL_TITLES = [
    "Cumulative CO2",
    "Emission rate",
    "Energy",
    "Energy by component",
    "GPU power",
    "GPU utilisation",
    "Grid carbon intensity",
    "Samples per kWh",
    "Training loss",
    "Carbon budget",
]


@pytest.fixture(scope="module")
def model() -> dict:
    return json.loads(render_dashboard())


def expressions(model: dict) -> list[str]:
    return [t["expr"] for panel in model["panels"] for t in panel["targets"]]


def test_the_dashboard_has_the_runbook_uid_and_the_issue_panels(model: dict) -> None:
    assert model["uid"] == DASHBOARD_UID
    assert [p["title"] for p in model["panels"]] == PANEL_TITLES
    assert len({p["id"] for p in model["panels"]}) == len(model["panels"])


def test_panels_tile_a_two_column_grid_without_overlap(model: dict) -> None:
    cells = {(p["gridPos"]["x"], p["gridPos"]["y"]) for p in model["panels"]}

    assert len(cells) == len(model["panels"])
    assert all(p["gridPos"]["w"] + p["gridPos"]["x"] <= 24 for p in model["panels"])


def test_every_query_filters_on_the_project_variable_and_uses_the_datasource_variable(
    model: dict,
) -> None:
    variables = {v["name"]: v for v in model["templating"]["list"]}

    assert (
        variables["project_name"]["query"]["query"]
        == "label_values(hf_training_run_info, project_name)"
    )
    assert variables["datasource"]["type"] == "datasource"
    for panel in model["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            assert 'project_name=~"$project_name"' in target["expr"]


def test_every_runbook_series_is_on_the_dashboard(model: dict) -> None:
    shown = " ".join(expressions(model))

    for spec in CATALOGUE:
        if spec.runbook:
            assert spec.name in shown


@pytest.mark.integration
def test_promtool_parses_every_panel_query(model: dict, tmp_path: Path) -> None:
    # Grafana replaces its variables before querying; promtool needs plain PromQL.
    exprs = [
        e.replace("$__rate_interval", "1m").replace("$project_name", ".*")
        for e in expressions(model)
    ]
    rules = [{"record": f"dashboard:panel_query_{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    result = subprocess.run(
        [require_binary(PROMTOOL), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout
