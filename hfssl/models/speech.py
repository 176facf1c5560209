"""Speech encoders: size presets built from config, checkpoints loaded for continued pretraining, the feature
extractor that goes with them, and the frame geometry of their convolutional front end."""

from __future__ import annotations

import math
from typing import NamedTuple

from transformers import AutoConfig, Wav2Vec2FeatureExtractor

from hfssl.config import AudioDataArgs, SpeechModelArgs
from hfssl.errors import UsageError

# transformers' own SpecAugment default: what an exported speech encoder applies while being fine-tuned.
FINETUNE_MASK_TIME_PROB = 0.05


class Preset(NamedTuple):
    layers: int
    hidden: int
    heads: int
    conv: int
    """channels of every convolution of the feature encoder"""
    codevector: int
    """size of a quantized vector (wav2vec 2.0's quantizer)"""
    pos_kernel: int
    """width of the positional convolution"""


# The conv encoder keeps wav2vec 2.0's layout (kernels 10,3,3,3,3,2,2; strides 5,2,2,2,2,2,2: one frame per 20 ms at
# 16 kHz) and only narrows, because its frame rate is what the masks, the targets and the downstream heads assume.
SIZES = {
    "tiny": Preset(2, 64, 2, 64, 64, 32),
    "small": Preset(4, 256, 4, 256, 128, 64),
    "base": Preset(12, 768, 12, 512, 256, 128),
}


def scratch_config(model: SpeechModelArgs, masking_prob: float, **extra):
    """The encoder's transformers config for `model.arch` at `model.size`, with the preset's fields overridden where
    set; `extra` adds an objective's own fields (a quantizer's, say) or overrides these."""
    preset = SIZES[model.size]
    hidden = model.hidden_size or preset.hidden
    heads = model.num_heads or preset.heads
    conv = model.conv_dim or preset.conv
    if hidden % heads:
        raise UsageError(f"model.hidden_size: {hidden} is not divisible by model.num_heads {heads}")
    fields = {}
    if model.arch == "wav2vec2-conformer":
        fields = {"position_embeddings_type": "rotary", "conv_depthwise_kernel_size": 15 if hidden < 256 else 31}
    # data2vec-audio's positional encoder is a stack of small convolutions (its defaults: 5 of width 19).
    pos_kernel = 5 if model.arch == "data2vec-audio" else preset.pos_kernel
    fields.update(
        hidden_size=hidden,
        num_hidden_layers=model.num_layers or preset.layers,
        num_attention_heads=heads,
        intermediate_size=model.intermediate_size or hidden * 4,
        conv_dim=(conv,) * 7,
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        # Layer norm in the conv encoder (the wav2vec2-large-lv60 layout) makes padded batches exact with an
        # attention mask; the base model's group norm sees the padding.
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=pos_kernel,
        num_conv_pos_embedding_groups=min(16, hidden // 4),
        hidden_dropout=model.dropout,
        attention_dropout=model.dropout,
        activation_dropout=0.0,
        feat_proj_dropout=model.dropout,
        final_dropout=0.0,
        layerdrop=model.layerdrop,
        apply_spec_augment=True,
        mask_time_prob=masking_prob,
    )
    return AutoConfig.for_model(model.arch, **{**fields, **extra})


def feature_mask_fields(encoder, prob: float) -> dict:
    """The config fields of SpecAugment's channel masks on the projected features of `encoder` (a config): each
    channel starts a masked run with probability `prob`; runs are at most 10 channels, narrower for narrow feature
    encoders."""
    return {"mask_feature_prob": prob, "mask_feature_length": min(10, max(1, encoder.conv_dim[-1] // 8))}


def check_arch(encoder, model: SpeechModelArgs) -> None:
    """A checkpoint to continue from must be an encoder of the recipe's `model.arch`."""
    if encoder.model_type.replace("_", "-") != model.arch:
        raise UsageError(
            f"model.name_or_path: {model.name_or_path!r} is a {encoder.model_type} model, not model.arch {model.arch!r}"
        )


def resume_spec_augment(encoder) -> None:
    """A checkpoint exported for fine-tuning carries its SpecAugment setting; pretraining masks through the collator
    but needs the masked-frame embedding to exist."""
    encoder.apply_spec_augment = True
    encoder.mask_time_prob = max(encoder.mask_time_prob, FINETUNE_MASK_TIME_PROB)


def feature_extractor(data: AudioDataArgs) -> Wav2Vec2FeatureExtractor:
    """What turns a waveform into model input: zero mean and unit variance per clip, padding with zeros, and the
    attention mask the layer-norm conv encoder needs."""
    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=data.sampling_rate,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )


def samples_per_frame(config) -> int:
    """Audio samples per encoder frame: the product of the conv encoder's strides."""
    return math.prod(config.conv_stride)


def min_clip_samples(config, mask_length: int) -> int:
    """The shortest clip (in samples) whose feature frames can hold one masked span and a distractor for it."""
    frames = mask_length + 1
    samples = 0
    # Invert the conv stack layer by layer: n frames out of a layer need (n - 1) * stride + kernel inputs.
    for kernel, stride in reversed(list(zip(config.conv_kernel, config.conv_stride, strict=True))):
        samples = (frames - 1) * stride + kernel
        frames = samples
    return samples
