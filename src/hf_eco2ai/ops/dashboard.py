"""A Grafana dashboard (JSON model) for hf-eco2ai metrics, built from the catalogue; no I/O.

Plain dicts rather than a builder library: grafana-foundation-sdk needs Python 3.11 (we support
3.10) and is alpha with one release line per Grafana version; grafanalib has had no release
since January 2024. The model uses a Prometheus data-source variable, so the same file can be
imported through the UI or provisioned from disk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hf_eco2ai.exporters import catalogue as cat

#: The uid the runbook links to (``/d/carbon-tracking``).
DASHBOARD_UID = "carbon-tracking"

#: Grafana's JSON-model schema version this model is written for (Grafana 10).
SCHEMA_VERSION = 39

_RUN = 'project_name=~"$project_name"'
_BY_RUN = "project_name, run_id"


@dataclass(frozen=True)
class Panel:
    """One time-series panel: title, Grafana unit id, and PromQL queries with legends."""

    title: str
    unit: str
    queries: tuple[tuple[str, str], ...]
    description: str = ""


def _sel(spec: cat.MetricSpec) -> str:
    return f"{spec.name}{{{_RUN}}}"


PANELS: tuple[Panel, ...] = (
    Panel(
        "Cumulative CO2",
        "masskg",
        ((f"sum by ({_BY_RUN}) ({_sel(cat.CO2_TOTAL)})", "{{run_id}}"),),
        cat.CO2_TOTAL.help,
    ),
    Panel(
        "Emission rate",
        "kg/h",
        (
            (
                f"sum by ({_BY_RUN}) (rate({_sel(cat.CO2_TOTAL)}[$__rate_interval])) * 3600",
                "{{run_id}}",
            ),
        ),
        "rate() of hf_training_co2_kg_total, in kg CO2eq per hour.",
    ),
    Panel(
        "Energy",
        "kwatth",
        ((f"sum by ({_BY_RUN}) ({_sel(cat.ENERGY_KWH_TOTAL)})", "{{run_id}}"),),
        cat.ENERGY_KWH_TOTAL.help,
    ),
    Panel(
        "Energy by component",
        "joule",
        (
            (
                f"sum by (run_id, component, source) ({_sel(cat.ENERGY_JOULES_TOTAL)})",
                "{{run_id}} {{component}} ({{source}})",
            ),
        ),
        cat.ENERGY_JOULES_TOTAL.help,
    ),
    Panel(
        "GPU power",
        "watt",
        (
            (_sel(cat.GPU_POWER), "{{run_id}} gpu {{gpu}}"),
            (_sel(cat.POWER), "{{run_id}} all devices"),
        ),
        cat.GPU_POWER.help,
    ),
    Panel(
        "GPU utilisation",
        "percent",
        ((_sel(cat.GPU_UTILIZATION), "{{run_id}} gpu {{gpu}}"),),
        cat.GPU_UTILIZATION.help,
    ),
    Panel(
        "Grid carbon intensity",
        "g/kWh",
        ((_sel(cat.GRID_INTENSITY), "{{zone}} ({{intensity_source}})"),),
        cat.GRID_INTENSITY.help,
    ),
    Panel(
        "Samples per kWh",
        "short",
        ((_sel(cat.SAMPLES_PER_KWH), "{{run_id}}"),),
        cat.SAMPLES_PER_KWH.help,
    ),
    Panel("Training loss", "short", ((_sel(cat.LOSS), "{{run_id}}"),), cat.LOSS.help),
    Panel(
        "Carbon budget",
        "masskg",
        (
            (f"sum by ({_BY_RUN}) ({_sel(cat.CO2_TOTAL)})", "{{run_id}} emitted"),
            (_sel(cat.CARBON_BUDGET), "{{run_id}} budget"),
        ),
        cat.CARBON_BUDGET.help,
    ),
)


def panel_model(panel: Panel, index: int) -> dict[str, Any]:
    """The JSON model of ``panel``, placed in a two-column grid at position ``index``."""
    targets = [
        {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend, "datasource": _DS}
        for i, (expr, legend) in enumerate(panel.queries)
    ]
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": _DS,
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": targets,
    }


_DS = {"type": "prometheus", "uid": "${datasource}"}


def _variables() -> list[dict[str, Any]]:
    datasource: dict[str, Any] = {"name": "datasource", "label": "Data source", "hide": 0}
    datasource |= {"type": "datasource", "query": "prometheus", "current": {}}
    project: dict[str, Any] = {
        "name": "project_name",
        "label": "Project",
        "type": "query",
        "datasource": _DS,
        "query": {"query": f"label_values({cat.RUN_INFO.name}, project_name)", "refId": "projects"},
        "definition": f"label_values({cat.RUN_INFO.name}, project_name)",
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {},
        "hide": 0,
    }
    return [datasource, project]


def dashboard_model(
    title: str = "HF Eco2AI: training carbon", uid: str = DASHBOARD_UID
) -> dict[str, Any]:
    """The dashboard's JSON model as a dict."""
    return {
        "uid": uid,
        "title": title,
        "tags": ["hf-eco2ai", "carbon"],
        "timezone": "browser",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": _variables()},
        "annotations": {"list": []},
        "panels": [panel_model(panel, i) for i, panel in enumerate(PANELS)],
    }


def render_dashboard(title: str = "HF Eco2AI: training carbon", uid: str = DASHBOARD_UID) -> str:
    """The dashboard as JSON text, ready for Grafana's import or file provisioning."""
    return json.dumps(dashboard_model(title, uid), indent=2) + "\n"
