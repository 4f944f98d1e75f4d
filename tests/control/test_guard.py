"""The budget's framework-free core: validation, usage and projection figures, warn/stop logic."""

from __future__ import annotations

import logging
import math

import pytest

from hf_eco2ai.control.guard import BudgetGuard, CarbonBudget, Usage, usages
from hf_eco2ai.errors import ConfigError
from hf_eco2ai.tracking.snapshot import TrackerSnapshot


@pytest.mark.parametrize(
    ("kwargs", "field", "says"),
    [
        ({"action": "halt"}, "action", "'warn', 'stop', 'save_and_stop'"),
        ({"max_co2_kg": -1.0}, "max_co2_kg", "> 0"),
        ({"max_co2_kg": math.nan}, "max_co2_kg", "> 0"),
        ({"max_energy_kwh": 0}, "max_energy_kwh", "> 0"),
        ({"max_co2_kg": True}, "max_co2_kg", "> 0"),
        ({"check_frequency": 0}, "check_frequency", ">= 1"),
        ({"check_frequency": 2.5}, "check_frequency", "whole number"),
        ({"grace_period": -1}, "grace_period", ">= 0"),
    ],
)
def test_bad_budget_names_the_argument(kwargs: dict[str, object], field: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        CarbonBudget(**{"max_co2_kg": 1.0, **kwargs})  # type: ignore[arg-type]
    assert caught.value.field == field
    assert says in str(caught.value)


def test_limits_are_in_grams_and_joules() -> None:
    budget = CarbonBudget(max_co2_kg=30.0, max_energy_kwh=2.0)
    assert budget.limits() == {"co2_kg": 30_000.0, "energy_kwh": 7.2e6}


@pytest.mark.parametrize(
    ("snapshot", "co2_projected_g", "energy_projected_j"),
    [
        # Trailing-window rates: 0.036 kg/h is 0.01 g/s; 5 W is 5 J/s; 100 s remain.
        (
            TrackerSnapshot(
                elapsed_seconds=50.0,
                co2_grams=10.0,
                energy_joules=1000.0,
                co2_rate_kg_per_hour=0.036,
                power_watts=5.0,
            ),
            11.0,
            1500.0,
        ),
        # No window rate yet: the run's mean (10 g and 1000 J over 50 s) is used instead.
        (TrackerSnapshot(elapsed_seconds=50.0, co2_grams=10.0, energy_joules=1000.0), 30.0, 3000.0),
    ],
)
def test_projection_adds_rate_times_remaining_time(
    snapshot: TrackerSnapshot, co2_projected_g: float, energy_projected_j: float
) -> None:
    budget = CarbonBudget(max_co2_kg=1.0, max_energy_kwh=1.0)
    co2, energy = usages(budget, snapshot, remaining_seconds=100.0)
    assert (co2.quantity, co2.used, co2.limit) == ("co2_kg", 10.0, 1000.0)
    assert co2.projected == pytest.approx(co2_projected_g)
    assert (energy.used, energy.limit) == (1000.0, 3.6e6)
    assert energy.projected == pytest.approx(energy_projected_j)
    assert usages(budget, snapshot, remaining_seconds=None)[0].projected is None


def co2(used_g: float, limit_g: float = 100.0, projected_g: float | None = None) -> Usage:
    return Usage("co2_kg", used_g, limit_g, projected_g)


def test_warn_logs_at_the_crossing_and_at_each_further_tenth(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = BudgetGuard(CarbonBudget(max_co2_kg=0.1, action="warn"))
    with caplog.at_level(logging.WARNING, logger="hf_eco2ai.control.guard"):
        for step, used in enumerate([50, 99.9, 100, 105, 109.9, 110, 111, 135, 136], start=1):
            guard.check([co2(used)], step, max_steps=None)
    crossed = [e for e in guard.events if e["event"] == "budget_exceeded"]
    assert [e["step"] for e in crossed] == [3, 6, 8]
    assert [e["used"] for e in crossed] == [0.1, 0.11, 0.135]  # kg, the budget's unit
    assert len(caplog.records) == 3
    assert guard.stop_at_step is None and guard.reason is None


@pytest.mark.parametrize("grace", [0, 5])
def test_stop_is_decided_once_with_its_grace(grace: int) -> None:
    guard = BudgetGuard(CarbonBudget(max_co2_kg=0.1, action="stop", grace_period=grace))
    guard.check([co2(99.0)], 10, max_steps=100)
    assert guard.stop_at_step is None
    guard.check([co2(101.0)], 11, max_steps=100)
    guard.check([co2(150.0)], 12, max_steps=100)
    assert guard.stop_at_step == 11 + grace
    assert guard.reason is not None
    assert guard.reason["reason"] == "carbon budget exceeded"
    assert (guard.reason["budget"], guard.reason["used"], guard.reason["step"]) == (0.1, 0.101, 11)
    assert [e["event"] for e in guard.events] == ["budget_exceeded", "stop_decided"]


def test_projection_over_budget_warns_once_before_the_crossing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = BudgetGuard(CarbonBudget(max_co2_kg=0.1, action="stop"))
    with caplog.at_level(logging.WARNING, logger="hf_eco2ai.control.guard"):
        guard.check([co2(10.0, projected_g=90.0)], 1, max_steps=100)
        guard.check([co2(20.0, projected_g=180.0)], 2, max_steps=100)
        guard.check([co2(30.0, projected_g=170.0)], 3, max_steps=100)
    assert [e["event"] for e in guard.events] == ["projected_over_budget"]
    assert guard.events[0]["projected"] == 0.18
    assert "will reach 0.18 co2_kg by step 100" in caplog.text
    assert guard.stop_at_step is None


def test_trip_keeps_the_first_reason() -> None:
    guard = BudgetGuard(CarbonBudget(max_co2_kg=1.0, action="save_and_stop", grace_period=2))
    guard.trip({"reason": "Alertmanager alert CriticalCarbonEmissions firing"}, 7)
    guard.check([co2(2000.0, limit_g=1000.0)], 8, max_steps=None)
    assert guard.stop_at_step == 9
    assert guard.reason is not None and guard.reason["reason"].startswith("Alertmanager")
    assert guard.reason["action"] == "save_and_stop"
