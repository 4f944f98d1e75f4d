"""``hf-eco2ai rules`` and ``hf-eco2ai dashboard`` through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from hf_eco2ai.cli import app

runner = CliRunner()


def test_rules_writes_a_rule_file_with_the_given_thresholds(tmp_path: Path) -> None:
    out = tmp_path / "alerts" / "hf-eco2ai.rules.yml"

    result = runner.invoke(
        app,
        [
            "rules",
            "-o",
            str(out),
            "--critical-co2-kg",
            "10",
            "--warning-co2-kg",
            "5",
            "--critical-for",
            "5m",
            "--interval",
            "30s",
            "--runbook-url",
            "https://r.example/rb",
        ],
    )

    assert result.exit_code == 0, result.output
    group = yaml.safe_load(out.read_text())["groups"][0]
    critical = next(r for r in group["rules"] if r["alert"] == "CriticalCarbonEmissions")
    assert group["interval"] == "30s"
    assert critical["expr"].endswith("> 10") and critical["for"] == "5m"
    assert critical["annotations"]["runbook_url"] == "https://r.example/rb"


def test_rules_to_stdout_with_the_raw_runbook_total() -> None:
    result = runner.invoke(app, ["rules", "--total-window", "none"])

    assert result.exit_code == 0
    assert "expr: hf_training_co2_kg_total > 50" in result.stdout


def test_a_for_shorter_than_the_interval_is_bad_input_not_a_traceback() -> None:
    result = runner.invoke(app, ["rules", "--interval", "1m", "--warning-for", "30s"])

    assert result.exit_code == 2
    assert "warning_for" in result.output and "Traceback" not in result.output


def test_a_warning_above_the_critical_threshold_is_one_line_and_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "rules.yml"

    result = runner.invoke(
        app, ["rules", "-o", str(out), "--critical-co2-kg", "5", "--warning-co2-kg", "10"]
    )

    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        "hf-eco2ai: warning_co2_kg: warning_co2_kg=10 is above critical_co2_kg=5"
    )
    assert not out.exists()


def test_dashboard_writes_importable_json(tmp_path: Path) -> None:
    out = tmp_path / "dashboard.json"

    result = runner.invoke(app, ["dashboard", "-o", str(out), "--uid", "team-carbon"])

    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["uid"] == "team-carbon"
