"""CarbonTracker: integration of energy and CO2, life cycle, failure handling."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from hf_eco2ai import CarbonConfig, CarbonTracker
from hf_eco2ai.errors import IntensityUnavailableError
from hf_eco2ai.intensity.base import IntensityReading
from hf_eco2ai.tracking.sampler import shared_sampler
from tests.tracking.meters import ConstantPowerMeter, ManualClock, ScriptedMeter

SLOW = 3600.0  # a sampling interval long enough that only explicit samples happen


@dataclass
class SteppedIntensity:
    """Returns each value of ``values`` in turn, one per call."""

    values: list[float]
    calls: int = 0

    def intensity_at(self, when: datetime) -> IntensityReading:
        value = self.values[min(self.calls, len(self.values) - 1)]
        self.calls += 1
        return IntensityReading(value, "test curve", "TEST")


@dataclass
class FailingIntensity:
    failures: list[str] = field(default_factory=list)

    def intensity_at(self, when: datetime) -> IntensityReading:
        self.failures.append("x")
        raise IntensityUnavailableError("API unreachable")


def make_tracker(clock: ManualClock, *meters: object, **config: object) -> CarbonTracker:
    config.setdefault("measurement_interval", SLOW)
    config.setdefault("grid_carbon_intensity", 100.0)
    return CarbonTracker(CarbonConfig(**config), meters=list(meters), clock=clock)  # type: ignore[arg-type]


def test_100_watts_for_36_seconds_is_a_thousandth_of_a_kwh(clock: ManualClock) -> None:
    tracker = make_tracker(clock, ConstantPowerMeter(clock, 100.0)).start()
    tracker.sample_now()
    clock.advance(36)
    report = tracker.stop()

    assert report.data["energy"]["total_joules"] == pytest.approx(3600.0)
    assert report.energy_kwh == pytest.approx(0.001)
    # 0.001 kWh at 100 g/kWh is 0.1 g.
    assert report.co2_kg == pytest.approx(0.0001)
    assert report.data["energy"]["components"]["gpu"]["source"] == "measured"


def test_co2_integrates_intensity_of_each_interval(clock: ManualClock) -> None:
    intensity = SteppedIntensity([100.0, 100.0, 300.0])
    meter = ConstantPowerMeter(clock, 1000.0)
    tracker = CarbonTracker(
        CarbonConfig(measurement_interval=SLOW), meters=[meter], intensity=intensity, clock=clock
    ).start()
    tracker.sample_now()  # baseline (intensity call 1)
    clock.advance(3600)
    tracker.sample_now()  # 1 kWh at 100 g/kWh
    clock.advance(3600)
    report = tracker.stop()  # 1 kWh at 300 g/kWh

    assert report.energy_kwh == pytest.approx(2.0)
    assert report.data["emissions"]["total_grams"] == pytest.approx(400.0)
    assert report.data["emissions"]["intensity_g_per_kwh"] == pytest.approx(200.0)
    periods = report.data["emissions"]["intensity_periods"]
    assert [p["g_per_kwh"] for p in periods] == [100.0, 300.0]
    assert all(p["first_used_at"].endswith("Z") for p in periods)


def test_failing_live_intensity_falls_back_once_and_says_so(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = CarbonTracker(
        CarbonConfig(measurement_interval=SLOW, country="FRA"),
        meters=[ConstantPowerMeter(clock, 50.0)],
        intensity=FailingIntensity(),
        clock=clock,
    ).start()
    for _ in range(3):
        clock.advance(10)
        tracker.sample_now()
    report = tracker.stop()

    warnings = [r for r in caplog.records if "grid intensity unavailable" in r.getMessage()]
    assert len(warnings) == 1
    assert report.data["emissions"]["fallback_used"] is True
    assert report.data["emissions"]["intensity_periods"][0]["zone"] == "FRA"


def test_stop_twice_returns_the_same_report(clock: ManualClock, tmp_path: Path) -> None:
    with make_tracker(clock, ConstantPowerMeter(clock, 10.0), output_dir=str(tmp_path)) as tracker:
        clock.advance(5)
        first = tracker.stop()
    second = tracker.stop()

    assert first is second
    assert second.data["energy"]["total_joules"] == pytest.approx(50.0)
    assert (tmp_path / "carbon_report.json").exists()


def test_sampler_never_overlaps_reads_and_stops_within_bound(clock: ManualClock) -> None:
    meter = ConstantPowerMeter(clock, 10.0, read_delay_seconds=0.12)
    tracker = make_tracker(clock, meter, measurement_interval=0.05).start()
    time.sleep(0.3)  # a read is in flight most of the time
    thread = shared_sampler().thread

    began = time.monotonic()
    tracker.stop()
    stopped = time.monotonic()
    reads_at_stop = meter.reads
    time.sleep(0.3)

    assert meter.max_concurrent == 1
    assert meter.reads == reads_at_stop
    assert all(t < stopped for t in meter.read_times)
    assert stopped - began < 1.0
    # The shared sampler thread leaves once no tracker needs it, within its idle bound.
    if thread is not None:
        thread.join(timeout=5.0)
        assert not thread.is_alive()


@pytest.mark.parametrize(
    ("error", "status"), [(RuntimeError("boom"), "error"), (KeyboardInterrupt(), "interrupted")]
)
def test_exception_in_block_still_reports(
    clock: ManualClock, error: BaseException, status: str
) -> None:
    tracker = make_tracker(clock, ConstantPowerMeter(clock, 10.0))
    with pytest.raises(type(error)), tracker:
        clock.advance(1)
        raise error

    assert tracker.report.status == status
    assert tracker.report.energy_kwh > 0


def test_failing_meter_keeps_what_it_counted(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = ConstantPowerMeter(clock, 100.0, device="gpu:1", fail_after_reads=3, name="flaky")
    steady = ConstantPowerMeter(clock, 10.0, device="gpu:0")
    tracker = make_tracker(clock, steady, flaky).start()
    tracker.sample_now()  # reads 1 (baseline, at start) and 2
    clock.advance(10)
    tracker.sample_now()
    for _ in range(3):
        clock.advance(10)
        tracker.sample_now()  # flaky now fails
    report = tracker.stop()

    devices = {d["device"]: d for d in report.data["energy"]["devices"]}
    assert devices["gpu:1"]["joules"] == pytest.approx(1000.0)  # 100 W for the 10 s it answered
    assert devices["gpu:0"]["joules"] == pytest.approx(400.0)
    assert (
        len([r for r in caplog.records if "flaky meter stopped answering" in r.getMessage()]) == 1
    )


@pytest.mark.parametrize(
    "values",
    [
        [0.0, 10.0, float("nan"), 30.0],
        [0.0, 10.0, -5.0, 30.0],
        [0.0, 50.0, 20.0, 60.0],  # a counter that went backwards
        [0.0, float("inf"), 10.0],
    ],
)
def test_garbage_readings_never_make_nan_or_negative_energy(
    clock: ManualClock, values: list[float]
) -> None:
    tracker = make_tracker(clock, ScriptedMeter(values)).start()
    for _ in values:
        tracker.sample_now()
    report = tracker.stop()

    total = report.data["energy"]["total_joules"]
    assert math.isfinite(total)
    assert total >= 0
    assert total <= max(v for v in values if math.isfinite(v))
    json.loads(report.to_json())  # allow_nan=False: would raise on NaN or inf


def test_rates_use_the_trailing_window(clock: ManualClock) -> None:
    meter = ConstantPowerMeter(clock, 1000.0)
    tracker = make_tracker(clock, meter, rate_window_seconds=60).start()
    tracker.sample_now()
    for _ in range(10):
        clock.advance(30)
        tracker.sample_now()
    meter.watts = 0.0  # the device idles from now on: the window forgets the busy past
    for _ in range(3):
        clock.advance(30)
        tracker.sample_now()
    snap = tracker.snapshot
    tracker.stop()

    assert snap.energy_rate_kwh_per_hour == pytest.approx(0.0, abs=1e-9)
    assert snap.power_watts == pytest.approx(0.0, abs=1e-9)


def test_estimates_carry_a_range_and_a_remedy(clock: ManualClock) -> None:
    meter = ConstantPowerMeter(
        clock, 20.0, device="cpu", component="cpu", source="estimated", spread=0.5
    )
    tracker = make_tracker(clock, meter).start()
    clock.advance(100)
    report = tracker.stop()

    energy = report.data["energy"]
    assert energy["low_kwh"] < energy["total_kwh"] < energy["high_kwh"]
    assert report.data["emissions"]["low_kg"] < report.co2_kg < report.data["emissions"]["high_kg"]
    assert report.data["estimates"][0]["how_to_measure"]
    assert "estimated" in report.summary()


def test_unwritable_output_dir_warns_and_keeps_the_report(
    clock: ManualClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    tracker = make_tracker(clock, ConstantPowerMeter(clock, 10.0), output_dir=str(blocker / "x"))
    tracker.start()
    clock.advance(10)
    report = tracker.stop()

    assert report.data["energy"]["total_joules"] == pytest.approx(100.0)
    assert any("could not write the report" in r.getMessage() for r in caplog.records)


def test_script_that_raises_without_stop_still_writes_an_error_report(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from hf_eco2ai import CarbonConfig, CarbonTracker
            tracker = CarbonTracker(CarbonConfig(output_dir={str(tmp_path)!r},
                                                 grid_carbon_intensity=100,
                                                 measurement_interval=0.05)).start()
            raise ValueError("training diverged")
            """
        )
    )
    began = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - began

    assert done.returncode == 1
    assert "training diverged" in done.stderr
    report = json.loads((tmp_path / "carbon_report.json").read_text())
    assert report["status"] == "error"
    assert "training diverged" in report["stop_reason"]["exception"]
    assert elapsed < 30


