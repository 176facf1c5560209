"""Resumable streams: every process and DataLoader worker reads its own part, each item once per epoch, and a loader
restored from any saved position goes on with exactly the batches (and masks) the uninterrupted one gave."""

import os
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice

import datasets
import numpy as np
import pytest
import soundfile as sf
import torch

from hfssl.collators.seeding import SeededGenerator, SeededStream
from hfssl.collators.text import MLMCollator
from hfssl.config import AudioDataArgs, DataArgs
from hfssl.data.audio import load_audio
from hfssl.data.durations import DurationBatches
from hfssl.data.stream import ResumableStream, StreamLoader, StreamPart
from hfssl.data.synthetic import synthetic_documents
from hfssl.data.text import DocumentChunks, load_corpus, pack, special_ids, tokenize_corpus
from hfssl.errors import UsageError
from hfssl.tokenizer import train_tokenizer

# 3 workers on a 2-core machine is the point here: an odd number of roles to rotate
pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")
DOCS = [doc["text"] for doc in synthetic_documents(120, seed=5)]
SEQ_LEN = 32


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(DOCS, vocab_size=400, model_max_length=SEQ_LEN)


@dataclass
class Names(SeededStream):
    """A collator that keeps what it was given (as tuples of tokens, or clip lengths) and one draw of its generator."""

    seed: int = 0
    _rng: SeededGenerator = field(init=False, repr=False)

    def __post_init__(self):
        self._rng = SeededGenerator(self.seed)

    def __call__(self, items: list[dict]) -> dict:
        index = self._rng.batch_index
        draw = torch.rand(1, generator=self._rng.get())
        names = [tuple(torch.as_tensor(item.get("input_ids", item.get("input_values"))).tolist()) for item in items]
        return {"names": names, "draw": draw, "index": index}


def streamed_blocks(tokenizer, shards: int, packing: bool = True):
    data = DataArgs(seq_len=SEQ_LEN, packing=packing)
    corpus = datasets.Dataset.from_dict({"text": DOCS}).to_iterable_dataset(num_shards=shards)
    return pack(tokenize_corpus(corpus, tokenizer, data), tokenizer, data)


def loaders(batches, collator, world: int, workers: int) -> list[StreamLoader]:
    return [StreamLoader(ResumableStream(batches, collator, rank, world, workers), workers) for rank in range(world)]


def epoch(loader: StreamLoader) -> list[dict]:
    return list(loader)


@pytest.mark.parametrize(("shards", "world", "workers"), [(4, 1, 0), (4, 2, 2), (3, 2, 2), (1, 1, 3)])
def test_every_document_once_per_epoch(tokenizer, shards, world, workers):
    """Chunks (no packing) name documents: every process and worker together give each chunk of the corpus once,
    whether the parts are whole shards (4 shards, 4 parts) or every n-th document (3 shards, 4 parts)."""
    blocks = streamed_blocks(tokenizer, shards, packing=False)
    data = DataArgs(seq_len=SEQ_LEN, packing=False)
    tokenized = tokenize_corpus(datasets.Dataset.from_dict({"text": DOCS}), tokenizer, data)
    whole = DocumentChunks(tokenized, SEQ_LEN, *special_ids(tokenizer))
    expected = Counter(tuple(whole[i]["input_ids"].tolist()) for i in range(len(whole)))
    seen = Counter()
    for loader in loaders(lambda p, n, s: blocks.batches(4, p, n, s), Names(), world, workers):
        batches = epoch(loader)
        assert batches, "a process got no part of the stream"
        seen.update(name for batch in batches for name in batch["names"])
    assert seen == expected


@pytest.mark.parametrize("shards", [4, 3])
def test_packed_parts_hold_every_document_once(tokenizer, shards):
    """Each part packs its own documents: its blocks, prefix dropped, are those documents one after the other."""
    blocks = streamed_blocks(tokenizer, shards)
    sep = tokenizer.sep_token_id
    documents = Counter()
    for part in range(4):
        tokens = [
            t for batch, _ in blocks.batches(4, part, 4) for item in batch for t in item["input_ids"][1:].tolist()
        ]
        ends = [i + 1 for i, t in enumerate(tokens) if t == sep]
        documents.update(tuple(tokens[a:b]) for a, b in zip([0, *ends], ends, strict=False))
        assert ends[-1] == len(tokens)
    assert documents == Counter(tuple(tokenizer(d, add_special_tokens=False)["input_ids"] + [sep]) for d in DOCS)


