"""Who measures what in a multi-process job, and the job's totals, with processes simulated in one
interpreter: each "process" gets its launcher environment, its own tracker and the node's fake
NVML GPUs and RAPL tree on one fake clock, so every figure is exact."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hf_eco2ai import CarbonConfig, CarbonTracker
from hf_eco2ai.errors import ConfigError
from hf_eco2ai.exporters.prometheus import PrometheusExporter
from hf_eco2ai.tracking.distributed import (
    Placement,
    build_owned_meters,
    detect_placement,
    merge_reports,
    owned_gpu_ids,
    process_record,
)
from hf_eco2ai.units import JOULES_PER_KWH
from tests.energy.fakes import FakeClock, FakeNvml, FakePowercap, fake_powercap

SLOW = 3600.0
GPU_WATTS = 300.0
PACKAGE_WATTS = 40.0
DRAM_WATTS = 6.0
SECONDS = 100.0


def launcher_env(
    rank: int, local_rank: int, world: int, local_world: int, **extra: str
) -> dict[str, str]:
    """What torchrun sets for one worker."""
    env = {
        "RANK": str(rank),
        "LOCAL_RANK": str(local_rank),
        "WORLD_SIZE": str(world),
        "LOCAL_WORLD_SIZE": str(local_world),
        "GROUP_RANK": str(rank // local_world),
    }
    return env | extra


@dataclass
class Node:
    """One machine: its GPUs (NVML) and RAPL counters, on the shared fake clock."""

    nvml: FakeNvml
    rapl: FakePowercap
    name: str


def make_node(tmp_path: Path, clock: FakeClock, gpus: int, name: str = "node-a") -> Node:
    nvml = FakeNvml.uniform(gpus, clock, power_watts=GPU_WATTS)
    rapl = fake_powercap(tmp_path / name, clock, package_watts=PACKAGE_WATTS, dram_watts=DRAM_WATTS)
    return Node(nvml, rapl, name)


def run_processes(
    clock: FakeClock,
    processes: list[tuple[Node, Mapping[str, str]]],
    config: CarbonConfig | list[CarbonConfig],
) -> list[dict[str, Any]]:
    """Start one tracker per (node, environment), let SECONDS pass, return each one's record."""
    configs = config if isinstance(config, list) else [config] * len(processes)
    trackers = []
    for (node, env), cfg in zip(processes, configs, strict=True):
        placement = detect_placement(env | {"HF_ECO2AI_HOST": node.name})
        meters, _ = build_owned_meters(
            cfg,
            placement,
            nvml=node.nvml,
            environ=env,
            powercap_root=node.rapl.root,
            powercap_read_file=node.rapl.read_file,
            clock=clock,
        )
        tracker = CarbonTracker(cfg, meters=meters, clock=clock, placement=placement).start()
        tracker.sample_now()  # baseline before the clock moves
        trackers.append(tracker)
    clock.advance(SECONDS)
    return [process_record(t.stop().data, t.placement, 0) for t in trackers]


def config(**fields: Any) -> CarbonConfig:
    fields.setdefault("grid_carbon_intensity", 100.0)
    return CarbonConfig(measurement_interval=SLOW, save_report=False, **fields)


def gpu_indices(record: dict[str, Any]) -> list[str]:
    return sorted(
        d["labels"]["index"] for d in record["energy"]["devices"] if d["component"] == "gpu"
    )


@pytest.fixture
def fake_clock() -> Iterator[FakeClock]:
    yield FakeClock()


# -- placement ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, Placement(0, 0, 1, 1, 0, "h"), id="single-process"),
        pytest.param(launcher_env(5, 1, 8, 4), Placement(5, 1, 8, 4, 1, "h"), id="torchrun-node-1"),
        pytest.param(
            {
                "RANK": "5",
                "LOCAL_RANK": "1",
                "WORLD_SIZE": "8",
                "LOCAL_SIZE": "4",
                "CROSS_RANK": "1",
            },
            Placement(5, 1, 8, 4, 1, "h"),
            id="deepspeed-launcher",
        ),
        pytest.param(
            {
                "OMPI_COMM_WORLD_RANK": "3",
                "OMPI_COMM_WORLD_LOCAL_RANK": "1",
                "OMPI_COMM_WORLD_SIZE": "4",
                "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
            },
            Placement(3, 1, 4, 2, 1, "h"),
            id="open-mpi",
        ),
        pytest.param(
            {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"},
            Placement(3, 1, 4, 2, 1, "h"),
            id="no-local-rank-but-local-size",
        ),
    ],
)
def test_placement_comes_from_the_launchers_variables(
    env: dict[str, str], expected: Placement
) -> None:
    assert detect_placement(env | {"HF_ECO2AI_HOST": "h"}) == expected


def test_a_garbled_launcher_variable_raises_naming_it() -> None:
    with pytest.raises(ConfigError) as err:
        detect_placement({"RANK": "one", "WORLD_SIZE": "2"})
    assert err.value.field == "RANK"


