"""Exporter cost: rendering /metrics for one 8-GPU run, and what publishing a sample costs.

``python benchmarks/bench_exporter.py``. The exporter renders on scrape from the latest snapshot,
so the sampler thread only swaps a reference; the baseline updates plain prometheus-client
Gauge/Counter children from the same snapshot, which is what it would do instead.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
from _common import median_of, row  # noqa: E402
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest  # noqa: E402
from tests.exporters.snapshots import RunShape, settings  # noqa: E402

from hf_eco2ai.exporters import PrometheusExporter  # noqa: E402
from hf_eco2ai.tracking.snapshot import TrackerSnapshot  # noqa: E402

GPUS = 8


class GaugeExporter:
    """The alternative design: labelled Gauge/Counter children updated on every sample."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        run = ["project_name", "run_id"]
        self.co2 = Counter("hf_training_co2_kg", "", run, registry=self.registry)
        self.kwh = Counter("hf_training_energy_kwh", "", run, registry=self.registry)
        self.joules = Counter(
            "hf_training_energy_joules", "", [*run, "component", "source"], registry=self.registry
        )
        self.gpu_j = Counter(
            "hf_training_gpu_energy_joules", "", [*run, "gpu", "source"], registry=self.registry
        )
        self.power = Gauge("hf_training_gpu_power_watts", "", [*run, "gpu"], registry=self.registry)
        self.util = Gauge(
            "hf_training_gpu_utilization_percent", "", [*run, "gpu"], registry=self.registry
        )
        self.spk = Gauge("hf_training_samples_per_kwh", "", run, registry=self.registry)
        self.last = TrackerSnapshot()

    def update(self, snap: TrackerSnapshot) -> None:
        run = ("proj", "run-1")
        self.co2.labels(*run).inc(max(0.0, snap.co2_kg - self.last.co2_kg))
        self.kwh.labels(*run).inc(max(0.0, snap.energy_kwh - self.last.energy_kwh))
        for name, total in snap.components.items():
            before = self.last.components.get(name)
            self.joules.labels(*run, name, total.source).inc(
                total.joules - (before.joules if before else 0.0)
            )
        for dev, total in snap.devices.items():
            r, before = total.reading, self.last.devices.get(dev)
            gpu = r.labels["index"]
            self.gpu_j.labels(*run, gpu, r.source).inc(
                r.joules - (before.reading.joules if before else 0.0)
            )
            self.power.labels(*run, gpu).set(r.power_watts or 0.0)
            self.util.labels(*run, gpu).set(r.utilization_percent or 0.0)
        self.spk.labels(*run).set(snap.samples_per_kwh)
        self.last = snap


def per_call_ns(fn: object, snapshots: list[TrackerSnapshot]) -> float:
    began = time.perf_counter_ns()
    for snap in snapshots:
        fn(snap)  # type: ignore[operator]
    return (time.perf_counter_ns() - began) / len(snapshots)


def main() -> None:
    shape = RunShape(gpus=GPUS)
    snapshots = [shape.snapshot(float(t)) for t in range(1, 20_001)]
    ours = PrometheusExporter(settings())

    update_ours = median_of(lambda: per_call_ns(ours.update, snapshots), 5)
    update_base = median_of(lambda: per_call_ns(GaugeExporter().update, snapshots), 5)
    loss_ours = median_of(
        lambda: per_call_ns(lambda s: ours.set_loss(s.elapsed_seconds), snapshots), 5
    )
    print(row("publish one sample (sampler thread)", update_ours, update_base, "ns", "gauges"))
    print(f"{'set_loss (training thread, per log step)':<44} ours {loss_ours:>10.4g} ns")

    baseline = GaugeExporter()
    ours.update(snapshots[-1])
    baseline.update(snapshots[-1])
    render_ours = median_of(lambda: _render_us(ours.registry), 200)
    render_base = median_of(lambda: _render_us(baseline.registry), 200)
    print(
        row(f"render /metrics, {GPUS} GPUs (per scrape)", render_ours, render_base, "us", "gauges")
    )

    ours.start()
    assert ours.url is not None
    with httpx.Client() as client:
        scrape = median_of(lambda: _scrape_ms(client, ours.url), 100)
        size = len(client.get(ours.url).content)
    ours.close()
    print(f"{'HTTP scrape of /metrics, loopback':<44} ours {scrape:>10.4g} ms   ({size} bytes)")


def _render_us(registry: CollectorRegistry) -> float:
    began = time.perf_counter_ns()
    generate_latest(registry)
    return (time.perf_counter_ns() - began) / 1000.0


def _scrape_ms(client: httpx.Client, url: str) -> float:
    began = time.perf_counter_ns()
    client.get(url)
    return (time.perf_counter_ns() - began) / 1e6


if __name__ == "__main__":
    main()
