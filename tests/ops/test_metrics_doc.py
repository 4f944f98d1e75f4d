"""``docs/metrics.md`` is the catalogue, rendered; it cannot drift from the code."""

from __future__ import annotations

from pathlib import Path

from hf_eco2ai.exporters.catalogue import CATALOGUE
from hf_eco2ai.ops.docs import render_metrics_doc

DOC = Path(__file__).parents[2] / "docs" / "metrics.md"


def test_the_committed_doc_matches_the_catalogue() -> None:
    assert DOC.read_text() == render_metrics_doc(), (
        "run: python -m hf_eco2ai.ops.docs > docs/metrics.md"
    )


def test_every_metric_has_a_row() -> None:
    text = render_metrics_doc()

    for spec in CATALOGUE:
        assert f"| `{spec.name}`" in text
