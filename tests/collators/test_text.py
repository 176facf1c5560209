import copy
import math
import random
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import PreTrainedTokenizerFast

from hfssl.collators.seeding import SeededGenerator
from hfssl.collators.text import (
    MaskingCollator,
    MLMCollator,
    SpanMaskCollator,
    WholeWordMaskCollator,
    document_layout,
    mask_tokens,
    sample_span_lengths,
)
from hfssl.errors import UsageError
from hfssl.tokenizer import train_tokenizer

KINDS = ("wordpiece", "bpe", "unigram")
COLLATORS = (MLMCollator, WholeWordMaskCollator, SpanMaskCollator)
WORD_COLLATORS = (WholeWordMaskCollator, SpanMaskCollator)
SYLLABLES = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "be", "du", "gan", "tor", "vel", "shi", "qua", "xo"]


def make_corpus(n_sentences: int, seed: int) -> list[str]:
    """Sentences over 2000 invented words: far more than the small vocabularies hold, so many words split."""
    rng = random.Random(seed)
    words = ["".join(rng.choices(SYLLABLES, k=rng.randint(1, 4))) for _ in range(2000)]
    return [
        " ".join(rng.choices(words, k=rng.randint(2, 24))) + rng.choice([".", "!", ",", ""]) for _ in range(n_sentences)
    ]


@pytest.fixture(scope="module")
def tokenizers():
    corpus = make_corpus(1500, seed=0)
    return {kind: train_tokenizer(corpus, kind=kind, vocab_size=500) for kind in KINDS}


@pytest.fixture(scope="module")
def encoded(tokenizers):
    """Per kind: the tokenized test sentences (unseen in training) and their word ids, the independent word oracle."""
    sentences = make_corpus(600, seed=1)
    out = {}
    for kind, tokenizer in tokenizers.items():
        encoding = tokenizer(sentences)
        word_ids = [[-1 if w is None else w for w in encoding.word_ids(i)] for i in range(len(sentences))]
        out[kind] = (encoding["input_ids"], word_ids)
    return out


def pad(sequences: list[list[int]], length: int, value: int) -> torch.Tensor:
    out = torch.full((len(sequences), length), value, dtype=torch.long)
    for row, ids in enumerate(sequences):
        out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def check_batch(batch: dict, sequences: list[list[int]], tokenizer, multiple: int | None = 8):
    """Assert what every masked-LM batch must satisfy; return the selected positions, padded originals, maskable."""
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    inputs, attention, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    assert inputs.dtype == attention.dtype == labels.dtype == torch.long
    longest = max(len(ids) for ids in sequences)
    assert inputs.shape == attention.shape == labels.shape
    assert inputs.shape[0] == len(sequences)
    length = inputs.shape[1]
    if multiple:
        assert length % multiple == 0 and longest <= length < longest + multiple
    else:
        assert length == longest
    original = pad(sequences, length, tokenizer.pad_token_id)
    real = pad([[1] * len(ids) for ids in sequences], length, 0).bool()
    assert torch.equal(attention, real.long())
    special = torch.isin(original, torch.tensor(tokenizer.all_special_ids))
    selected = labels != -100
    assert not (selected & (special | ~real)).any(), "a special token or padding was selected"
    assert torch.equal(labels[selected], original[selected])
    assert torch.equal(inputs[~selected], original[~selected]), "an unselected position changed"
    changed = inputs[selected]
    changed_special = torch.isin(changed, torch.tensor(tokenizer.all_special_ids))
    assert (changed[changed_special] == tokenizer.mask_token_id).all(), "a random replacement was a special token"
    return selected, original, real & ~special


def assert_whole_words(selected: torch.Tensor, word_ids: list[list[int]]) -> None:
    """Each word of the tokenizer's own segmentation is selected entirely or not at all."""
    words = pad(word_ids, selected.shape[1], -1)
    real = words >= 0
    keys = (torch.arange(len(word_ids))[:, None] * (int(words.max()) + 1) + words)[real]
    tokens_per_word = torch.bincount(keys)
    selected_per_word = torch.bincount(keys, weights=selected[real].double(), minlength=len(tokens_per_word)).long()
    assert ((selected_per_word == 0) | (selected_per_word == tokens_per_word)).all(), "a word was split by the mask"


