"""A Trainer run on broken parts: the grid API is unreachable and the GPU answers garbage."""

from __future__ import annotations

import json
import logging
import math
import socket
import time
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from hf_eco2ai import CarbonConfig, Eco2AICallback  # noqa: E402
from hf_eco2ai.demo import build_model, build_trainer  # noqa: E402
from hf_eco2ai.energy.discovery import build_meters  # noqa: E402
from tests.energy.fakes import FakeGpu, FakeNvml  # noqa: E402


def closed_port() -> int:
    """A loopback port nothing listens on: connections are refused, as with a blocked network."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_api_and_garbage_gpu_readings_do_not_stop_training(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gpu = FakeGpu(power_watts=300.0)
    nvml = FakeNvml(time.monotonic, [gpu])  # type: ignore[arg-type]
    meters, _ = build_meters(
        nvml=nvml, environ={}, powercap_root=tmp_path / "no-powercap", track_ram=False
    )
    gpu.glitch(energy_mj=-1.0, power_mw=float("nan"))  # the next reads during training
    config = CarbonConfig(
        country="GBR",
        use_real_time_carbon=True,
        carbon_provider="uk",
        carbon_api_base_url=f"http://127.0.0.1:{closed_port()}",
        measurement_interval=0.05,
        output_dir=str(tmp_path),
    )
    callback = Eco2AICallback(config, meters=meters)
    trainer = build_trainer(
        tmp_path,
        max_steps=3,
        batch_size=2,
        logging_steps=1,
        callbacks=[callback],
        model=build_model(layers=1, width=32, heads=2),
    )
    with caplog.at_level(logging.WARNING, logger="hf_eco2ai"):
        trainer.train()

    report = json.loads((tmp_path / "carbon_report.json").read_text())
    assert report["status"] == "completed"
    assert report["training"]["steps"] == 3
    gpu_energy = report["energy"]["components"]["gpu"]
    assert gpu_energy["source"] == "measured"
    assert math.isfinite(gpu_energy["joules"]) and gpu_energy["joules"] > 0
    periods = report["emissions"]["intensity_periods"]
    assert report["emissions"]["fallback_used"] is True
    assert {p["zone"] for p in periods} == {"GBR"}
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([m for m in messages if "Live grid intensity unavailable" in m]) == 1, messages
    assert len([m for m in messages if "implausible value" in m]) <= 1, messages
    assert not gpu._energy_glitches  # the garbage reading was served during the run
