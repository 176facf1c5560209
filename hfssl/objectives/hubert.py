"""HuBERT (`objective.name: hubert`): at every masked frame, predict the frame's k-means cluster, the clusters fitted
once on MFCCs (iteration 1) or on a layer of the previous model (iteration 2+) by `hfssl hubert-targets`. The
machinery is masked prediction's (`objectives/masked_speech.py`); this module declares the settings and the schema,
which alone has a `targets` section."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from hfssl.config import SpeechPretrainConfig, arg, check
from hfssl.hubert_targets import TargetArgs

# The masked-prediction machinery, which reads the objective's KIND from its settings, is this objective's too.
from hfssl.objectives.masked_speech import RUN_FILES as RUN_FILES
from hfssl.objectives.masked_speech import UNIT as UNIT
from hfssl.objectives.masked_speech import Kind, MaskedPredictionArgs
from hfssl.objectives.masked_speech import describe as describe
from hfssl.objectives.masked_speech import export as export
from hfssl.objectives.masked_speech import rebuild as rebuild
from hfssl.objectives.masked_speech import setup as setup


@dataclass
class HubertArgs(MaskedPredictionArgs):
    """HuBERT's projection of the frames and the temperature they are scored at against the cluster embeddings."""

    KIND: ClassVar[Kind] = Kind(
        "clusters",
        "HuBERT masked prediction: {masking}; at every masked frame the encoder predicts the frame's k-means cluster "
        "({t.clusters} clusters over {source}, fitted once on the training audio), scored by cosine similarity "
        "against one learned embedding per cluster (temperature {o.logits_temperature}), with cross-entropy",
    )
    name: Literal["hubert"] = arg("hubert", "hubert: predict k-means cluster targets (see the targets section)")
    label_dim: int = arg(256, "size of the projected frames and of the cluster embeddings they are scored on")
    logits_temperature: float = arg(0.1, "temperature of the cosine similarities to the cluster embeddings")

    def __post_init__(self):
        super().__post_init__()
        check(self.label_dim >= 1, "objective.label_dim", "must be positive")
        check(self.logits_temperature > 0, "objective.logits_temperature", "must be positive")


@dataclass
class HubertConfig(SpeechPretrainConfig):
    objective: HubertArgs = field(default_factory=HubertArgs)
    targets: TargetArgs = field(default_factory=TargetArgs)


SCHEMA = HubertConfig
