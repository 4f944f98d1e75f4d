"""``Eco2AICallback``: tracks a Hugging Face ``Trainer`` run and adds carbon figures to its logs.

The figures reach TensorBoard, W&B or MLflow through Transformers' own reporting: at the start
of training the callback moves itself to the front of the Trainer's callback list, so that the
reporting callbacks see the fields it adds to each log record.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import CallbackHandler

from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.energy.base import Meter
from hf_eco2ai.intensity.base import IntensityProvider
from hf_eco2ai.tracking.tracker import CarbonTracker

logger = logging.getLogger(__name__)


class Eco2AICallback(TrainerCallback):  # type: ignore[misc]
    """Measures a Trainer run's energy and CO2 and writes ``<output_dir>/carbon_report.json``.

    Args:
        config: Run settings; ``output_dir`` defaults to the Trainer's.
        meters: Meters to use instead of discovering hardware (tests, custom hardware).
        intensity: Grid-intensity provider instead of the one the config selects.
    """

    def __init__(
        self,
        config: CarbonConfig | None = None,
        *,
        meters: list[Meter] | None = None,
        intensity: IntensityProvider | None = None,
    ) -> None:
        self.config = config if config is not None else CarbonConfig()
        self._meters = meters
        self._intensity = intensity
        self.tracker: CarbonTracker | None = None
        self._samples_per_step = 1
        self._is_main = True
        self._epoch_start = (0.0, 0.0)
        self._report: Any = None

    @property
    def report(self) -> Any:
        """The run's :class:`CarbonReport` (live during training, final after it)."""
        if self._report is not None:
            return self._report
        if self.tracker is None:
            raise RuntimeError("Eco2AICallback.report is available once training has started")
        return self.tracker.report

    # -- Trainer events ---------------------------------------------------------------------

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        _move_to_front(self)
        self._is_main = bool(state.is_world_process_zero)
        self._samples_per_step = (
            args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        )
        config = self.config
        if config.output_dir is None:
            config = config.model_copy(update={"output_dir": args.output_dir})
        if not self._is_main:
            config = config.model_copy(update={"save_report": False})
        self.tracker = CarbonTracker(config, meters=self._meters, intensity=self._intensity)
        self.tracker.set_extra("training_arguments", _training_facts(args))
        self.tracker.start()
        if self._is_main:
            logger.info("hf-eco2ai: tracking run %s of %r", config.run_id, config.project_name)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        step = state.global_step
        if self.tracker is not None:
            self.tracker.set_progress(step, step * self._samples_per_step)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if self.tracker is None or logs is None or not self.config.log_to_trainer:
            return
        values = {k: float(v) for k, v in logs.items() if isinstance(v, int | float)}
        row = self.tracker.log_point(state.global_step, values)
        if self.tracker.exporter is not None and "loss" in values:
            self.tracker.exporter.set_loss(values["loss"])
        fields = {
            "energy_kwh": row["energy_kwh"],
            "co2_kg": row["co2_kg"],
            "grid_intensity_g_per_kwh": row["grid_intensity_g_per_kwh"],
            "samples_per_kwh": _samples_per_kwh(state.global_step * self._samples_per_step, row),
        }
        logs.update(fields)
        # The Trainer stored a copy of ``logs`` in the history before calling us.
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(fields)

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.tracker is None:
            return
        snap = self.tracker.snapshot
        energy0, co20 = self._epoch_start
        self.tracker.run_log.epochs.append(
            {
                "epoch": round(state.epoch or 0.0, 4),
                "step": state.global_step,
                "energy_kwh": snap.energy_kwh - energy0,
                "co2_kg": snap.co2_kg - co20,
            }
        )
        self._epoch_start = (snap.energy_kwh, snap.co2_kg)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.tracker is None:
            return
        self.tracker.set_progress(state.global_step, state.global_step * self._samples_per_step)
        self._report = self.tracker.stop("completed")
        if self._is_main:
            logger.info("hf-eco2ai: %s", self._report.summary().splitlines()[2].strip())


def _samples_per_kwh(samples: int, row: dict[str, float]) -> float:
    kwh = row["energy_kwh"]
    return samples / kwh if kwh > 0 else 0.0


def _training_facts(args: TrainingArguments) -> dict[str, Any]:
    return {
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "world_size": args.world_size,
        "max_steps": args.max_steps,
        "num_train_epochs": args.num_train_epochs,
    }


def _move_to_front(callback: TrainerCallback) -> None:
    """Put ``callback`` first in the calling Trainer's handler, so reporters see our log fields.

    The handler is found in the caller's frame because Transformers passes no reference to it;
    a new list is assigned (not mutated) so the loop now iterating the old one is unaffected.
    """
    frame = sys._getframe(2)
    handler = frame.f_locals.get("self")
    if not isinstance(handler, CallbackHandler):
        logger.debug("callback handler not found; carbon fields may miss earlier reporters")
        return
    others = [cb for cb in handler.callbacks if cb is not callback]
    handler.callbacks = [callback, *others]
