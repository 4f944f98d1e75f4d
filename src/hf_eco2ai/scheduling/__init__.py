"""Carbon-aware scheduling: when (and where) to run a job for the least CO2, from intensity
forecasts in g/kWh. Importing this package loads numpy; it makes no requests by itself."""

from __future__ import annotations

from hf_eco2ai.scheduling.curve import Curve, best_window
from hf_eco2ai.scheduling.regions import RegionRanking, rank_regions
from hf_eco2ai.scheduling.scheduler import LowCarbonScheduler, ScheduleResult, SlotSchedule
from hf_eco2ai.scheduling.slots import best_slots

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
