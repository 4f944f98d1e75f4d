"""The framework-free core of a carbon budget: when to warn, what to project, when to stop.

Pure bookkeeping over :class:`TrackerSnapshot` figures; no I/O besides logging. Limits are
given in kg and kWh (the runbook's units) and compared in grams and joules.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, get_args

from hf_eco2ai.errors import ConfigError
from hf_eco2ai.tracking.snapshot import TrackerSnapshot
from hf_eco2ai.units import GRAMS_PER_KG, JOULES_PER_KWH

logger = logging.getLogger(__name__)

Action = Literal["warn", "stop", "save_and_stop"]
Quantity = Literal["co2_kg", "energy_kwh"]

ACTIONS: tuple[str, ...] = get_args(Action)

#: ``warn`` logs again each time usage passes a further tenth of the budget (110 %, 120 %...).
WARN_STEP_FRACTION = 0.1


@dataclass(frozen=True)
class CarbonBudget:
    """A run's budget and how it is enforced; validated at construction.

    Attributes:
        max_co2_kg: CO2eq budget in kg, or None for no CO2 budget.
        max_energy_kwh: Energy budget in kWh, or None for no energy budget.
        action: ``warn``, ``stop`` or ``save_and_stop``.
        check_frequency: Compare totals with the budget every this many optimizer steps.
        grace_period: Steps training may still run after a stop is decided.
    """

    max_co2_kg: float | None = None
    max_energy_kwh: float | None = None
    action: Action = "stop"
    check_frequency: int = 100
    grace_period: int = 0

    def __post_init__(self) -> None:
        for name in ("max_co2_kg", "max_energy_kwh"):
            value = getattr(self, name)
            if value is not None and not _positive_number(value):
                raise ConfigError(name, value, f"must be a number > 0 (or None), got {value!r}")
        if self.action not in ACTIONS:
            accepted = ", ".join(repr(a) for a in ACTIONS)
            raise ConfigError("action", self.action, f"{self.action!r} is not one of {accepted}")
        _check_count("check_frequency", self.check_frequency, minimum=1)
        _check_count("grace_period", self.grace_period, minimum=0)

    def limits(self) -> dict[Quantity, float]:
        """The set limits in base units: grams for ``co2_kg``, joules for ``energy_kwh``."""
        limits: dict[Quantity, float] = {}
        if self.max_co2_kg is not None:
            limits["co2_kg"] = self.max_co2_kg * GRAMS_PER_KG
        if self.max_energy_kwh is not None:
            limits["energy_kwh"] = self.max_energy_kwh * JOULES_PER_KWH
        return limits


def _positive_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _check_count(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(
            name, value, f"must be a whole number of steps >= {minimum}, got {value!r}"
        )


@dataclass(frozen=True)
class Usage:
    """One budgeted quantity at a check, in base units (grams or joules).

    Attributes:
        quantity: ``co2_kg`` or ``energy_kwh`` (the unit the budget was given in).
        used: Grams (CO2) or joules (energy) so far.
        limit: The budget in the same unit.
        projected: Expected end-of-run total in the same unit, or None when unknown.
    """

    quantity: Quantity
    used: float
    limit: float
    projected: float | None = None

    @property
    def fraction(self) -> float:
        return self.used / self.limit

    def in_budget_units(self, value: float) -> float:
        """``value`` converted to the budget's unit (kg or kWh)."""
        return value / (GRAMS_PER_KG if self.quantity == "co2_kg" else JOULES_PER_KWH)


def usages(
    budget: CarbonBudget, snapshot: TrackerSnapshot, remaining_seconds: float | None
) -> list[Usage]:
    """Each budgeted quantity of ``snapshot``, projected ``remaining_seconds`` ahead if known.

    The projection adds the current rate (trailing-window mean; the run's mean while the window
    holds no interval yet) times the remaining time.
    """
    found = []
    for quantity, limit in budget.limits().items():
        used, per_second = _used_and_rate(quantity, snapshot)
        projected = None
        if remaining_seconds is not None:
            projected = used + per_second * max(remaining_seconds, 0.0)
        found.append(Usage(quantity, used, limit, projected))
    return found


