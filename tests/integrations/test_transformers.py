"""Eco2AICallback on a real Hugging Face Trainer, on CPU, with a tiny randomly initialised model."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from transformers import TrainerCallback  # noqa: E402

from hf_eco2ai import CarbonConfig, Eco2AICallback  # noqa: E402
from hf_eco2ai.demo import build_model, build_trainer  # noqa: E402
from tests.tracking.meters import ConstantPowerMeter  # noqa: E402


def tiny_trainer(output_dir: Path, callbacks: list[TrainerCallback], **kwargs: object) -> object:
    model = build_model(layers=1, width=32, heads=2)
    kwargs.setdefault("max_steps", 3)
    return build_trainer(
        output_dir, batch_size=2, logging_steps=1, callbacks=callbacks, model=model, **kwargs
    )


class Recorder(TrainerCallback):  # type: ignore[misc]
    """Stands in for TensorBoard/W&B: records what each log event carried."""

    def __init__(self) -> None:
        self.logs: list[dict[str, float]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        self.logs.append(dict(logs or {}))


def test_trainer_run_logs_carbon_fields_and_writes_report(tmp_path: Path) -> None:
    meter = ConstantPowerMeter(time.monotonic, 50.0)  # type: ignore[arg-type]
    callback = Eco2AICallback(
        CarbonConfig(project_name="tiny", country="DEU", measurement_interval=0.05),
        meters=[meter],
    )
    recorder = Recorder()
    trainer = tiny_trainer(tmp_path, [recorder, callback], gradient_accumulation_steps=2)
    trainer.train()  # type: ignore[attr-defined]

    report = json.loads((tmp_path / "carbon_report.json").read_text())
    assert report["status"] == "completed"
    assert report["project_name"] == "tiny"
    assert report["training"]["steps"] == 3
    assert report["training"]["samples"] == 3 * 2 * 2  # steps x batch x accumulation x world
    assert report["energy"]["total_kwh"] > 0
    assert report["emissions"]["total_kg"] == pytest.approx(
        report["energy"]["total_kwh"] * 380.95 / 1000, rel=1e-9
    )
    # The reporting callback registered before ours still saw the carbon fields.
    step_logs = [log for log in recorder.logs if "loss" in log]
    assert step_logs and all("co2_kg" in log and "energy_kwh" in log for log in step_logs)
    history = trainer.state.log_history  # type: ignore[attr-defined]
    assert all("grid_intensity_g_per_kwh" in h for h in history if "loss" in h)
    assert report["series"][0]["step"] == 1
    assert (tmp_path / "carbon_series.csv").read_text().startswith("step,")
    assert callback.report.co2_kg == pytest.approx(report["emissions"]["total_kg"])


def test_exception_during_training_still_yields_a_report(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from transformers import TrainerCallback
            from hf_eco2ai import CarbonConfig, Eco2AICallback
            from hf_eco2ai.demo import build_model, build_trainer

            class Explode(TrainerCallback):
                def on_step_end(self, args, state, control, **kwargs):
                    if state.global_step == 2:
                        raise RuntimeError("loss is NaN")

            cb = Eco2AICallback(CarbonConfig(grid_carbon_intensity=200, measurement_interval=0.05))
            trainer = build_trainer({str(tmp_path)!r}, max_steps=5, batch_size=2,
                                    model=build_model(layers=1, width=32, heads=2),
                                    callbacks=[Explode(), cb])
            trainer.train()
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 1, done.stderr
    report = json.loads((tmp_path / "carbon_report.json").read_text())
    assert report["status"] == "error"
    assert "loss is NaN" in report["stop_reason"]["exception"]
    assert report["training"]["steps"] == 2


def test_config_alert_thresholds_fire_once_in_a_trainer_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # 400 W is 0.4 kWh per hour, far over a 0.01 kWh/h threshold, for the whole run.
    callback = Eco2AICallback(
        CarbonConfig(
            grid_carbon_intensity=100.0,
            measurement_interval=0.05,
            alert_thresholds={"energy_rate_kwh_per_hour": 0.01},
        ),
        meters=[ConstantPowerMeter(time.monotonic, 400.0)],  # type: ignore[arg-type]
    )
    trainer = tiny_trainer(tmp_path, [callback], max_steps=5)
    trainer.train()  # type: ignore[attr-defined]

    firing = [
        r for r in caplog.records if "alert energy_rate_kwh_per_hour firing" in r.getMessage()
    ]
    assert len(firing) == 1
