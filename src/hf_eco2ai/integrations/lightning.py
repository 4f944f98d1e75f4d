"""``Eco2AILightningCallback``: energy and CO2 of a PyTorch Lightning run, on one or many processes.

Behaves like :class:`~hf_eco2ai.integrations.transformers.Eco2AICallback`: each process measures
what it owns, totals over every process are summed every ``log_every_n_steps`` optimizer steps
(a step every rank reaches together) and at the end, and only the global main process logs and
writes ``<output_dir>/carbon_report.json``. Works with ``lightning`` (``lightning.pytorch``) or
the older ``pytorch_lightning`` package, whichever is installed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from hf_eco2ai.config import CarbonConfig, config_or_default
from hf_eco2ai.energy.base import Meter
from hf_eco2ai.intensity.base import IntensityProvider
from hf_eco2ai.tracking.distributed import Placement, RankReducer, finish_job
from hf_eco2ai.tracking.snapshot import TrackerSnapshot
from hf_eco2ai.tracking.tracker import CarbonTracker, RunStatus

try:
    from lightning.pytorch import Callback, LightningModule, Trainer
except ImportError:  # the pre-2.0 package name
    from pytorch_lightning import (  # type: ignore[assignment]
        Callback,
        LightningModule,
        Trainer,
    )

logger = logging.getLogger(__name__)


class Eco2AILightningCallback(Callback):
    """Measures a Lightning ``Trainer.fit`` run's energy and CO2 and writes its report.

    Args:
        config: Run settings; ``output_dir`` defaults to the trainer's ``default_root_dir``.
        meters: Meters to use instead of discovering hardware (tests, custom hardware).
        intensity: Grid-intensity provider instead of the one the config selects.
        log_every_n_steps: How often (optimizer steps) figures are summed and logged; default:
            the trainer's ``log_every_n_steps``.
    """

    def __init__(
        self,
        config: CarbonConfig | None = None,
        *,
        meters: list[Meter] | None = None,
        intensity: IntensityProvider | None = None,
        log_every_n_steps: int | None = None,
    ) -> None:
        if log_every_n_steps is not None and log_every_n_steps < 1:
            raise _config_error(log_every_n_steps)
        self.config = config_or_default(config, "Eco2AILightningCallback")
        self._meters = meters
        self._intensity = intensity
        self._every = log_every_n_steps
        self.tracker: CarbonTracker | None = None
        self._reducer = RankReducer()
        self._distributed = False
        self._own_samples = 0
        self._last_logged_step = -1
        self._job_snapshot: TrackerSnapshot | None = None
        self._epoch_start = (0.0, 0.0)
        self._report: Any = None

    @property
    def report(self) -> Any:
        """The run's :class:`CarbonReport` (live during training, final after it)."""
        if self._report is not None:
            return self._report
        if self.tracker is None:
            raise RuntimeError("Eco2AILightningCallback.report is available once fit has started")
        return self.tracker.report

    # -- Lightning hooks ---------------------------------------------------------------------

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        placement = _placement(trainer)
        self._distributed = placement.distributed and self._reducer.active
        self._every = self._every or max(int(getattr(trainer, "log_every_n_steps", 50)), 1)
        config = self.config
        if config.output_dir is None:
            config = config.model_copy(update={"output_dir": str(trainer.default_root_dir)})
        if not placement.is_main:
            config = config.model_copy(update={"save_report": False})
        if self._distributed:
            config = config.model_copy(update={"run_id": self._reducer.broadcast(config.run_id)})
        self.tracker = CarbonTracker(
            config, meters=self._meters, intensity=self._intensity, placement=placement
        )
        self.tracker.set_extra("trainer", _trainer_facts(trainer))
        if placement.distributed:
            self.tracker.set_extra("process", placement.as_dict())
        self.tracker.start()
        if placement.is_main:
            logger.info("hf-eco2ai: tracking run %s of %r", config.run_id, config.project_name)

    def on_train_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self.tracker is None:
            return
        self._own_samples += _batch_size(batch)
        step = int(trainer.global_step)
        world = max(int(trainer.world_size), 1)
        self.tracker.set_progress(step, self._own_samples * world)
        # Every rank runs the same optimizer steps, so all reach this test with the same step.
        if step > self._last_logged_step and step % (self._every or 1) == 0:
            self._last_logged_step = step
            self._log_step(trainer, step, _loss(outputs))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.tracker is None:
            return
        # Shortcoming: with several processes the epoch's figures use the last log step's
        # totals (no collective at epoch end), so they may lag by one logging interval.
        snap = self._job_snapshot or self.tracker.snapshot
        energy0, co20 = self._epoch_start
        self.tracker.run_log.epochs.append(
            {
                "epoch": int(trainer.current_epoch),
                "step": int(trainer.global_step),
                "energy_kwh": snap.energy_kwh - energy0,
                "co2_kg": snap.co2_kg - co20,
            }
        )
        self._epoch_start = (snap.energy_kwh, snap.co2_kg)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.tracker is None or self._report is not None:
            return
        world = max(int(trainer.world_size), 1)
        self.tracker.set_progress(int(trainer.global_step), self._own_samples * world)
        # The final sample is taken before summing, so no process's last interval is lost.
        self._report = self.tracker.stop("completed", write=not self._distributed)
        if self._distributed:
            self._report = finish_job(self.tracker, self._reducer, self._own_samples)
        if self.tracker.placement.is_main:
            logger.info("hf-eco2ai: %s", self._report.summary().splitlines()[2].strip())

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        if self.tracker is None or self._report is not None:
            return
        # No collective here: other processes may be gone. Each keeps its own figures.
        status: RunStatus = "interrupted" if isinstance(exception, KeyboardInterrupt) else "error"
        reason = {"reason": "exception", "exception": f"{type(exception).__name__}: {exception}"}
        self.tracker.mark_stopped(status, reason)
        self._report = self.tracker.stop(status)

    # -- helpers -----------------------------------------------------------------------------

    def _log_step(self, trainer: Trainer, step: int, loss: float | None) -> None:
        """Sum over every process (a collective) and, on the main process, log the fields."""
        assert self.tracker is not None
        job = None
        if self._distributed:
            job = self._reducer.totals(self.tracker.snapshot, self._own_samples)
            self._job_snapshot = job
        values = {} if loss is None else {"loss": loss}
        row = self.tracker.log_point(step, values, job)
        if not self.tracker.placement.is_main:
            return
        fields = _carbon_fields(row, job or self.tracker.snapshot)
        for each in trainer.loggers:
            each.log_metrics(fields, step=step)
        exporter = self.tracker.exporter
        if exporter is not None:
            if loss is not None:
                exporter.set_loss(loss)
            exporter.set_samples_per_kwh(fields["samples_per_kwh"])


