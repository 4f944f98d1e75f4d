"""Real multi-process training jobs launched with ``torchrun`` on CPU (gloo), on fake GPUs and RAPL.

Each "node" is one ``torchrun`` launcher (``--nnodes 2`` with a static rendezvous on 127.0.0.1
simulates two machines); fake time moves 25 s per training step, so every device's energy is
known exactly: GPUs 300 W, CPU package 40 W, DRAM 6 W, for 4 steps = 100 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hf_eco2ai.units import GRAMS_PER_KG, JOULES_PER_KWH
from tests.energy.fakes import FakeClock, FakeNvml
from tests.promstack import free_port, start_prometheus, start_pushgateway

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
JOB = REPO / "tests" / "distributed" / "job.py"
STEPS, SECONDS_PER_STEP = 4, 25.0
GPU_J = 300.0 * STEPS * SECONDS_PER_STEP  # one GPU over the run
NODE_CPU_J = (40.0 + 6.0) * STEPS * SECONDS_PER_STEP  # package + DRAM, once per node
LAUNCH_TIMEOUT_SECONDS = 120


def node_spec(tmp_path: Path, node: int, **overrides: Any) -> dict[str, Any]:
    spec = {
        "project": "dist-test",
        "gpus": 4,
        "gpu_watts": 300.0,
        "package_watts": 40.0,
        "dram_watts": 6.0,
        "node_dir": str(tmp_path / f"node{node}"),
        "intensity": 100.0,
        "steps": STEPS,
        "seconds_per_step": SECONDS_PER_STEP,
        "output_dir": str(tmp_path / "out"),
        "framework": "transformers",
    }
    return spec | overrides


def launch(specs: list[dict[str, Any]], nproc: int, env: dict[str, str] | None = None) -> None:
    """Run one torchrun launcher per node spec, all joined on one port, and wait for all."""
    port = free_port()
    launchers = []
    for node, spec in enumerate(specs):
        child_env = os.environ | (env or {})
        child_env |= {
            "HF_ECO2AI_TEST_JOB": json.dumps(spec),
            "HF_ECO2AI_TEST_NODES": str(len(specs)),
            "HF_ECO2AI_HOST": f"node-{node}",
            "PYTHONPATH": str(REPO),
            "OMP_NUM_THREADS": "1",
        }
        child_env |= spec.get("env", {})
        argv = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nnodes={len(specs)}",
            f"--node-rank={node}",
            f"--nproc-per-node={nproc}",
            "--master-addr=127.0.0.1",
            f"--master-port={port}",
            str(JOB),
        ]
        launchers.append(
            subprocess.Popen(
                argv, env=child_env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
        )
    for launcher in launchers:
        out, _ = launcher.communicate(timeout=LAUNCH_TIMEOUT_SECONDS)
        text = out.decode(errors="replace")
        assert launcher.returncode == 0, text[-8000:]


def load(tmp_path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    out = tmp_path / "out"
    report = json.loads((out / "carbon_report.json").read_text())
    views = [json.loads(p.read_text()) for p in sorted(out.glob("process-*.json"))]
    return report, views


@pytest.mark.integration
def test_two_processes_on_one_node_report_the_node_energy_once_and_prometheus_agrees(
    tmp_path: Path,
) -> None:
    with start_pushgateway(tmp_path) as gateway:
        launch([node_spec(tmp_path, 0, pushgateway_url=gateway.url)], nproc=2)
        report, views = load(tmp_path)
        with start_prometheus(tmp_path, [gateway.address], honor_labels=True) as prom:
            expr = 'sum(hf_training_co2_kg_total{project_name="dist-test"})'
            prom.wait_for("count(hf_training_co2_kg_total) == 2")
            pushed_kg = prom.value(expr)
            ranks = {r["metric"]["rank"] for r in prom.query("hf_training_co2_kg_total")}
            job_series = prom.query("hf_training_samples_total")

    expected_j = 2 * GPU_J + NODE_CPU_J  # GPUs 0 and 1, one per process; RAPL once
    assert report["energy"]["total_joules"] == pytest.approx(expected_j)
    assert report["energy"]["components"]["gpu"]["joules"] == pytest.approx(2 * GPU_J)
    assert report["emissions"]["total_kg"] == pytest.approx(expected_j / JOULES_PER_KWH * 0.1)
    assert report["training"]["samples"] == STEPS * 2 * 2
    assert report["distributed"]["world_size"] == 2
    measured = {p["rank"]: p["measured"] for p in report["distributed"]["processes"]}
    assert measured == {0: ["dram-0", "gpu:0", "package-0"], 1: ["gpu:1"]}
    # Only rank 0 wrote a report; every rank logged each step (on_log ran on both, no deadlock).
    assert sorted(os.listdir(tmp_path / "out")) == [
        "carbon_report.json",
        "carbon_series.csv",
        "process-0.json",
        "process-1.json",
    ]
    # One row per step: the Trainer's end-of-training log at step 4 joins that step's row.
    assert [[row["step"] for row in v["series"]] for v in views] == [[1, 2, 3, 4]] * 2
    assert "train_runtime" in views[0]["series"][-1] and "loss" in views[0]["series"][-1]
    assert views[1]["report"]["energy"]["total_joules"] == pytest.approx(GPU_J)
    # Prometheus: one pushed group per rank, and the runbook's sum is the report's total.
    assert ranks == {"0", "1"}
    assert pushed_kg == pytest.approx(report["emissions"]["total_kg"], rel=1e-9)
    assert len(job_series) == 1 and job_series[0]["metric"]["rank"] == "0"


def test_two_nodes_in_different_regions_sum_their_own_co2(tmp_path: Path) -> None:
    uuid3 = FakeNvml.uniform(4, FakeClock()).gpus[3].uuid
    specs = [
        node_spec(tmp_path, 0, intensity=100.0, env={"CUDA_VISIBLE_DEVICES": "0,1"}),
        node_spec(tmp_path, 1, intensity=500.0, env={"CUDA_VISIBLE_DEVICES": uuid3}),
    ]

    launch(specs, nproc=1)
    report, _ = load(tmp_path)

    # One process per node owns every GPU its node lets it see: 2 on node 0, GPU 3 on node 1.
    node0_j, node1_j = 2 * GPU_J + NODE_CPU_J, GPU_J + NODE_CPU_J
    nodes = {n["node_rank"]: n for n in report["energy"]["nodes"]}
    assert nodes[0]["joules"] == pytest.approx(node0_j)
    assert nodes[1]["joules"] == pytest.approx(node1_j)
    assert (nodes[0]["host"], nodes[1]["host"]) == ("node-0", "node-1")
    assert nodes[1]["intensity_g_per_kwh"] == pytest.approx(500.0)
    expected_g = node0_j / JOULES_PER_KWH * 100.0 + node1_j / JOULES_PER_KWH * 500.0
    assert report["emissions"]["total_kg"] == pytest.approx(expected_g / GRAMS_PER_KG)
    gpus = {
        (d["host"], d["labels"]["uuid"])
        for d in report["energy"]["devices"]
        if "uuid" in d["labels"]
    }
    assert ("node-1", uuid3) in gpus and len(gpus) == 3


def test_lightning_two_processes_report_the_node_energy_once(tmp_path: Path) -> None:
    pytest.importorskip("lightning")

    launch([node_spec(tmp_path, 0, framework="lightning")], nproc=2)
    report, views = load(tmp_path)

    assert report["energy"]["total_joules"] == pytest.approx(2 * GPU_J + NODE_CPU_J)
    assert report["training"]["samples"] == STEPS * 4 * 2  # batches of 4 on each of 2 ranks
    assert report["distributed"]["processes_reporting"] == 2
    assert report["extra"]["trainer"]["world_size"] == 2
    assert [v["report"]["energy"]["total_joules"] for v in views][1] == pytest.approx(GPU_J)
    # Every rank summed at each step together (a collective only some ranks call would hang).
    assert len(views[0]["series"]) == len(views[1]["series"]) == STEPS


def test_budget_over_two_processes_stops_every_rank_on_the_job_total(tmp_path: Path) -> None:
    # Per step: rank 0 uses 300 W GPU + 46 W CPU, rank 1 300 W, each for 25 s: 16150 J together.
    # The job total crosses 31 kJ at step 2; either rank alone would run on to step 4 or 5.
    budget_j = 31_000.0
    spec = node_spec(tmp_path, 0, steps=6, budget_kwh=budget_j / JOULES_PER_KWH)

    launch([spec], nproc=2)
    report, views = load(tmp_path)

    reason = report["stop_reason"]
    assert report["status"] == "stopped_by_budget"
    assert reason["quantity"] == "energy_kwh" and reason["step"] == 2
    assert reason["used"] * JOULES_PER_KWH == pytest.approx(2 * (2 * 7500.0 + 46.0 * 25.0))
    assert report["training"]["steps"] == 2
    # Both ranks stopped at the same step (a rank left training would hang the job).
    assert [v["report"]["training"]["steps"] for v in views] == [2, 2]
