"""Speech encoders: size presets built from config, checkpoints loaded for continued pretraining, the feature
extractor that goes with them, and the frame geometry of their front end.

Two front ends: a convolutional feature encoder over the raw waveform (wav2vec2, wav2vec2-conformer, HuBERT, WavLM,
data2vec-audio; its `conv_kernel` and `conv_stride` set the frames), or log-mel filterbanks computed by the feature
extractor (wav2vec2-bert: `SeamlessM4TFeatureExtractor`'s 80 bins every 10 ms, two stacked per frame). Both give a
frame every 20 ms at 16 kHz, so masks, targets and heads are the same for both.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from transformers import AutoConfig, SeamlessM4TFeatureExtractor, Wav2Vec2FeatureExtractor

from hfssl.config import FILTERBANK_ARCHS, AudioDataArgs, SpeechModelArgs
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


class Filterbanks(NamedTuple):
    """`SeamlessM4TFeatureExtractor`'s framing, in samples at its only rate (it fixes these in its code)."""

    sampling_rate: int = 16000
    window: int = 400
    hop: int = 160
    mel_bins: int = 80
    stride: int = 2
    """log-mel frames stacked side by side into one encoder frame"""


FILTERBANKS = Filterbanks()


def uses_filterbanks(config) -> bool:
    """Whether the encoder reads log-mel filterbank frames from its feature extractor (no conv front end)."""
    return str(getattr(config, "model_type", "")).replace("_", "-") in FILTERBANK_ARCHS


def scratch_config(model: SpeechModelArgs, masking_prob: float, **extra):
    """The encoder's transformers config for `model.arch` at `model.size`, with the preset's fields overridden where
    set; `extra` adds an objective's own fields (a quantizer's, say) or overrides these."""
    preset = SIZES[model.size]
    hidden = model.hidden_size or preset.hidden
    heads = model.num_heads or preset.heads
    conv = model.conv_dim or preset.conv
    if hidden % heads:
        raise UsageError(f"model.hidden_size: {hidden} is not divisible by model.num_heads {heads}")
    if model.arch in FILTERBANK_ARCHS:
        return _filterbank_config(model, hidden, heads, preset, masking_prob, extra)
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


def _filterbank_config(model: SpeechModelArgs, hidden: int, heads: int, preset: Preset, masking_prob: float, extra):
    """A wav2vec2-bert (conformer over stacked log-mel frames) config: no adapter, so one output frame per input
    frame; rotary positions, as hfssl's wav2vec2-conformer."""
    fields = dict(
        hidden_size=hidden,
        num_hidden_layers=model.num_layers or preset.layers,
        num_attention_heads=heads,
        intermediate_size=model.intermediate_size or hidden * 4,
        feature_projection_input_dim=FILTERBANKS.mel_bins * FILTERBANKS.stride,
        position_embeddings_type="rotary",
        conv_depthwise_kernel_size=15 if hidden < 256 else 31,
        add_adapter=False,
        hidden_dropout=model.dropout,
        attention_dropout=model.dropout,
        activation_dropout=0.0,
        feat_proj_dropout=model.dropout,
        final_dropout=0.0,
        layerdrop=model.layerdrop,
        apply_spec_augment=True,
        mask_time_prob=masking_prob,
        # the classifier's projection before pooling, as wide as the encoder (the class default is 768)
        classifier_proj_size=hidden,
    )
    return AutoConfig.for_model(model.arch, **{**fields, **extra})


def feature_mask_fields(encoder, prob: float) -> dict:
    """The config fields of SpecAugment's channel masks on the projected features of `encoder` (a config): each
    channel starts a masked run with probability `prob`; runs are at most 10 channels, narrower for narrow feature
    encoders."""
    channels = encoder.hidden_size if uses_filterbanks(encoder) else encoder.conv_dim[-1]
    return {"mask_feature_prob": prob, "mask_feature_length": min(10, max(1, channels // 8))}


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


def feature_extractor(data: AudioDataArgs, config=None):
    """What turns a waveform into the input of the encoder `config` (a raw-waveform one when None).

    Raw waveform: zero mean and unit variance per clip, padding with zeros, and the attention mask the layer-norm
    conv encoder needs. Filterbanks: 80 log-mel bins every 10 ms, normalised per bin over the clip, two frames
    stacked per 20 ms, with a frame-level attention mask.
    """
    if config is not None and uses_filterbanks(config):
        return SeamlessM4TFeatureExtractor(
            feature_size=FILTERBANKS.mel_bins,
            num_mel_bins=FILTERBANKS.mel_bins,
            sampling_rate=data.sampling_rate,
            stride=FILTERBANKS.stride,
            padding_value=0.0,
            return_attention_mask=True,
        )
    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=data.sampling_rate,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )


def frame_lengths(num_samples: torch.Tensor | int, config) -> torch.Tensor:
    """Encoder frames for clips of `num_samples` samples (any shape, any device).

    A conv front end: `floor((n - kernel) / stride) + 1`, layer after layer, as transformers computes it without an
    adapter. Filterbanks: the log-mel frames `floor((n - window) / hop) + 1`, then whole stacks of them, as the
    feature extractor keeps them. A clip shorter than one frame has 0 frames (transformers goes negative there).
    """
    lengths = torch.as_tensor(num_samples, dtype=torch.long)
    if uses_filterbanks(config):
        mel = torch.div(lengths - FILTERBANKS.window, FILTERBANKS.hop, rounding_mode="floor") + 1
        return torch.div(mel.clamp(min=0), FILTERBANKS.stride, rounding_mode="floor")
    for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    return lengths.clamp(min=0)


def samples_per_frame(config) -> int:
    """Audio samples per encoder frame: the product of the conv encoder's strides, or the stacked log-mel hops."""
    if uses_filterbanks(config):
        return FILTERBANKS.hop * FILTERBANKS.stride
    return math.prod(config.conv_stride)


def is_speech_encoder(config) -> bool:
    """Whether `config` is an encoder whose frames hfssl can place: a conv front end or filterbank input."""
    conv = getattr(config, "conv_stride", None) and getattr(config, "conv_kernel", None)
    return uses_filterbanks(config) or bool(conv)


def min_clip_samples(config, mask_length: int) -> int:
    """The shortest clip (in samples) whose feature frames can hold one masked span and a distractor for it."""
    frames = mask_length + 1
    if uses_filterbanks(config):
        return (frames * FILTERBANKS.stride - 1) * FILTERBANKS.hop + FILTERBANKS.window
    samples = 0
    # Invert the conv stack layer by layer: n frames out of a layer need (n - 1) * stride + kernel inputs.
    for kernel, stride in reversed(list(zip(config.conv_kernel, config.conv_stride, strict=True))):
        samples = (frames - 1) * stride + kernel
        frames = samples
    return samples
