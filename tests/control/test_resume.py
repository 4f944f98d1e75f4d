"""A Trainer run resumed from a checkpoint keeps its run id, its budget and its earlier totals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from hf_eco2ai import CarbonBudgetCallback, Eco2AICallback  # noqa: E402
from hf_eco2ai.tracking.resume import STATE_FILENAME  # noqa: E402
from hf_eco2ai.units import JOULES_PER_KWH  # noqa: E402
from tests.control.trainers import config, meter, tiny_trainer  # noqa: E402


def report_of(folder: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((folder / "carbon_report.json").read_text())


@pytest.mark.usefixtures("one_torch_thread")
def test_a_resumed_run_keeps_its_id_and_its_budget_counts_what_came_before(
    tmp_path: Path,
) -> None:
    first = tiny_trainer(
        tmp_path,
        [Eco2AICallback(config(), meters=[meter()])],
        max_steps=6,
        save_strategy="steps",
        save_steps=3,
    )
    first.train()
    before = report_of(tmp_path)
    saved = json.loads((tmp_path / "checkpoint-6" / STATE_FILENAME).read_text())

    # The resumed run's budget is just under what the first part already used: over at once.
    budget_kwh = saved["energy_joules"] / JOULES_PER_KWH * 0.999
    budget = CarbonBudgetCallback(max_energy_kwh=budget_kwh, action="stop", check_frequency=1)
    second = tiny_trainer(
        tmp_path, [Eco2AICallback(config(), meters=[meter()]), budget], max_steps=50
    )
    second.train(resume_from_checkpoint=str(tmp_path / "checkpoint-6"))
    after = report_of(tmp_path)

    assert (saved["run_id"], saved["step"], saved["segments"]) == (before["run_id"], 6, 1)
    assert saved["energy_joules"] == pytest.approx(
        before["energy"]["total_joules"], rel=0.2
    )  # saved at step 6, a little before the report's final sample
    assert after["run_id"] == before["run_id"]
    resumed = after["extra"]["resumed"]
    assert resumed["at_step"] == 6 and resumed["earlier_segments"] == 1
    assert resumed["earlier_energy_kwh"] == pytest.approx(saved["energy_joules"] / JOULES_PER_KWH)
    assert after["status"] == "stopped_by_budget"
    assert after["stop_reason"]["step"] == 7  # the first check after resuming
    assert after["stop_reason"]["used"] >= budget_kwh


@pytest.mark.usefixtures("one_torch_thread")
def test_resuming_without_saved_totals_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tiny_trainer(tmp_path, [], max_steps=3, save_strategy="steps", save_steps=3).train()

    second = tiny_trainer(tmp_path, [Eco2AICallback(config(), meters=[meter()])], max_steps=5)
    with caplog.at_level("WARNING", logger="hf_eco2ai"):
        second.train(resume_from_checkpoint=str(tmp_path / "checkpoint-3"))

    assert "resuming at step 3 without saved carbon totals" in caplog.text
    assert "resumed" not in report_of(tmp_path)["extra"]
