"""Collators: what each objective hides from the model and asks it to predict."""

from hfssl.collators.audio import AudioMaskCollator
from hfssl.collators.text import MLMCollator, SpanMaskCollator, WholeWordMaskCollator

__all__ = ["AudioMaskCollator", "MLMCollator", "SpanMaskCollator", "WholeWordMaskCollator"]
