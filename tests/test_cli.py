"""The ``hf-eco2ai`` command line: demo, track, report and check-budget, as a user runs them."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hf_eco2ai
from hf_eco2ai.cli import app

runner = CliRunner()


def invoke(*args: str) -> object:
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo")
    result = invoke("demo", "--output-dir", str(out), "--steps", "3", "--country", "FRA")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    return out, result.output  # type: ignore[attr-defined]


def test_demo_summary_agrees_with_its_json(demo_report: tuple[Path, str]) -> None:
    out, printed = demo_report
    report = json.loads((out / "carbon_report.json").read_text())

    kwh = report["energy"]["total_kwh"]
    kg = report["emissions"]["total_kg"]
    printed_kwh = re.search(r"energy +([0-9.e+-]+) kWh", printed)
    printed_kg = re.search(r"CO2eq +([0-9.e+-]+) kg", printed)
    assert printed_kwh and printed_kg, printed
    # Four significant digits at least, however small the run (a 3-step run is ~1e-6 kWh).
    assert float(printed_kwh[1]) == pytest.approx(kwh, rel=1e-3) and kwh > 0
    assert float(printed_kg[1]) == pytest.approx(kg, rel=1e-3) and kg > 0
    # CO2 is energy times the (single, bundled) intensity of France, 2023.
    assert kg == pytest.approx(kwh * 56.039 / 1000, rel=1e-9)
    assert report["training"]["steps"] == 3
    assert "FRA" in printed and "2023" in printed


def test_report_prints_a_saved_report(demo_report: tuple[Path, str]) -> None:
    out, _ = demo_report
    text = invoke("report", str(out))
    as_json = invoke("report", str(out / "carbon_report.json"), "--json")

    assert text.exit_code == 0 and "hf-eco2ai: project" in text.output  # type: ignore[attr-defined]
    assert json.loads(as_json.output)["schema_version"] == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(("budget", "code"), [("100", 0), ("0", 1)])
def test_check_budget_exit_status(demo_report: tuple[Path, str], budget: str, code: int) -> None:
    out, _ = demo_report
    result = invoke("check-budget", "--report", str(out), "--max-co2", budget)

    assert result.exit_code == code  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "args",
    [
        ("check-budget", "--report", "missing.json", "--max-co2", "1"),
        ("report", "missing.json"),
        ("demo", "--country", "Atlantis"),
        ("track",),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    result = invoke(*args)

    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "Traceback" not in result.output  # type: ignore[attr-defined]


def test_report_refuses_json_of_another_shape(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')

    result = invoke("report", str(other))

    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "not an hf-eco2ai report" in result.output  # type: ignore[attr-defined]


@pytest.mark.parametrize(("exit_code", "status"), [(0, "completed"), (3, "error")])
def test_track_runs_a_command_and_passes_its_exit_status(
    tmp_path: Path, exit_code: int, status: str
) -> None:
    code = f"import sys; sum(range(200000)); sys.exit({exit_code})"
    result = invoke(
        "track",
        "--output-dir",
        str(tmp_path),
        "--grid-carbon-intensity",
        "300",
        "--",
        sys.executable,
        "-c",
        code,
    )

    assert result.exit_code == exit_code  # type: ignore[attr-defined]
    report = json.loads((tmp_path / "carbon_report.json").read_text())
    assert report["status"] == status
    assert re.search(r"energy\s+\d", result.output)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "damage",
    [
        {"energy": {"total_kwh": -5.0}},
        {"emissions": {"total_kg": float("nan")}},
        {"emissions": "x"},
        {"energy": None},
        {"energy": {"components": "x"}},
        {"emissions": {"intensity_periods": "x"}},
        {"estimates": [1, 2]},
        {"equivalents": [{"what": 1}]},
    ],
)
def test_damaged_reports_are_refused_not_passed(
    demo_report: tuple[Path, str], tmp_path: Path, damage: dict[str, object]
) -> None:
    data = json.loads((demo_report[0] / "carbon_report.json").read_text())
    for section, value in damage.items():
        if isinstance(value, dict) and isinstance(data[section], dict):
            data[section].update(value)
        else:
            data[section] = value
    damaged = tmp_path / "damaged.json"
    damaged.write_text(json.dumps(data))

    for args in (
        ("report", str(damaged)),
        ("check-budget", "--report", str(damaged), "--max-co2", "1"),
    ):
        result = invoke(*args)
        assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
        assert "damaged" in result.output  # type: ignore[attr-defined]


def test_track_reports_a_child_killed_by_a_signal_as_the_shell_does(tmp_path: Path) -> None:
    result = invoke(
        "track", "--output-dir", str(tmp_path), "--country", "FRA", "--", "sh", "-c", "kill -9 $$"
    )

    assert result.exit_code == 128 + 9  # type: ignore[attr-defined]
    assert json.loads((tmp_path / "carbon_report.json").read_text())["status"] == "error"


def test_track_refuses_an_unwritable_output_dir_before_running(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    marker = tmp_path / "ran"

    result = invoke("track", "--output-dir", str(blocker / "sub"), "--", "touch", str(marker))

    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert not marker.exists()


def test_run_writes_its_report_and_handles_a_missing_command(tmp_path: Path) -> None:
    ok = invoke("run", "--output-dir", str(tmp_path), "--region", "FRA", "--", "true")
    assert ok.exit_code == 0  # type: ignore[attr-defined]
    assert json.loads((tmp_path / "carbon_report.json").read_text())["status"] == "completed"

    missing = invoke("run", "--output-dir", str(tmp_path), "--", "no-such-command-hf-eco2ai")
    assert missing.exit_code == 127  # type: ignore[attr-defined]
    assert json.loads((tmp_path / "carbon_report.json").read_text())["status"] == "error"


def test_version_flag() -> None:
    assert invoke("--version").output.strip() == hf_eco2ai.__version__  # type: ignore[attr-defined]


def test_track_takes_settings_from_the_environment_unless_an_option_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ECO2AI_PROJECT_NAME", "from-env")
    monkeypatch.setenv("HF_ECO2AI_OUTPUT_DIR", str(tmp_path / "env-out"))
    monkeypatch.setenv("HF_ECO2AI_COUNTRY", "FRA")

    from_env = invoke("track", "--", "true")
    given = invoke("track", "--project-name", "given", "--output-dir", str(tmp_path), "--", "true")

    assert from_env.exit_code == given.exit_code == 0  # type: ignore[attr-defined]
    env_report = json.loads((tmp_path / "env-out" / "carbon_report.json").read_text())
    given_report = json.loads((tmp_path / "carbon_report.json").read_text())
    assert (env_report["project_name"], given_report["project_name"]) == ("from-env", "given")
    assert env_report["emissions"]["intensity_periods"][0]["zone"] == "FRA"


def test_a_bad_environment_value_is_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ECO2AI_MEASUREMENT_INTERVAL", "abc")

    result = invoke("track", "--", "true")

    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "(from HF_ECO2AI_MEASUREMENT_INTERVAL)" in result.output  # type: ignore[attr-defined]


def test_track_a_file_that_cannot_be_executed_is_126(tmp_path: Path) -> None:
    script = tmp_path / "not-executable.sh"
    script.write_text("echo hi\n")

    result = invoke("track", "--output-dir", str(tmp_path), "--", str(script))

    assert result.exit_code == 126  # type: ignore[attr-defined]