def test_without_local_rank_one_process_per_node_is_assumed_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    placement = detect_placement({"RANK": "2", "WORLD_SIZE": "4"})

    assert (placement.local_rank, placement.node_rank) == (0, 2)
    assert any("no LOCAL_RANK" in r.getMessage() for r in caplog.records)


# -- which GPU a process owns --------------------------------------------------------------------

UUID3 = FakeNvml.uniform(8, FakeClock()).gpus[3].uuid


@pytest.mark.parametrize(
    ("local_rank", "local_world", "visible", "cuda_device", "configured", "expected"),
    [
        pytest.param(0, 1, None, None, None, None, id="alone-on-node-owns-all-visible"),
        pytest.param(2, 4, None, None, None, [2], id="local-rank-indexes-nvml"),
        pytest.param(1, 2, "3,5", None, None, [5], id="local-rank-indexes-visible-list"),
        pytest.param(0, 2, f"{UUID3},GPU-x", None, None, [UUID3], id="uuid-entry-kept"),
        pytest.param(1, 4, "4,5,6,7", 3, None, [7], id="current-cuda-device-wins"),
        pytest.param(3, 4, "0,1", None, None, [], id="more-processes-than-gpus"),
        pytest.param(1, 4, "0,1,2,3", None, [6], [6], id="configured-ids-win"),
        pytest.param(1, 2, "2,-1,3", None, None, [], id="cuda-stops-at-invalid-entry"),
    ],
)
def test_owned_gpu_follows_the_device_the_process_trains_on(
    local_rank: int,
    local_world: int,
    visible: str | None,
    cuda_device: int | None,
    configured: list[int | str] | None,
    expected: list[int | str] | None,
) -> None:
    placement = Placement(local_rank, local_rank, local_world, local_world)
    env = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}

    owned = owned_gpu_ids(placement, env, configured=configured, cuda_device=cuda_device)

    assert owned == expected


# -- the job's totals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("track_cpu", "expected_joules"),
    [
        pytest.param(False, 120_000.0, id="gpus-only"),
        pytest.param(True, 120_000.0 + (PACKAGE_WATTS + DRAM_WATTS) * SECONDS, id="with-rapl"),
    ],
)
def test_four_processes_on_a_four_gpu_host_count_each_gpu_and_the_cpu_once(
    tmp_path: Path, fake_clock: FakeClock, track_cpu: bool, expected_joules: float
) -> None:
    node = make_node(tmp_path, fake_clock, gpus=4)
    processes = [(node, launcher_env(r, r, 4, 4)) for r in range(4)]

    records = run_processes(fake_clock, processes, config(track_cpu=track_cpu, track_ram=False))
    job = merge_reports(records[0], records)

    # 4 GPUs x 300 W x 100 s = 120 kJ = 0.0333 kWh; a tracker per process reading the whole
    # node would report 4 x that.
    assert job["energy"]["components"]["gpu"]["joules"] == pytest.approx(120_000.0)
    assert job["energy"]["total_joules"] == pytest.approx(expected_joules)
    assert job["energy"]["total_kwh"] == pytest.approx(expected_joules / JOULES_PER_KWH)
    assert [gpu_indices(r) for r in records] == [["0"], ["1"], ["2"], ["3"]]
    node_level = [
        p["node_level"] and "package-0" in p["measured"] for p in job["distributed"]["processes"]
    ]
    assert node_level == [track_cpu, False, False, False]
    assert job["emissions"]["total_grams"] == pytest.approx(expected_joules / JOULES_PER_KWH * 100)
    assert {d["measured_by_rank"] for d in job["energy"]["devices"] if d["component"] == "gpu"} == {
        0,
        1,
        2,
        3,
    }


