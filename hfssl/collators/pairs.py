"""Batches for contrastive learning: texts alone (two dropout views are made by the model), two random crops of each
text (its two views), or anchor, positive and optional hard-negative texts of supervised pairs, each padded apart."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from hfssl.collators.seeding import SeededGenerator, SeededStream
from hfssl.collators.text import pad_input_ids
from hfssl.errors import UsageError

# A pair column's tokens in an item -> its batch keys' prefix; the anchor takes the plain input_ids/attention_mask.
PAIR_PREFIXES = {"anchor_ids": "", "positive_ids": "positive_", "negative_ids": "negative_"}


@dataclass
class ContrastiveCollator:
    """Pads items `{"input_ids"}` (unsupervised: each text once) or `{"anchor_ids", "positive_ids"[,
    "negative_ids"]}` (supervised pairs) into `input_ids`/`attention_mask` and, for pairs,
    `positive_input_ids`/`positive_attention_mask` (and `negative_...`)."""

    pad_token_id: int
    pad_to_multiple_of: int | None = 8
    """Pad each batch to a multiple of this length (tensor-core friendly); None pads to the longest text."""

    def __post_init__(self):
        if self.pad_token_id is None:
            raise UsageError("the tokenizer has no padding token")

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        if "input_ids" in examples[0]:
            input_ids, attention_mask = pad_input_ids(examples, self.pad_token_id, self.pad_to_multiple_of)
            return {"input_ids": input_ids, "attention_mask": attention_mask}
        batch = {}
        for column, prefix in PAIR_PREFIXES.items():
            if column in examples[0]:
                texts = [{"input_ids": example[column]} for example in examples]
                ids, mask = pad_input_ids(texts, self.pad_token_id, self.pad_to_multiple_of)
                batch[f"{prefix}input_ids"], batch[f"{prefix}attention_mask"] = ids, mask
        return batch

    # Nothing here is random: there is no stream position to save, restore or restart, and the seed a streamed
    # corpus hands back with every `load_state_dict` (see `hfssl.collators.base`) changes nothing.
    seed = 0

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def reset(self, seed: int | None = None) -> None:
        pass


@dataclass
class CropCollator(SeededStream):
    """Two independent random crops of each text as its two views, as Contriever makes positives from one document:
    each crop keeps a contiguous span of a share of the text's tokens drawn uniformly from [`crop_min`, `crop_max`],
    at a uniform position, and is wrapped in the text's own prefix and separator tokens. The first crops are padded
    into `input_ids`/`attention_mask`, the second into `positive_input_ids`/`positive_attention_mask`.

    Items are `{"input_ids"}` as `hfssl.data.text.DocumentChunks` cuts them: `[prefix] text [sep]`."""

    pad_token_id: int
    prefix_token_id: int | None
    """The token that opens every item (cls, else bos), None when the tokenizer has none."""
    crop_min: float = 0.1
    crop_max: float = 0.5
    pad_to_multiple_of: int | None = 8
    seed: int = 0
    """Seed of the crops' generator; each DataLoader worker and distributed rank derives its own stream."""
    _rng: SeededGenerator = field(init=False, repr=False)

    def __post_init__(self):
        if self.pad_token_id is None:
            raise UsageError("the tokenizer has no padding token")
        if not 0 < self.crop_min <= self.crop_max <= 1:
            raise UsageError(f"crop shares must satisfy 0 < min <= max <= 1, got {self.crop_min}, {self.crop_max}")
        self._rng = SeededGenerator(self.seed)

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        texts = [torch.as_tensor(example["input_ids"], dtype=torch.long) for example in examples]
        prefix = [] if self.prefix_token_id is None else [self.prefix_token_id]
        bodies = [ids[len(prefix) : -1] for ids in texts]
        lengths = torch.tensor([len(body) for body in bodies])
        starts, stops = crop_bounds(lengths, self.crop_min, self.crop_max, self._rng.get())
        batch = {}
        for view, key in enumerate(("", "positive_")):
            crops = [
                {"input_ids": torch.cat([ids[: len(prefix)], body[start:stop], ids[-1:]])}
                for ids, body, start, stop in zip(
                    texts, bodies, starts[:, view].tolist(), stops[:, view].tolist(), strict=True
                )
            ]
            ids, mask = pad_input_ids(crops, self.pad_token_id, self.pad_to_multiple_of)
            batch[f"{key}input_ids"], batch[f"{key}attention_mask"] = ids, mask
        return batch


def crop_bounds(
    lengths: torch.Tensor, low: float, high: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(starts, stops)`, each (batch, 2): two independent spans of each of texts of `lengths` tokens, each keeping
    a share of the text drawn uniformly from [`low`, `high`] (at least one token of a non-empty text) at a uniform
    position."""
    n = lengths[:, None].expand(-1, 2)
    share = low + (high - low) * torch.rand(n.shape, generator=generator)
    size = torch.minimum(torch.clamp((share * n).round().long(), min=1), n)
    starts = (torch.rand(n.shape, generator=generator) * (n - size + 1)).long()
    return starts, starts + size
