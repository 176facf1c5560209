"""Pretraining heads transformers lacks, on its stock speech encoders: `MaskedSpeechForPreTraining` (HuBERT, BEST-RQ,
masked log-mel reconstruction, and data2vec's student), registered with `AutoConfig` and `AutoModelForPreTraining`
when `hfssl.heads.masked_speech` is imported (importing `hfssl.heads` does), so a pretraining checkpoint reloads with
`from_pretrained` while its backbone saves as the stock class."""

from hfssl.heads.masked_speech import (
    BACKBONES,
    MaskedSpeechConfig,
    MaskedSpeechForPreTraining,
    MaskedSpeechOutput,
    random_quantizer,
)

__all__ = ["BACKBONES", "MaskedSpeechConfig", "MaskedSpeechForPreTraining", "MaskedSpeechOutput", "random_quantizer"]
