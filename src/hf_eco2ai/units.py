"""Exact unit conversions. Inside the library we compute in joules, seconds, watts and grams."""

from __future__ import annotations

JOULES_PER_KWH = 3.6e6
GRAMS_PER_KG = 1000.0
SECONDS_PER_HOUR = 3600.0
MICROJOULES_PER_JOULE = 1e6
MILLIJOULES_PER_JOULE = 1e3
MILLIWATTS_PER_WATT = 1e3
GRAMS_PER_POUND = 453.59237  # exact, by the international avoirdupois pound
BYTES_PER_GB = 1e9


def joules_to_kwh(joules: float) -> float:
    """Convert joules to kilowatt-hours (1 kWh = 3.6e6 J exactly)."""
    return joules / JOULES_PER_KWH


def co2_grams(joules: float, intensity_g_per_kwh: float) -> float:
    """Grams of CO2eq for ``joules`` of electricity at ``intensity_g_per_kwh``."""
    return joules / JOULES_PER_KWH * intensity_g_per_kwh
