"""Batches for contrastive learning: texts alone (two dropout views are made by the model), or anchor, positive and
optional hard-negative texts of supervised pairs, each padded apart."""

from __future__ import annotations

from dataclasses import dataclass

import torch

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
