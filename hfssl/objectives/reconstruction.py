"""Masked acoustic reconstruction (`objective.name: reconstruction`): regress each masked frame's stacked, normalised
log-mel features (L1). The machinery is masked prediction's (`objectives/masked_speech.py`); this module declares the
settings and the schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from hfssl.config import SpeechPretrainConfig, arg
from hfssl.objectives import masked_speech
from hfssl.objectives.masked_speech import Kind, LogMelArgs


@dataclass
class ReconstructionArgs(LogMelArgs):
    """Reconstruction takes the log-mel settings and the unmasked frames' weight, and nothing of its own."""

    KIND: ClassVar[Kind] = Kind(
        "features",
        "Masked acoustic reconstruction: {masking}; a linear layer regresses each masked frame's stacked, normalised "
        "log-mel features ({o.mel_bins} bins) from the encoder output, with an L1 loss",
    )
    name: Literal["reconstruction"] = arg("reconstruction", "reconstruction: regress the masked log-mel frames (L1)")


@dataclass
class ReconstructionConfig(SpeechPretrainConfig):
    objective: ReconstructionArgs = field(default_factory=ReconstructionArgs)


SCHEMA = ReconstructionConfig
UNIT, RUN_FILES = masked_speech.UNIT, masked_speech.RUN_FILES
setup, rebuild, export, describe = (
    masked_speech.setup,
    masked_speech.rebuild,
    masked_speech.export,
    masked_speech.describe,
)