@pytest.mark.parametrize(
    "visible", [pytest.param("3", id="by-index"), pytest.param(UUID3, id="by-uuid")]
)
@pytest.mark.parametrize("processes", [1, 2])
def test_a_job_holding_gpu_3_of_8_is_charged_for_gpu_3_only(
    tmp_path: Path, fake_clock: FakeClock, visible: str, processes: int
) -> None:
    node = make_node(tmp_path, fake_clock, gpus=8)
    env = {"CUDA_VISIBLE_DEVICES": visible, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    # With two processes on one visible GPU the second trains on a device that does not exist.
    envs = [launcher_env(r, r, processes, processes) | env for r in range(processes)]
    if processes == 1:
        envs = [env]

    records = run_processes(
        fake_clock, [(node, e) for e in envs], config(track_cpu=False, track_ram=False)
    )
    job = merge_reports(records[0], records)

    assert gpu_indices(records[0]) == ["3"]
    assert job["energy"]["total_joules"] == pytest.approx(GPU_WATTS * SECONDS)


def test_two_jobs_sharing_a_host_never_count_each_others_gpus(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    node = make_node(tmp_path, fake_clock, gpus=4)
    job_a = [(node, launcher_env(r, r, 2, 2, CUDA_VISIBLE_DEVICES="0,1")) for r in range(2)]
    job_b = [(node, launcher_env(r, r, 2, 2, CUDA_VISIBLE_DEVICES="2,3")) for r in range(2)]
    settings = config(track_cpu=False, track_ram=False)

    records = run_processes(fake_clock, job_a + job_b, settings)
    report_a = merge_reports(records[0], records[:2])
    report_b = merge_reports(records[2], records[2:])

    gpus_a = {d["labels"]["uuid"] for d in report_a["energy"]["devices"]}
    gpus_b = {d["labels"]["uuid"] for d in report_b["energy"]["devices"]}
    assert len(gpus_a) == len(gpus_b) == 2 and not gpus_a & gpus_b
    assert report_a["energy"]["total_joules"] == pytest.approx(2 * GPU_WATTS * SECONDS)
    assert report_b["energy"]["total_joules"] == pytest.approx(2 * GPU_WATTS * SECONDS)


def test_nodes_in_different_regions_each_use_their_own_intensity(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    node_a = make_node(tmp_path, fake_clock, gpus=2, name="node-a")
    node_b = make_node(tmp_path, fake_clock, gpus=2, name="node-b")
    processes = [(node_a, launcher_env(r, r, 4, 2)) for r in range(2)]
    processes += [(node_b, launcher_env(r + 2, r, 4, 2)) for r in range(2)]
    configs = [config(grid_carbon_intensity=100.0)] * 2 + [config(grid_carbon_intensity=500.0)] * 2

    records = run_processes(fake_clock, processes, configs)
    job = merge_reports(records[0], records)

    node_joules = 2 * GPU_WATTS * SECONDS + (PACKAGE_WATTS + DRAM_WATTS) * SECONDS
    node_kwh = node_joules / JOULES_PER_KWH
    nodes = {n["host"]: n for n in job["energy"]["nodes"]}
    assert nodes["node-a"]["kwh"] == pytest.approx(node_kwh)
    assert nodes["node-a"]["intensity_g_per_kwh"] == pytest.approx(100.0)
    assert nodes["node-b"]["intensity_g_per_kwh"] == pytest.approx(500.0)
    assert job["emissions"]["total_grams"] == pytest.approx(node_kwh * 100 + node_kwh * 500)
    assert job["emissions"]["intensity_g_per_kwh"] == pytest.approx(300.0)
    assert {
        (d["host"], d["device"]) for d in job["energy"]["devices"] if d["component"] == "cpu"
    } == {
        ("node-a", "package-0"),
        ("node-b", "package-0"),
    }


def test_a_gpu_two_processes_both_measured_is_counted_once_and_named(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    node = make_node(tmp_path, fake_clock, gpus=2)
    settings = config(track_cpu=False, track_ram=False, gpu_ids=[0])
    processes = [(node, launcher_env(r, r, 2, 2)) for r in range(2)]

    records = run_processes(fake_clock, processes, settings)
    job = merge_reports(records[0], records)

    assert job["energy"]["total_joules"] == pytest.approx(GPU_WATTS * SECONDS)
    assert job["energy"]["components"]["gpu"]["joules"] == pytest.approx(GPU_WATTS * SECONDS)
    assert job["distributed"]["gpus_counted_twice"] == 1
    assert any("counted once" in w for w in job["warnings"])


def test_merged_samples_are_the_sum_of_every_process_share(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    node = make_node(tmp_path, fake_clock, gpus=2)
    records = run_processes(
        fake_clock,
        [(node, launcher_env(r, r, 2, 2)) for r in range(2)],
        config(track_cpu=False, track_ram=False),
    )
    records = [r | {"process_samples": 40} for r in records]

    job = merge_reports(records[0], records)

    assert job["training"]["samples"] == 80
    assert job["training"]["samples_per_kwh"] == pytest.approx(80 / (2 * 30_000 / JOULES_PER_KWH))


# -- what each process exports -----------------------------------------------------------------


@pytest.mark.parametrize(("rank", "job_series"), [(0, True), (1, False)])
def test_each_process_pushes_its_own_group_and_only_rank_0_the_job_series(
    rank: int, job_series: bool, fake_clock: FakeClock
) -> None:
    placement = Placement(rank, rank, 2, 2)
    settings = config(pushgateway_url="http://127.0.0.1:9", prometheus_port=9500)
    tracker = CarbonTracker(settings, meters=[], clock=fake_clock, placement=placement)
    from hf_eco2ai.tracking.tracker import _exporter_for

    exporter = _exporter_for(settings, placement)
    assert isinstance(exporter, PrometheusExporter)
    assert exporter.grouping_key["rank"] == str(rank)
    text = exporter.render().decode()
    assert ("hf_training_steps_total" in text) is job_series
    assert ("hf_training_samples_per_kwh" in text) is job_series
    assert tracker.placement == placement
