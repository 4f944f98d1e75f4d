"""``AutoCarbonOptimizer``: watches a Trainer run's CO2 rate and says what to change, and why.

The runbook's strategies (smaller batches, mixed precision, gradient checkpointing, learning-rate
changes) alter the optimisation itself, so none is applied to a run in flight: each is checked
against the run's arguments and the allowed performance loss, then recommended once, in the log
and in the run's report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from hf_eco2ai.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Strategy:
    """A change that can lower a run's CO2 rate, with what it costs."""

    name: str
    advice: str
    #: Expected loss of model quality (fraction), as far as the literature lets us say.
    quality_loss: float
    applies: str  # name of the check against TrainingArguments


STRATEGIES = {
    s.name: s
    for s in (
        Strategy(
            "mixed_precision",
            "enable bf16 (or fp16 with loss scaling): tensor cores do the same work in less time "
            "and energy on GPUs since Volta",
            0.0,
            "no_mixed_precision",
        ),
        Strategy(
            "batch_size_reduction",
            "halve per_device_train_batch_size and double gradient_accumulation_steps: the same "
            "effective batch with less memory; lowers power only where memory-bound",
            0.0,
            "always",
        ),
        Strategy(
            "gradient_checkpointing",
            "enable gradient checkpointing only to fit a larger batch or fewer GPUs: it recomputes "
            "activations, so alone it adds about a third more compute",
            0.0,
            "no_gradient_checkpointing",
        ),
        Strategy(
            "learning_rate_adjustment",
            "tune the learning-rate schedule to converge in fewer steps; validate on a short run, "
            "since a wrong rate costs more than it saves",
            0.05,
            "always",
        ),
    )
}


class AutoCarbonOptimizer(TrainerCallback):
    """Recommends the configured strategies once the run's CO2 rate stays above target.

    Args:
        target_co2_rate: Target in kg CO2eq per hour, over the tracker's trailing window.
        optimization_strategies: Names from :data:`STRATEGIES`, in order of preference.
        max_performance_loss: Largest acceptable loss of model quality (fraction, 0 to 1);
            strategies expected to lose more are not recommended.
        check_every_steps: How often the rate is compared with the target.
        patience: Consecutive checks above target before recommending.
    """

    def __init__(
        self,
        target_co2_rate: float,
        optimization_strategies: list[str] | None = None,
        max_performance_loss: float = 0.05,
        check_every_steps: int = 10,
        patience: int = 3,
    ) -> None:
        names = list(optimization_strategies or STRATEGIES)
        _validate(target_co2_rate, names, max_performance_loss, check_every_steps, patience)
        self.target_co2_rate = target_co2_rate
        self.strategies = [STRATEGIES[n] for n in names]
        self.max_performance_loss = max_performance_loss
        self.check_every_steps = check_every_steps
        self.patience = patience
        self.recommendations: list[dict[str, Any]] = []
        self._above = 0

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.global_step % self.check_every_steps:
            return
        from hf_eco2ai.tracking.tracker import current_tracker

        tracker = current_tracker()
        if tracker is None:
            return
        rate = tracker.snapshot.co2_rate_kg_per_hour
        self._above = self._above + 1 if rate > self.target_co2_rate else 0
        if self._above >= self.patience and not self.recommendations:
            self._recommend(args, state.global_step, rate)
            tracker.set_extra(
                "optimizer",
                {
                    "target_co2_rate_kg_per_hour": self.target_co2_rate,
                    "recommendations": self.recommendations,
                },
            )

    def _recommend(self, args: TrainingArguments, step: int, rate: float) -> None:
        for strategy in self.strategies:
            if strategy.quality_loss > self.max_performance_loss or not _applies(strategy, args):
                continue
            self.recommendations.append(
                {
                    "strategy": strategy.name,
                    "advice": strategy.advice,
                    "step": step,
                    "co2_rate_kg_per_hour": rate,
                }
            )
            logger.warning(
                "CO2 rate %.3g kg/h is above the target %.3g kg/h: %s",
                rate,
                self.target_co2_rate,
                strategy.advice,
            )


def _applies(strategy: Strategy, args: TrainingArguments) -> bool:
    if strategy.applies == "no_mixed_precision":
        return not (args.bf16 or args.fp16)
    if strategy.applies == "no_gradient_checkpointing":
        return not args.gradient_checkpointing
    return True


def _validate(target: float, names: list[str], loss: float, every: int, patience: int) -> None:
    if not target > 0:
        raise ConfigError("target_co2_rate", target, f"must be > 0 kg/h, got {target!r}")
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        accepted = ", ".join(sorted(STRATEGIES))
        raise ConfigError(
            "optimization_strategies", unknown, f"{unknown!r} unknown; use {accepted}"
        )
    if not 0 <= loss <= 1:
        raise ConfigError(
            "max_performance_loss", loss, f"must be a fraction in [0, 1], got {loss!r}"
        )
    if every < 1 or patience < 1:
        raise ConfigError("check_every_steps", every, "check_every_steps and patience must be >= 1")
