"""RaplMeter: wrap-safe package and DRAM energy, no double counting, access errors with remedy."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from hf_eco2ai.energy.base import DeviceEnergy, Meter
from hf_eco2ai.energy.rapl import RaplMeter, counter_step_uj
from hf_eco2ai.errors import MeterError
from tests.energy.fakes import INTEL_MAX_ENERGY_RANGE_UJ, FakeClock, FakePowercap, fake_powercap


def run(meter: RaplMeter, clock: FakeClock, seconds: float, step: float) -> list[DeviceEnergy]:
    """Read every ``step`` seconds for ``seconds``; return the last reading."""
    readings: list[DeviceEnergy] = []
    for _ in range(round(seconds / step)):
        clock.advance(step)
        readings = meter.read()
    return readings


def started(tree: FakePowercap, **kwargs: bool) -> RaplMeter:
    meter = tree.meter(**kwargs)
    meter.start()
    return meter


def test_exact_wrap_case() -> None:
    step = counter_step_uj(262_143_000_000, 500_000_000, 262_143_328_850)

    assert step == 500_328_850


def test_meter_reads_the_exact_wrap_case_as_500_watts(tmp_path: Path) -> None:
    clock = FakeClock()
    tree = fake_powercap(
        tmp_path, clock, dram=False, package_watts=500.32885, initial_uj=262_143_000_000
    )
    meter = started(tree)
    clock.advance(1.0)

    assert tree.zone("intel-rapl:0").counter_uj() == 500_000_000  # the counter did wrap
    (package,) = meter.read()
    assert package.joules == pytest.approx(500.32885, abs=1e-9)
    assert package.power_watts == pytest.approx(500.32885)


@pytest.mark.parametrize("interval", [1.0, 5.0, 20.0])
def test_several_wraps_across_a_run(tmp_path: Path, interval: float) -> None:
    clock = FakeClock()
    # A 1 kJ range at 40 W wraps every 25 s: 12 wraps in 300 s.
    tree = fake_powercap(tmp_path, clock, dram=False, max_energy_range_uj=10**9)
    meter = started(tree)

    totals = [run(meter, clock, interval, interval)[0].joules for _ in range(round(300 / interval))]

    assert totals[-1] == pytest.approx(40.0 * 300, abs=1e-6)
    assert totals == sorted(totals) and min(totals) > 0


def test_wrap_with_the_real_intel_range(tmp_path: Path) -> None:
    clock = FakeClock()
    tree = fake_powercap(tmp_path, clock, dram=False, package_watts=400.0, initial_uj=10**9)
    meter = started(tree)

    # 262 kJ at 400 W wraps every ~655 s; 2000 s at the default 5 s interval wraps 3 times.
    (package,) = run(meter, clock, 2000, 5.0)

    assert package.joules == pytest.approx(400.0 * 2000, abs=1e-6)


@pytest.mark.parametrize(("include_dram", "watts"), [(True, 46.0), (False, 40.0)])
def test_package_40_watts_and_dram_6_watts(
    tmp_path: Path, include_dram: bool, watts: float
) -> None:
    clock = FakeClock()
    meter = started(fake_powercap(tmp_path, clock), include_dram=include_dram)

    readings = run(meter, clock, 10, 1.0)

    assert sum(r.power_watts or 0.0 for r in readings) == pytest.approx(watts)
    assert sum(r.joules for r in readings) == pytest.approx(watts * 10)
    assert meter.measures_dram is include_dram


def test_psys_core_uncore_and_mmio_are_not_double_counted(tmp_path: Path) -> None:
    clock = FakeClock()
    tree = fake_powercap(tmp_path, clock, core=True, uncore=True, psys=True, mmio=True)
    meter = started(tree)

    readings = run(meter, clock, 10, 1.0)

    assert meter.devices == ["package-0", "dram-0"]
    assert [(r.component, r.source) for r in readings] == [
        ("cpu", "measured"),
        ("dram", "measured"),
    ]
    assert sum(r.joules for r in readings) == pytest.approx(460.0)
    assert readings[0].labels == {"zone": "intel-rapl:0", "package": "0"}
    assert isinstance(meter, Meter)


def test_two_sockets(tmp_path: Path) -> None:
    clock = FakeClock()
    meter = started(fake_powercap(tmp_path, clock, packages=2))

    readings = run(meter, clock, 10, 1.0)

    assert meter.devices == ["package-0", "dram-0", "package-1", "dram-1"]
    assert sum(r.joules for r in readings) == pytest.approx(2 * 46.0 * 10)


def test_amd_package_without_dram(tmp_path: Path) -> None:
    clock = FakeClock()
    tree = fake_powercap(tmp_path, clock, dram=False, core=False, uncore=False)
    meter = started(tree)

    readings = run(meter, clock, 10, 1.0)

    assert meter.devices == ["package-0"]
    assert meter.measures_dram is False
    assert readings[0].joules == pytest.approx(400.0)


def test_unreadable_counters_raise_with_the_remedy(tmp_path: Path) -> None:
    tree = fake_powercap(tmp_path, FakeClock(), unreadable=True)

    with pytest.raises(MeterError) as caught:
        tree.meter().start()

    message = str(caught.value)
    assert "intel-rapl:0/energy_uj" in message
    assert "sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj" in message
    assert "CVE-2020-8694" in message and "CAP_DAC_READ_SEARCH" in message
    assert isinstance(caught.value.__cause__, PermissionError)


@pytest.mark.parametrize("make", ["missing", "empty", "psys-only"])
def test_no_package_zone_raises(tmp_path: Path, make: str) -> None:
    clock = FakeClock()
    root = tmp_path / "nothing"
    if make == "empty":
        root.mkdir()
    if make == "psys-only":
        tree = fake_powercap(tmp_path, clock, package_name="psys")
        root = tree.root

    with pytest.raises(MeterError, match="estimated instead"):
        RaplMeter(root, clock=clock).start()


def test_zone_failing_mid_run_keeps_its_joules(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    tree = fake_powercap(tmp_path, clock)
    tree.zone("intel-rapl:0:2").fail_from = clock() + 5.5
    meter = started(tree)

    with caplog.at_level(logging.WARNING):
        package, dram = run(meter, clock, 10, 1.0)

    assert (package.joules, package.lost) == (pytest.approx(400.0), False)
    assert (dram.joules, dram.lost) == (pytest.approx(30.0), True)
    assert dram.power_watts is None
    assert len([r for r in caplog.records if "stopped answering" in r.message]) == 1


@pytest.mark.parametrize("text", [f"{INTEL_MAX_ENERGY_RANGE_UJ + 1}\n", "-5\n", "", "x\n"])
def test_garbage_counter_is_skipped_and_bridged(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    tree = fake_powercap(tmp_path, clock, dram=False)
    meter = started(tree)
    run(meter, clock, 5, 1.0)

    tree.zone("intel-rapl:0").glitch(text)
    tree.zone("intel-rapl:0").glitch(text)
    with caplog.at_level(logging.WARNING):
        totals = [run(meter, clock, 1, 1.0)[0].joules for _ in range(5)]

    assert totals == [
        200.0,
        200.0,
        pytest.approx(320.0),
        pytest.approx(360.0),
        pytest.approx(400.0),
    ]
    assert not meter.read()[0].lost
    assert len(caplog.records) == 1


def test_default_reader_reads_the_real_files(tmp_path: Path) -> None:
    clock = FakeClock()
    tree = fake_powercap(tmp_path, clock)
    meter = RaplMeter(tree.root, clock=clock)
    meter.start()

    clock.advance(10.0)
    for zone in tree.zones.values():
        zone.write()
    readings = meter.read()

    assert sum(r.joules for r in readings) == pytest.approx(460.0)


def test_a_counter_a_little_below_the_last_read_is_a_glitch_not_a_wrap(tmp_path: Path) -> None:
    # Firmware glitch: one read 1 mJ below the last. Read as a wrap it would add ~262 kJ.
    clock = FakeClock()
    tree = fake_powercap(tmp_path, clock, dram=False, package_watts=40.0)
    meter = started(tree)
    run(meter, clock, 10, 10)
    zone = tree.zone("intel-rapl:0")
    zone.glitch(f"{zone.counter_uj() - 1000}")

    glitched = meter.read()[0].joules
    (package,) = run(meter, clock, 10, 10)

    assert glitched == pytest.approx(400.0)
    assert package.joules == pytest.approx(800.0)  # the next good read spans the gap


def test_an_in_range_garbage_value_is_skipped(tmp_path: Path) -> None:
    clock = FakeClock()
    meter_tree = fake_powercap(tmp_path, clock, dram=False, package_watts=40.0)
    meter = started(meter_tree)
    clock.advance(10)
    meter_tree.zone("intel-rapl:0").glitch("5")

    meter.read()
    (package,) = run(meter, clock, 40, 10)

    assert package.joules == pytest.approx(2000.0)


def test_a_reset_counter_is_rebased_after_two_implausible_steps(tmp_path: Path) -> None:
    from tests.energy.fakes import _Accumulator

    clock = FakeClock()
    tree = fake_powercap(tmp_path, clock, dram=False, package_watts=40.0, initial_uj=10**11)
    meter = started(tree)
    run(meter, clock, 10, 10)
    zone = tree.zone("intel-rapl:0")
    zone.energy = _Accumulator(clock, 40.0, 0.0)  # the counter restarts at 0 (reset)

    (package,) = run(meter, clock, 50, 10)

    # 10 s before the reset, two skipped intervals, then 3 x 10 s counted again.
    assert package.joules == pytest.approx(400.0 + 3 * 400.0)


def test_a_zone_without_a_range_is_refused_at_start(tmp_path: Path) -> None:
    clock = FakeClock()
    tree = fake_powercap(tmp_path, clock, dram=False, max_energy_range_uj=0)

    with pytest.raises(MeterError, match="max_energy_range_uj=0"):
        tree.meter().start()


def test_reads_further_apart_than_a_full_power_wrap_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    # 1 kJ range: at 1 kW it can wrap every second.
    meter = started(fake_powercap(tmp_path, clock, dram=False, max_energy_range_uj=10**9))

    with caplog.at_level(logging.WARNING, logger="hf_eco2ai.energy.rapl"):
        run(meter, clock, 1.0, 0.5)
        assert caplog.text == ""
        run(meter, clock, 20, 10)

    assert caplog.text.count("set measurement_interval below 1 s") == 1