def _used_and_rate(quantity: Quantity, snap: TrackerSnapshot) -> tuple[float, float]:
    """Grams and grams per second, or joules and watts, from ``snap``."""
    if quantity == "co2_kg":
        used = snap.co2_grams
        # kg per hour to grams per second: x 1000 / 3600.
        rate = snap.co2_rate_kg_per_hour * GRAMS_PER_KG / 3600.0
    else:
        used, rate = snap.energy_joules, snap.power_watts
    if rate <= 0 and snap.elapsed_seconds > 0:
        rate = used / snap.elapsed_seconds
    return used, rate


@dataclass
class BudgetGuard:
    """Remembers what was already said and decided, so each event is logged once.

    Attributes:
        budget: The budget enforced.
        stop_at_step: The step at which training must stop, once a stop is decided.
        reason: Why the stop was decided (JSON-serialisable), once it is.
        events: Every warning and decision, for the run's report.
    """

    budget: CarbonBudget
    stop_at_step: int | None = None
    reason: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    _tenths_logged: dict[str, int] = field(default_factory=dict)
    _projection_warned: set[str] = field(default_factory=set)

    def check(self, found: list[Usage], step: int, max_steps: int | None) -> None:
        """Warn for crossings and projections in ``found`` and decide a stop when due."""
        for usage in found:
            if usage.fraction >= 1.0:
                self._crossed(usage, step, max_steps)
            else:
                self._project(usage, step, max_steps)

    def trip(self, reason: dict[str, Any], step: int, max_steps: int | None = None) -> None:
        """Decide a stop (budget crossed, fleet alert); the first one wins.

        The stop comes ``grace_period`` steps later, or at the run's last step if that is
        sooner, so that a run ending within its grace still stops (and saves) as decided.
        """
        if self.stop_at_step is not None:
            return
        stop_at = step + self.budget.grace_period
        self.stop_at_step = min(stop_at, max_steps) if max_steps else stop_at
        self.reason = {**reason, "step": step, "time": _now_iso(), "action": self.budget.action}
        self.events.append({"event": "stop_decided", **self.reason})

    def _crossed(self, usage: Usage, step: int, max_steps: int | None) -> None:
        tenths = math.floor(usage.fraction / WARN_STEP_FRACTION + 1e-9)
        last = self._tenths_logged.get(usage.quantity, 0)
        # Only ``warn`` repeats itself; a stopping run says it once and stops.
        if tenths <= last or (last and self.budget.action != "warn"):
            return
        self._tenths_logged[usage.quantity] = tenths
        figures = _figures(usage)
        self.events.append(
            {"event": "budget_exceeded", "step": step, "time": _now_iso(), **figures}
        )
        logger.warning(
            "hf-eco2ai: %s budget exceeded at step %d: %.6g of %.6g (%.0f %%)",
            usage.quantity,
            step,
            figures["used"],
            figures["budget"],
            usage.fraction * 100,
        )
        if self.budget.action != "warn" and self.stop_at_step is None:
            self.trip({"reason": "carbon budget exceeded", **figures}, step, max_steps)
            logger.warning(
                "hf-eco2ai: stopping training (%s) after at most %d more step(s)",
                self.budget.action,
                self.budget.grace_period,
            )

    def _project(self, usage: Usage, step: int, max_steps: int | None) -> None:
        if usage.projected is None or usage.projected <= usage.limit:
            return
        if usage.quantity in self._projection_warned:
            return
        self._projection_warned.add(usage.quantity)
        figures = _figures(usage)
        self.events.append(
            {"event": "projected_over_budget", "step": step, "time": _now_iso(), **figures}
        )
        logger.warning(
            "hf-eco2ai: at the current rate the run will reach %.6g %s by step %s, over its "
            "budget of %.6g (%.0f %% used at step %d)",
            figures["projected"],
            usage.quantity,
            max_steps,
            figures["budget"],
            usage.fraction * 100,
            step,
        )


def _figures(usage: Usage) -> dict[str, Any]:
    """The usage in the budget's unit, rounded for people (9 significant digits)."""
    projected = usage.projected
    return {
        "quantity": usage.quantity,
        "budget": _round(usage.in_budget_units(usage.limit)),
        "used": _round(usage.in_budget_units(usage.used)),
        "projected": None if projected is None else _round(usage.in_budget_units(projected)),
    }


def _round(value: float) -> float:
    return float(f"{value:.9g}")


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
