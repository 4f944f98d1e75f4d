"""A tiny Lightning regression fit (CPU, gloo under ``torchrun``) for the distributed tests."""

from __future__ import annotations

import os
from typing import Any

import lightning.pytorch as pl
import torch

from hf_eco2ai import CarbonConfig
from hf_eco2ai.energy.base import Meter
from hf_eco2ai.lightning import Eco2AILightningCallback
from tests.energy.fakes import FakeClock


class Regression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(8, 1)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.01)


class FakeTime(pl.Callback):
    """Moves the fake clock after every batch, once the tracker took its baseline."""

    def __init__(self, eco: Eco2AILightningCallback, clock: FakeClock, seconds: float) -> None:
        self.eco, self.clock, self.seconds = eco, clock, seconds

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self.eco.tracker is not None
        self.eco.tracker.sample_now()

    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self.clock.advance(self.seconds)


def train(
    spec: dict[str, Any], config: CarbonConfig, meters: list[Meter], clock: FakeClock
) -> Eco2AILightningCallback:
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(64, 8), torch.randn(64, 1))
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    eco = Eco2AILightningCallback(config, meters=meters)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
        num_nodes=int(os.environ.get("HF_ECO2AI_TEST_NODES", "1")),
        strategy="ddp" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else "auto",
        max_steps=spec["steps"],
        log_every_n_steps=1,
        callbacks=[eco, FakeTime(eco, clock, spec["seconds_per_step"])],
        default_root_dir=spec["output_dir"],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
    )
    trainer.fit(Regression(), loader)
    return eco
