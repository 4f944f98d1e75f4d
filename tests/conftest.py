"""Shared fixtures: a manual clock and simple meters of known power for tracker-level tests."""

from __future__ import annotations

import pytest

from tests.tracking.meters import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
