"""The measurement core: background sampling, energy and CO2 accounting, cheap snapshots."""

from hf_eco2ai.tracking.snapshot import TrackerSnapshot
from hf_eco2ai.tracking.tracker import CarbonTracker, current_tracker

__all__ = ["CarbonTracker", "TrackerSnapshot", "current_tracker"]
