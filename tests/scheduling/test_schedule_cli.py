"""``hf-eco2ai schedule`` and ``run --low-carbon`` through Typer's runner, against the recorded
UK forecast on a local server."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import typer
from tests.http_fixtures import FixtureServer
from typer.testing import CliRunner

from hf_eco2ai.errors import ConfigError
from hf_eco2ai.scheduling.cli import parse_duration, register, wait_until

FW48H = "uk/uk_ci_national_fw48h_2023-03-16T1201Z.json"


@pytest.fixture
def app() -> typer.Typer:
    application = typer.Typer()
    register(application)
    return application


@pytest.fixture
def server() -> Iterator[FixtureServer]:
    with FixtureServer() as srv:
        srv.route_file("/intensity/2023-03-16T12:01Z/fw48h", FW48H)
        yield srv


def _uk_args(server: FixtureServer) -> list[str]:
    return [
        "--provider", "uk", "--region", "national", "--duration", "6h", "--flexibility", "8h",
        "--start-after", "2023-03-16T12:01Z", "--base-url", server.url,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "minutes"), [("6h", 360), ("90m", 90), ("1h30m", 90), ("0h5m", 5), (" 2H ", 120)]
)
def test_parse_duration(text: str, minutes: int) -> None:
    assert parse_duration(text) == timedelta(minutes=minutes)


@pytest.mark.parametrize("text", ["6", "1.5h", "6 h", "h", "", "0h", "30m1h", "-1h", "1d"])
def test_parse_duration_is_strict(text: str) -> None:
    with pytest.raises(ConfigError, match="duration"):
        parse_duration(text)


def test_schedule_json(app: typer.Typer, server: FixtureServer) -> None:
    result = CliRunner().invoke(app, ["schedule", *_uk_args(server), "--json"])

    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["start"] == "2023-03-16T13:00:00+00:00"
    assert data["end"] == "2023-03-16T19:00:00+00:00"
    assert data["expected_intensity_g_per_kwh"] == pytest.approx(83.5)
    assert 0 < data["carbon_reduction"] < 0.02
    assert data["has_forecast"] and data["kind"] == "average"


def test_schedule_text_and_threshold(app: typer.Typer, server: FixtureServer) -> None:
    result = CliRunner().invoke(app, ["schedule", *_uk_args(server), "--max-intensity", "80"])

    assert result.exit_code == 0, result.output
    assert "start:    2023-03-16T13:00:00+00:00" in result.output
    assert "does NOT meet 80 g CO2eq/kWh" in result.output


def test_schedule_slots_json(app: typer.Typer, server: FixtureServer) -> None:
    args = ["schedule", *_uk_args(server), "--min-slot", "1h", "--json"]

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["slots"] and data["reduction_vs_best_window"] >= 0


def test_schedule_slots_text_lists_each_slot(app: typer.Typer, server: FixtureServer) -> None:
    args = ["schedule", *_uk_args(server), "--min-slot", "30m"]

    text = CliRunner().invoke(app, args)
    data = json.loads(CliRunner().invoke(app, [*args, "--json"]).output)

    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    slots = [f"{slot['start']} to {slot['end']}" for slot in data["slots"]]
    assert slots == ["2023-03-16T13:00:00+00:00 to 2023-03-16T19:00:00+00:00"]
    assert lines[0] == f"slots:    {slots[0]} (6h00m)"
    assert lines[1] == "expected: 83.5 g CO2eq/kWh over the slots"
    assert lines[2] == data["reason"]


def test_a_min_slot_longer_than_the_job_is_refused_before_any_request(
    app: typer.Typer, server: FixtureServer
) -> None:
    result = CliRunner().invoke(app, ["schedule", *_uk_args(server), "--min-slot", "7h"])

    assert result.exit_code == 2
    assert result.output == (
        "hf-eco2ai: min_slot: the minimum slot '7h' is longer than the duration '6h'; "
        "give a --min-slot no longer than --duration\n"
    )
    assert server.requests == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--duration", "6"], "not a duration"),
        (["--provider", "nope"], "use one of"),
        (["--start-after", "yesterday"], "ISO 8601"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    app: typer.Typer, server: FixtureServer, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(app, ["schedule", *_uk_args(server), *args])

    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_unreachable_api_fails_plainly(app: typer.Typer, server: FixtureServer) -> None:
    server.fail_status = 500

    result = CliRunner().invoke(app, ["schedule", *_uk_args(server)])

    assert result.exit_code == 2 and "HTTP 500" in result.output


def test_run_low_carbon_runs_the_command(app: typer.Typer, server: FixtureServer) -> None:
    # The recorded window is in the past, so there is nothing to wait for.
    code = "import sys; sys.exit(3)"
    args = [
        "run",
        "--low-carbon",
        *_uk_args(server),
        "--no-track",
        "--",
        sys.executable,
        "-c",
        code,
    ]

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 3, result.output
    assert "start:    2023-03-16T13:00:00+00:00" in result.output


def test_run_starts_now_when_the_forecast_fails(app: typer.Typer, server: FixtureServer) -> None:
    server.fail_status = 503
    args = ["run", "--low-carbon", *_uk_args(server), "--no-track", "--", sys.executable, "-c", "0"]

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0 and "starting now" in result.output


def test_wait_until_counts_down_then_returns() -> None:
    clock = [datetime(2023, 3, 16, 12, 0, tzinfo=timezone.utc)]
    start = clock[0] + timedelta(minutes=90)
    lines: list[str] = []

    def sleep(seconds: float) -> None:
        clock[0] += timedelta(seconds=seconds)

    wait_until(start, saving=0.123, now=lambda: clock[0], sleep=sleep, echo=lines.append)

    assert clock[0] == start
    assert lines[0] == "Starting in 1h30m at 2023-03-16T13:30:00+00:00 (12.3% less CO2)"
    assert lines[-1].startswith("Starting in 1m00s")


def test_run_under_the_tracker(
    app: typer.Typer, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    args = ["run", "--region", "us-west1", "--", sys.executable, "-c", "import sys; sys.exit(4)"]

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 4, result.output