def _placement(trainer: Trainer) -> Placement:
    """The trainer's own account of ranks, which holds for every Lightning launcher."""
    # Shortcoming: Lightning's own subprocess launcher makes ranks 1..n children of rank 0, so
    # where RAPL is unreadable rank 0's CPU/RAM estimate (its process tree) includes theirs.
    from hf_eco2ai.tracking.distributed import detect_placement

    host = detect_placement().host
    return Placement(
        rank=int(trainer.global_rank),
        local_rank=int(trainer.local_rank),
        world_size=int(trainer.world_size),
        local_world_size=max(int(trainer.num_devices), 1),
        node_rank=int(trainer.node_rank),
        host=host,
    )


def _carbon_fields(row: Mapping[str, float], snap: TrackerSnapshot) -> dict[str, float]:
    return {
        "energy_kwh": row["energy_kwh"],
        "co2_kg": row["co2_kg"],
        "grid_intensity_g_per_kwh": row["grid_intensity_g_per_kwh"],
        "samples_per_kwh": snap.samples_per_kwh,
    }


def _batch_size(batch: Any) -> int:
    """Samples in a batch: the first dimension of its first tensor (dict, list or tensor)."""
    if hasattr(batch, "shape") and len(batch.shape) > 0:
        return int(batch.shape[0])
    if isinstance(batch, Mapping):
        return next((_batch_size(v) for v in batch.values()), 0)
    if isinstance(batch, Sequence) and not isinstance(batch, str | bytes) and batch:
        return _batch_size(batch[0])
    return 0


def _loss(outputs: Any) -> float | None:
    value: Any = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
    try:
        return float(value.detach()) if hasattr(value, "detach") else None
    except (TypeError, ValueError, RuntimeError):
        return None


def _trainer_facts(trainer: Trainer) -> dict[str, Any]:
    return {
        "world_size": int(trainer.world_size),
        "num_nodes": int(trainer.num_nodes),
        "devices_per_node": int(trainer.num_devices),
        "max_steps": int(trainer.max_steps),
        "max_epochs": trainer.max_epochs,
        "accumulate_grad_batches": int(trainer.accumulate_grad_batches),
    }


def _config_error(value: int) -> Exception:
    from hf_eco2ai.errors import ConfigError

    return ConfigError("log_every_n_steps", value, "must be a whole number >= 1")
