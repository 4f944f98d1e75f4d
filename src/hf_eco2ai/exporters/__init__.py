"""Prometheus export of a run's metrics: the catalogue, the collector, serving and pushing."""

from __future__ import annotations

from hf_eco2ai.exporters.prometheus import ExporterSettings, PrometheusExporter

__all__ = ["ExporterSettings", "PrometheusExporter"]
