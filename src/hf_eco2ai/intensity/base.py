"""What every grid-intensity provider answers: grams CO2eq per kWh at a moment, with its source."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

#: ``average``: the grid's mean intensity (attributional); ``marginal``: the intensity of the
#: generator that answers extra demand (WattTime's signal). They are not interchangeable.
IntensityKind = Literal["average", "marginal"]


@dataclass(frozen=True)
class IntensityReading:
    """Grid carbon intensity for one zone over one period.

    Attributes:
        g_per_kwh: Grams CO2eq per kWh of electricity consumed.
        source: Who published the figure, e.g.
            ``"Our World in Data / Ember 2023 (via CodeCarbon 3.3.2)"``.
        zone: The zone it applies to, e.g. ``"FRA"``, ``"aws:eu-west-3"``, ``"GB"``.
        kind: Average or marginal intensity.
        year: Data year for annual averages, else None.
        valid_from: Start of the period the figure covers (UTC), None for annual tables.
        valid_to: End of that period (UTC), None for annual tables.
        is_forecast: True when the figure is a forecast rather than a settled value.
        fallback: True when a live provider failed and this figure came from the bundled table.
    """

    g_per_kwh: float
    source: str
    zone: str
    kind: IntensityKind = "average"
    year: int | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    is_forecast: bool = False
    fallback: bool = False


@runtime_checkable
class IntensityProvider(Protocol):
    """Answers grid intensity at a time; called from the tracker's sampler thread.

    Implementations cache within their source's resolution and must answer quickly; a live
    provider that fails raises :class:`~hf_eco2ai.errors.IntensityUnavailableError` and the
    tracker falls back to the bundled table.
    """

    def intensity_at(self, when: datetime) -> IntensityReading: ...
