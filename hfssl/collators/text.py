"""Masked-language-model collators: token-level (BERT), whole-word, and SpanBERT span masking.

One collator, `MaskingCollator`, pads a list of examples itself (no `tokenizer.pad`), picks the positions to hide
with the selection function it is given (`select_tokens`, `select_words`, `select_spans`: vectorised tensor ops), and
hands them to `mask_tokens`, which does the 80/10/10 corruption; `MLMCollator`, `WholeWordMaskCollator` and
`SpanMaskCollator` build it with each. They work with any transformers masked-LM and any fast tokenizer whose word
boundaries can be read off its tokens (`##` WordPiece, `Ġ` byte-level BPE, `▁` SentencePiece). With `documents`,
every collator here also says where each document of a packed block starts (`document_layout`), so that the model
attends within documents only.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from hfssl.collators.seeding import SeededGenerator, SeededStream
from hfssl.errors import UsageError

# Tokens that mark where a word begins (byte-level BPE, SentencePiece) or that a piece continues one (WordPiece).
_START_MARKERS = ("Ġ", "▁")
_CONTINUE_MARKERS = ("##",)
# When nothing in the backend names the scheme, a marker that opens at least this share of the vocabulary is taken
# to be it: real subword vocabularies sit far above this (a third or more), ordinary text far below.
_MARKER_SHARE = 0.05


def mask_tokens(
    input_ids: torch.Tensor,
    selected: torch.Tensor,
    *,
    mask_token_id: int,
    replace_prob: float,
    random_prob: float,
    random_token_ids: torch.Tensor,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt the selected positions BERT-style and build the labels.

    Args:
        input_ids: token ids, any shape.
        selected: bool, same shape: the positions the model must predict.
        mask_token_id: what `replace_prob` of the selected positions become.
        replace_prob: share of selected positions replaced by the mask token.
        random_prob: share of selected positions replaced by a token drawn uniformly from `random_token_ids`; the
            remaining `1 - replace_prob - random_prob` keep their token.
        random_token_ids: 1-D tensor of the ids a random replacement may take (the non-special ones).
        generator: source of randomness.

    Returns:
        `(inputs, labels)`: the corrupted ids, and the original ids at selected positions with -100 everywhere else.
    """
    labels = torch.where(selected, input_ids, -100)
    # One uniform draw decides both outcomes, so the three shares are exact in expectation and disjoint.
    u = torch.rand(input_ids.shape, generator=generator)
    replaced = selected & (u < replace_prob)
    randomised = selected & (u >= replace_prob) & (u < replace_prob + random_prob)
    inputs = input_ids.masked_fill(replaced, mask_token_id)
    draws = torch.randint(len(random_token_ids), input_ids.shape, generator=generator)
    inputs = torch.where(randomised, random_token_ids[draws], inputs)
    return inputs, labels


Selection = Callable[[torch.Tensor, torch.Tensor, float, torch.Generator], torch.Tensor]
"""How a `MaskingCollator` chooses the positions to predict: `select(maskable, word_start, rate, generator)`, with
bool (B, L) `maskable` (positions that may be selected) and `word_start` (maskable positions that open a word), the
batch's masking rate and the batch's generator, before the corruption draws from it; returns the bool (B, L)
selected positions, within `maskable`."""


def select_tokens(maskable: torch.Tensor, word_start: torch.Tensor, rate: float, generator: torch.Generator):
    """BERT's selection: each maskable token with probability `rate`, words ignored (a `Selection`)."""
    return maskable & (torch.rand(maskable.shape, generator=generator) < rate)


def select_words(maskable: torch.Tensor, word_start: torch.Tensor, rate: float, generator: torch.Generator):
    """Pick each word with probability `rate`; a picked word has all its tokens selected.

    Args:
        maskable: bool (B, L): positions that may be selected.
        word_start: bool (B, L): maskable positions that open a word; every run of maskable positions opens with one.
        rate: per-word probability, which is also the expected share of maskable tokens selected.
        generator: source of randomness.

    Returns:
        bool (B, L): the selected positions.
    """
    picked = word_start & (torch.rand(maskable.shape, generator=generator) < rate)
    # Every token takes the draw of the latest word start at or before it.
    positions = torch.arange(word_start.shape[1]).expand_as(word_start)
    latest_start = torch.where(word_start, positions, 0).cummax(1).values
    return maskable & picked.gather(1, latest_start)


