"""CPU and RAM estimates: the TDP table, ranges, real process CPU time and memory, notes."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from hf_eco2ai.energy.base import Meter
from hf_eco2ai.energy.estimate import (
    CpuEstimateMeter,
    RamEstimateMeter,
    count_sockets,
    cpu_power_model,
    descendant_pids,
    detect_cpu_model,
    find_cpu_spec,
    load_cpu_tdp_table,
)
from hf_eco2ai.errors import ConfigError, MeterError
from tests.energy.fakes import FakeClock

BURN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"
VENDOR_PAGES = ("https://www.intel.com/", "https://ark.intel.com/", "https://www.amd.com/")
HOLD = "import sys\nblob = b'x' * {size}\nprint('ready', flush=True)\nsys.stdin.read()\n"


@pytest.fixture
def holder() -> Iterator[subprocess.Popen[str]]:
    """A child process holding 150 MB resident until the test ends."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD.format(size=150_000_000)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    yield child
    child.communicate("")


@pytest.mark.parametrize(
    ("cpu_model", "tdp", "cores", "threads"),
    [
        ("AMD EPYC 7742 64-Core Processor", 225, 64, 128),
        ("Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz", 270, 40, 80),
        ("Intel(R) Xeon(R) Platinum 8480+", 350, 56, 112),
        ("Intel(R) Xeon(R) CPU E5-2698 v4 @ 2.20GHz", 135, 20, 40),
        ("13th Gen Intel(R) Core(TM) i9-13900K", 125, 24, 32),
        ("AMD Ryzen 9 5950X 16-Core Processor", 105, 16, 32),
    ],
)
def test_table_models_give_tdp_based_range(
    cpu_model: str, tdp: int, cores: int, threads: int
) -> None:
    model = cpu_power_model(cpu_model)

    assert model.watts_per_thread_low == pytest.approx(tdp / threads * 0.7)
    assert model.watts_per_thread == pytest.approx((tdp / threads + tdp / cores) / 2)
    assert model.watts_per_thread_high == pytest.approx(tdp / cores)
    assert "amd.com" in model.basis or "intel.com" in model.basis


@pytest.mark.parametrize(
    "cpu_model",
    ["AMD EPYC", "Intel(R) Xeon(R) Platinum 8380H CPU", "Intel(R) Core(TM) i9-13900KS", "", None],
)
def test_unknown_models_get_the_wide_range(cpu_model: str | None) -> None:
    model = cpu_power_model(cpu_model)

    limits = (model.watts_per_thread_low, model.watts_per_thread, model.watts_per_thread_high)
    assert limits == (2.0, 6.0, 15.0)
    assert "not in the bundled TDP table" in model.basis


def test_configured_tdp_uses_the_table_counts_when_known() -> None:
    model = cpu_power_model("AMD EPYC 7742 64-Core Processor", tdp_watts=280.0)

    assert model.watts_per_thread_high == pytest.approx(280.0 / 64)
    assert "configured TDP of 280 W" in model.basis


