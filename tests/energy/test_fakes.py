"""The fakes behave like the interfaces they stand for (codes, units, wrap-around, permissions)."""

from __future__ import annotations

import errno
import re
from pathlib import Path

import pytest

from tests.energy import fakes
from tests.energy.fakes import FakeClock, FakeGpu, FakeNvml, NVMLError, fake_powercap

pynvml = pytest.importorskip("pynvml")


@pytest.mark.parametrize(
    "name",
    [
        "NVML_ERROR_UNINITIALIZED",
        "NVML_ERROR_INVALID_ARGUMENT",
        "NVML_ERROR_NOT_SUPPORTED",
        "NVML_ERROR_NO_PERMISSION",
        "NVML_ERROR_NOT_FOUND",
        "NVML_ERROR_DRIVER_NOT_LOADED",
        "NVML_ERROR_LIBRARY_NOT_FOUND",
        "NVML_ERROR_GPU_IS_LOST",
        "NVML_ERROR_UNKNOWN",
    ],
)
def test_error_codes_match_installed_pynvml(name: str) -> None:
    assert getattr(fakes, name) == getattr(pynvml, name)
    assert getattr(FakeNvml, name) == getattr(pynvml, name)


def test_meter_codes_match_installed_pynvml() -> None:
    from hf_eco2ai.energy import nvml

    for name in ("NOT_SUPPORTED", "DRIVER_NOT_LOADED", "LIBRARY_NOT_FOUND", "GPU_IS_LOST"):
        assert getattr(nvml, f"NVML_ERROR_{name}") == getattr(pynvml, f"NVML_ERROR_{name}")


def test_fake_has_every_pynvml_name_the_meter_calls() -> None:
    source = Path(__file__).parents[2] / "src/hf_eco2ai/energy/nvml.py"
    names = set(re.findall(r"\.(nvml[A-Z]\w+)\(", source.read_text()))
    assert "nvmlDeviceGetTotalEnergyConsumption" in names
    for name in names:
        assert hasattr(pynvml, name), name
        assert hasattr(FakeNvml, name), name


def test_nvml_calls_before_init_raise_uninitialized() -> None:
    nvml = FakeNvml.uniform(1, FakeClock())
    with pytest.raises(NVMLError) as caught:
        nvml.nvmlDeviceGetCount()
    assert caught.value.value == fakes.NVML_ERROR_UNINITIALIZED


def test_gpu_counter_accrues_in_millijoules_and_power_in_milliwatts() -> None:
    clock = FakeClock()
    nvml = FakeNvml(clock, [FakeGpu(power_watts=200.0, initial_energy_mj=5)])
    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    clock.advance(2.5)

    assert nvml.nvmlDeviceGetTotalEnergyConsumption(handle) == 5 + 500_000
    assert nvml.nvmlDeviceGetPowerUsage(handle) == 200_000
    assert nvml.nvmlDeviceGetHandleByUUID(handle.uuid) is handle
    assert nvml.nvmlDeviceGetUUID(handle).startswith("GPU-")


def test_gpu_lost_at_time_and_no_counter() -> None:
    clock = FakeClock()
    nvml = FakeNvml(clock, [FakeGpu(has_energy_counter=False, lost_at=clock() + 10)])
    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)

    with pytest.raises(NVMLError) as caught:
        nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    assert caught.value.value == fakes.NVML_ERROR_NOT_SUPPORTED
    clock.advance(10)
    with pytest.raises(NVMLError) as caught:
        nvml.nvmlDeviceGetPowerUsage(handle)
    assert caught.value.value == fakes.NVML_ERROR_GPU_IS_LOST


def test_powercap_counter_wraps_at_max_range(tmp_path: Path) -> None:
    clock = FakeClock()
    tree = fake_powercap(tmp_path, clock, max_energy_range_uj=1_000_000, initial_uj=900_000)
    energy_file = tree.root / "intel-rapl:0" / "energy_uj"
    clock.advance(0.005)  # 40 W x 5 ms = 200000 µJ: past the range

    assert tree.read_file(energy_file).strip() == "100000"
    assert energy_file.read_text().strip() == "100000"  # the real file holds the value too


def test_powercap_tree_has_kernel_layout(tmp_path: Path) -> None:
    tree = fake_powercap(tmp_path, FakeClock(), psys=True, mmio=True)
    names = sorted(p.name for p in tree.root.iterdir())

    assert names == [
        "intel-rapl",
        "intel-rapl-mmio:0",
        "intel-rapl:0",
        "intel-rapl:0:0",
        "intel-rapl:0:1",
        "intel-rapl:0:2",
        "intel-rapl:1",
    ]
    assert (tree.root / "intel-rapl:0:2").is_symlink()
    assert tree.read_file(tree.root / "intel-rapl:0" / "intel-rapl:0:2" / "name") == "dram\n"


def test_powercap_unreadable_raises_permission_error(tmp_path: Path) -> None:
    tree = fake_powercap(tmp_path, FakeClock(), unreadable=True)
    with pytest.raises(PermissionError) as caught:
        tree.read_file(tree.root / "intel-rapl:0" / "energy_uj")
    assert caught.value.errno == errno.EACCES
    assert tree.read_file(tree.root / "intel-rapl:0" / "name") == "package-0\n"


def test_clock_never_goes_back() -> None:
    with pytest.raises(ValueError, match="monotonic"):
        FakeClock().advance(-1)
