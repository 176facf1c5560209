"""Collators: what each objective hides from the model and asks it to predict."""

from hfssl.collators.text import MLMCollator, SpanMaskCollator, WholeWordMaskCollator

__all__ = ["MLMCollator", "SpanMaskCollator", "WholeWordMaskCollator"]