def budget(sequences, tokenizer, rate) -> torch.Tensor:
    specials = set(tokenizer.all_special_ids)
    return torch.tensor([math.floor(rate * sum(i not in specials for i in ids) + 0.5) for ids in sequences])


def test_sentences_have_multi_token_words(encoded):
    # Without words of several tokens the whole-word tests below could not fail.
    for kind, (_, word_ids) in encoded.items():
        counts = torch.bincount(torch.tensor([w for ws in word_ids[:100] for w in ws if w >= 0]))
        assert (counts > 1).float().mean() > 0.1, kind


@pytest.mark.parametrize("rate", [0.15, 0.30])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("collator_class", COLLATORS)
def test_masking_statistics(collator_class, kind, rate, tokenizers, encoded):
    tokenizer = tokenizers[kind]
    sequences, word_ids = encoded[kind]
    collator = collator_class(tokenizer, mask_rate=rate, seed=7)
    rng = random.Random(kind)
    maskable_total = selected_total = replaced = randomised = kept = 0
    for _ in range(200):
        rows = rng.sample(range(len(sequences)), 16)
        batch_sequences = [sequences[row] for row in rows]
        batch = collator([{"input_ids": ids, "attention_mask": [1] * len(ids)} for ids in batch_sequences])
        selected, original, maskable = check_batch(batch, batch_sequences, tokenizer)
        if collator_class is not MLMCollator:
            assert_whole_words(selected, [word_ids[row] for row in rows])
        if collator_class is SpanMaskCollator:
            assert (selected.sum(1) <= budget(batch_sequences, tokenizer, rate)).all(), "span budget overshot"
        maskable_total += int(maskable.sum())
        selected_total += int(selected.sum())
        inputs = batch["input_ids"][selected]
        replaced += int((inputs == tokenizer.mask_token_id).sum())
        kept += int((inputs == original[selected]).sum())
        randomised += int(((inputs != tokenizer.mask_token_id) & (inputs != original[selected])).sum())
    assert abs(selected_total / maskable_total - rate) < 0.01
    assert abs(replaced / selected_total - 0.8) < 0.02
    # A random draw equal to the original counts as kept; with ~500 ids that moves the shares by ~0.02%.
    assert abs(randomised / selected_total - 0.1) < 0.02
    assert abs(kept / selected_total - 0.1) < 0.02


@pytest.mark.parametrize("collator_class", COLLATORS)
def test_replace_and_random_shares_are_honoured(collator_class, tokenizers, encoded):
    tokenizer = tokenizers["wordpiece"]
    sequences = encoded["wordpiece"][0][:64]
    only_random = collator_class(tokenizer, mask_rate=0.5, replace_prob=0.0, random_prob=1.0)
    batch = only_random([{"input_ids": ids} for ids in sequences])
    selected, _, _ = check_batch(batch, sequences, tokenizer)
    assert not (batch["input_ids"] == tokenizer.mask_token_id).any()
    keep_all = collator_class(tokenizer, mask_rate=0.5, replace_prob=0.0, random_prob=0.0)
    batch = keep_all([{"input_ids": ids} for ids in sequences])
    selected, original, _ = check_batch(batch, sequences, tokenizer)
    assert selected.any() and torch.equal(batch["input_ids"], original)


def clipped_geometric_mean(p: float, max_span: int) -> float:
    # E[min(G, K)] = sum_{k=1..K} P(G >= k) = sum_{k=0..K-1} (1 - p)^k
    return sum((1 - p) ** k for k in range(max_span))


