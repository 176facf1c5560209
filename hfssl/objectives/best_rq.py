"""BEST-RQ (`objective.name: best-rq`): at every masked frame, predict the code a frozen random-projection quantizer
gives the frame's stacked log-mel features, computed in the collator. The machinery is masked prediction's
(`objectives/masked_speech.py`); this module declares the settings and the schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from hfssl.config import SpeechPretrainConfig, arg, check

# The masked-prediction machinery, which reads the objective's KIND from its settings, is this objective's too.
from hfssl.objectives.masked_speech import RUN_FILES as RUN_FILES
from hfssl.objectives.masked_speech import UNIT as UNIT
from hfssl.objectives.masked_speech import Kind, LogMelArgs
from hfssl.objectives.masked_speech import describe as describe
from hfssl.objectives.masked_speech import export as export
from hfssl.objectives.masked_speech import rebuild as rebuild
from hfssl.objectives.masked_speech import setup as setup


@dataclass
class BestRQArgs(LogMelArgs):
    """BEST-RQ's frozen random codebook: its size, the projection's size and the seed both are drawn from."""

    KIND: ClassVar[Kind] = Kind(
        "codes",
        "BEST-RQ masked prediction: {masking}; at every masked frame the encoder predicts the code a frozen "
        "random-projection quantizer gives the frame's stacked, normalised log-mel features ({o.mel_bins} bins; "
        "projection to {o.codebook_dim} dimensions, nearest of {o.codebook_size} l2-normalised random codes, seed "
        "{o.codebook_seed}), with a linear softmax layer and cross-entropy",
    )
    name: Literal["best-rq"] = arg("best-rq", "best-rq: predict a frozen random quantizer's codes of log-mel frames")
    codebook_size: int = arg(8192, "entries of the frozen random codebook (the classes predicted)")
    codebook_dim: int = arg(16, "size of the random projection and of each (l2-normalised) codebook entry")
    codebook_seed: int = arg(0, "seed of the frozen random projection and codebook")

    def __post_init__(self):
        super().__post_init__()
        check(self.codebook_size >= 2, "objective.codebook_size", "must be at least 2")
        check(self.codebook_dim >= 1, "objective.codebook_dim", "must be positive")


@dataclass
class BestRQConfig(SpeechPretrainConfig):
    objective: BestRQArgs = field(default_factory=BestRQArgs)


SCHEMA = BestRQConfig
