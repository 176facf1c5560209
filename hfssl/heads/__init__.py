"""Pretraining heads transformers lacks, on its stock speech encoders: `MaskedSpeechForPreTraining` (HuBERT, BEST-RQ,
masked log-mel reconstruction, and data2vec's student), registered with `AutoConfig` and `AutoModelForPreTraining`
when `hfssl.heads.masked_speech` is imported (importing `hfssl.heads` does), so a pretraining checkpoint reloads with
`from_pretrained` while its backbone saves as the stock class.

The head is a `PreTrainedModel` whose forward pass takes what `hfssl.collators.AudioMaskCollator` returns and gives a
`loss`, so it is a `transformers.Trainer`'s model as it is. BEST-RQ in your own Trainer script::

    from transformers import HubertConfig, Trainer, TrainingArguments, Wav2Vec2FeatureExtractor
    from hfssl.collators import AudioMaskCollator, MelTargets
    from hfssl.heads import MaskedSpeechConfig, MaskedSpeechForPreTraining, random_quantizer

    encoder = HubertConfig(num_hidden_layers=4)
    codes = MelTargets(encoder, sampling_rate=16000, mel_bins=80)
    codes.quantizer = random_quantizer(codes.dim, codebook_size=1024, codebook_dim=16, seed=0)
    extractor = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    trainer = Trainer(
        model=MaskedSpeechForPreTraining(
            MaskedSpeechConfig(backbone_config=encoder.to_dict(), target="codes", num_classes=1024, mel_bins=80)
        ),
        args=TrainingArguments("runs/best-rq", max_steps=1000),
        train_dataset=clips,  # a dataset with an input_values column of 16 kHz mono audio
        data_collator=AudioMaskCollator(extractor, encoder, num_negatives=0, targets=codes),
    )
    trainer.train()
    trainer.model.backbone.save_pretrained("runs/best-rq/encoder")  # a stock HubertModel

`target="features"` with `MelTargets` and no quantizer is masked log-mel reconstruction; `target="clusters"` takes
HuBERT's per-frame cluster ids from a `labels` column (`hfssl hubert-targets` computes them). data2vec's student is
this head too, but its targets come from an EMA teacher that hfssl's loop runs and updates (see `hfssl.collators`).
"""

from hfssl.heads.masked_speech import (
    BACKBONES,
    MaskedSpeechConfig,
    MaskedSpeechForPreTraining,
    MaskedSpeechOutput,
    random_quantizer,
)

__all__ = ["BACKBONES", "MaskedSpeechConfig", "MaskedSpeechForPreTraining", "MaskedSpeechOutput", "random_quantizer"]