@pytest.mark.parametrize("p, max_span", [(0.2, 10), (0.5, 3), (0.05, 4), (1.0, 10)])
def test_span_length_sampler_is_clipped_geometric(p, max_span):
    lengths = sample_span_lengths(200_000, p, max_span, torch.Generator().manual_seed(0))
    assert lengths.dtype == torch.long
    assert int(lengths.min()) == 1 and int(lengths.max()) == (max_span if p < 1 else 1)
    assert abs(lengths.double().mean().item() - clipped_geometric_mean(p, max_span)) < 0.02 * max_span
    assert abs((lengths == 1).double().mean().item() - p) < 0.005
    if max_span > 1:
        assert abs((lengths == 2).double().mean().item() - p * (1 - p)) < 0.005


def marker_word_starts(sequences: list[list[int]], length: int, tokenizer, kind: str) -> torch.Tensor:
    """bool (B, L): tokens that open a word by the kind's marker convention, or follow a special token."""
    maskable = pad([[i not in tokenizer.all_special_ids for i in ids] for ids in sequences], length, 0).bool()
    tokens = [tokenizer.convert_ids_to_tokens(ids) for ids in sequences]
    follows = pad([[continues_word(token, kind) for token in row] for row in tokens], length, 0).bool()
    after_maskable = torch.cat([torch.zeros(len(sequences), 1, dtype=torch.bool), maskable[:, :-1]], 1)
    return maskable & ~(follows & after_maskable)


def span_runs_in_words(selected: torch.Tensor, starts: torch.Tensor) -> list[int]:
    """Lengths, in words, of the maximal runs of consecutive selected positions."""
    runs = []
    for row, row_starts in zip(selected.tolist(), starts.tolist(), strict=True):
        count = 0
        for chosen, start in zip(row + [False], row_starts + [False], strict=True):
            if chosen:
                count += start
            elif count:
                runs.append(count)
                count = 0
    return runs


@pytest.mark.parametrize("kind", KINDS)
def test_span_lengths_follow_the_clipped_geometric(kind, tokenizers):
    tokenizer = tokenizers[kind]
    # Long documents, so that clipping at the sequence end and merging of neighbouring spans stay rare.
    documents = [" ".join(make_corpus(20, seed=100 + i)) for i in range(48)]
    sequences = tokenizer(documents, truncation=True, max_length=512)["input_ids"]
    means = {}
    for p, max_span in [(0.2, 10), (0.5, 3), (1.0, 10)]:
        collator = SpanMaskCollator(tokenizer, mask_rate=0.15, span_p=p, max_span=max_span, seed=3)
        runs = []
        for start in range(0, len(sequences), 16):
            chunk = sequences[start : start + 16]
            selected, _, _ = check_batch(collator([{"input_ids": ids} for ids in chunk]), chunk, tokenizer)
            runs += span_runs_in_words(selected, marker_word_starts(chunk, selected.shape[1], tokenizer, kind))
        means[p] = sum(runs) / len(runs)
    # The last span of each sequence is cut to the budget and neighbouring spans merge into one run: hence the slack.
    assert abs(means[0.2] - clipped_geometric_mean(0.2, 10)) < 0.2 * clipped_geometric_mean(0.2, 10)
    assert abs(means[0.5] - clipped_geometric_mean(0.5, 3)) < 0.15 * clipped_geometric_mean(0.5, 3)
    assert 1.0 <= means[1.0] < 1.25


@pytest.mark.parametrize("collator_class", WORD_COLLATORS)
@pytest.mark.parametrize("kind", KINDS)
def test_words_are_found_without_the_backend_hints(collator_class, kind, tokenizers, encoded):
    # With the decoder and pre-tokenizer gone, the word marker must come from the model or the vocabulary.
    tokenizer = tokenizers[kind]
    backend = copy.deepcopy(tokenizer.backend_tokenizer)
    backend.decoder = None
    backend.pre_tokenizer = None
    bare = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=tokenizer.pad_token, mask_token=tokenizer.mask_token
    )
    bare.add_special_tokens({"cls_token": tokenizer.cls_token, "sep_token": tokenizer.sep_token})
    bare.add_special_tokens({"unk_token": tokenizer.unk_token})
    examples = [{"input_ids": ids} for ids in encoded[kind][0][:32]]
    expected = collator_class(tokenizer, seed=5)(examples)
    got = collator_class(bare, seed=5)(examples)
    for key in expected:
        assert torch.equal(got[key], expected[key])


