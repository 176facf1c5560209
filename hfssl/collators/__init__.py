"""Collators: what each objective hides from the model and asks it to predict."""

from hfssl.collators.audio import AudioMaskCollator
from hfssl.collators.base import Collator, ScheduledCollator
from hfssl.collators.text import MaskingCollator, MLMCollator, SpanMaskCollator, WholeWordMaskCollator

__all__ = [
    "AudioMaskCollator",
    "Collator",
    "MLMCollator",
    "MaskingCollator",
    "ScheduledCollator",
    "SpanMaskCollator",
    "WholeWordMaskCollator",
]
