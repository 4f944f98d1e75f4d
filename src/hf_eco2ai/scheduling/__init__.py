"""Carbon-aware scheduling: when (and where) to run a job for the least CO2, from intensity
forecasts in g/kWh. Names load on first use (numpy with them), so the CLI stays quick."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hf_eco2ai.scheduling.curve import Curve, best_window
    from hf_eco2ai.scheduling.regions import RegionRanking, rank_regions
    from hf_eco2ai.scheduling.scheduler import LowCarbonScheduler, ScheduleResult, SlotSchedule
    from hf_eco2ai.scheduling.slots import best_slots

_HOMES = {
    "Curve": "curve",
    "best_window": "curve",
    "RegionRanking": "regions",
    "rank_regions": "regions",
    "LowCarbonScheduler": "scheduler",
    "ScheduleResult": "scheduler",
    "SlotSchedule": "scheduler",
    "best_slots": "slots",
}

__all__ = [
    "Curve",
    "LowCarbonScheduler",
    "RegionRanking",
    "ScheduleResult",
    "SlotSchedule",
    "best_slots",
    "best_window",
    "rank_regions",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'hf_eco2ai.scheduling' has no attribute {name!r}")
    return getattr(importlib.import_module(f"hf_eco2ai.scheduling.{_HOMES[name]}"), name)
