"""Batches by duration: clips of similar length under a budget of padded samples, for map-style and streamed data."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice

import numpy as np
import torch


class EpochPermutation(torch.utils.data.Sampler[int]):
    """`range(n)` in an order fixed by `(seed, epoch)`: shuffled, or in order when `shuffle` is False.

    `DurationBatchSampler` keeps one as its `.sampler`, where Accelerate's `DataLoaderShard.set_epoch` reaches it
    (also through the `BatchSamplerShard` that wraps the batch sampler when several processes train).
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generator(self, stream: int) -> np.random.Generator:
        """A generator for this (seed, epoch); `stream` tells apart its uses within one epoch."""
        return np.random.default_rng([self.seed & 0xFFFFFFFF, self.seed >> 32 & 0xFFFFFFFF, self.epoch, stream])

    def permutation(self) -> np.ndarray:
        return self.generator(0).permutation(self.n) if self.shuffle else np.arange(self.n)

    def __iter__(self) -> Iterator[int]:
        return iter(self.permutation().tolist())

    def __len__(self) -> int:
        return self.n


class DurationBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of indices whose padded size stays within a budget of samples: `len(batch) * longest <=
    max_samples_per_batch` (a clip longer than the budget alone makes a batch of one).

    Shuffled (training): the indices are shuffled by `(seed, epoch)`, cut into chunks of about `chunk_batches`
    batches, each chunk sorted by length and cut greedily, so a batch holds clips of similar length and little
    padding; then the batch order is shuffled. Not shuffled (evaluation): all indices sorted by length, cut the
    same way, in that fixed order. Every index appears exactly once per epoch; `len()` is exact for the current
    epoch (set with `set_epoch`).

    With Accelerate, pass it as a DataLoader's `batch_sampler`; `batch_size` is None so that, with several
    processes, `BatchSamplerShard` deals whole batches to the processes instead of splitting them.
    """

    batch_size = None
    drop_last = False

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        max_samples_per_batch: int,
        seed: int = 0,
        shuffle: bool = True,
        chunk_batches: int = 100,
    ):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if self.lengths.ndim != 1:
            raise ValueError(f"lengths must be 1-D, got shape {self.lengths.shape}")
        if max_samples_per_batch <= 0:
            raise ValueError(f"max_samples_per_batch must be positive, got {max_samples_per_batch}")
        if chunk_batches <= 0:
            raise ValueError(f"chunk_batches must be positive, got {chunk_batches}")
        self.max_samples_per_batch, self.shuffle = int(max_samples_per_batch), shuffle
        self.sampler = EpochPermutation(len(self.lengths), seed, shuffle)
        typical = max(1, int(np.mean(np.minimum(self.lengths, max_samples_per_batch)))) if len(self.lengths) else 1
        self.chunk_size = chunk_batches * max(1, self.max_samples_per_batch // typical)
        self._cached: tuple[int, list[list[int]]] | None = None

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def batches(self) -> list[list[int]]:
        """This epoch's batches, in order."""
        if self._cached is not None and self._cached[0] == self.epoch:
            return self._cached[1]
        order = self.sampler.permutation()
        if not self.shuffle:
            batches = _cut(order[np.argsort(self.lengths, kind="stable")], self.lengths, self.max_samples_per_batch)
        else:
            batches = []
            for start in range(0, len(order), self.chunk_size):
                chunk = order[start : start + self.chunk_size]
                chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
                batches.extend(_cut(chunk, self.lengths, self.max_samples_per_batch))
            batches = [batches[i] for i in self.sampler.generator(1).permutation(len(batches))]
        self._cached = (self.epoch, batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


def _cut(sorted_indices: Iterable[int], lengths: np.ndarray, budget: int) -> list[list[int]]:
    """Cut indices sorted by ascending length into batches whose padded size stays within `budget`."""
    batches, batch = [], []
    for index in sorted_indices:
        length = int(lengths[index])  # the longest so far: the indices come sorted
        if batch and (len(batch) + 1) * length > budget:
            batches.append(batch)
            batch = []
        batch.append(int(index))
    if batch:
        batches.append(batch)
    return batches


def duration_batches(
    items: Iterable[dict],
    max_samples_per_batch: int,
    buffer_size: int = 1000,
    max_samples: int | None = None,
    seed: int | None = 0,
) -> Iterator[list[dict]]:
    """Batch a stream of items by duration: read `buffer_size` items, sort them by length, cut batches under the
    same padded budget as `DurationBatchSampler` and yield them (in an order shuffled by `seed`; None: shortest
    first), then read the next buffer.

    Args:
        items: dicts with "input_values" (e.g. a `StreamedClips`).
        max_samples_per_batch: the budget, padding included.
        buffer_size: items sorted together; more gives less padding but more memory.
        max_samples: lengths are counted at most this (the collator crops longer clips).
        seed: seeds the batch order within each buffer.
    """
    rng = np.random.default_rng(seed) if seed is not None else None
    buffer: list[dict] = []
    for item in items:
        buffer.append(item)
        if len(buffer) >= buffer_size:
            yield from _buffer_batches(buffer, max_samples_per_batch, max_samples, rng)
            buffer = []
    if buffer:
        yield from _buffer_batches(buffer, max_samples_per_batch, max_samples, rng)


def _buffer_batches(
    buffer: list[dict], budget: int, max_samples: int | None, rng: np.random.Generator | None
) -> Iterator[list[dict]]:
    lengths = np.array([len(item["input_values"]) for item in buffer], dtype=np.int64)
    if max_samples is not None:
        lengths = np.minimum(lengths, max_samples)
    batches = _cut(np.argsort(lengths, kind="stable"), lengths, budget)
    order = rng.permutation(len(batches)) if rng is not None else range(len(batches))
    for i in order:
        yield [buffer[j] for j in batches[i]]


class DurationBatches(torch.utils.data.IterableDataset):
    """`duration_batches` over an iterable of items, as a dataset of batches: use it with
    `DataLoader(batches, batch_size=None, collate_fn=collator)`, which hands each list of items to the collator."""

    def __init__(
        self,
        items: Iterable[dict],
        max_samples_per_batch: int,
        buffer_size: int = 1000,
        max_samples: int | None = None,
        seed: int | None = 0,
    ):
        self.items, self.max_samples_per_batch, self.buffer_size = items, max_samples_per_batch, buffer_size
        self.max_samples, self.seed = max_samples, seed

    def __iter__(self) -> Iterator[list[dict]]:
        return duration_batches(self.items, self.max_samples_per_batch, self.buffer_size, self.max_samples, self.seed)

    def batches(self, part: int, parts: int, state: dict | None = None) -> Iterator[tuple[list[dict], dict]]:
        """Part `part` of `parts` of a `StreamedClips` in batches, each with the state after it: where the clips stood
        when its buffer began, the batch-order generator's state then, and the batches of the buffer already made.
        Given that state, the buffer is read again and the next batch follows."""
        clips = self.items.part(part, parts, state["clips"] if state else None)
        rng = np.random.default_rng([self.seed, part]) if self.seed is not None else None
        if state and rng is not None:
            rng.bit_generator.state = state["rng"]
        done = state["taken"] if state else 0
        items = iter(clips)
        while True:
            where, order = clips.stream.state_dict(), rng.bit_generator.state if rng is not None else None
            buffer = list(islice(items, self.buffer_size))
            if not buffer:
                return
            made = list(_buffer_batches(buffer, self.max_samples_per_batch, self.max_samples, rng))
            for taken in range(done + 1, len(made) + 1):
                yield made[taken - 1], {"clips": where, "rng": order, "taken": taken}
            done = 0