def test_reading_totals_is_cheap(clock: ManualClock) -> None:
    tracker = make_tracker(clock, ConstantPowerMeter(clock, 10.0)).start()
    tracker.sample_now()
    snap = tracker.snapshot
    tracker.set_progress(10, 80)
    tracker.stop()

    assert snap.energy_kwh >= 0
    assert tracker.snapshot.samples == 80


def test_system_exit_zero_in_block_is_a_normal_end(clock: ManualClock) -> None:
    tracker = make_tracker(clock, ConstantPowerMeter(clock, 10.0))
    with pytest.raises(SystemExit), tracker:
        raise SystemExit(0)

    assert tracker.report.status == "completed"


def test_world_average_is_said_in_the_report(clock: ManualClock) -> None:
    tracker = CarbonTracker(
        CarbonConfig(measurement_interval=SLOW),
        meters=[ConstantPowerMeter(clock, 10.0)],
        clock=clock,
    ).start()
    report = tracker.stop()

    assert any("world average" in w for w in report.data["warnings"])
    assert report.data["emissions"]["intensity_periods"][0]["zone"] == "WORLD"


def test_a_tracker_that_measures_nothing_says_so(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="hf_eco2ai"):
        report = make_tracker(clock).start().stop()

    assert report.data["energy"]["total_joules"] == 0.0
    assert any("nothing is measured" in w for w in report.data["warnings"])
    assert caplog.text.count("nothing is measured") == 1


