"""``CarbonBudgetCallback``: warns about or stops a Hugging Face ``Trainer`` run over its budget.

Side effects: reads the run's tracker (or starts one), may start a daemon thread watching
Alertmanager, and stops training only through the Trainer's own control flow
(``should_training_stop``, ``should_save``). Budgets are in kg CO2eq and kWh; the comparison is
made in grams and joules.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.control.alertmanager import DEFAULT_ALERT_NAMES, AlertmanagerWatcher
from hf_eco2ai.control.alerts import AlertHook, attach_rate_alerts
from hf_eco2ai.control.guard import Action, BudgetGuard, CarbonBudget, usages
from hf_eco2ai.energy.base import Meter
from hf_eco2ai.errors import ConfigError
from hf_eco2ai.intensity.base import IntensityProvider
from hf_eco2ai.tracking.distributed import RankReducer
from hf_eco2ai.tracking.snapshot import TrackerSnapshot
from hf_eco2ai.tracking.tracker import CarbonTracker, current_tracker

logger = logging.getLogger(__name__)


class CarbonBudgetCallback(TrainerCallback):
    """Enforces a CO2 and/or energy budget on a Trainer run, and can obey fleet alerts.

    Every ``check_frequency`` optimizer steps it compares the run's totals with the budget,
    warns once when the end-of-run projection exceeds it, and on a crossing warns (again at
    each further 10 %) or stops training after at most ``grace_period`` more steps. The tracker
    is the one :class:`Eco2AICallback` started, found at the first step; without one the
    callback starts its own and stops it at train end.

    Args:
        max_co2_kg: CO2eq budget in kg.
        action: ``warn``, ``stop`` or ``save_and_stop`` (checkpoint, then stop).
        check_frequency: Steps between checks (also between looks at Alertmanager's answer).
        grace_period: Steps training may still run after a stop is decided.
        max_energy_kwh: Energy budget in kWh.
        alertmanager_url: Alertmanager to watch for fleet alerts about this run, or None.
        alertmanager_alert_names: Alert names that suspend the run.
        alertmanager_poll_seconds: Seconds between polls of Alertmanager (off the training loop).
        alert_hooks: Called with every in-process :class:`AlertEvent` of the run's tracker.
        config: Settings of the tracker started when none runs (output_dir defaults to the
            Trainer's).
        meters: Meters for that tracker (tests, custom hardware).
        intensity: Grid-intensity provider for that tracker.

    Raises:
        ConfigError: An argument is out of range, or nothing is to be enforced.
    """

    def __init__(
        self,
        max_co2_kg: float | None = None,
        action: Action = "stop",
        check_frequency: int = 100,
        grace_period: int = 0,
        *,
        max_energy_kwh: float | None = None,
        alertmanager_url: str | None = None,
        alertmanager_alert_names: Sequence[str] = DEFAULT_ALERT_NAMES,
        alertmanager_poll_seconds: float = 15.0,
        alert_hooks: Iterable[AlertHook] = (),
        config: CarbonConfig | None = None,
        meters: Sequence[Meter] | None = None,
        intensity: IntensityProvider | None = None,
    ) -> None:
        self.budget = CarbonBudget(
            max_co2_kg, max_energy_kwh, action, check_frequency, grace_period
        )
        _check_watch(alertmanager_url, alertmanager_alert_names, alertmanager_poll_seconds)
        if max_co2_kg is None and max_energy_kwh is None and alertmanager_url is None:
            raise ConfigError(
                "max_co2_kg",
                None,
                "nothing to enforce; give max_co2_kg, max_energy_kwh or alertmanager_url",
            )
        self._watch = (alertmanager_url, tuple(alertmanager_alert_names), alertmanager_poll_seconds)
        self._hooks = list(alert_hooks)
        self._own = (config, meters, intensity)
        self.guard = BudgetGuard(self.budget)
        self.tracker: CarbonTracker | None = None
        self._owns_tracker = False
        self._watcher: AlertmanagerWatcher | None = None
        self._projection_base: tuple[float, int] | None = None
        self._reducer = RankReducer()
        self._stopped = False
        self._alert_warned = False

    # -- Trainer events ---------------------------------------------------------------------

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        # A callback may serve several train() calls; each starts with a clean slate.
        self.guard = BudgetGuard(self.budget)
        self.tracker = None
        self._stopped = False
        self._alert_warned = False

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        # Every on_train_begin has run by now, so the Eco2AICallback's tracker exists if any.
        if self.tracker is None:
            self._attach(args, state)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.tracker is None:
            return
        step = state.global_step
        if self._owns_tracker:
            self.tracker.set_progress(step, step * _samples_per_step(args))
        # Also at the last step, so a run shorter than check_frequency is still held to it.
        if step % self.budget.check_frequency == 0 or step == state.max_steps:
            self._check(state)
        stop_at = self.guard.stop_at_step
        if stop_at is not None and step >= stop_at and not self._stopped:
            self._stop(args, control, step)

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not self._stopped or self.tracker is None or self.tracker.stop_reason is None:
            return
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        checkpoint = f"{args.output_dir}/{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        self.tracker.mark_stopped(
            "stopped_by_budget", {**self.tracker.stop_reason, "checkpoint": checkpoint}
        )
        logger.info("hf-eco2ai: checkpoint saved to %s before stopping", checkpoint)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        if self.tracker is not None and self._owns_tracker:
            self.tracker.set_progress(
                state.global_step, state.global_step * _samples_per_step(args)
            )
            self.tracker.stop("completed")

    # -- steps ------------------------------------------------------------------------------

    def _attach(self, args: TrainingArguments, state: TrainerState) -> None:
        tracker = current_tracker()
        self._owns_tracker = tracker is None
        if tracker is None:
            tracker = self._start_tracker(args, state)
        self.tracker = tracker
        tracker.set_extra("carbon_budget", self._record())
        exporter = getattr(tracker, "exporter", None)
        if exporter is not None:
            exporter.set_budget(self.budget.max_co2_kg, self.budget.max_energy_kwh)
        attach_rate_alerts(tracker, self._hooks)  # the tracker's own alerts, with our hooks
        self._start_watcher(tracker, state)
        self._projection_base = None
        if state.max_steps and self.budget.check_frequency > state.max_steps:
            logger.warning(
                "hf-eco2ai: check_frequency=%d is more than the run's %d steps: the budget is "
                "checked only at the last step; lower check_frequency to enforce it during the run",
                self.budget.check_frequency,
                state.max_steps,
            )
            self.guard.events.append(
                {"event": "checked_only_at_last_step", "step": state.max_steps}
            )
        logger.info(
            "hf-eco2ai: budget %s kg CO2eq, %s kWh, action %r, checked every %d steps",
            self.budget.max_co2_kg,
            self.budget.max_energy_kwh,
            self.budget.action,
            self.budget.check_frequency,
        )

    def _start_tracker(self, args: TrainingArguments, state: TrainerState) -> CarbonTracker:
        config, meters, intensity = self._own
        config = config if config is not None else CarbonConfig()
        update: dict[str, Any] = {}
        if config.output_dir is None:
            update["output_dir"] = args.output_dir
        if not state.is_world_process_zero:
            update["save_report"] = False
        config = config.model_copy(update=update)
        logger.info("hf-eco2ai: no tracker is running; the budget callback starts its own")
        return CarbonTracker(config, meters=meters, intensity=intensity).start()

    def _start_watcher(self, tracker: CarbonTracker, state: TrainerState) -> None:
        url, names, poll_seconds = self._watch
        # Other ranks learn of an alert from rank 0 through _fleet_view.
        if url is None or not state.is_world_process_zero:
            return
        self._watcher = AlertmanagerWatcher(
            url,
            project_name=tracker.config.project_name,
            run_id=tracker.config.run_id,
            alert_names=names,
            poll_interval_seconds=poll_seconds,
        ).start()

    def _check(self, state: TrainerState) -> None:
        assert self.tracker is not None
        firing = self._watcher.firing if self._watcher is not None else None
        snap, alert_name = self._fleet_view(self.tracker.snapshot, firing.name if firing else "")
        if self.tracker.carried is not None:
            snap = self.tracker.carried.add_to(snap)  # a resumed run's budget counts it all
        found = usages(self.budget, snap, self._remaining_seconds(state))
        self.guard.check(found, state.global_step, state.max_steps or None)
        if alert_name:
            self._obey_alert(alert_name, firing, snap, state.global_step, state.max_steps or None)

    def _fleet_view(self, snap: TrackerSnapshot, alert_name: str) -> tuple[TrackerSnapshot, str]:
        """The run's totals over every process, and rank 0's firing alert name ("" for none).

        Each process measures only the devices it owns, so totals and rates add up. Every rank
        checks at the same global steps, so the two collectives line up across ranks.
        """
        if not self._reducer.active:
            return snap, alert_name
        # The Trainer's sample count is already job-wide: sum energy and CO2 only.
        summed = replace(self._reducer.totals(snap, 0.0), samples=snap.samples)
        return summed, self._reducer.broadcast(alert_name)

    def _obey_alert(
        self, name: str, firing: Any, snap: TrackerSnapshot, step: int, max_steps: int | None
    ) -> None:
        if self.budget.action == "warn":
            if not self._alert_warned:
                logger.warning(
                    "hf-eco2ai: fleet alert %s firing; action 'warn' keeps training", name
                )
                self.guard.events.append({"event": "alert_firing", "alert": name, "step": step})
            self._alert_warned = True
            return
        self.guard.trip(
            {
                "reason": f"Alertmanager alert {name} firing",
                "alert": name,
                "alert_labels": dict(firing.labels) if firing is not None else {},
                "alert_starts_at": firing.startsAt.isoformat() if firing is not None else None,
                "co2_kg": snap.co2_kg,
                "energy_kwh": snap.energy_kwh,
            },
            step,
            max_steps,
        )

    def _remaining_seconds(self, state: TrainerState) -> float | None:
        """Seconds to the last step at the pace since the first check (None before a pace).

        The first check only sets the base: the steps before it include warm-up (compilation,
        data loading), which made early projections several times too high.
        """
        if self._projection_base is None:
            self._projection_base = (time.monotonic(), state.global_step)
            return None
        t0, step0 = self._projection_base
        done = state.global_step - step0
        if done <= 0 or not state.max_steps or state.max_steps <= 0:
            return None
        return (state.max_steps - state.global_step) * (time.monotonic() - t0) / done

    def _stop(self, args: TrainingArguments, control: TrainerControl, step: int) -> None:
        assert self.tracker is not None and self.guard.reason is not None
        self._stopped = True
        control.should_training_stop = True
        if self.budget.action == "save_and_stop":
            # Honoured whatever save_strategy says: the Trainer saves whenever should_save is set.
            control.should_save = True
        reason = {**self.guard.reason, "stopped_at_step": step}
        self.tracker.mark_stopped("stopped_by_budget", reason)
        logger.warning("hf-eco2ai: training stopped at step %d: %s", step, reason["reason"])

    def _record(self) -> dict[str, Any]:
        """The budget as the report shows it; ``events`` is the guard's live list."""
        budget = self.budget
        return {
            "max_co2_kg": budget.max_co2_kg,
            "max_energy_kwh": budget.max_energy_kwh,
            "action": budget.action,
            "check_frequency": budget.check_frequency,
            "grace_period": budget.grace_period,
            "alertmanager_url": self._watch[0],
            "events": self.guard.events,
        }


def _check_watch(url: str | None, names: Sequence[str], poll_seconds: float) -> None:
    if url is not None and not url.startswith(("http://", "https://")):
        raise ConfigError("alertmanager_url", url, f"{url!r} is not an http(s) URL")
    if isinstance(names, str) or not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(
            "alertmanager_alert_names",
            names,
            "give a list of alert names, e.g. ['CriticalCarbonEmissions']",
        )
    if not poll_seconds > 0:
        raise ConfigError(
            "alertmanager_poll_seconds", poll_seconds, "must be a number of seconds > 0"
        )


def _samples_per_step(args: TrainingArguments) -> int:
    return int(
        args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    )
