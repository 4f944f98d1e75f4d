"""The PromQL of the runbook's steps 1 to 5 and 9, and a check that each returns data.

Queries copied from the carbon-emissions incident runbook (shared/runbook/
carbon-emissions-runbook.md, version 1.0, 2025-08-02), as its `curl` lines send them.
"""

from __future__ import annotations

import time

from tests.promstack import Prometheus

#: (runbook step, instant query).
INSTANT_QUERIES = [
    ("1", "hf_training_co2_kg_total"),
    ("1", "rate(hf_training_co2_kg_total[5m])*3600"),
    ("2", "topk(5, hf_training_co2_kg_total)"),
    ("3", "hf_training_co2_kg_total - hf_training_carbon_budget_kg"),
    ("4", "hf_training_gpu_utilization_percent"),
    ("4", "hf_training_gpu_power_watts"),
    ("4", "hf_training_grid_carbon_intensity_g_per_kwh"),
    ("5", "hf_training_loss"),
    ("5", "hf_training_samples_per_kwh"),
    ("9", "max_over_time(hf_training_co2_kg_total[1h])"),
]

#: Step 2 lists projects through the label-values API.
LABEL = "project_name"

#: Step 4's 24-hour history of the grid intensity, one point an hour.
RANGE_QUERY = "hf_training_grid_carbon_intensity_g_per_kwh"


def unanswered(prom: Prometheus, project_name: str, *, gpus: bool = True) -> list[str]:
    """The runbook queries that return no data (empty when all do); step 4's GPU queries are
    skipped when ``gpus`` is False (a CPU-only run has no GPU series to show)."""
    missing = []
    for step, expr in INSTANT_QUERIES:
        if not gpus and "gpu" in expr:
            continue
        if not prom.query(expr):
            missing.append(f"step {step}: {expr}")
    if project_name not in prom.api(f"label/{LABEL}/values"):
        missing.append(f"step 2: label values of {LABEL}")
    now = time.time()
    history = prom.query_range(RANGE_QUERY, start=now - 86400, end=now, step=3600)
    if not history or not history[0]["values"]:
        missing.append(f"step 4: query_range {RANGE_QUERY}")
    return missing