@pytest.mark.parametrize(("world", "workers", "stops"), [(1, 0, (1, 5)), (2, 2, (1, 2, 5)), (1, 3, (4, 5))])
def test_text_resumes_at_the_next_block_with_the_same_masks(tokenizer, world, workers, stops):
    blocks = streamed_blocks(tokenizer, 4)
    collator = MLMCollator(tokenizer=tokenizer, mask_rate=0.3, seed=7)
    for rank, loader in enumerate(loaders(lambda p, n, s: blocks.batches(3, p, n, s), collator, world, workers)):
        full = epoch(loader)
        assert len(full) > max(stops)
        for stop in stops:
            first = loaders(lambda p, n, s: blocks.batches(3, p, n, s), collator, world, workers)[rank]
            head = list(islice(first, stop))
            resumed = loaders(lambda p, n, s: blocks.batches(3, p, n, s), collator, world, workers)[rank]
            resumed.load_state_dict(first.state_dict())
            rest = epoch(resumed)
            assert len(head) + len(rest) == len(full)
            for got, want in zip(head + rest, full, strict=True):
                assert got.keys() == want.keys()
                assert all(torch.equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize("workers", [0, 2, 3])
def test_each_batch_knows_its_place_among_the_process_batches(tokenizer, workers):
    """What a masking-rate schedule counts: the batches a process was handed, in order, across epochs and a resume.
    Workers hand out in turn, so the count is exact until the first worker's part runs out (then it still rises)."""
    blocks = streamed_blocks(tokenizer, 4)
    make = lambda: loaders(lambda p, n, s: blocks.batches(3, p, n, s), Names(), 1, workers)[0]  # noqa: E731
    loader = make()
    first, second = [b["index"] for b in epoch(loader)], [b["index"] for b in epoch(loader)]
    shortest = min(Counter(b % max(1, workers) for b in first).values()) * max(1, workers)
    assert first[:shortest] == list(range(shortest))
    assert all(a < b for a, b in zip(first + second, (first + second)[1:], strict=False))
    assert second[0] == first[-1] + 1
    stopped = make()
    head = [b["index"] for b in islice(stopped, 4)]
    resumed = make()
    resumed.load_state_dict(stopped.state_dict())
    assert head + [b["index"] for b in epoch(resumed)] == first


def test_resume_refuses_another_number_of_workers(tokenizer):
    blocks = streamed_blocks(tokenizer, 4)
    [two] = loaders(lambda p, n, s: blocks.batches(3, p, n, s), Names(), 1, 2)
    [three] = loaders(lambda p, n, s: blocks.batches(3, p, n, s), Names(), 1, 3)
    with pytest.raises(UsageError, match="train.num_workers 2 .* this run has 3"):
        three.load_state_dict(two.state_dict())


def test_epochs_restart_the_stream_with_new_masks(tokenizer):
    blocks = streamed_blocks(tokenizer, 2)
    [loader] = loaders(lambda p, n, s: blocks.batches(4, p, n, s), Names(), 1, 2)
    first, second = epoch(loader), epoch(loader)
    assert [b["names"] for b in first] == [b["names"] for b in second]
    assert [b["draw"] for b in first] != [b["draw"] for b in second]
    assert loader.state_dict()["epoch"] == 2


def test_an_empty_part_is_one_clear_error(tokenizer):
    corpus = datasets.Dataset.from_dict({"text": DOCS[:1]}).to_iterable_dataset()
    data = DataArgs(seq_len=SEQ_LEN)
    blocks = pack(tokenize_corpus(corpus, tokenizer, data), tokenizer, data)
    second = loaders(lambda p, n, s: blocks.batches(4, p, n, s), Names(), 2, 0)[1]
    with pytest.raises(UsageError, match="process 1's part of the streamed corpus is empty"):
        epoch(second)


def test_held_out_head_is_not_trained_on_by_any_part():
    """datasets' skip() splits its count across the shards of a sharded stream; the head must stay out of every part."""
    train, validation = load_corpus(DataArgs(streaming=True, synthetic_documents=200, validation_documents=70))
    everything = [d["text"] for d in synthetic_documents(200, 0)]
    assert list(validation["text"]) == everything[:70]
    texts = [row["text"] for part in range(4) for row in StreamPart(train, part, 4)]
    assert sorted(texts) == sorted(everything[70:])


# --------------------------------------------------------------------------- audio


def clips_folder(tmp_path, n: int = 24) -> str:
    root = tmp_path / "clips"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        seconds = 0.2 + 0.05 * (i % 9)
        sf.write(
            os.fspath(root / f"c{i:02d}.wav"), rng.standard_normal(int(seconds * 16000)).astype(np.float32) * 0.1, 16000
        )
    return os.fspath(root)


@pytest.mark.parametrize(("world", "workers"), [(1, 0), (2, 2)])
def test_audio_resumes_at_the_next_batch_and_reads_every_clip_once(tmp_path, world, workers):
    data = AudioDataArgs(
        train=clips_folder(tmp_path), streaming=True, validation_clips=2, min_seconds=0.1, cache_dir=str(tmp_path / "c")
    )
    train, _ = load_audio(data)
    batches = DurationBatches(train, 16000, buffer_size=5, seed=3).batches
    seen = Counter()
    for rank, loader in enumerate(loaders(batches, Names(), world, workers)):
        full = epoch(loader)
        seen.update(name for batch in full for name in batch["names"])
        for stop in (1, 3, len(full) - 1):
            first = loaders(batches, Names(), world, workers)[rank]
            head = list(islice(first, stop))
            resumed = loaders(batches, Names(), world, workers)[rank]
            resumed.load_state_dict(first.state_dict())
            got = head + epoch(resumed)
            assert [b["names"] for b in got] == [b["names"] for b in full]
            assert [b["draw"] for b in got] == [b["draw"] for b in full]
    assert sum(seen.values()) == 22 and max(seen.values()) == 1
