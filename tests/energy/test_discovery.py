"""build_meters: best meter per component, one warning per degradation, DRAM never counted twice."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from hf_eco2ai.energy.discovery import build_meters
from hf_eco2ai.energy.nvml import nvidia_driver_present
from hf_eco2ai.errors import ConfigError
from tests.energy.fakes import FakeClock, FakeNvml, fake_powercap

no_driver = pytest.mark.skipif(
    nvidia_driver_present() is not False, reason="this host has an NVIDIA driver"
)


def kinds(meters: list[object]) -> list[str]:
    return [type(meter).__name__ for meter in meters]


def test_everything_measured_when_present(tmp_path: Path) -> None:
    clock = FakeClock()
    tree = fake_powercap(tmp_path, clock)

    meters, warnings = build_meters(
        nvml=FakeNvml.uniform(2, clock, power_watts=300.0),
        environ={},
        powercap_root=tree.root,
        powercap_read_file=tree.read_file,
        clock=clock,
    )
    clock.advance(10.0)
    readings = [r for meter in meters for r in meter.read()]

    assert kinds(meters) == ["NvmlMeter", "RaplMeter"]  # DRAM measured: no RAM estimate
    assert warnings == []
    assert {r.component: r.source for r in readings} == {
        "gpu": "measured",
        "cpu": "measured",
        "dram": "measured",
    }
    assert sum(r.joules for r in readings) == pytest.approx((600.0 + 46.0) * 10)


@pytest.mark.parametrize(
    "options",
    [{"include_dram": False}, {"dram": False}],
    ids=["dram-not-wanted", "amd-no-dram"],
)
def test_ram_estimated_when_rapl_does_not_measure_dram(
    tmp_path: Path, options: dict[str, bool]
) -> None:
    clock = FakeClock()
    tree = fake_powercap(tmp_path, clock, dram=options.get("dram", True))

    meters, warnings = build_meters(
        track_gpu=False,
        include_dram=options.get("include_dram", True),
        powercap_root=tree.root,
        powercap_read_file=tree.read_file,
        clock=clock,
    )

    assert kinds(meters) == ["RaplMeter", "RamEstimateMeter"]
    assert warnings == []


def test_unreadable_rapl_falls_back_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    tree = fake_powercap(tmp_path, clock, unreadable=True)

    with caplog.at_level(logging.INFO):
        meters, warnings = build_meters(
            track_gpu=False, powercap_root=tree.root, powercap_read_file=tree.read_file
        )

    assert kinds(meters) == ["CpuEstimateMeter", "RamEstimateMeter"]
    assert len(warnings) == 1 and "sudo chmod o+r" in warnings[0]
    logged = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in logged] == warnings


def test_gpu_failure_warns_when_a_gpu_was_expected(tmp_path: Path) -> None:
    clock = FakeClock()

    meters, warnings = build_meters(
        nvml=FakeNvml(clock, [], library_missing=True),
        track_cpu=False,
        track_ram=False,
    )

    assert meters == []
    assert len(warnings) == 1 and "NVML library" in warnings[0]


@no_driver
def test_no_gpu_on_a_driverless_host_is_info_not_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        meters, warnings = build_meters(track_cpu=False, track_ram=False)

    assert (meters, warnings) == ([], [])
    assert any("No NVIDIA driver" in r.getMessage() for r in caplog.records)


def test_nothing_tracked_builds_nothing(tmp_path: Path) -> None:
    assert build_meters(track_gpu=False, track_cpu=False, track_ram=False) == ([], [])


@pytest.mark.parametrize(
    ("field", "options"),
    [("tdp_watts", {"cpu_tdp_watts": -1.0}), ("watts_per_gb", {"ram_watts_per_gb": 0.0})],
)
def test_bad_figures_raise_even_when_unused(
    tmp_path: Path, field: str, options: dict[str, float]
) -> None:
    with pytest.raises(ConfigError) as caught:
        build_meters(track_gpu=False, track_cpu=False, track_ram=False, **options)  # type: ignore[arg-type]
    assert caught.value.field == field


@no_driver
def test_repeated_discovery_when_nothing_is_present(tmp_path: Path) -> None:
    # How fast this is, is measured in benchmarks/bench_tracker.py, not asserted here.
    root = tmp_path / "no-powercap"
    for _ in range(3):
        meters, warnings = build_meters(powercap_root=root)

    assert kinds(meters) == ["CpuEstimateMeter", "RamEstimateMeter"]
    assert len(warnings) == 1


def test_unreadable_rapl_keeps_gpu_measurement(tmp_path: Path) -> None:
    clock = FakeClock()
    tree = fake_powercap(tmp_path, clock, unreadable=True)
    nvml = FakeNvml.uniform(2, clock, power_watts=300.0)

    meters, warnings = build_meters(
        nvml=nvml,
        environ={},
        powercap_root=tree.root,
        powercap_read_file=tree.read_file,
        clock=clock,
    )
    clock.advance(10)
    readings = [r for m in meters for r in m.read()]

    assert kinds(meters) == ["NvmlMeter", "CpuEstimateMeter", "RamEstimateMeter"]
    assert len(warnings) == 1
    gpu_joules = sum(r.joules for r in readings if r.component == "gpu")
    assert gpu_joules == pytest.approx(2 * 300.0 * 10)
    assert {r.source for r in readings if r.component == "cpu"} == {"estimated"}


def test_missing_powercap_is_probed_and_logged_once_per_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "no-powercap-here"
    with caplog.at_level(logging.WARNING):
        _, first = build_meters(track_gpu=False, powercap_root=root)
        _, second = build_meters(track_gpu=False, powercap_root=root)

    assert first == second and len(first) == 1
    assert len([r for r in caplog.records if str(root) in r.getMessage()]) == 1