def test_configured_tdp_for_unknown_model_uses_host_counts_per_socket(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nphysical id\t: 0\n")
    threads = psutil.cpu_count(logical=True) or 1
    cores = psutil.cpu_count(logical=False) or threads

    model = cpu_power_model("Mystery CPU", tdp_watts=100.0, cpuinfo_path=cpuinfo)

    assert model.watts_per_thread_low == pytest.approx(100.0 / threads * 0.7)
    assert model.watts_per_thread_high == pytest.approx(100.0 / cores)


def test_detect_model_and_sockets_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    blocks = [
        f"processor\t: {i}\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7763 64-Core "
        f"Processor\nphysical id\t: {i % 2}\n"
        for i in range(4)
    ]
    cpuinfo.write_text("\n".join(blocks))

    assert detect_cpu_model(cpuinfo) == "AMD EPYC 7763 64-Core Processor"
    assert count_sockets(cpuinfo) == 2
    assert count_sockets(tmp_path / "missing") == 1


def test_table_rows_are_sane() -> None:
    table = load_cpu_tdp_table()

    assert 20 <= len(table) <= 40
    for spec in table:
        assert spec.cores <= spec.threads <= 2 * spec.cores, spec
        assert 50 <= spec.tdp_watts <= 400, spec
        assert spec.source_url.startswith(VENDOR_PAGES), spec
    patterns = [spec.pattern.pattern for spec in table]
    assert len(set(patterns)) == len(patterns)


def test_each_table_row_matches_only_itself() -> None:
    for spec in load_cpu_tdp_table():
        name = spec.pattern.pattern.replace(".*", " ").replace("\\b", "").replace("\\+", "+")
        assert find_cpu_spec(name) is spec, name


def test_cpu_meter_counts_a_finished_child(tmp_path: Path) -> None:
    clock = FakeClock()
    with_children = CpuEstimateMeter(tdp_watts=100.0, cpu_model="AMD EPYC 7742", clock=clock)
    alone = CpuEstimateMeter(
        tdp_watts=100.0, cpu_model="AMD EPYC 7742", include_children=False, clock=clock
    )
    with_children.start()
    alone.start()

    subprocess.run([sys.executable, "-c", BURN.format(seconds=0.4)], check=True)
    clock.advance(5.0)
    (cpu,) = with_children.read()
    (own,) = alone.read()

    # /proc reports a child's CPU in 10 ms ticks, sampled: allow a few ticks short of 0.4 s.
    assert with_children.busy_cpu_seconds >= 0.35
    assert with_children.busy_cpu_seconds > alone.busy_cpu_seconds + 0.3
    assert (cpu.source, cpu.component, cpu.device) == ("estimated", "cpu", "cpu")
    assert 0 <= cpu.joules_low <= cpu.joules <= cpu.joules_high
    model = with_children.power_model
    assert model is not None
    busy = with_children.busy_cpu_seconds
    assert model.watts_per_thread == pytest.approx((100 / 128 + 100 / 64) / 2)
    assert cpu.joules == pytest.approx(busy * model.watts_per_thread)
    assert cpu.joules_high == pytest.approx(busy * 100 / 64)
    assert own.joules < cpu.joules


def test_cpu_meter_counts_a_live_child_and_never_goes_back() -> None:
    clock = FakeClock()
    meter = CpuEstimateMeter(cpu_model="AMD EPYC 7742", clock=clock)
    meter.start()
    child = subprocess.Popen(
        [sys.executable, "-c", BURN.format(seconds=0.5) + "input()\n"], stdin=subprocess.PIPE
    )
    deadline = time.monotonic() + 10.0
    while sum(psutil.Process(child.pid).cpu_times()[:2]) < 0.5 and time.monotonic() < deadline:
        time.sleep(0.02)

    clock.advance(5.0)  # past the children-list refresh interval
    live = meter.read()[0].joules
    child.communicate(b"\n")
    clock.advance(1.0)
    after = meter.read()[0].joules

    assert live >= 0.4 * meter.power_model.watts_per_thread  # type: ignore[union-attr]
    assert after >= live


def test_cpu_meter_marks_a_vanished_process_lost(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    child = subprocess.Popen([sys.executable, "-c", "input()"], stdin=subprocess.PIPE)
    process = psutil.Process(child.pid)
    meter = CpuEstimateMeter(cpu_model="AMD EPYC 7742", process=process, clock=clock)
    meter.start()
    clock.advance(1.0)
    before = meter.read()[0].joules

    child.communicate(b"\n")
    with caplog.at_level(logging.WARNING):
        (cpu,) = meter.read()
        meter.read()

    assert cpu.lost and cpu.joules == before
    assert len(caplog.records) == 1


def test_cpu_notes_say_what_was_assumed_and_how_to_measure() -> None:
    meter = CpuEstimateMeter(cpu_model="Mystery CPU")
    assert meter.notes() == []
    meter.start()

    (note,) = meter.notes()

    assert note.component == "cpu"
    assert "6.00 W per busy hardware thread" in note.assumption
    assert "'Mystery CPU' is not in the bundled TDP table" in note.assumption
    assert "/sys/class/powercap/intel-rapl:*/energy_uj" in note.how_to_measure
    assert "cpu_tdp_watts" in note.how_to_measure
    assert isinstance(meter, Meter)


def test_ram_meter_integrates_resident_memory_of_children(
    holder: subprocess.Popen[str],
) -> None:
    clock = FakeClock()
    family = RamEstimateMeter(clock=clock)
    alone = RamEstimateMeter(include_children=False, clock=clock)
    family.start()
    alone.start()

    clock.advance(10.0)
    (ram,) = family.read()
    (own,) = alone.read()

    child_gb = psutil.Process(holder.pid).memory_info().rss / 1e9
    assert child_gb > 0.15
    assert ram.joules - own.joules == pytest.approx(child_gb * 0.375 * 10.0, rel=0.1)
    assert (ram.source, ram.component, ram.device) == ("estimated", "ram", "ram")
    assert ram.joules_low == pytest.approx(ram.joules * 0.2 / 0.375)
    assert ram.joules_high == pytest.approx(ram.joules * 0.6 / 0.375)
    assert ram.power_watts == pytest.approx(ram.joules / 10.0, rel=0.1)


@pytest.mark.parametrize(("watts_per_gb", "low", "high"), [(0.375, 0.2, 0.6), (1.0, 0.2, 1.0)])
def test_ram_range_always_contains_the_configured_figure(
    watts_per_gb: float, low: float, high: float
) -> None:
    meter = RamEstimateMeter(watts_per_gb)

    assert meter.watts_per_gb_range == (low, watts_per_gb, high)


def test_ram_notes() -> None:
    meter = RamEstimateMeter()
    meter.start()

    (note,) = meter.notes()

    assert note.component == "ram"
    assert "0.375 W per GB" in note.assumption and "0.2 to 0.6" in note.assumption
    assert "dram" in note.how_to_measure


@pytest.mark.parametrize("bad", [0, -5.0, float("nan"), float("inf"), "100", True])
def test_bad_watts_raise_config_error(bad: object) -> None:
    with pytest.raises(ConfigError) as cpu:
        CpuEstimateMeter(tdp_watts=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as ram:
        RamEstimateMeter(watts_per_gb=bad)  # type: ignore[arg-type]

    assert (cpu.value.field, ram.value.field) == ("tdp_watts", "watts_per_gb")


def test_dead_process_at_start_raises_meter_error() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    process = psutil.Process(child.pid)
    child.wait()

    with pytest.raises(MeterError):
        CpuEstimateMeter(process=process).start()
    with pytest.raises(MeterError):
        RamEstimateMeter(process=process).start()


def test_descendant_pids_agree_with_psutil() -> None:
    script = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'input()'])"
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE)
    deadline = time.monotonic() + 10.0
    while len(psutil.Process(child.pid).children()) < 1 and time.monotonic() < deadline:
        time.sleep(0.02)

    found = descendant_pids(os.getpid())
    expected = [p.pid for p in psutil.Process().children(recursive=True)]
    child.communicate(b"\n")

    assert found is not None and sorted(found) == sorted(expected) and len(found) == 2


def test_descendant_pids_without_kernel_support_is_none(tmp_path: Path) -> None:
    (tmp_path / "42" / "task" / "42").mkdir(parents=True)

    assert descendant_pids(42, proc=tmp_path) is None
    assert descendant_pids(43, proc=tmp_path) == []  # a process that is gone has no children