def select_spans(
    maskable: torch.Tensor,
    word_start: torch.Tensor,
    rate: float,
    generator: torch.Generator,
    span_p: float,
    max_span: int,
) -> torch.Tensor:
    """SpanBERT span selection: spans of whole words until each sequence's token budget is spent.

    Each round, every sequence whose budget is not spent draws a span length in words, `min(Geometric(span_p),
    max_span)`, and a start among the unselected words that still fit the budget; the span runs over the following
    words (within the sequence), cut to the longest prefix whose new tokens fit the remaining budget. A sequence is
    done when its budget, `round(rate * maskable tokens)`, is spent or no unselected word fits what is left of it.

    Args:
        maskable: bool (B, L): positions that may be selected.
        word_start: bool (B, L): maskable positions that open a word; every run of maskable positions opens with one.
        rate: share of each sequence's maskable tokens to select.
        generator: source of randomness.
        span_p: success probability of the geometric span length.
        max_span: longest span, in words.

    Returns:
        bool (B, L): the selected positions.
    """
    batch = maskable.shape[0]
    # Word k of a row is the k-th word start; non-maskable positions point at a spare column past the last word.
    word_index = word_start.long().cumsum(1) - 1
    n_words = word_start.sum(1)
    spare = int(n_words.max()) if batch else 0
    word_index = torch.where(maskable, word_index, spare)
    word_len = torch.zeros(batch, spare + 1, dtype=torch.long).scatter_add_(1, word_index, maskable.long())
    word_len[:, spare] = 0
    real_word = torch.arange(spare) < n_words[:, None]
    remaining = torch.floor(rate * maskable.sum(1) + 0.5).long()
    taken = torch.zeros(batch, spare + 1, dtype=torch.bool)
    offsets = torch.arange(max_span)
    while True:
        fits = real_word & ~taken[:, :spare] & (word_len[:, :spare] <= remaining[:, None])
        active = fits.any(1)
        if not active.any():
            break
        start = torch.where(fits, torch.rand(fits.shape, generator=generator), -1.0).argmax(1)
        span = sample_span_lengths(batch, span_p, max_span, generator)
        words = start[:, None] + offsets
        in_span = active[:, None] & (offsets < span[:, None]) & (words < n_words[:, None])
        words = torch.where(in_span, words, spare)
        new_tokens = torch.where(taken.gather(1, words), 0, word_len.gather(1, words))
        # Cumulative new tokens only grow along the span, so this keeps a prefix: the last span is cut to fit.
        keep = in_span & (new_tokens.cumsum(1) <= remaining[:, None])
        taken.scatter_(1, torch.where(keep, words, spare), True)
        remaining -= torch.where(keep, new_tokens, 0).sum(1)
    return maskable & taken.gather(1, word_index)


def sample_span_lengths(n: int, p: float, max_span: int, generator: torch.Generator) -> torch.Tensor:
    """`n` draws of `min(Geometric(p), max_span)` on {1, 2, ...}, as a long tensor."""
    if p >= 1.0:
        return torch.ones(n, dtype=torch.long)
    # Inverse CDF: 1 + floor(log(U) / log(1 - p)); 1 - rand() keeps U in (0, 1].
    u = 1.0 - torch.rand(n, generator=generator, dtype=torch.float64)
    lengths = 1 + torch.floor(torch.log(u) / math.log1p(-p))
    return lengths.clamp(max=max_span).long()


def word_starts(input_ids: torch.Tensor, maskable: torch.Tensor, vocab: _Vocab) -> torch.Tensor:
    """bool (B, L): maskable positions that open a word, by the token's own marker or by following a boundary.

    A special token, padding, or an added token is a word of its own, so whatever follows it opens a new word.
    """
    boundary = ~maskable | vocab.is_added[input_ids]
    after_boundary = torch.ones_like(boundary)
    after_boundary[:, 1:] = boundary[:, :-1]
    return maskable & (vocab.starts_word[input_ids] | after_boundary)


