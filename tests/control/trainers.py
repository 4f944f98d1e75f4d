"""A tiny real Trainer run on CPU, with a meter of known power, for the control tests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hf_eco2ai.config import CarbonConfig
from tests.tracking.meters import ConstantPowerMeter

#: Fixed grid intensity of the test runs, g CO2eq/kWh.
INTENSITY_G_PER_KWH = 400.0

#: The meter's power: at 400 g/kWh, 1 kW emits 400/3600 g (0.111 g) per second.
WATTS = 1000.0


def meter(watts: float = WATTS) -> ConstantPowerMeter:
    """A device drawing ``watts`` on the real monotonic clock."""
    return ConstantPowerMeter(time.monotonic, watts)  # type: ignore[arg-type]


def config(**fields: Any) -> CarbonConfig:
    """A config sampling every 50 ms at the fixed intensity."""
    fields.setdefault("project_name", "budget-test")
    return CarbonConfig(
        grid_carbon_intensity=INTENSITY_G_PER_KWH, measurement_interval=0.05, **fields
    )


def tiny_trainer(output_dir: Path, callbacks: list[Any], **kwargs: Any) -> Any:
    """The demo Trainer with a one-layer 32-wide model, batch 2, logging every step."""
    from hf_eco2ai.demo import build_model, build_trainer

    kwargs.setdefault("max_steps", 400)
    model = build_model(layers=1, width=32, heads=2)
    return build_trainer(
        output_dir, batch_size=2, logging_steps=1, callbacks=callbacks, model=model, **kwargs
    )