def word_level_tokenizer(**special_tokens) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {token: i for i, token in enumerate(["[PAD]", "[MASK]", "[UNK]", "cat", "dog", "sat", "on", "mat"])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", **special_tokens)


def test_word_collators_refuse_a_tokenizer_without_word_markers():
    tokenizer = word_level_tokenizer(pad_token="[PAD]", mask_token="[MASK]")
    MLMCollator(tokenizer)  # token-level masking needs no word boundaries
    for collator_class in WORD_COLLATORS:
        with pytest.raises(UsageError, match="cannot tell where words begin"):
            collator_class(tokenizer)


@pytest.mark.parametrize("collator_class", COLLATORS)
def test_usage_errors(collator_class, tokenizers):
    tokenizer = tokenizers["wordpiece"]
    with pytest.raises(UsageError, match="no mask token"):
        collator_class(word_level_tokenizer(pad_token="[PAD]"))
    with pytest.raises(UsageError, match="no pad token"):
        collator_class(word_level_tokenizer(mask_token="[MASK]"))
    for rate in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(UsageError, match="mask_rate"):
            collator_class(tokenizer, mask_rate=rate)
    for replace, random_ in [(0.8, 0.3), (-0.1, 0.1), (0.5, -0.2)]:
        with pytest.raises(UsageError, match="replace_prob"):
            collator_class(tokenizer, replace_prob=replace, random_prob=random_)
    with pytest.raises(UsageError, match="pad_to_multiple_of"):
        collator_class(tokenizer, pad_to_multiple_of=0)
    with pytest.raises(UsageError, match="empty batch"):
        collator_class(tokenizer)([])


def test_span_usage_errors(tokenizers):
    tokenizer = tokenizers["bpe"]
    for span_p in (0.0, -0.5, 1.5):
        with pytest.raises(UsageError, match="span_p"):
            SpanMaskCollator(tokenizer, span_p=span_p)
    with pytest.raises(UsageError, match="max_span"):
        SpanMaskCollator(tokenizer, max_span=0)
    SpanMaskCollator(tokenizer, span_p=1.0, max_span=1)


@pytest.mark.parametrize("whole_words", [False, True])
def test_the_selection_sees_the_batch_and_decides_the_labels(whole_words, tokenizers, encoded):
    tokenizer, sequences = tokenizers["bpe"], encoded["bpe"][0][:16]
    seen = []

    def every_third(maskable, word_start, rate, generator):
        seen.append((maskable, word_start, rate, generator))
        return maskable & (torch.arange(maskable.shape[1]) % 3 == 0)

    collator = MaskingCollator(
        tokenizer, every_third, whole_words=whole_words, seed=3, rate_schedule=lambda index: 0.1 + index / 100
    )
    stream = SeededGenerator(3)
    for index in range(2):
        batch = collator([{"input_ids": ids} for ids in sequences])
        selected, original, maskable = check_batch(batch, sequences, tokenizer)
        got_maskable, word_start, rate, generator = seen[-1]
        assert torch.equal(got_maskable, maskable)
        starts = marker_word_starts(sequences, selected.shape[1], tokenizer, "bpe") if whole_words else maskable
        assert torch.equal(word_start, starts)
        assert rate == 0.1 + index / 100, "the schedule reads the batch's index"
        assert torch.equal(selected, maskable & (torch.arange(selected.shape[1]) % 3 == 0))
        # The selection gets the batch's generator first; the corruption draws from it next.
        ordinary = torch.tensor([i for i in range(len(tokenizer)) if i not in tokenizer.all_special_ids])
        inputs, labels = mask_tokens(
            original,
            selected,
            mask_token_id=tokenizer.mask_token_id,
            replace_prob=0.8,
            random_prob=0.1,
            random_token_ids=ordinary,
            generator=stream.get(),
        )
        assert torch.equal(batch["input_ids"], inputs) and torch.equal(batch["labels"], labels)
        assert isinstance(generator, torch.Generator)


def batches(collator, examples, n=4):
    return [collator(examples[i * 16 : (i + 1) * 16]) for i in range(n)]


def same(a: list[dict], b: list[dict]) -> bool:
    return all(torch.equal(x[key], y[key]) for x, y in zip(a, b, strict=True) for key in x)


@pytest.mark.parametrize("collator_class", COLLATORS)
def test_reproducible_streams(collator_class, tokenizers, encoded, tmp_path):
    tokenizer = tokenizers["unigram"]
    examples = [{"input_ids": ids} for ids in encoded["unigram"][0][:64]]
    first = batches(collator_class(tokenizer, seed=1), examples)
    assert same(first, batches(collator_class(tokenizer, seed=1), examples))
    assert not same(first, batches(collator_class(tokenizer, seed=2), examples))

    # Resume: a checkpoint taken after two batches (saved the way Accelerate saves it) replays the rest exactly.
    collator = collator_class(tokenizer, seed=1)
    batches(collator, examples, n=2)
    torch.save(collator.state_dict(), tmp_path / "collator.pt")
    assert collator.state_dict()["calls"] == 2
    rest = batches(collator, examples[32:], n=2)
    resumed = collator_class(tokenizer, seed=99)
    resumed.load_state_dict(torch.load(tmp_path / "collator.pt", weights_only=True))
    assert resumed.seed == 1
    assert same(rest, batches(resumed, examples[32:], n=2))
    assert not same(rest, batches(collator_class(tokenizer, seed=1), examples, n=2))

    # reset() restarts the stream: fixed masks for every evaluation.
    collator.reset()
    assert same(first, batches(collator, examples))
    collator.reset(seed=2)
    assert same(batches(collator_class(tokenizer, seed=2), examples), batches(collator, examples))


def test_document_layout():
    sep, pad = 3, 0
    input_ids = torch.tensor([[2, 10, 11, sep, 12, sep, 13, 14], [2, 15, sep, pad, pad, pad, pad, pad]])
    layout = document_layout(input_ids, (input_ids != pad).long(), sep)
    # A document runs up to and including its separator; padding joins its row's last document at position 0.
    assert layout["document_ids"].tolist() == [[0, 0, 0, 0, 1, 1, 2, 2], [0] * 8]
    assert layout["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 0, 1], [0, 1, 2, 0, 0, 0, 0, 0]]


@pytest.mark.parametrize("collator_class", COLLATORS)
def test_document_packing_masks_as_separator_packing_does(collator_class, tokenizers, encoded):
    """Documents only add the layout: the same masks from the same stream (so a resumed run is unchanged), and
    positions that restart after every separator."""
    tokenizer = tokenizers["wordpiece"]
    ids = encoded["wordpiece"][0]
    examples = [{"input_ids": ids[i] + ids[i + 1] + ids[i + 2]} for i in range(0, 48, 3)]
    plain = collator_class(tokenizer, seed=1)(examples)
    packed = collator_class(tokenizer, seed=1, documents=True)(examples)
    assert same([plain], [{key: packed[key] for key in plain}])
    assert (packed["labels"][packed["attention_mask"] == 0] == -100).all()
    for row, example in enumerate(examples):
        document, position, documents, positions = 0, 0, [], []
        for token in example["input_ids"]:
            documents.append(document)
            positions.append(position)
            document, position = (document + 1, 0) if token == tokenizer.sep_token_id else (document, position + 1)
        length = len(example["input_ids"])
        assert packed["document_ids"][row, :length].tolist() == documents
        assert packed["position_ids"][row, :length].tolist() == positions
        assert (packed["document_ids"][row, length:] == documents[-1]).all()


@pytest.mark.parametrize("collator_class", COLLATORS)
def test_workers_and_ranks_get_distinct_streams(collator_class, tokenizers, encoded, monkeypatch):
    tokenizer = tokenizers["bpe"]
    examples = [{"input_ids": ids} for ids in encoded["bpe"][0][:32]]

    def run(collator, worker=None, rank=None):
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: worker and SimpleNamespace(id=worker))
        monkeypatch.setattr(torch.distributed, "is_initialized", lambda: rank is not None)
        monkeypatch.setattr(torch.distributed, "get_rank", lambda: rank)
        return batches(collator, examples, n=2)

    main = collator_class(tokenizer)
    in_main = run(main)
    # A collator already used in the main process and then copied into a worker must not replay the main stream.
    worker_1 = run(main, worker=1)
    assert not same(in_main, worker_1)
    # A worker's stream is fixed by the seed, the worker id and the batch count it was copied with.
    copied = collator_class(tokenizer)
    copied.load_state_dict({"seed": 0, "calls": 2})
    assert same(worker_1, run(copied, worker=1))
    assert not same(worker_1, run(collator_class(tokenizer), worker=2))
    rank_1 = run(collator_class(tokenizer), rank=1)
    assert not same(rank_1, in_main) and not same(rank_1, worker_1)
    assert same(in_main, run(collator_class(tokenizer), rank=0))


def test_dataloader_workers_mask_differently(tokenizers, encoded):
    tokenizer = tokenizers["wordpiece"]
    example = {"input_ids": encoded["wordpiece"][0][0] * 4}
    loader = torch.utils.data.DataLoader(
        [example] * 64, batch_size=16, num_workers=2, collate_fn=WholeWordMaskCollator(tokenizer, mask_rate=0.3)
    )
    first, second = [batch["labels"] for batch in loader][:2]  # batches alternate between the two workers
    assert not torch.equal(first, second)
    again = [batch["labels"] for batch in loader][:2]
    assert torch.equal(first, again[0]) and torch.equal(second, again[1])


@pytest.mark.parametrize("collator_class", COLLATORS)
def test_inputs_may_be_tensors_and_prepadded(collator_class, tokenizers, encoded):
    tokenizer = tokenizers["wordpiece"]
    sequences = encoded["wordpiece"][0][:16]
    as_lists = collator_class(tokenizer, seed=4)([{"input_ids": ids, "other": "x"} for ids in sequences])
    as_tensors = collator_class(tokenizer, seed=4)([{"input_ids": torch.tensor(ids)} for ids in sequences])
    assert same([as_lists], [as_tensors])
    # Pre-padded to a common length: the pads count as padding, never as tokens.
    longest = max(len(ids) for ids in sequences)
    padded = [ids + [tokenizer.pad_token_id] * (longest - len(ids)) for ids in sequences]
    batch = collator_class(tokenizer, seed=4)([{"input_ids": ids} for ids in padded])
    check_batch(batch, sequences, tokenizer)


def test_mask_tokens_is_a_pure_function():
    input_ids = torch.arange(10, 110).reshape(4, 25)
    selected = torch.zeros_like(input_ids, dtype=torch.bool)
    selected[:, ::3] = True
    before = input_ids.clone()
    kwargs = dict(mask_token_id=1, replace_prob=0.5, random_prob=0.3, random_token_ids=torch.tensor([7, 8]))
    inputs, labels = mask_tokens(input_ids, selected, generator=torch.Generator().manual_seed(0), **kwargs)
    assert torch.equal(input_ids, before)
    assert torch.equal(labels, torch.where(selected, input_ids, -100))
    assert torch.equal(inputs[~selected], input_ids[~selected])
    assert set(inputs[selected].tolist()) <= {1, 7, 8} | set(input_ids[selected].tolist())
    again, _ = mask_tokens(input_ids, selected, generator=torch.Generator().manual_seed(0), **kwargs)
    assert torch.equal(inputs, again)


def continues_word(token: str, kind: str) -> bool:
    """The word-boundary convention of each tokenizer kind, written out independently of the collators."""
    return token.startswith("##") if kind == "wordpiece" else not token.startswith("Ġ" if kind == "bpe" else "▁")


@st.composite
def masking_cases(draw):
    kind = draw(st.sampled_from(KINDS))
    n_rows = draw(st.integers(1, 6))
    rows = []
    for _ in range(n_rows):
        length = draw(st.integers(0, 40))
        body = draw(st.lists(st.integers(0, 10**6), min_size=length, max_size=length))
        rows.append(body)
    settings_ = {
        "mask_rate": draw(st.floats(0.01, 0.99)),
        "replace_prob": draw(st.floats(0.0, 1.0)),
        "pad_to_multiple_of": draw(st.sampled_from([None, 1, 8, 3])),
        "seed": draw(st.integers(0, 2**31)),
    }
    settings_["random_prob"] = draw(st.floats(0.0, 1.0 - settings_["replace_prob"]))
    special_every = draw(st.integers(2, 50))
    return kind, rows, special_every, settings_


@pytest.mark.parametrize("collator_class", COLLATORS)
@settings(max_examples=30, deadline=None)
@given(case=masking_cases())
def test_invariants_hold_for_any_shape(collator_class, case, tokenizers):
    kind, rows, special_every, kwargs = case
    tokenizer = tokenizers[kind]
    vocab_size = len(tokenizer)
    specials = sorted(set(tokenizer.all_special_ids))
    # Random token ids with specials sprinkled in (including padding ids inside a sequence, as pre-padding makes).
    sequences = [
        [specials[r % len(specials)] if r % special_every == 0 else r % vocab_size for r in row] for row in rows
    ]
    if all(len(ids) == 0 for ids in sequences):
        sequences[0] = [tokenizer.cls_token_id]
    if collator_class is SpanMaskCollator:
        kwargs = {**kwargs, "span_p": 0.3, "max_span": 4}
    collator = collator_class(tokenizer, **kwargs)
    batch = collator([{"input_ids": ids} for ids in sequences])

    multiple = kwargs["pad_to_multiple_of"]
    inputs, labels = batch["input_ids"], batch["labels"]
    assert inputs.dtype == labels.dtype == batch["attention_mask"].dtype == torch.long
    longest = max(len(ids) for ids in sequences)
    length = inputs.shape[1]
    assert length >= longest and (length % multiple == 0 if multiple else length == longest)
    original = pad(sequences, length, tokenizer.pad_token_id)
    real = pad([[1] * len(ids) for ids in sequences], length, 0).bool() & (original != tokenizer.pad_token_id)
    assert torch.equal(batch["attention_mask"], real.long())
    maskable = real & ~torch.isin(original, torch.tensor(specials))
    selected = labels != -100
    assert not (selected & ~maskable).any()
    assert torch.equal(labels[selected], original[selected])
    assert torch.equal(inputs[~selected], original[~selected])

    if collator_class is MLMCollator:
        return
    tokens = [tokenizer.convert_ids_to_tokens(ids) for ids in original.tolist()]
    follows = torch.tensor([[continues_word(token, kind) for token in row] for row in tokens])
    inside_word = follows[:, 1:] & maskable[:, 1:] & maskable[:, :-1]
    assert torch.equal(selected[:, 1:][inside_word], selected[:, :-1][inside_word]), "a word was split"
    if collator_class is SpanMaskCollator:
        goal = torch.floor(kwargs["mask_rate"] * maskable.sum(1) + 0.5).long()
        assert (selected.sum(1) <= goal).all()
        # The budget is spent unless no unselected word fits what is left of it.
        starts = maskable & ~torch.cat([torch.zeros(len(rows), 1, dtype=torch.bool), inside_word], 1)
        word = starts.long().cumsum(1)
        for row in range(len(rows)):
            left = int(goal[row] - selected[row].sum())
            if left == 0:
                continue
            sizes = torch.bincount(word[row][maskable[row] & ~selected[row]])
            assert not ((sizes > 0) & (sizes <= left)).any(), "stopped with a word that fits the budget"
