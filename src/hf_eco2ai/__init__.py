"""hf-eco2ai: energy and CO2 of machine-learning training, measured, exported and controlled.

Heavy integrations are imported on first use, so ``import hf_eco2ai`` stays fast.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from hf_eco2ai.config import CarbonConfig
    from hf_eco2ai.control.budget import CarbonBudgetCallback
    from hf_eco2ai.integrations.transformers import Eco2AICallback
    from hf_eco2ai.reports.report import CarbonReport
    from hf_eco2ai.tracking.tracker import CarbonTracker

_LAZY = {
    "CarbonConfig": "hf_eco2ai.config",
    "CarbonTracker": "hf_eco2ai.tracking.tracker",
    "CarbonReport": "hf_eco2ai.reports.report",
    "Eco2AICallback": "hf_eco2ai.integrations.transformers",
    "CarbonBudgetCallback": "hf_eco2ai.control.budget",
}

__all__ = [
    "CarbonBudgetCallback",
    "CarbonConfig",
    "CarbonReport",
    "CarbonTracker",
    "Eco2AICallback",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hf_eco2ai' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
