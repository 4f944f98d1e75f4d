"""A real data-parallel training job, one process of it, launched by ``torchrun`` in the tests.

The hardware is faked, the rest is real: each process sees its node's fake NVML GPUs and a fake
RAPL tree, on a fake clock that moves ``seconds_per_step`` at the end of every training step,
so the energy each device used is known exactly; ``torch.distributed`` (gloo), the Trainer or
Lightning, the tracker and the exporter are the real ones. The job is described by the JSON in
``HF_ECO2AI_TEST_JOB`` (see :func:`main`); the node's spec may differ per launcher.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hf_eco2ai import CarbonConfig
from hf_eco2ai.energy.base import Meter
from hf_eco2ai.tracking.distributed import build_owned_meters, detect_placement
from tests.energy.fakes import FakeClock, FakeNvml, fake_powercap


def build_fake_meters(spec: dict[str, Any], config: CarbonConfig, clock: FakeClock) -> list[Meter]:
    """This process's meters over the node's fake GPUs and RAPL tree, chosen by ownership."""
    placement = detect_placement()
    nvml = FakeNvml.uniform(spec["gpus"], clock, power_watts=spec["gpu_watts"])
    # Each process gets its own copy of the node's counters (they run on its own fake clock).
    tree_dir = Path(spec["node_dir"]) / f"local{placement.local_rank}"
    tree = fake_powercap(
        tree_dir, clock, package_watts=spec["package_watts"], dram_watts=spec["dram_watts"]
    )
    meters, _ = build_owned_meters(
        config,
        placement,
        nvml=nvml,
        powercap_root=tree.root,
        powercap_read_file=tree.read_file,
        clock=clock,
    )
    return meters


def carbon_config(spec: dict[str, Any]) -> CarbonConfig:
    return CarbonConfig(
        project_name=spec["project"],
        grid_carbon_intensity=spec["intensity"],
        measurement_interval=0.05,
        output_dir=spec["output_dir"],
        pushgateway_url=spec.get("pushgateway_url"),
        push_interval_seconds=0.2,
    )


def run_transformers(spec: dict[str, Any]) -> None:
    from transformers import TrainerCallback

    from hf_eco2ai import Eco2AICallback
    from hf_eco2ai.demo import build_model, build_trainer

    clock = FakeClock()
    config = carbon_config(spec)
    eco = Eco2AICallback(config, meters=build_fake_meters(spec, config, clock))

    class FakeTime(TrainerCallback):  # type: ignore[misc]
        def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            assert eco.tracker is not None
            eco.tracker.sample_now()  # the baseline is taken before fake time moves

        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            clock.advance(spec["seconds_per_step"])
            if budget is not None:
                assert eco.tracker is not None
                eco.tracker.sample_now()  # the budget check after this sees every step's joules

    callbacks: list[Any] = [eco, FakeTime()]
    budget = None
    if "budget_kwh" in spec:
        from hf_eco2ai import CarbonBudgetCallback

        budget = CarbonBudgetCallback(
            max_energy_kwh=spec["budget_kwh"], action="stop", check_frequency=1
        )
        callbacks.append(budget)  # after FakeTime: each check sees the step's fake time
    trainer = build_trainer(
        spec["output_dir"],
        max_steps=spec["steps"],
        batch_size=2,
        logging_steps=1,
        callbacks=callbacks,
        model=build_model(layers=1, width=32, heads=2),
        ddp_backend="gloo",
    )
    trainer.train()
    dump_process_view(spec, eco.report.data, eco.tracker.run_log.series)  # type: ignore[union-attr]


def run_lightning(spec: dict[str, Any]) -> None:
    from tests.distributed.lightning_job import train

    clock = FakeClock()
    config = carbon_config(spec)
    callback = train(spec, config, build_fake_meters(spec, config, clock), clock)
    dump_process_view(spec, callback.report.data, callback.tracker.run_log.series)


def dump_process_view(spec: dict[str, Any], report: dict[str, Any], series: list[Any]) -> None:
    """What this process saw, for the test to compare with the job's report."""
    rank = int(os.environ.get("RANK", "0"))
    view = {"rank": rank, "report": report, "series": series}
    path = Path(spec["output_dir"]) / f"process-{rank}.json"
    # Only rank 0 writes a report, so the folder may not exist yet on the others.
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(view), encoding="utf-8")


def main() -> None:
    import torch.distributed as dist

    spec = json.loads(os.environ["HF_ECO2AI_TEST_JOB"])
    if spec.get("framework", "transformers") == "lightning":
        run_lightning(spec)
    else:
        run_transformers(spec)
    # Leaving gloo's threads to interpreter exit sometimes aborts a rank ("terminate called
    # without an active exception"); a job ends its process group, as torch's docs ask.
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
