import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hfssl.data.durations import DurationBatches, DurationBatchSampler, duration_batches


def padded(batch, lengths) -> int:
    return len(batch) * max(lengths[i] for i in batch)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(1, 1000), min_size=1, max_size=300),
    st.integers(1000, 5000),
    st.integers(0, 3),
    st.booleans(),
)
def test_batches_respect_the_budget_and_use_every_index_once(lengths, budget, epoch, shuffle):
    sampler = DurationBatchSampler(lengths, budget, seed=1, shuffle=shuffle, chunk_batches=3)
    sampler.set_epoch(epoch)
    batches = list(sampler)
    assert len(sampler) == len(batches)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(padded(b, lengths) <= budget for b in batches)


def test_a_clip_over_the_budget_is_a_batch_of_its_own():
    batches = list(DurationBatchSampler([10, 500, 10], 100))
    assert sorted(map(sorted, batches)) == [[0, 2], [1]]


def test_batching_is_deterministic_per_seed_and_epoch():
    lengths = np.random.default_rng(0).integers(1000, 30000, 2000)

    def order(seed, epoch):
        sampler = DurationBatchSampler(lengths, 100_000, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(0, 0) == order(0, 0) and order(3, 2) == order(3, 2)
    assert order(0, 0) != order(0, 1) and order(0, 0) != order(1, 0)
    assert {frozenset(b) for b in order(0, 0)} != {frozenset(b) for b in order(0, 1)}  # new batches, not reordered


def test_length_grouping_keeps_padding_small():
    lengths = np.random.default_rng(0).integers(8000, 240000, 5000)
    batches = list(DurationBatchSampler(lengths, 1_600_000, seed=0))
    waste = 1 - lengths.sum() / sum(padded(b, lengths) for b in batches)
    assert waste < 0.05
    assert np.mean([len(b) for b in batches]) > 8


def test_evaluation_batches_are_sorted_and_fixed():
    lengths = [50, 10, 40, 20, 30, 10]
    sampler = DurationBatchSampler(lengths, 60, shuffle=False)
    first = list(sampler)
    sampler.set_epoch(5)
    assert list(sampler) == first == [[1, 5, 3], [4], [2], [0]]


class Indices(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        return index


def test_accelerate_reaches_the_epoch_and_resumes_mid_epoch():
    from accelerate import Accelerator

    lengths = np.random.default_rng(1).integers(100, 1000, 200)
    expected = DurationBatchSampler(lengths, 3000, seed=7)
    epochs = []
    for epoch in range(2):
        expected.set_epoch(epoch)
        epochs.append(list(expected))
    assert epochs[0] != epochs[1]

    accelerator = Accelerator(cpu=True)
    sampler = DurationBatchSampler(lengths, 3000, seed=7)
    loader = accelerator.prepare(torch.utils.data.DataLoader(Indices(200), batch_sampler=sampler, collate_fn=list))
    assert [list(b) for b in loader] == epochs[0]
    loader.set_epoch(1)
    assert len(loader) == len(epochs[1])
    assert [list(b) for b in loader] == epochs[1]
    loader.set_epoch(1)
    resumed = accelerator.skip_first_batches(loader, 5)
    assert [list(b) for b in resumed] == epochs[1][5:]


def test_several_processes_share_out_whole_batches_of_the_same_epoch():
    from accelerate.data_loader import BatchSamplerShard, DataLoaderShard

    lengths = np.random.default_rng(2).integers(100, 1000, 300)
    sampler = DurationBatchSampler(lengths, 3000, seed=3)
    sampler.set_epoch(4)
    expected = list(sampler)
    sampler.set_epoch(0)
    shards = []
    for rank in range(2):
        shard = BatchSamplerShard(sampler, num_processes=2, process_index=rank)
        loader = DataLoaderShard(Indices(300), batch_sampler=shard, collate_fn=list)
        loader.set_epoch(4)  # reaches sampler.sampler through the shard's batch_sampler
        shards.append([list(b) for b in loader])
    assert sampler.epoch == 4
    half = len(expected) // 2
    assert shards[0][:half] == expected[0::2][:half] and shards[1][:half] == expected[1::2][:half]
    assert len(shards[0]) == len(shards[1])  # even_batches: a rank short of a batch repeats an early one
    assert {i for shard in shards for batch in shard for i in batch} == set(range(300))


def test_duration_batches_of_a_stream():
    rng = np.random.default_rng(0)
    items = [{"input_values": np.zeros(n, np.float32), "id": i} for i, n in enumerate(rng.integers(100, 3000, 250))]
    batches = list(duration_batches(items, 6000, buffer_size=64, max_samples=2000))
    assert sorted(item["id"] for batch in batches for item in batch) == list(range(250))
    assert all(len(b) * max(min(len(x["input_values"]), 2000) for x in b) <= 6000 for b in batches)
    assert batches == list(duration_batches(items, 6000, buffer_size=64, max_samples=2000))
    loader = torch.utils.data.DataLoader(
        DurationBatches(items, 6000, buffer_size=64, max_samples=2000), batch_size=None, collate_fn=len
    )
    assert list(loader) == [len(b) for b in batches]