def test_the_series_has_one_row_per_step(clock: ManualClock) -> None:
    tracker = make_tracker(clock, ConstantPowerMeter(clock, 100.0)).start()
    tracker.sample_now()
    tracker.log_point(1, {"loss": 2.0})
    clock.advance(36)
    tracker.sample_now()
    tracker.log_point(2, {"loss": 1.5})
    tracker.log_point(2, {"train_runtime": 36.0})  # the Trainer's end-of-training log
    report = tracker.stop()

    series = report.data["series"]
    assert [row["step"] for row in series] == [1, 2]
    assert series[1]["loss"] == 1.5 and series[1]["train_runtime"] == 36.0
    assert series[1]["energy_kwh"] == pytest.approx(0.001)


class BrokenMeter(ConstantPowerMeter):
    """Counts like its parent, then raises something other than MeterError (a library bug)."""

    def read(self) -> list:  # type: ignore[type-arg]
        if self.reads >= 3:
            raise UnicodeDecodeError("ascii", b"\xff", 0, 1, "ordinal not in range(128)")
        return super().read()


def test_an_unexpected_error_in_one_meter_stops_only_that_meter(clock: ManualClock) -> None:
    broken = BrokenMeter(clock, 100.0, device="package-0", name="rapl")
    gpu = ConstantPowerMeter(clock, 300.0, device="gpu:0")
    tracker = make_tracker(clock, gpu, broken).start()
    tracker.sample_now()
    for _ in range(4):
        clock.advance(10)
        tracker.sample_now()
    report = tracker.stop()

    devices = {d["device"]: d for d in report.data["energy"]["devices"]}
    assert devices["gpu:0"]["joules"] == pytest.approx(300.0 * 40)  # the GPU was never stopped
    assert devices["package-0"]["joules"] == pytest.approx(100.0 * 10)
    assert devices["package-0"]["lost"] is True and devices["gpu:0"]["lost"] is False
    assert any("rapl meter stopped answering after" in w for w in report.data["warnings"])


