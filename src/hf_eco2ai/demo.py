"""The demo job: a small GPT-2-style model trained on CPU on English text that ships with Python.

The text is ``pydoc_data.topics`` (the help topics of the Python docs, about 460 kB), tokenised as
raw bytes, so the demo needs no download: model weights are randomly initialised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

BLOCK_TOKENS = 128


def demo_text() -> bytes:
    """The Python documentation's help topics, as UTF-8 bytes."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics)).encode("utf-8")


def build_dataset(block_tokens: int = BLOCK_TOKENS) -> Any:
    """Byte-level blocks of ``block_tokens`` tokens for causal language modelling."""
    import torch

    data = torch.frombuffer(bytearray(demo_text()), dtype=torch.uint8).long()
    blocks = data[: len(data) // block_tokens * block_tokens].view(-1, block_tokens)

    class Blocks(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return int(blocks.shape[0])

        def __getitem__(self, i: int) -> dict[str, Any]:
            return {"input_ids": blocks[i], "labels": blocks[i]}

    return Blocks()


def build_model(layers: int = 4, width: int = 256, heads: int = 4, seed: int = 0) -> Any:
    """A randomly initialised GPT-2-style model with a 256-token byte vocabulary (~3.3 M params)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=256,
        n_positions=BLOCK_TOKENS,
        n_embd=width,
        n_layer=layers,
        n_head=heads,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(config)


def build_trainer(
    output_dir: str | Path,
    *,
    max_steps: int = 120,
    batch_size: int = 8,
    logging_steps: int = 10,
    callbacks: list[Any] | None = None,
    model: Any = None,
    **training_args: Any,
) -> Any:
    """A CPU ``Trainer`` for the demo model; extra keyword arguments go to ``TrainingArguments``."""
    from transformers import Trainer, TrainingArguments

    settings: dict[str, Any] = {
        "output_dir": str(output_dir),
        "max_steps": max_steps,
        "per_device_train_batch_size": batch_size,
        "learning_rate": 1e-3,
        "logging_steps": logging_steps,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "seed": 0,
    }
    args = TrainingArguments(**(settings | training_args))
    return Trainer(
        model=model if model is not None else build_model(),
        args=args,
        train_dataset=build_dataset(),
        callbacks=callbacks,
    )


def run_demo(
    output_dir: str | Path, *, max_steps: int = 120, config: Any = None, **fields: Any
) -> Any:
    """Train the demo model with :class:`Eco2AICallback` and return the run's report.

    Args:
        output_dir: Where the Trainer and the report write.
        max_steps: Training steps.
        config: A ready ``CarbonConfig``; else one is built from ``fields``.
    """
    from hf_eco2ai.config import CarbonConfig
    from hf_eco2ai.integrations.transformers import Eco2AICallback

    if config is None:
        fields.setdefault("project_name", "hf-eco2ai-demo")
        config = CarbonConfig(output_dir=str(output_dir), **fields)
    callback = Eco2AICallback(config)
    trainer = build_trainer(output_dir, max_steps=max_steps, callbacks=[callback])
    trainer.train()
    return callback.report
