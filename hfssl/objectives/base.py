"""The contract between an objective and the loop, written down once.

An objective module (one entry of `hfssl.objectives.OBJECTIVES`) provides what `ObjectiveModule` lists: its schema,
the unit it counts data in, `setup` (model, data, collators, probe and export for the loop), `rebuild` (the objective
from a saved model config, for `hfssl export` and FSDP's whole weights), `export` and `describe` (its model card's
account of the objective). `setup` returns a `Setup`, whose `objective` is an `Objective`: the module the loop trains.

When the loop calls an objective:
1. `before_forward(step)`: before every training forward pass (each micro-batch), with the number of optimizer steps
   taken so far (a temperature or masking schedule reads it here);
2. `objective(**batch)`: an `ObjectiveOutput`; the loop steps on `.loss`;
3. `after_optimizer_step(step)`: after each optimizer step (not after micro-batches that only accumulate), with the
   new step count: the optimizer has stepped, or skipped an fp16 step whose gradients overflowed (an EMA teacher or
   a generator schedule updates here);
4. `health(logs, step)` at every log window, `summarise(totals)` at every evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from transformers import PreTrainedConfig, PreTrainedModel

from hfssl.collators.base import Collator


@dataclass
class ObjectiveOutput:
    """What an objective's forward pass returns to the loop."""

    loss: torch.Tensor
    """The scalar the loop steps on."""
    stats: dict[str, torch.Tensor]
    """Per-example sums for evaluation, one tensor of shape (batch,) per name in `stat_names`."""
    logs: dict[str, torch.Tensor] = field(default_factory=dict)
    """Scalars the training loop averages over its log window, beside the loss."""


class Objective(Protocol):
    """A `torch.nn.Module` around a transformers model, trained by the loop."""

    model: PreTrainedModel
    """The transformers model it trains; its config is saved with the run and rebuilds the objective."""
    stat_names: tuple[str, ...]
    """The names of `ObjectiveOutput.stats`, in the order the loop sums them across processes."""

    def __call__(self, **batch: torch.Tensor) -> ObjectiveOutput: ...

    def summarise(self, totals: dict[str, float]) -> dict[str, float]:
        """Evaluation metrics (at least "loss") from the sums of `stats` over the validation batches."""
        ...

    def before_forward(self, step: int) -> None:
        """Runs before every training forward pass, with the optimizer steps taken so far."""
        ...

    def after_optimizer_step(self, step: int) -> None:
        """Runs after every optimizer step, with the new step count."""
        ...

    def health(self, logs: dict[str, float], step: int) -> str | None:
        """At every log window, with the window's mean logs: a reason to stop training, or None to go on."""
        ...


@dataclass
class Setup:
    """What an objective's `setup` brings to the loop. The loop never asks which objective it is running."""

    objective: torch.nn.Module
    """An `Objective`."""
    train_loader: DataLoader
    collator: Collator
    """The training collator; its stream position is restored on resume."""
    eval_set: Any
    eval_batches: list[list[int]]
    """Validation batches (dataset indices), in order; each process evaluates every `num_processes`-th one."""
    eval_collator: Collator
    count: Callable[[dict], torch.Tensor]
    """How much data a batch holds, in the module's `UNIT`."""
    batch_description: str
    """What one micro-batch on one process holds, for --dry-run (e.g. "64 sequences of 128 tokens")."""
    micro_batch_units: float
    """What one full micro-batch on one process holds, in the module's `UNIT`: the measure of batch-size warmup."""
    probe: Callable[[torch.nn.Module], dict[str, float]] | None = None
    """Every `train.probe_every` steps, on the main process, with the whole objective: the scores to log (name ->
    value), e.g. a frozen-feature classifier's accuracy."""
    data_size: Callable[[], tuple[float | None, str]] | None = None
    """For --dry-run: the training data's size in `unit`s (None: unknown) and how it was found."""
    streaming: bool = False
    prepare_train_loader: bool = True
    """False: the loader already yields this process's batches (a stream split by node); the loop moves them to
    the device itself."""

    @property
    def model(self) -> PreTrainedModel:
        return self.objective.model


class ObjectiveModule(Protocol):
    """What each module in `hfssl.objectives.OBJECTIVES` provides."""

    SCHEMA: type
    """The recipe schema its runs use: `PretrainConfig` (text) or `SpeechPretrainConfig` (speech) with the
    objective's own settings as the `objective` section (a dataclass of its module), and any section of its own."""
    UNIT: str
    """What the loop counts the training data in: "tokens" or "audio_seconds"."""

    def setup(self, cfg: Any, accelerator: Accelerator, work_dir: Path, resuming: bool) -> Setup:
        """Everything the loop needs, built on every process; files (a tokenizer, targets) go to `work_dir`."""
        ...

    def rebuild(self, cfg: Any, model_config: PreTrainedConfig) -> torch.nn.Module:
        """The objective, freshly initialised from its model's saved config."""
        ...

    RUN_FILES: tuple[str, ...]
    """What the run directory holds beside config.yaml and model_config/ that `export` reads (a tokenizer)."""

    def export(self, cfg: Any, objective: torch.nn.Module, run_dir: Path, out_dir: Path, metrics: dict) -> Path:
        """Write the trained model as stock transformers classes, with its preprocessor and card, to `out_dir`;
        `run_dir` is where the setup wrote its files."""
        ...

    def describe(self, cfg: Any) -> str:
        """The model card's account of the objective."""
        ...
