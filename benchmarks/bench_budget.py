"""Costs of the budget controls on the training loop and on the sampler thread.

Prints medians per call:
- ``CarbonBudgetCallback.on_step_end`` checking every step (the worst case) and every 100 steps,
  against an empty callback;
- the in-process alert listener per sample, with four thresholds.

Run: ``.venv/bin/python benchmarks/bench_budget.py [--quick]``.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import timeit

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from hf_eco2ai import CarbonBudgetCallback, CarbonConfig, CarbonTracker
from hf_eco2ai.control.alerts import RateAlerts
from hf_eco2ai.tracking.snapshot import TrackerSnapshot


def per_call_microseconds(fn: object, number: int, repeats: int) -> float:
    times = timeit.repeat(fn, number=number, repeat=repeats)  # type: ignore[arg-type]
    return statistics.median(times) / number * 1e6


def step_cost(callback: TrainerCallback, number: int, repeats: int) -> float:
    args = TrainingArguments(output_dir="/tmp/hf-eco2ai-bench", use_cpu=True, report_to="none")
    state, control = TrainerState(), TrainerControl()
    state.is_world_process_zero = True
    state.max_steps = 10**9
    callback.on_train_begin(args, state, control)
    callback.on_step_begin(args, state, control)

    def step() -> None:
        state.global_step += 1
        callback.on_step_end(args, state, control)

    return per_call_microseconds(step, number, repeats)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    number, repeats = (2_000, 3) if parser.parse_args().quick else (20_000, 7)
    logging.disable(logging.WARNING)

    tracker = CarbonTracker(CarbonConfig(country="DEU", save_report=False, measurement_interval=60))
    tracker.start()
    empty = step_cost(TrainerCallback(), number, repeats)
    for frequency in (1, 100):
        budget = CarbonBudgetCallback(max_co2_kg=1e9, max_energy_kwh=1e9, check_frequency=frequency)
        ours = step_cost(budget, number, repeats)
        print(
            f"on_step_end, check every {frequency:>3} steps: {ours:8.2f} us/step (empty callback {empty:.2f} us)"
        )
    tracker.stop()

    thresholds = {
        "co2_rate_kg_per_hour": 5.0,
        "energy_rate_kwh_per_hour": 15.0,
        "co2_kg": 30.0,
        "energy_kwh": 100.0,
    }
    alerts = RateAlerts(thresholds, project_name="p", run_id="r", window_seconds=300.0)
    snapshot = TrackerSnapshot(co2_rate_kg_per_hour=1.0, energy_rate_kwh_per_hour=1.0)
    listener = per_call_microseconds(lambda: alerts(snapshot), number, repeats)
    print(f"alert listener, 4 thresholds:        {listener:8.2f} us/sample")


if __name__ == "__main__":
    main()
