"""CarbonBudgetCallback on a real Hugging Face Trainer, on CPU, with a meter of known power."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")

from hf_eco2ai import CarbonBudgetCallback, Eco2AICallback  # noqa: E402
from hf_eco2ai.errors import ConfigError  # noqa: E402
from tests.control.trainers import config, meter, tiny_trainer  # noqa: E402


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_co2_kg": 1.0, "action": "pause"}, "action"),
        ({}, "max_co2_kg"),
        ({"max_co2_kg": 1.0, "alertmanager_url": "alertmanager:9093"}, "alertmanager_url"),
        (
            {"alertmanager_url": "http://am:9093", "alertmanager_alert_names": "Critical"},
            "alertmanager_alert_names",
        ),
        (
            {"alertmanager_url": "http://am:9093", "alertmanager_poll_seconds": 0},
            "alertmanager_poll_seconds",
        ),
        ({"max_energy_kwh": 1.0, "grace_period": -2}, "grace_period"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        CarbonBudgetCallback(**kwargs)
    assert caught.value.field == field


def test_action_error_lists_the_accepted_values() -> None:
    with pytest.raises(ConfigError, match="'warn', 'stop', 'save_and_stop'"):
        CarbonBudgetCallback(max_co2_kg=1.0, action="halt")  # type: ignore[arg-type]


def test_runbook_snippet_constructs() -> None:
    budget_callback = CarbonBudgetCallback(
        max_co2_kg=30.0, action="stop", check_frequency=50, grace_period=5
    )
    assert budget_callback.budget.max_co2_kg == 30.0
    assert budget_callback.budget.grace_period == 5


def report_of(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "carbon_report.json").read_text())


# About 1 s of the 1 kW test meter at 400 g/kWh (0.111 g/s, 0.278 Wh/s).
TINY_CO2_KG = 1e-4
TINY_ENERGY_KWH = 2.5e-4


@pytest.mark.parametrize(
    ("action", "with_tracker", "check_frequency", "grace"),
    [
        ("stop", True, 1, 3),
        ("save_and_stop", True, 1, 2),
        ("stop", False, 4, 0),
    ],
)
@pytest.mark.usefixtures("one_torch_thread")
def test_run_over_budget_stops_within_grace_period(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    action: str,
    with_tracker: bool,
    check_frequency: int,
    grace: int,
) -> None:
    limits = {"max_co2_kg": TINY_CO2_KG} if with_tracker else {"max_energy_kwh": TINY_ENERGY_KWH}
    # Listed first: the budget callback must find a tracker started by a later callback.
    budget = CarbonBudgetCallback(
        action=action,  # type: ignore[arg-type]
        check_frequency=check_frequency,
        grace_period=grace,
        config=None if with_tracker else config(),
        meters=None if with_tracker else [meter()],
        **limits,
    )
    callbacks: list[Any] = [budget]
    if with_tracker:
        callbacks.append(Eco2AICallback(config(), meters=[meter()]))
    trainer = tiny_trainer(tmp_path, callbacks, max_steps=400)
    with caplog.at_level(logging.INFO, logger="hf_eco2ai"):
        trainer.train()

    report = report_of(tmp_path)
    reason = report["stop_reason"]
    assert report["status"] == "stopped_by_budget"
    assert reason["reason"] == "carbon budget exceeded"
    assert reason["quantity"] == ("co2_kg" if with_tracker else "energy_kwh")
    assert reason["used"] >= reason["budget"] == next(iter(limits.values()))
    assert reason["step"] % check_frequency == 0
    assert reason["stopped_at_step"] == reason["step"] + grace
    assert trainer.state.global_step == reason["stopped_at_step"] < 400
    assert report["training"]["steps"] == trainer.state.global_step
    assert reason["time"].endswith("+00:00")
    events = report["extra"]["carbon_budget"]["events"]
    assert [e["event"] for e in events if e["event"] != "projected_over_budget"] == [
        "budget_exceeded",
        "stop_decided",
    ]
    assert ("starts its own" in caplog.text) is not with_tracker

    checkpoints = sorted(p.name for p in tmp_path.glob("checkpoint-*"))
    if action == "save_and_stop":
        # build_trainer uses save_strategy="no": the checkpoint exists only because we asked.
        step = reason["stopped_at_step"]
        assert checkpoints == [f"checkpoint-{step}"]
        assert reason["checkpoint"] == str(tmp_path / f"checkpoint-{step}")
        state = json.loads((tmp_path / checkpoints[0] / "trainer_state.json").read_text())
        assert state["global_step"] == step
        assert list((tmp_path / checkpoints[0]).glob("model.safetensors"))
    else:
        assert checkpoints == []


@pytest.mark.usefixtures("one_torch_thread")
def test_warn_action_never_stops(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    budget = CarbonBudgetCallback(max_co2_kg=1e-9, action="warn", check_frequency=1)
    callbacks = [Eco2AICallback(config(), meters=[meter()]), budget]
    trainer = tiny_trainer(tmp_path, callbacks, max_steps=5)
    with caplog.at_level(logging.WARNING, logger="hf_eco2ai"):
        trainer.train()

    report = report_of(tmp_path)
    assert report["status"] == "completed" and report["stop_reason"] is None
    assert trainer.state.global_step == 5
    exceeded = [
        e for e in report["extra"]["carbon_budget"]["events"] if e["event"] == "budget_exceeded"
    ]
    assert exceeded and exceeded[0]["used"] > 1e-9
    assert "co2_kg budget exceeded at step" in caplog.text


@pytest.mark.usefixtures("one_torch_thread")
def test_a_run_shorter_than_check_frequency_is_checked_at_its_last_step(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    budget = CarbonBudgetCallback(max_co2_kg=1e-9, action="stop", check_frequency=100)
    callbacks = [Eco2AICallback(config(), meters=[meter()]), budget]
    trainer = tiny_trainer(tmp_path, callbacks, max_steps=6)
    with caplog.at_level(logging.WARNING, logger="hf_eco2ai"):
        trainer.train()

    report = report_of(tmp_path)
    assert trainer.state.global_step == 6
    assert report["status"] == "stopped_by_budget"
    assert report["stop_reason"]["step"] == report["stop_reason"]["stopped_at_step"] == 6
    assert "checked only at the last step" in caplog.text
    events = [e["event"] for e in report["extra"]["carbon_budget"]["events"]]
    assert events[0] == "checked_only_at_last_step"


@pytest.mark.usefixtures("one_torch_thread")
def test_a_grace_period_longer_than_the_run_still_stops_and_saves_at_its_end(
    tmp_path: Path,
) -> None:
    budget = CarbonBudgetCallback(
        max_co2_kg=1e-9, action="save_and_stop", check_frequency=1, grace_period=1000
    )
    callbacks = [Eco2AICallback(config(), meters=[meter()]), budget]
    trainer = tiny_trainer(tmp_path, callbacks, max_steps=8)
    trainer.train()

    report = report_of(tmp_path)
    reason = report["stop_reason"]
    assert report["status"] == "stopped_by_budget"
    assert reason["step"] == 1 and reason["stopped_at_step"] == 8
    assert reason["checkpoint"] == str(tmp_path / "checkpoint-8")
    assert (tmp_path / "checkpoint-8" / "trainer_state.json").exists()


@pytest.mark.usefixtures("one_torch_thread")
def test_no_projection_from_the_first_check_alone(tmp_path: Path) -> None:
    # The first step carries the warm-up; a projection from it alone was several times too high.
    # About 1 s of the 1 kW meter is the budget; 2000 steps of even 1 ms project far over it.
    budget = CarbonBudgetCallback(max_co2_kg=TINY_CO2_KG, action="stop", check_frequency=1)
    callbacks = [Eco2AICallback(config(), meters=[meter()]), budget]
    tiny_trainer(tmp_path, callbacks, max_steps=2000).train()

    events = report_of(tmp_path)["extra"]["carbon_budget"]["events"]
    projected = [e for e in events if e["event"] == "projected_over_budget"]
    assert len(projected) == 1 and projected[0]["step"] >= 2
