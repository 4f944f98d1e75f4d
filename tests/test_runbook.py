"""Every Python snippet of the on-call runbook (docs/runbook.md) runs as written."""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from hf_eco2ai import CarbonConfig, Eco2AICallback  # noqa: E402
from hf_eco2ai.demo import build_model, build_trainer  # noqa: E402
from tests.tracking.meters import ConstantPowerMeter  # noqa: E402

RUNBOOK = Path(__file__).parents[1] / "docs" / "runbook.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", RUNBOOK.read_text(encoding="utf-8"), re.S)


def test_the_runbook_has_its_python_snippets() -> None:
    assert len(SNIPPETS) == 4


@pytest.mark.parametrize("code", SNIPPETS, ids=[s.splitlines()[0] for s in SNIPPETS])
def test_snippet_runs_against_a_real_trainer(code: str, tmp_path: Path) -> None:
    # What an on-call engineer's session already holds: a Trainer and `datetime`.
    carbon = Eco2AICallback(
        CarbonConfig(country="DEU", measurement_interval=0.05),
        meters=[ConstantPowerMeter(time.monotonic, 400.0)],  # type: ignore[arg-type]
    )
    trainer = build_trainer(
        tmp_path,
        max_steps=3,
        batch_size=2,
        callbacks=[carbon],
        model=build_model(layers=1, width=32, heads=2),
    )
    namespace = {"trainer": trainer, "datetime": datetime}

    exec(compile(code, str(RUNBOOK), "exec"), namespace)  # noqa: S102
    trainer.train()

    assert carbon.report.status in {"completed", "stopped_by_budget"}
