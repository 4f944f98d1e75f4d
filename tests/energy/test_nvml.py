"""NvmlMeter: measured and sampled GPU energy, device selection, lost GPUs and garbage values."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from typing import Any

import pytest

from hf_eco2ai.energy.base import DeviceEnergy, Meter
from hf_eco2ai.energy.nvml import NvmlMeter, nvidia_driver_present, parse_cuda_visible_devices
from hf_eco2ai.errors import ConfigError, MeterError
from tests.energy.fakes import FakeClock, FakeGpu, FakeNvml

PCI_ORDER = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def run(meter: NvmlMeter, clock: FakeClock, seconds: int, step: float = 1.0) -> list[DeviceEnergy]:
    """Read every ``step`` seconds for ``seconds``; return the last reading."""
    readings: list[DeviceEnergy] = []
    for _ in range(int(seconds / step)):
        clock.advance(step)
        readings = meter.read()
    return readings


def started(nvml: FakeNvml, clock: FakeClock, **kwargs: object) -> NvmlMeter:
    kwargs.setdefault("environ", dict(PCI_ORDER))
    meter = NvmlMeter(nvml=nvml, clock=clock, **kwargs)  # type: ignore[arg-type]
    meter.start()
    return meter


@pytest.mark.parametrize(
    ("has_counter", "source"), [(True, "measured"), (False, "sampled")], ids=["counter", "power"]
)
def test_200_watts_for_60_seconds_is_12_kilojoules(has_counter: bool, source: str) -> None:
    clock = FakeClock()
    nvml = FakeNvml(clock, [FakeGpu(power_watts=200.0, has_energy_counter=has_counter)])
    meter = started(nvml, clock)

    (gpu,) = run(meter, clock, 60)

    assert gpu.joules == pytest.approx(12_000.0, abs=1e-6)
    assert gpu.source == source
    assert gpu.joules_low == gpu.joules_high == gpu.joules
    assert gpu.power_watts == 200.0
    assert gpu.utilization_percent == 90.0
    assert gpu.labels == {"index": "0", "uuid": nvml.gpus[0].uuid, "name": "NVIDIA A100-SXM4-80GB"}
    assert isinstance(meter, Meter)


def test_sampled_power_is_never_zero_after_the_first_interval() -> None:
    clock = FakeClock()
    meter = started(FakeNvml(clock, [FakeGpu(power_watts=200.0, has_energy_counter=False)]), clock)

    (gpu,) = run(meter, clock, 5, step=5.0)

    assert gpu.joules == pytest.approx(1000.0)


def test_sampled_power_uses_trapezoid_between_samples() -> None:
    clock = FakeClock()
    nvml = FakeNvml(clock, [FakeGpu(power_watts=100.0, has_energy_counter=False)])
    meter = started(nvml, clock)
    run(meter, clock, 10)

    nvml.gpus[0].set_power(300.0)
    clock.advance(2.0)
    (gpu,) = meter.read()

    # 10 s at 100 W, then one 2 s interval whose ends read 100 W and 300 W.
    assert gpu.joules == pytest.approx(1000.0 + (100.0 + 300.0) / 2 * 2.0)


def test_gpu_lost_mid_run_keeps_its_joules_and_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    nvml = FakeNvml(clock, [FakeGpu(power_watts=250.0), FakeGpu(lost_at=clock() + 30.5)])
    meter = started(nvml, clock)

    with caplog.at_level(logging.WARNING):
        healthy, lost = run(meter, clock, 60)

    assert (healthy.joules, healthy.lost) == (pytest.approx(15_000.0), False)
    assert (lost.joules, lost.lost) == (pytest.approx(250.0 * 30), True)
    assert lost.power_watts is None
    assert len([r for r in caplog.records if "stopped answering" in r.message]) == 1


Selection = Callable[[str], dict[str, Any]]


@pytest.mark.parametrize(
    "selection",
    [
        lambda uuid: {"environ": {"CUDA_VISIBLE_DEVICES": "3", **PCI_ORDER}},
        lambda uuid: {"environ": {"CUDA_VISIBLE_DEVICES": uuid}},
        lambda uuid: {"environ": {"CUDA_VISIBLE_DEVICES": uuid[:12]}},
        lambda uuid: {"gpu_ids": [3], "environ": {}},
        lambda uuid: {"gpu_ids": [uuid], "environ": {"CUDA_VISIBLE_DEVICES": "0,1"}},
        lambda uuid: {"gpu_ids": [3, "3", uuid], "environ": {}},
    ],
    ids=["cvd-index", "cvd-uuid", "cvd-uuid-prefix", "ids-index", "ids-uuid", "ids-repeated"],
)
def test_only_the_selected_gpu_of_eight_is_measured(selection: Selection) -> None:
    clock = FakeClock()
    nvml = FakeNvml.uniform(8, clock, power_watts=250.0)
    meter = started(nvml, clock, **selection(nvml.gpus[3].uuid))

    readings = run(meter, clock, 10)

    assert [r.device for r in readings] == ["gpu:3"]
    assert sum(r.joules for r in readings) == pytest.approx(2_500.0)  # 250 W, not 2000 W
    assert [gpu.energy_reads > 0 for gpu in nvml.gpus] == [i == 3 for i in range(8)]


def test_no_cuda_visible_devices_measures_every_gpu() -> None:
    clock = FakeClock()
    meter = started(FakeNvml.uniform(4, clock, power_watts=100.0), clock, environ={})

    readings = run(meter, clock, 10)

    assert meter.devices == ["gpu:0", "gpu:1", "gpu:2", "gpu:3"]
    assert sum(r.joules for r in readings) == pytest.approx(4_000.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", []),
        ("  ", []),
        ("0,1", [0, 1]),
        (" 2 , 1 ", [2, 1]),
        ("1,-1,0", [1]),
        ("-1", []),
        ("2,9,1", [2]),
        ("0,0,1", [0]),
        ("abc,1", []),
        ("<uuid2>,0", [2, 0]),
        ("<uuid2-prefix>", [2]),
        ("GPU-,1", []),
        ("GPU-ffffffff", []),
    ],
)
def test_cuda_visible_devices_stops_where_cuda_stops(value: str, expected: list[int]) -> None:
    uuids = [f"GPU-{i}a{i}b0000-0000-0000-0000-00000000000{i}" for i in range(4)]
    value = value.replace("<uuid2-prefix>", uuids[2][:8]).replace("<uuid2>", uuids[2])

    selected, warnings = parse_cuda_visible_devices(value, uuids)

    assert (selected, warnings) == (expected, [])


def test_mig_entries_are_skipped_with_a_warning() -> None:
    selected, warnings = parse_cuda_visible_devices("MIG-1234abcd,1", ["GPU-a", "GPU-b"])

    assert selected == [1]
    assert len(warnings) == 1 and "MIG-1234abcd" in warnings[0]


@pytest.mark.parametrize("value", ["", "-1", "7", "GPU-nope"])
def test_cuda_visible_devices_selecting_nothing_raises(value: str) -> None:
    clock = FakeClock()
    meter = NvmlMeter(nvml=FakeNvml.uniform(2, clock), environ={"CUDA_VISIBLE_DEVICES": value})

    with pytest.raises(MeterError, match="CUDA_VISIBLE_DEVICES"):
        meter.start()


@pytest.mark.parametrize(
    ("environ", "warned"),
    [
        ({"CUDA_VISIBLE_DEVICES": "1"}, True),
        ({"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "FASTEST_FIRST"}, True),
        ({"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, False),
        ({}, False),
    ],
)
def test_device_order_warning(
    environ: dict[str, str], warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    with caplog.at_level(logging.WARNING):
        started(FakeNvml.uniform(2, clock), clock, environ=environ)

    assert len([r for r in caplog.records if "PCI_BUS_ID" in r.message]) == int(warned)


def test_device_order_warning_needs_more_than_one_gpu(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    with caplog.at_level(logging.WARNING):
        started(FakeNvml.uniform(1, clock), clock, environ={"CUDA_VISIBLE_DEVICES": "0"})
    assert not caplog.records


@pytest.mark.parametrize(
    "glitch",
    [
        {"power_mw": -5000},
        {"power_mw": float("nan")},
        {"power_mw": 6_000_000},
        {"power_mw": float("inf")},
    ],
)
def test_garbage_power_is_skipped_and_bridged(
    glitch: dict[str, float], caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    nvml = FakeNvml(clock, [FakeGpu(power_watts=200.0, has_energy_counter=False)])
    meter = started(nvml, clock)
    run(meter, clock, 10)

    nvml.gpus[0].glitch(**glitch)
    nvml.gpus[0].glitch(**glitch)
    with caplog.at_level(logging.WARNING):
        readings = [r.joules for _ in range(20) for r in run(meter, clock, 1)]

    assert all(math.isfinite(j) and j >= 0 for j in readings)
    assert readings == sorted(readings)
    assert readings[-1] == pytest.approx(200.0 * 30)  # the gap is bridged, nothing lost
    assert len([r for r in caplog.records if "implausible" in r.message]) == 1


@pytest.mark.parametrize(
    "bad_mj",
    [float("nan"), -1.0, "backwards", "jump"],
    ids=["nan", "negative", "backwards", "jump"],
)
def test_garbage_counter_single_glitch_loses_nothing(
    bad_mj: float | str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    nvml = FakeNvml(clock, [FakeGpu(power_watts=300.0)])
    gpu = nvml.gpus[0]
    meter = started(nvml, clock)
    run(meter, clock, 10)

    last_mj = gpu.initial_energy_mj + 300.0 * 1000 * 10
    value = {"backwards": last_mj - 50_000.0, "jump": last_mj + 1e12}.get(str(bad_mj), bad_mj)
    gpu.glitch(energy_mj=float(value))
    with caplog.at_level(logging.WARNING):
        readings = [r.joules for _ in range(20) for r in run(meter, clock, 1)]

    assert all(math.isfinite(j) and j >= 0 for j in readings)
    assert readings == sorted(readings)
    assert readings[-1] == pytest.approx(300.0 * 30)
    assert len([r for r in caplog.records if "implausible" in r.message]) == 1


def test_counter_reset_is_rebased_after_two_reads() -> None:
    clock = FakeClock()
    nvml = FakeNvml(clock, [FakeGpu(power_watts=100.0, initial_energy_mj=10**9)])
    meter = started(nvml, clock)
    run(meter, clock, 10)

    # A driver reload restarts the counter near zero: three reads from a low base.
    gpu = nvml.gpus[0]
    gpu.initial_energy_mj = 0
    gpu.bind(clock, 0)
    (reading,) = run(meter, clock, 10)

    # Two implausible steps are skipped, then counting resumes: 2 s of 10 are lost.
    assert reading.joules == pytest.approx(100.0 * 18)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"library_missing": True}, "NVML library"),
        ({"driver_loaded": False}, "driver is not loaded"),
    ],
)
def test_no_library_or_driver_raises_meter_error(options: dict[str, bool], message: str) -> None:
    clock = FakeClock()
    nvml = FakeNvml(clock, [FakeGpu()], **options)

    with pytest.raises(MeterError, match=message):
        NvmlMeter(nvml=nvml, environ={}).start()
    assert NvmlMeter.available(nvml) is False


def test_zero_gpus_raises_and_leaves_nvml_shut_down() -> None:
    nvml = FakeNvml(FakeClock(), [])

    with pytest.raises(MeterError, match="no GPU"):
        NvmlMeter(nvml=nvml, environ={}).start()
    assert nvml.init_count == 0
    assert NvmlMeter.available(nvml) is False


def test_available_and_close_balance_nvml_init() -> None:
    clock = FakeClock()
    nvml = FakeNvml.uniform(2, clock)

    assert NvmlMeter.available(nvml) is True
    meter = started(nvml, clock)
    assert nvml.init_count == 1
    meter.close()
    meter.close()
    assert nvml.init_count == 0
    assert [r.device for r in meter.read()] == ["gpu:0", "gpu:1"]  # frozen, no NVML call


def test_gpu_without_energy_or_power_is_skipped() -> None:
    clock = FakeClock()
    nvml = FakeNvml(clock, [FakeGpu(), FakeGpu(lost_at=clock())])

    meter = started(nvml, clock)

    assert meter.devices == ["gpu:0"]


@pytest.mark.parametrize("gpu_ids", [[-1], ["abc"], [True], "0", [1.5], [""]])
def test_bad_gpu_ids_raise_config_error(gpu_ids: object) -> None:
    with pytest.raises(ConfigError) as caught:
        NvmlMeter(gpu_ids=gpu_ids)  # type: ignore[arg-type]
    assert caught.value.field == "gpu_ids"


@pytest.mark.parametrize("gpu_ids", [[8], ["GPU-ffffffff-no"]])
def test_unknown_gpu_ids_raise_meter_error_naming_them(gpu_ids: list[int | str]) -> None:
    clock = FakeClock()
    meter = NvmlMeter(gpu_ids=gpu_ids, nvml=FakeNvml.uniform(8, clock), environ={})

    with pytest.raises(MeterError, match=re.escape(repr(gpu_ids[0]))):
        meter.start()


@pytest.mark.skipif(nvidia_driver_present() is not False, reason="this host has an NVIDIA driver")
def test_real_host_without_driver_fails_fast_with_a_clear_message() -> None:
    with pytest.raises(MeterError, match="No NVIDIA driver"):
        NvmlMeter().start()
    assert NvmlMeter.available() is False


@pytest.mark.gpu
@pytest.mark.skipif(not nvidia_driver_present(), reason="needs a real NVIDIA GPU")
def test_real_gpu_energy_is_measured() -> None:  # pragma: no cover - runs on GPU hosts only
    import time

    meter = NvmlMeter()
    meter.start()
    time.sleep(1.0)
    readings = meter.read()
    meter.close()

    assert readings and all(r.joules > 0 and not r.lost for r in readings)


@pytest.mark.parametrize("baseline_mj", [-1.0, float("nan")])
def test_a_garbage_baseline_is_replaced_by_the_first_good_read(baseline_mj: float) -> None:
    clock = FakeClock()
    nvml = FakeNvml(clock, [FakeGpu(power_watts=300.0)])
    nvml.gpus[0].glitch(energy_mj=baseline_mj)  # served at start()
    meter = started(nvml, clock)

    first = run(meter, clock, 1)[0].joules
    (gpu,) = run(meter, clock, 10)

    assert first == 0.0  # the first second has no baseline: not measured, never invented
    assert gpu.joules == pytest.approx(300.0 * 10)
