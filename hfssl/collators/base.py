"""The contract between a collator and the loop, written down once, as `hfssl.objectives.base` writes the objective's.

An objective's `setup` hands the loop two collators in its `Setup`: `collator` (training) and `eval_collator`. When the
loop calls them:
1. at setup, with `masking.mask_rate_schedule` in the recipe: it sets the training collator's `rate_schedule` (only a
   `ScheduledCollator` has one; the objectives that take no masking settings refuse the schedule);
2. on `--resume` of a loaded corpus: `load_state_dict({"seed": train.seed, "calls": micro-batches trained})`, so the
   stream goes on at the batch the checkpoint had reached;
3. for a streamed corpus, before every batch: `load_state_dict({"seed": collator.seed, "calls": ..., "stream": ...,
   "index": ...})` (`hfssl.data.stream`), so each part of the stream draws its own randomness whatever worker hosts it;
4. `collator(examples)`: every batch, inside a DataLoader (in a worker process when `train.num_workers` > 0);
5. `reset()`: before every evaluation, on the evaluation collator, so every evaluation masks the same positions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Collator(Protocol):
    """Makes batches from lists of examples, from a random stream the loop can position (see the module's list)."""

    seed: int
    """Seed of its random stream; a streamed corpus hands it back with every `load_state_dict`. A collator with
    nothing random keeps it only for that."""

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        """The batch: padded tensors of the examples and whatever the objective's forward pass takes."""
        ...

    def state_dict(self) -> dict:
        """Its stream's position, as `load_state_dict` takes it back (empty when nothing is random)."""
        ...

    def load_state_dict(self, state: dict) -> None:
        """Go on from a position: on resume and, for a streamed corpus, before every batch."""
        ...

    def reset(self, seed: int | None = None) -> None:
        """Restart the stream from `seed` (default: its own): before every evaluation, for the same masks each time."""
        ...


@runtime_checkable
class ScheduledCollator(Collator, Protocol):
    """A masking collator whose rate a recipe may schedule over the run."""

    rate_schedule: Callable[[int], float] | None
    """Set by the loop at setup when the recipe has `masking.mask_rate_schedule` (`hfssl.ramps.MaskRateSchedule`):
    called with a batch's place among the batches this process trains on, before the batch is drawn, it gives that
    batch's masking rate. None: the collator's own fixed rate."""
