"""Masked acoustic reconstruction (`objective.name: reconstruction`): regress each masked frame's stacked, normalised
log-mel features (L1). The machinery is masked prediction's (`objectives/masked_speech.py`); this module declares the
settings and the schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from hfssl.config import SpeechPretrainConfig, arg

# The masked-prediction machinery, which reads the objective's KIND from its settings, is this objective's too.
from hfssl.objectives.masked_speech import RUN_FILES as RUN_FILES
from hfssl.objectives.masked_speech import UNIT as UNIT
from hfssl.objectives.masked_speech import Kind, LogMelArgs
from hfssl.objectives.masked_speech import describe as describe
from hfssl.objectives.masked_speech import export as export
from hfssl.objectives.masked_speech import rebuild as rebuild
from hfssl.objectives.masked_speech import setup as setup


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
