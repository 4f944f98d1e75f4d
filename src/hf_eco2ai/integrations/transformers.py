"""``Eco2AICallback``: tracks a Hugging Face ``Trainer`` run and adds carbon figures to its logs.

The figures reach TensorBoard, W&B or MLflow through Transformers' own reporting: at the start
of training the callback moves itself to the front of the Trainer's callback list, so that the
reporting callbacks see the fields it adds to each log record. Under ``torchrun``, Accelerate or
DeepSpeed every process measures what it owns; the figures logged at each training log step and
the report (written by the main process only) are totals over all processes.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import CallbackHandler

from hf_eco2ai.config import CarbonConfig, config_or_default
from hf_eco2ai.energy.base import Meter
from hf_eco2ai.intensity.base import IntensityProvider
from hf_eco2ai.tracking.distributed import RankReducer, detect_placement, finish_job
from hf_eco2ai.tracking.resume import CarriedTotals, load_state, save_state
from hf_eco2ai.tracking.snapshot import TrackerSnapshot
from hf_eco2ai.tracking.tracker import CarbonTracker

logger = logging.getLogger(__name__)


class Eco2AICallback(TrainerCallback):
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
        self.config = config_or_default(config, "Eco2AICallback")
        self._meters = meters
        self._intensity = intensity
        self.tracker: CarbonTracker | None = None
        self._samples_per_step = 1
        self._own_samples_per_step = 1
        self._reducer = RankReducer()
        self._distributed = False
        self._job_snapshot: TrackerSnapshot | None = None
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
        placement = detect_placement()
        self._is_main = bool(state.is_world_process_zero)
        self._distributed = placement.distributed and self._reducer.active
        self._own_samples_per_step = (
            args.per_device_train_batch_size * args.gradient_accumulation_steps
        )
        self._samples_per_step = self._own_samples_per_step * args.world_size
        config = self.config
        if config.output_dir is None:
            config = config.model_copy(update={"output_dir": args.output_dir})
        if not self._is_main:
            config = config.model_copy(update={"save_report": False})
        carried = self._carried_over(args, state)
        if carried is not None and "run_id" not in self.config.model_fields_set:
            config = config.model_copy(update={"run_id": carried.run_id})
        if self._distributed:
            # Each process drew its own default run id; the job's is rank 0's (one collective).
            config = config.model_copy(update={"run_id": self._reducer.broadcast(config.run_id)})
        self.tracker = CarbonTracker(
            config, meters=self._meters, intensity=self._intensity, placement=placement
        )
        if carried is not None:
            self.tracker.carried = carried
            self.tracker.set_extra("resumed", carried.report_record())
        self.tracker.set_extra("training_arguments", _training_facts(args))
        if placement.distributed:
            self.tracker.set_extra("process", placement.as_dict())
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
        job = self._job_totals(state, training_log="loss" in values)
        row = self.tracker.log_point(state.global_step, values, job)
        exporter = self.tracker.exporter
        if exporter is not None and self._is_main and "loss" in values:
            exporter.set_loss(values["loss"])
            if job is not None:
                exporter.set_samples_per_kwh(job.samples_per_kwh)
        fields = {
            "energy_kwh": row["energy_kwh"],
            "co2_kg": row["co2_kg"],
            "grid_intensity_g_per_kwh": row["grid_intensity_g_per_kwh"],
            "samples_per_kwh": row["samples_per_kwh"],
        }
        logs.update(fields)
        # The Trainer stored a copy of ``logs`` in the history before calling us.
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(fields)

    def _job_totals(self, state: TrainerState, *, training_log: bool) -> TrackerSnapshot | None:
        """Totals over every process, summed at training log steps only; None for one process.

        The Trainer reaches a training log step on every rank together (it has just gathered
        the loss from all of them), so the collective here cannot leave a rank waiting. Other
        logs (evaluation, the final summary, a user's own ``trainer.log``) may come from one
        rank only: they reuse the last totals instead of starting a collective.
        """
        if not self._distributed or self.tracker is None:
            return None
        if training_log or self._job_snapshot is None:
            own = state.global_step * self._own_samples_per_step
            self._job_snapshot = self._reducer.totals(self.tracker.snapshot, own)
        return self._job_snapshot

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.tracker is None:
            return
        # Shortcoming: in a multi-process job an epoch's figures use the totals of the last log
        # step (no collective at epoch end), so they may lag by up to one logging interval.
        snap = self._job_snapshot or self.tracker.snapshot
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

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Keep the run's totals with the checkpoint, for a run resumed from it."""
        if self.tracker is None or not self._is_main:
            return
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        # One process: a fresh reading. Several: the job totals of the last log step (a new
        # collective here could wait on a rank that is not saving).
        snap = self._job_snapshot if self._distributed else None
        snap = snap or self.tracker.sample_now()
        checkpoint = Path(str(args.output_dir)) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        save_state(
            checkpoint, self.tracker.config.run_id, state.global_step, snap, self.tracker.carried
        )

    def _carried_over(self, args: TrainingArguments, state: TrainerState) -> CarriedTotals | None:
        """The totals saved with the checkpoint this run resumes from (rank 0's, on every rank)."""
        carried = None
        if state.global_step > 0 and self._is_main:
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            given = getattr(args, "resume_from_checkpoint", None)
            default = Path(str(args.output_dir)) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            for folder in ([Path(given)] if isinstance(given, str) else []) + [default]:
                carried = load_state(folder, state.global_step)
                if carried is not None:
                    break
            if carried is None:
                logger.warning(
                    "hf-eco2ai: resuming at step %d without saved carbon totals; the figures "
                    "and the budget count this run from zero",
                    state.global_step,
                )
        if self._distributed:
            text = self._reducer.broadcast(carried.to_json() if carried is not None else "")
            carried = CarriedTotals.from_json(text) if text else None
        return carried

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.tracker is None:
            return
        self.tracker.set_progress(state.global_step, state.global_step * self._samples_per_step)
        # The final sample is taken before summing, so no process's last interval is lost.
        self._report = self.tracker.stop("completed", write=not self._distributed)
        if self._distributed:
            own = state.global_step * self._own_samples_per_step
            self._report = finish_job(self.tracker, self._reducer, own)
        if self._is_main:
            logger.info("hf-eco2ai: %s", self._report.summary().splitlines()[2].strip())


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
