"""Public home of :class:`AutoCarbonOptimizer` (``from hf_eco2ai.optimization import ...``)."""

from hf_eco2ai.control.optimizer import STRATEGIES, AutoCarbonOptimizer

__all__ = ["STRATEGIES", "AutoCarbonOptimizer"]
