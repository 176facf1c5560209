"""Length bucketing: a training order whose batches hold sequences of similar length, so that little of each padded
batch is padding, yet still a fresh random order every epoch."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

MEGA_BATCH = 50
"""Batches sorted together: transformers' LengthGroupedSampler's choice, enough to find close lengths while each
batch still draws from a random fiftieth of the data rather than from one length band of the whole corpus."""


class LengthGroupedSampler(torch.utils.data.Sampler[int]):
    """Every item once per epoch, in an order whose consecutive runs of `batch_size` are batches of similar length.

    Each epoch, with a generator seeded by `(seed, epoch)`: shuffle the items, cut the order into mega-batches of
    `MEGA_BATCH` batches, sort each mega-batch by length (longest first), cut it into batches and shuffle the order of
    the full batches. At most one batch is short (the end of the last mega-batch); it comes last, so a DataLoader's
    `BatchSampler` cuts exactly these batches and Accelerate's `BatchSamplerShard` hands whole ones to each process.
    The order depends on nothing but the seed and the epoch, so every process draws the same one, and a resumed run,
    after `set_epoch` and skipping the batches it has trained on, continues the same order.

    Args:
        lengths: each item's length in tokens.
        batch_size: items per batch, the DataLoader's.
        seed: the run's data seed.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int):
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def batches(self) -> list[np.ndarray]:
        """This epoch's batches of item indices, in order."""
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths))
        size = self.batch_size * MEGA_BATCH
        full, short = [], []
        for start in range(0, len(order), size):
            mega = order[start : start + size]
            mega = mega[np.argsort(-self.lengths[mega], kind="stable")]
            for i in range(0, len(mega), self.batch_size):
                batch = mega[i : i + self.batch_size]
                (full if len(batch) == self.batch_size else short).append(batch)
        return [full[i] for i in rng.permutation(len(full))] + short

    def __iter__(self) -> Iterator[int]:
        for batch in self.batches():
            yield from batch.tolist()


def padding_share(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """The share of a padded batch's positions that are padding, over `batches` (item indices into `lengths`) each
    padded to its longest item."""
    lengths = np.asarray(lengths)
    padded = sum(len(batch) * int(lengths[batch].max()) for batch in batches)
    return 1.0 - sum(int(lengths[batch].sum()) for batch in batches) / padded


def padding_shares(lengths: np.ndarray, batch_size: int, seed: int) -> tuple[float, float]:
    """The padding share of an epoch of batches grouped by length (`LengthGroupedSampler`'s first epoch), and of the
    same items in random batches of the same size."""
    shuffled = np.random.default_rng(seed).permutation(len(lengths))
    random_batches = [shuffled[i : i + batch_size] for i in range(0, len(lengths), batch_size)]
    grouped = LengthGroupedSampler(lengths, batch_size, seed).batches()
    return padding_share(lengths, grouped), padding_share(lengths, random_batches)
