"""Resumable streams: every DataLoader worker of every process reads its own part of a streamed corpus, and every
batch carries the position its part had reached, so that a resumed run goes on at the very next batch.

A process with W workers cuts its share of the stream into W parts ("roles"); the stream has `world_size x W` parts
in all, split by `datasets.distributed.split_dataset_by_node`: whole shards when their number is a multiple of the
parts, else every part reads the whole stream and keeps every n-th example. Worker w serves role (w + next) % W,
where `next` is the role whose batch was due when the position was saved: a DataLoader asks its workers in turn from
worker 0, so a resumed run receives its batches in the order the uninterrupted run did. The collator's randomness for
a batch is seeded by (rank, role, epoch, batches the role has made), never by the worker that hosts the role.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

import datasets
import torch
from datasets.distributed import split_dataset_by_node
from torch.utils.data import DataLoader

from hfssl.errors import UsageError

POSITION = "stream_position"
"""The key under which a batch carries its part's position, removed by `StreamLoader` before the loop sees it."""

Batches = Callable[[int, int, "dict | None"], Iterator[tuple[list, dict]]]
"""`batches(part, parts, state)`: that part's batches of items from `state` on (None: its start), each with the state
after it."""


class StreamPart:
    """One part of a `datasets` stream, read one example at a time; `state_dict()` is the position after the last
    example read, from which `StreamPart(..., state)` goes on."""

    def __init__(self, stream: datasets.IterableDataset, part: int, parts: int, state: dict | None = None):
        self.dataset = split_dataset_by_node(stream, rank=part, world_size=parts)
        if state is not None:
            self.dataset.load_state_dict(state)

    def __iter__(self) -> Iterator[dict]:
        # .iter(), not iteration: inside a DataLoader worker, iterating would split the stream by worker once more
        for row in self.dataset.iter(batch_size=1):
            yield {key: values[0] for key, values in row.items()}

    def state_dict(self) -> dict:
        return self.dataset.state_dict()


def start_position(workers: int, epoch: int = 0, base: int = 0) -> dict:
    """The position of a process at the start of an epoch: no role has made a batch, role 0 is due; the epoch's
    batches are numbered from `base` (see `ResumableStream`)."""
    return {"epoch": epoch, "next": 0, "roles": [None] * max(1, workers), "base": base}


def next_base(position: dict) -> int:
    """The number the epoch after `position`'s starts from: one past the last its roles gave."""
    roles = len(position["roles"])
    last = [(saved["batches"] - 1) * roles + role for role, saved in enumerate(position["roles"]) if saved]
    return position.get("base", 0) + max(last, default=-1) + 1


class ResumableStream(torch.utils.data.IterableDataset):
    """Collated batches of this process's parts of a stream, each carrying its position under `POSITION`.

    Args:
        batches: `batches(part, parts, state)`, e.g. `StreamedBlocks.batches` with its batch size bound.
        collator: collates a list of items; a `hfssl.collators.base.Collator`, reseeded per role and batch.
        rank, world_size: this process and the number of processes.
        workers: the DataLoader's `num_workers` (0: the main process reads the one role).
    """

    def __init__(self, batches: Batches, collator, rank: int, world_size: int, workers: int):
        self.batches, self.collator = batches, collator
        self.rank, self.world_size, self.roles = rank, world_size, max(1, workers)
        self.start = start_position(workers)

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        role = ((info.id if info is not None else 0) + self.start["next"]) % self.roles
        saved = self.start["roles"][role] or {"data": None, "batches": 0}
        made = saved["batches"]
        part, parts = self.rank * self.roles + role, self.world_size * self.roles
        who = [self.rank, role + 1, self.start["epoch"]]
        # A batch's place among the process's batches (what a masking-rate schedule counts): an epoch starts with
        # role 0 and the DataLoader hands out its workers' batches in turn, so role r's k-th batch of the epoch is
        # its (k * roles + r)-th, until a role's part runs out. A number of the saved position, so a resume keeps it.
        base = self.start.get("base", 0)
        for items, data in self.batches(part, parts, saved["data"]):
            index = base + made * self.roles + role
            self.collator.load_state_dict({"seed": self.collator.seed, "calls": made, "stream": who, "index": index})
            batch = self.collator(items)
            made += 1
            batch[POSITION] = {"role": role, "data": data, "batches": made}
            yield batch


def _as_is(batch):
    return batch


class StreamLoader:
    """The training loader of a streamed corpus: a DataLoader over a `ResumableStream` that keeps the position of the
    batches it has handed out. `state_dict()` is what a checkpoint saves (one per process); after `load_state_dict`,
    the next iteration starts at the batch that followed them. An iteration that runs to the end of the stream ends
    the epoch: the next one reads the stream again from its start."""

    def __init__(self, stream: ResumableStream, num_workers: int, pin_memory: bool = False):
        self.stream, self.roles = stream, stream.roles
        self.loader = DataLoader(
            stream,
            batch_size=None,
            collate_fn=_as_is,
            num_workers=num_workers,
            pin_memory=pin_memory,
            # Its own generator: starting an iterator must not draw from the global RNG, which a resumed run restores
            # (dropout and Gumbel noise come from it); nothing in the workers draws from the seed it gives them.
            generator=torch.Generator().manual_seed(0),
        )
        self.position = start_position(num_workers)

    def __iter__(self) -> Iterator[dict]:
        fresh = all(role is None for role in self.position["roles"])
        self.stream.start = copy.deepcopy(self.position)
        for batch in self.loader:
            made = batch.pop(POSITION)
            self.position["roles"][made["role"]] = {"data": made["data"], "batches": made["batches"]}
            self.position["next"] = (made["role"] + 1) % self.roles
            fresh = False
            yield batch
        if fresh:
            raise UsageError(
                f"data.train: process {self.stream.rank}'s part of the streamed corpus is empty; use fewer processes "
                "or train.num_workers, or a corpus with more documents or clips"
            )
        self.position = start_position(self.roles, self.position["epoch"] + 1, next_base(self.position))

    def state_dict(self) -> dict:
        return copy.deepcopy(self.position)

    def load_state_dict(self, state: dict) -> None:
        if len(state["roles"]) != self.roles:
            raise UsageError(
                f"--resume: the checkpoint's stream position was saved with train.num_workers {len(state['roles'])} "
                f"(0 and 1 read alike) and this run has {self.roles}; resume with the same number"
            )
        self.position = copy.deepcopy(state)


def stream_loader(batches: Batches, collator, accelerator, num_workers: int) -> StreamLoader:
    """This process's `StreamLoader`: its own parts of the stream, batched and collated in its workers."""
    stream = ResumableStream(batches, collator, accelerator.process_index, accelerator.num_processes, num_workers)
    return StreamLoader(stream, num_workers, pin_memory=torch.cuda.is_available())
