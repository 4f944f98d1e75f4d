"""AutoCarbonOptimizer: recommends, once, what fits the run and the allowed performance loss."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from transformers import TrainerControl, TrainerState, TrainingArguments  # noqa: E402

from hf_eco2ai import CarbonConfig, CarbonTracker  # noqa: E402
from hf_eco2ai.errors import ConfigError  # noqa: E402
from hf_eco2ai.optimization import AutoCarbonOptimizer  # noqa: E402
from tests.tracking.meters import ConstantPowerMeter, ManualClock  # noqa: E402


def run_checks(optimizer: AutoCarbonOptimizer, watts: float, checks: int, **args: object) -> list:
    clock = ManualClock()
    tracker = CarbonTracker(
        CarbonConfig(grid_carbon_intensity=500.0, measurement_interval=3600),
        meters=[ConstantPowerMeter(clock, watts)],
        clock=clock,
    ).start()
    training_args = TrainingArguments(output_dir="unused", use_cpu=True, report_to="none", **args)
    state, control = TrainerState(), TrainerControl()
    for step in range(1, checks + 1):
        clock.advance(60)
        tracker.sample_now()
        state.global_step = step
        optimizer.on_step_end(training_args, state, control)
    report = tracker.stop()
    return report.data["extra"].get("optimizer", {}).get("recommendations", [])


def test_recommends_once_after_patience_and_skips_what_is_already_on() -> None:
    # 2 kW at 500 g/kWh is 1 kg/h, above a 0.5 kg/h target.
    optimizer = AutoCarbonOptimizer(
        target_co2_rate=0.5,
        optimization_strategies=["mixed_precision", "gradient_checkpointing"],
        check_every_steps=1,
        patience=3,
    )
    recommendations = run_checks(optimizer, 2000.0, 6, gradient_checkpointing=True)

    assert [r["strategy"] for r in recommendations] == ["mixed_precision"]
    assert recommendations[0]["step"] == 3
    assert recommendations[0]["co2_rate_kg_per_hour"] == pytest.approx(1.0)


def test_below_target_recommends_nothing() -> None:
    optimizer = AutoCarbonOptimizer(target_co2_rate=5.0, check_every_steps=1, patience=1)

    assert run_checks(optimizer, 2000.0, 5) == []


def test_strategies_beyond_the_allowed_loss_are_left_out() -> None:
    optimizer = AutoCarbonOptimizer(
        target_co2_rate=0.5, max_performance_loss=0.0, check_every_steps=1, patience=1
    )
    names = [r["strategy"] for r in run_checks(optimizer, 2000.0, 2)]

    assert "learning_rate_adjustment" not in names
    assert "mixed_precision" in names


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"target_co2_rate": 0}, "target_co2_rate"),
        ({"target_co2_rate": 1, "optimization_strategies": ["quantum"]}, "optimization_strategies"),
        ({"target_co2_rate": 1, "max_performance_loss": 2}, "max_performance_loss"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        AutoCarbonOptimizer(**kwargs)  # type: ignore[arg-type]
    assert err.value.field == field
