"""The generated rule file: promtool accepts it, its unit tests pass, and the traps are refused."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from hf_eco2ai.errors import ConfigError
from hf_eco2ai.ops.rules import RuleSettings, duration_seconds, render_rules
from tests.promstack import PROMTOOL, require_binary

UNIT_TESTS = Path(__file__).with_name("rules_test.yml")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary(PROMTOOL), *args], capture_output=True, text=True, timeout=60
    )


def unit_test(tmp_path: Path, settings: RuleSettings) -> subprocess.CompletedProcess[str]:
    (tmp_path / "rules.yml").write_text(render_rules(settings))
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    return promtool("test", "rules", str(tmp_path / UNIT_TESTS.name))


@pytest.mark.integration
def test_every_rule_fires_and_stays_quiet_as_the_promtool_unit_tests_expect(tmp_path: Path) -> None:
    result = unit_test(tmp_path, RuleSettings())

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
def test_the_raw_runbook_total_misses_a_restarted_run(tmp_path: Path) -> None:
    result = unit_test(tmp_path, RuleSettings(total_window=None))

    assert result.returncode != 0
    # Among the failures: the restarted run r2 (40 kg then 30 kg) never reaches critical.
    assert "alertname: CriticalCarbonEmissions, time: 17m30s" in result.stderr


@pytest.mark.integration
@pytest.mark.parametrize("total_window", ["7d", None])
def test_promtool_accepts_the_rule_file(tmp_path: Path, total_window: str | None) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(render_rules(RuleSettings(total_window=total_window)))

    result = promtool("check", "rules", str(path))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


def test_every_alert_has_severity_summary_description_and_runbook_url() -> None:
    groups = yaml.safe_load(render_rules(RuleSettings(runbook_url="https://example.org/rb")))[
        "groups"
    ]

    assert groups[0]["interval"] == "15s"
    names = [rule["alert"] for rule in groups[0]["rules"]]
    assert {"CriticalCarbonEmissions", "CarbonEmissionsWarning", "CarbonRateHigh"} <= set(names)
    assert {"CarbonBudgetApproaching", "CarbonBudgetExceeded"} <= set(names)
    for rule in groups[0]["rules"]:
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["runbook_url"] == "https://example.org/rb"
        assert "$labels.run_id" in rule["annotations"]["summary"]
        assert "{{" in rule["annotations"]["description"]


def test_thresholds_and_durations_reach_the_rules() -> None:
    settings = RuleSettings(
        critical_co2_kg=12.5,
        critical_for="3m",
        warning_co2_kg=10.0,
        rate_window="10m",
        evaluation_interval="30s",
    )

    rules = {r["alert"]: r for r in yaml.safe_load(render_rules(settings))["groups"][0]["rules"]}

    assert rules["CriticalCarbonEmissions"]["expr"].endswith("> 12.5")
    assert rules["CriticalCarbonEmissions"]["for"] == "3m"
    assert "[10m]" in rules["CarbonRateHigh"]["expr"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"warning_for": "30s", "evaluation_interval": "1m"}, "warning_for"),
        ({"rate_window": "30s", "scrape_interval": "15s"}, "rate_window"),
        ({"rate_window": "1m", "scrape_interval": "1m"}, "rate_window"),
        ({"critical_for": "one minute"}, "critical_for"),
        ({"total_window": "7 days"}, "total_window"),
        ({"critical_co2_kg": 0.0}, "critical_co2_kg"),
        ({"budget_warning_fraction": 1.0}, "budget_warning_fraction"),
        ({"critical_co2_kg": 5.0, "warning_co2_kg": 10.0}, "warning_co2_kg"),
    ],
)
def test_settings_that_would_misbehave_are_refused_naming_the_field(
    overrides: dict, field: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        RuleSettings(**overrides)

    assert caught.value.field == field


def test_a_warning_above_the_critical_threshold_names_both() -> None:
    with pytest.raises(ConfigError) as caught:
        RuleSettings(critical_co2_kg=5.0, warning_co2_kg=10.0)

    assert "warning_co2_kg=10 is above critical_co2_kg=5" in str(caught.value)
    assert caught.value.value == 10.0


def test_a_warning_at_the_critical_threshold_is_allowed() -> None:
    assert RuleSettings(critical_co2_kg=5.0, warning_co2_kg=5.0).warning_co2_kg == 5.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0s", 0), ("30s", 30), ("1m30s", 90), ("2h", 7200), ("7d", 604800), ("500ms", 0.5)],
)
def test_durations_are_read_as_prometheus_reads_them(text: str, seconds: float) -> None:
    assert duration_seconds("x", text) == seconds


def test_the_warning_defaults_to_half_the_critical_threshold() -> None:
    assert RuleSettings().warning_co2_kg == 25.0  # the runbook's pair, 25 of 50
    assert RuleSettings(critical_co2_kg=1e-9).warning_co2_kg == 5e-10