def test_a_gpu_lost_mid_run_is_said_in_the_report() -> None:
    from hf_eco2ai.energy.nvml import NvmlMeter
    from tests.energy.fakes import FakeClock, FakeGpu, FakeNvml

    fake_clock = FakeClock()
    nvml = FakeNvml(fake_clock, [FakeGpu(power_watts=250.0), FakeGpu(lost_at=fake_clock() + 15)])
    meter = NvmlMeter(nvml=nvml, clock=fake_clock)
    config = CarbonConfig(measurement_interval=SLOW, grid_carbon_intensity=100.0)
    tracker = CarbonTracker(config, meters=[meter], clock=fake_clock).start()
    for _ in range(3):
        fake_clock.advance(10)
        tracker.sample_now()
    report = tracker.stop()

    lost = [w for w in report.data["warnings"] if "stopped answering" in w]
    assert lost == [
        "gpu:1 stopped answering after 20 s; its energy is counted until then and not after"
    ]
    devices = {d["device"]: d for d in report.data["energy"]["devices"]}
    assert devices["gpu:1"]["lost"] is True and devices["gpu:0"]["lost"] is False


def test_a_cpu_counter_lost_mid_run_is_estimated_from_then_on(tmp_path: Path) -> None:
    from tests.energy.fakes import FakeClock, fake_powercap

    tree = fake_powercap(tmp_path, FakeClock(), dram=True)  # files as written, on the real clock
    config = CarbonConfig(
        measurement_interval=SLOW,
        grid_carbon_intensity=100.0,
        track_gpu=False,
        powercap_root=str(tree.root),
    )
    tracker = CarbonTracker(config).start()
    tracker.sample_now()
    (tree.zone("intel-rapl:0").path / "energy_uj").unlink()  # the package counter goes away
    tracker.sample_now()
    busy_until = time.process_time() + 0.2  # CPU time for the estimate to see (10 ms ticks)
    while time.process_time() < busy_until:
        pass
    tracker.sample_now()
    report = tracker.stop()

    devices = {d["device"]: d for d in report.data["energy"]["devices"]}
    assert devices["package-0"]["lost"] is True and devices["package-0"]["source"] == "measured"
    assert devices["cpu"]["source"] == "estimated" and devices["cpu"]["joules"] > 0
    assert devices["dram-0"]["lost"] is False  # DRAM still measured: no RAM estimate added
    assert "ram" not in devices
    assert report.data["energy"]["components"]["cpu"]["source"] == "estimated"
    assert (
        "cpu is estimated from here on, since its counter stopped answering"
        in (report.data["warnings"])
    )
    assert [n["component"] for n in report.data["estimates"]] == ["cpu"]


def test_without_gpu_or_live_api_a_later_tracker_takes_its_baseline_in_start(
    tmp_path: Path,
) -> None:
    # No thread hand-off: the first milliseconds of a short task are measured too.
    from tests.energy.fakes import FakeClock, fake_powercap

    tree = fake_powercap(tmp_path, FakeClock())
    config = CarbonConfig(
        measurement_interval=SLOW, track_gpu=False, powercap_root=str(tree.root), country="FRA"
    )
    CarbonTracker(config).start().stop()  # the process's first set-up is left to the thread
    tracker = CarbonTracker(config).start()
    devices = sorted(tracker.snapshot.devices)  # read at once, no sample_now()
    tracker.stop()

    assert devices == ["dram-0", "package-0"]
