"""Pretraining heads transformers lacks, on its stock speech encoders: `MaskedSpeechForPreTraining` (HuBERT, BEST-RQ
and masked log-mel reconstruction), registered with `AutoConfig` and `AutoModelForPreTraining` when hfssl is
imported, so a pretraining checkpoint reloads with `from_pretrained` while its backbone saves as the stock class."""

from hfssl.heads.masked_speech import (
    BACKBONES,
    MaskedSpeechConfig,
    MaskedSpeechForPreTraining,
    MaskedSpeechOutput,
    random_quantizer,
)

__all__ = ["BACKBONES", "MaskedSpeechConfig", "MaskedSpeechForPreTraining", "MaskedSpeechOutput", "random_quantizer"]
