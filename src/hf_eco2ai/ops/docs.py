"""Render ``docs/metrics.md`` from the metric catalogue (``python -m hf_eco2ai.ops.docs``)."""

from __future__ import annotations

import sys

from hf_eco2ai.exporters.catalogue import CATALOGUE, RUN_LABELS, MetricSpec

_INTRO = """\
# Metrics

Generated from `src/hf_eco2ai/exporters/catalogue.py` by `python -m hf_eco2ai.ops.docs`;
do not edit by hand (a test compares this file with the catalogue).

Every series carries the labels {run_labels}. The exporter serves them on `/metrics`
(`CarbonConfig(export_prometheus=True, prometheus_port=9466)`) or pushes them to a Pushgateway
(`pushgateway_url=...`, grouping key `job="hf_eco2ai"`, `project_name`, `run_id`).

## Names and units

The runbook fixes eight names (marked *runbook* below) and we keep them as written, even
though Prometheus's naming guide would count CO2 in grams and energy in joules: alerts and
queries already written against the runbook keep working. Every other name follows the
guide: base units (joules, watts, seconds), `_total` for counters, `_info` for identity
series whose value is always 1. `hf_training_energy_budget_kwh` is in kWh on purpose: it is
compared with the runbook's `hf_training_energy_kwh_total`.

Counters (`hf_training_co2_kg_total`, the `_joules_total` and `_total` series) only grow within
one process and restart at 0 when the process restarts; use `rate()` or `increase()` on them,
never a raw difference (see `docs/alerts.md`).

## Catalogue

| Name | Type | Unit | Labels | Help |
| --- | --- | --- | --- | --- |
"""


def _row(spec: MetricSpec) -> str:
    labels = ", ".join(f"`{label}`" for label in spec.labels) or "(run labels only)"
    name = f"`{spec.name}`" + (" *runbook*" if spec.runbook else "")
    return f"| {name} | {spec.type} | {spec.unit or '-'} | {labels} | {spec.help} |"


def render_metrics_doc() -> str:
    """The Markdown text of ``docs/metrics.md``."""
    run_labels = " and ".join(f"`{label}`" for label in RUN_LABELS)
    rows = "\n".join(_row(spec) for spec in CATALOGUE)
    return _INTRO.format(run_labels=run_labels) + rows + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_metrics_doc())
