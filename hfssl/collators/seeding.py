"""Seeded randomness for collators: one generator per batch, derived from a count, so a stream can be saved and
resumed exactly, and every distributed rank and DataLoader worker draws its own."""

from __future__ import annotations

import numpy as np
import torch


class SeededGenerator:
    """A `torch.Generator` per batch, seeded from (seed, distributed rank, DataLoader worker id, batch count).

    Counting batches instead of carrying a generator's state makes the position in the stream a single number the
    training loop knows: on resume it sets the count to the batches it has consumed, which stays exact even though
    the DataLoader collates a batch ahead of the one being trained on. A copy pickled into a worker notices it is
    somewhere new and draws its own streams, so workers never share one.
    """

    def __init__(self, seed: int):
        self.seed = seed
        self.calls = 0
        self.stream: list[int] | None = None
        """Who draws, when a resumable stream says so (its rank, part and epoch), instead of the rank and worker."""
        self.index: int | None = None
        """The batch's place among every batch this process has trained on, when a resumable stream says so."""

    @property
    def batch_index(self) -> int:
        """The place of the next batch among every batch this process trains on: a stream's word, else the count."""
        return self.index if self.index is not None else self.calls

    def get(self) -> torch.Generator:
        # SeedSequence mixes the numbers so that nearby seeds, ranks, workers and counts give unrelated streams.
        who = self.stream if self.stream is not None else _rank_and_worker()
        entropy = [self.seed % 2**64, *who, self.calls]
        self.calls += 1
        seed = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])
        return torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict:
        state = {"seed": self.seed, "calls": self.calls}
        if self.stream is not None:
            state["stream"] = list(self.stream)
        if self.index is not None:
            state["index"] = self.index
        return state

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self.calls = int(state["calls"])
        self.stream = state.get("stream")
        self.index = state.get("index")

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.seed = seed
        self.calls, self.index = 0, None


def _rank_and_worker() -> tuple[int, int]:
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank = torch.distributed.get_rank() if distributed else 0
    worker = torch.utils.data.get_worker_info()
    # The main process is 0, workers 1, 2, ...: a worker never replays the stream the main process drew.
    return rank, worker.id + 1 if worker is not None else 0


class SeededStream:
    """The masking-stream controls the collators share: save, restore and restart their `SeededGenerator`."""

    def state_dict(self) -> dict:
        return self._rng.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self._rng.load_state_dict(state)
        self.seed = self._rng.seed

    def reset(self, seed: int | None = None) -> None:
        """Restart the masking stream from `seed` (default: the collator's seed), e.g. for fixed evaluation masks."""
        self._rng.reset(seed)
        self.seed = self._rng.seed
