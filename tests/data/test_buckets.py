import numpy as np
import pytest
from accelerate.data_loader import prepare_data_loader, skip_first_batches
from torch.utils.data import DataLoader

from hfssl.data.buckets import MEGA_BATCH, LengthGroupedSampler, padding_share
from hfssl.data.synthetic import synthetic_documents

BATCH = 4
# Two and a bit mega-batches, ending in a short batch: every boundary the order has.
LENGTHS = np.random.default_rng(0).integers(3, 200, size=2 * MEGA_BATCH * BATCH + 7)


def test_every_item_once_per_epoch_each_epoch_a_new_order():
    sampler = LengthGroupedSampler(LENGTHS, BATCH, seed=1)
    first = list(sampler)
    assert sorted(first) == list(range(len(LENGTHS)))
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(second) == list(range(len(LENGTHS))) and second != first
    batches = sampler.batches()
    assert [len(b) for b in batches] == [BATCH] * (len(LENGTHS) // BATCH) + [len(LENGTHS) % BATCH]


def test_the_order_depends_only_on_seed_and_epoch():
    """A fresh sampler (a resumed run's) set to an epoch gives that epoch's order; another seed another order."""
    used = LengthGroupedSampler(LENGTHS, BATCH, seed=1)
    orders = []
    for epoch in range(3):
        used.set_epoch(epoch)
        orders.append(list(used))
    fresh = LengthGroupedSampler(LENGTHS, BATCH, seed=1)
    fresh.set_epoch(2)
    assert list(fresh) == orders[2]
    assert list(LengthGroupedSampler(LENGTHS, BATCH, seed=2)) != orders[0]


def test_grouping_cuts_padding_on_generated_documents():
    """Documents of the synthetic corpus in words: grouped batches pad far less than random ones."""
    lengths = np.array([len(d["text"].split()) for d in synthetic_documents(2000, seed=0)])
    assert lengths.std() > 0.25 * lengths.mean()  # the lengths do vary
    sampler = LengthGroupedSampler(lengths, 16, seed=0)
    shuffled = np.random.default_rng(0).permutation(len(lengths))
    random_batches = [shuffled[i : i + 16] for i in range(0, len(lengths), 16)]
    grouped, mixed = padding_share(lengths, sampler.batches()), padding_share(lengths, random_batches)
    assert grouped < 0.25 * mixed, (grouped, mixed)


@pytest.mark.parametrize("processes", [1, 2])
def test_accelerate_shards_whole_batches_and_resumes_in_order(processes):
    """Prepared by Accelerate as the loop prepares it: each process's batches are batches of the sampler's, together
    they cover every item, `set_epoch` reaches the sampler, and skipping the batches trained on leaves the rest."""
    sampler = LengthGroupedSampler(LENGTHS, BATCH, seed=3)
    loader = DataLoader(list(range(len(LENGTHS))), batch_size=BATCH, sampler=sampler, collate_fn=list)
    parts = [
        prepare_data_loader(
            loader, num_processes=processes, process_index=p, put_on_device=False, use_seedable_sampler=True
        )
        for p in range(processes)
    ]
    for part in parts:
        part.set_epoch(1)
    reference = LengthGroupedSampler(LENGTHS, BATCH, seed=3)
    reference.set_epoch(1)
    expected = [sorted(b.tolist()) for b in reference.batches()]
    seen = [[sorted(b) for b in part] for part in parts]
    whole = [batch for batch in expected if len(batch) == BATCH]
    for p, batches in enumerate(seen):
        # Accelerate deals the batches out in turn and tops up the last short one from the epoch's first items
        assert batches[:-1] == whole[p::processes][: len(batches) - 1]
    assert {i for batches in seen for batch in batches for i in batch} == set(range(len(LENGTHS)))
    for part, batches in zip(parts, seen, strict=True):
        part.set_epoch(1)  # as the loop does before skipping
        assert [sorted(b) for b in skip_first_batches(part, 5)] == batches[5:]