@dataclass
class MaskingCollator(SeededStream):
    """Masked-LM batches: pads the examples, chooses positions with `select`, and corrupts them BERT-style
    (`mask_tokens`). `MLMCollator`, `WholeWordMaskCollator` and `SpanMaskCollator` make the three kinds hfssl trains."""

    tokenizer: Any
    """A transformers tokenizer with a mask and a pad token (with `whole_words`, one whose word boundaries show in
    its tokens)."""
    select: Selection
    """Chooses the positions to predict: `select_tokens`, `select_words`, or `select_spans` with its span lengths
    bound."""
    whole_words: bool = False
    """Read where words begin off the tokenizer's tokens (`##`, `Ġ`, `▁`), for a `select` that keeps words whole;
    False: every maskable token opens a word, and any tokenizer will do."""
    mask_rate: float = 0.15
    """Share of maskable tokens the model must predict: in expectation for tokens and words, per sequence for spans."""
    replace_prob: float = 0.8
    """Share of selected tokens replaced by the mask token."""
    random_prob: float = 0.1
    """Share of selected tokens replaced by a random non-special token; the rest keep their token."""
    pad_to_multiple_of: int | None = 8
    """Pad each batch to a multiple of this length (tensor-core friendly); None pads to the longest example."""
    seed: int = 0
    """Seed of the masking generator; each DataLoader worker and distributed rank derives its own stream."""
    sampling_noise: bool = False
    """Also return `sample_u`, a uniform draw per position from the same stream, with which replaced-token
    detection samples its generator's tokens (so a resumed run samples the same ones)."""
    documents: bool = False
    """Also return `document_ids` and `position_ids` (see `document_layout`) for document packing."""
    rate_schedule: Callable[[int], float] | None = None
    """The masking rate of each batch, from its index in the stream (`hfssl.ramps.MaskRateSchedule`), instead of
    `mask_rate`."""
    _vocab: _Vocab = field(init=False, repr=False)
    _rng: SeededGenerator = field(init=False, repr=False)
    _separator: int | None = field(init=False, repr=False)

    def __post_init__(self):
        _check_rates(self.tokenizer, self.mask_rate, self.replace_prob, self.random_prob, self.pad_to_multiple_of)
        self._vocab = _Vocab.from_tokenizer(self.tokenizer, word_boundaries=self.whole_words)
        self._rng = SeededGenerator(self.seed)
        self._separator = separator_id(self.tokenizer) if self.documents else None

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = pad_input_ids(examples, self.tokenizer.pad_token_id, self.pad_to_multiple_of)
        maskable = attention_mask.bool() & ~self._vocab.is_special[input_ids]
        # The schedule reads the batch's place in the stream before drawing its generator moves the count on.
        rate = self.mask_rate if self.rate_schedule is None else self.rate_schedule(self._rng.batch_index)
        generator = self._rng.get()
        word_start = word_starts(input_ids, maskable, self._vocab) if self.whole_words else maskable
        selected = self.select(maskable, word_start, rate, generator)
        batch = self._vocab.finish(
            input_ids, attention_mask, selected, self.replace_prob, self.random_prob, generator, self.sampling_noise
        )
        return batch | document_layout(input_ids, attention_mask, self._separator) if self.documents else batch


def MLMCollator(tokenizer, **settings) -> MaskingCollator:
    """BERT masked-LM: each maskable token is selected with probability `mask_rate`.

    Args:
        tokenizer: a transformers tokenizer with a mask and a pad token.
        settings: any other field of `MaskingCollator` (`mask_rate`, `seed`, ...).
    """
    return MaskingCollator(tokenizer, select_tokens, **settings)


def WholeWordMaskCollator(tokenizer, **settings) -> MaskingCollator:
    """Whole-word masked-LM: each word is selected with probability `mask_rate`, all of its tokens together.

    Args:
        tokenizer: a transformers tokenizer with a mask and a pad token, whose word boundaries show in its tokens.
        settings: any other field of `MaskingCollator` (`mask_rate`, `seed`, ...).
    """
    return MaskingCollator(tokenizer, select_words, whole_words=True, **settings)


def SpanMaskCollator(tokenizer, *, span_p: float = 0.2, max_span: int = 10, **settings) -> MaskingCollator:
    """SpanBERT masked-LM: contiguous spans of whole words, `round(mask_rate * maskable tokens)` per sequence.

    Args:
        tokenizer: a transformers tokenizer with a mask and a pad token, whose word boundaries show in its tokens.
        span_p: geometric parameter of the span length in words (SpanBERT: 0.2); 1 gives single-word spans.
        max_span: longest span, in words; longer draws are clipped to it (SpanBERT: 10).
        settings: any other field of `MaskingCollator` (`mask_rate`, `seed`, ...).
    """
    if not 0.0 < span_p <= 1.0:
        raise UsageError(f"span_p must be in (0, 1], got {span_p}")
    if max_span < 1:
        raise UsageError(f"max_span must be at least 1 word, got {max_span}")
    select = partial(select_spans, span_p=span_p, max_span=max_span)
    return MaskingCollator(tokenizer, select, whole_words=True, **settings)


