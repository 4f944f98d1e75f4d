"""Fixtures for the control tests: one torch thread, so tiny CPU runs avoid contention."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread for the test; the tiny model is ~10x slower on 2 busy cores."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
