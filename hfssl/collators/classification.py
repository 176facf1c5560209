"""Labelled clips -> classifier inputs, for fine-tuning and for probing frozen speech features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from hfssl.data.audio import decode_audio


@dataclass
class AudioClassificationCollator:
    """Raw labelled clips -> padded, normalised model inputs: each clip decoded (mono, at the extractor's rate),
    cut to its first `max_seconds`, then padded by the feature extractor with an attention mask."""

    feature_extractor: Any
    max_seconds: float

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        rate = self.feature_extractor.sampling_rate
        limit = round(self.max_seconds * rate)
        clips = [decode_audio(e["audio"], rate)[:limit] for e in examples]
        batch = self.feature_extractor(
            clips, sampling_rate=rate, padding=True, return_attention_mask=True, return_tensors="pt"
        )
        if "label" in examples[0]:
            batch["labels"] = torch.tensor([e["label"] for e in examples])
        return dict(batch)