def pad_input_ids(
    examples: list[dict], pad_token_id: int, pad_to_multiple_of: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack the examples' `input_ids` into a right-padded (B, L) long tensor; other keys are ignored.

    Returns:
        `(input_ids, attention_mask)`, the mask 1 on real tokens; pad tokens already in an example (pre-padded input)
        count as padding too.
    """
    if not examples:
        raise UsageError("cannot collate an empty batch")
    sequences = [example["input_ids"] for example in examples]
    lengths = torch.tensor([len(ids) for ids in sequences])
    if all(isinstance(ids, list) for ids in sequences):
        flat = torch.tensor(list(itertools.chain.from_iterable(sequences)), dtype=torch.long)
    else:
        flat = torch.cat([torch.as_tensor(ids, dtype=torch.long).reshape(-1) for ids in sequences])
    length = int(lengths.max())
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    real = torch.arange(length) < lengths[:, None]
    input_ids = torch.full(real.shape, pad_token_id, dtype=torch.long)
    input_ids[real] = flat
    attention_mask = (real & (input_ids != pad_token_id)).long()
    return input_ids, attention_mask


def separator_id(tokenizer) -> int:
    """The token that ends each document in packed blocks: sep, else eos (as packing puts it there)."""
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if sep is None:
        raise UsageError("the tokenizer has neither a sep_token nor an eos_token to end documents with")
    return sep


def document_layout(input_ids: torch.Tensor, attention_mask: torch.Tensor, separator: int) -> dict[str, torch.Tensor]:
    """Where each document of packed blocks starts: a document runs up to and including its separator.

    Args:
        input_ids: (B, L) right-padded blocks, separators not yet corrupted.
        attention_mask: (B, L), 1 on real tokens.
        separator: the id that ends each document.

    Returns:
        `document_ids`, long (B, L): 0, 1, ... for the documents of each row, padding taking its row's last one;
        `position_ids`, long (B, L): each real token's position in its own document, 0 on padding (a valid index
        whatever the model's position table; padding is never attended to).
    """
    real = attention_mask.bool()
    starts = torch.zeros_like(real)
    starts[:, 1:] = (input_ids[:, :-1] == separator) & real[:, 1:]
    positions = torch.arange(input_ids.shape[1]).expand_as(input_ids)
    document_start = torch.where(starts, positions, 0).cummax(1).values
    return {
        "document_ids": starts.long().cumsum(1),
        "position_ids": torch.where(real, positions - document_start, 0),
    }


def _check_rates(tokenizer, mask_rate, replace_prob, random_prob, pad_to_multiple_of) -> None:
    if getattr(tokenizer, "mask_token", None) is None or tokenizer.mask_token_id is None:
        raise UsageError("the tokenizer has no mask token, which masked-language modelling needs")
    if getattr(tokenizer, "pad_token", None) is None or tokenizer.pad_token_id is None:
        raise UsageError("the tokenizer has no pad token, which batching examples of different lengths needs")
    if not 0.0 < mask_rate < 1.0:
        raise UsageError(f"mask_rate must be in (0, 1), got {mask_rate}")
    if replace_prob < 0 or random_prob < 0 or replace_prob + random_prob > 1:
        raise UsageError(
            f"replace_prob ({replace_prob}) and random_prob ({random_prob}) must be non-negative and sum to at most 1"
        )
    if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
        raise UsageError(f"pad_to_multiple_of must be a positive length or None, got {pad_to_multiple_of}")


@dataclass
class _Vocab:
    """Per-token-id lookup tables, built once from the tokenizer so each batch needs only tensor indexing."""

    mask_token_id: int
    is_special: torch.Tensor
    """bool (V,): never selected (padding included)."""
    is_added: torch.Tensor
    """bool (V,): added tokens (specials included), each a word of its own."""
    starts_word: torch.Tensor
    """bool (V,): the token opens a word wherever it appears."""
    random_token_ids: torch.Tensor
    """long: the ids a random replacement may take."""

    @classmethod
    def from_tokenizer(cls, tokenizer, word_boundaries: bool) -> _Vocab:
        vocab = tokenizer.get_vocab()
        size = max(len(tokenizer), max(vocab.values()) + 1)
        is_special = torch.zeros(size, dtype=torch.bool)
        is_special[list(tokenizer.all_special_ids)] = True
        is_added = is_special.clone()
        is_added[[i for i in getattr(tokenizer, "added_tokens_decoder", {}) if i < size]] = True
        starts_word = torch.ones(size, dtype=torch.bool)
        if word_boundaries:
            tokens = [""] * size
            for token, i in vocab.items():
                tokens[i] = token
            marker, marks_start = _word_marker(tokenizer, tokens, is_special.tolist())
            starts_word = torch.tensor([token.startswith(marker) == marks_start for token in tokens])
            starts_word |= is_added
        random_token_ids = (~is_special).nonzero().flatten()
        if len(random_token_ids) == 0:
            raise UsageError("the tokenizer has no ordinary tokens to draw random replacements from")
        return cls(tokenizer.mask_token_id, is_special, is_added, starts_word, random_token_ids)

    def finish(self, input_ids, attention_mask, selected, replace_prob, random_prob, generator, noise) -> dict:
        inputs, labels = mask_tokens(
            input_ids,
            selected,
            mask_token_id=self.mask_token_id,
            replace_prob=replace_prob,
            random_prob=random_prob,
            random_token_ids=self.random_token_ids,
            generator=generator,
        )
        batch = {"input_ids": inputs, "attention_mask": attention_mask, "labels": labels}
        if noise:  # drawn last, so the masks are the same with or without it
            batch["sample_u"] = torch.rand(input_ids.shape, generator=generator)
        return batch


def _word_marker(tokenizer, tokens: list[str], is_special: list[bool]) -> tuple[str, bool]:
    """How the tokenizer shows word boundaries: `(marker, True)` if the marker opens a word, `(marker, False)` if it
    continues one. The backend's decoder, pre-tokenizer and model say so directly; failing that, the vocabulary."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        for part in (backend.decoder, backend.pre_tokenizer, backend.model):
            found = _marker_in(json.loads(part.__getstate__())) if part is not None else None
            if found is not None:
                return found
    ordinary = [token for token, special in zip(tokens, is_special, strict=True) if token and not special]
    counts = {marker: sum(token.startswith(marker) for token in ordinary) for marker in _START_MARKERS}
    counts.update({marker: sum(token.startswith(marker) for token in ordinary) for marker in _CONTINUE_MARKERS})
    marker = max(counts, key=counts.get)
    if not ordinary or counts[marker] < _MARKER_SHARE * len(ordinary):
        raise UsageError(
            "cannot tell where words begin in this tokenizer's tokens (no `##`, `Ġ` or `▁` marker); "
            "use MLMCollator for token-level masking"
        )
    return marker, marker in _START_MARKERS


def _marker_in(config: dict) -> tuple[str, bool] | None:
    """The word marker named by one serialised decoder / pre-tokenizer / model, searching inside sequences."""
    kind = config.get("type")
    if kind == "Sequence":
        children = config.get("decoders") or config.get("pretokenizers") or []
        return next((found for child in children if (found := _marker_in(child)) is not None), None)
    if kind == "WordPiece":
        return config.get("prefix") or config.get("continuing_subword_prefix") or "##", False
    if kind == "ByteLevel":
        return "Ġ", True
    if kind == "Metaspace":
        return config.get("replacement", "▁"), True
    if kind == "Replace" and config.get("content") == " ":
        # SentencePiece-converted decoders (Llama, Mistral) turn the word marker back into a space this way.
        pattern = config.get("pattern", {}).get("String")
        return (pattern, True) if pattern else None
    if kind == "BPE" and config.get("continuing_subword_prefix"):
        return config["continuing_subword_prefix"], False
    return None


@dataclass
class CausalLMCollator:
    """Next-word prediction: pads the blocks and labels every token with itself (the model shifts them), except
    padding and the first token after each document's separator, so that no loss is taken across a document
    boundary: a document's first token is never predicted from the end of the one before it."""

    tokenizer: Any
    """A transformers tokenizer with a pad token and a separator (sep, else eos) between documents."""
    pad_to_multiple_of: int | None = 8
    """Pad each batch to a multiple of this length (tensor-core friendly); None pads to the longest example."""
    documents: bool = False
    """Also return `document_ids` and `position_ids` (see `document_layout`) for document packing."""

    def __post_init__(self):
        if self.tokenizer.pad_token_id is None:
            raise UsageError("the tokenizer has no padding token")
        self.separator = separator_id(self.tokenizer)

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = pad_input_ids(examples, self.tokenizer.pad_token_id, self.pad_to_multiple_of)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": causal_labels(
            input_ids, attention_mask, self.separator
        )}  # fmt: skip
        return batch | document_layout(input_ids, attention_mask, self.separator) if self.documents else batch

    # Nothing here is random: there is no stream position to save, restore or restart, and the seed a streamed
    # corpus hands back with every `load_state_dict` (see `hfssl.collators.base`) changes nothing.
    seed = 0

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def reset(self, seed: int | None = None) -> None:
        pass


def causal_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor, separator: int) -> torch.Tensor:
    """`input_ids` as labels, -100 on padding and on each token that follows a separator (a new document)."""
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    after_separator = torch.zeros_like(input_ids, dtype=torch.bool)
    after_separator[:, 1:] = input_ids[:, :-1] == separator
    return labels.masked_fill(after_separator, -100)
