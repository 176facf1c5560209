"""What every downstream command loads from `model.name_or_path` (an hfssl export, a local model or a Hub name): its
config, its encoder without a head, and the processor that turns the data into its inputs. Each failure is one
UsageError line naming the model."""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoTokenizer

from hfssl.config import ClassifierModelArgs
from hfssl.errors import UsageError, first_line
from hfssl.io import check_local


def _load_preprocessor(cfg, auto, what: str):
    name = cfg.model.name_or_path
    check_local(name, "model.name_or_path", "pretrain or export a model there first")
    try:
        return auto.from_pretrained(name, revision=cfg.model.revision, trust_remote_code=cfg.model.trust_remote_code)
    except (OSError, ValueError, TypeError) as err:
        raise UsageError(
            f"model.name_or_path: {name} has no loadable {what} ({first_line(err)}); export it with its {what}"
        ) from None


def load_tokenizer(cfg):
    return _load_preprocessor(cfg, AutoTokenizer, "tokenizer")


def modality(model_type: str) -> str | None:
    """ "text" or "audio" for a model type that transformers classifies only texts or only audio; None otherwise."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES,
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    )

    audio = model_type in MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES
    text = model_type in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
    return "audio" if audio and not text else "text" if text and not audio else None


def check_modality(cfg) -> None:
    """A speech model given a text task, or the reverse, is one line saying so (its missing tokenizer or feature
    extractor would be blamed otherwise). A model whose config cannot be read is left to the loaders' own lines."""
    check_local(cfg.model.name_or_path, "model.name_or_path", "pretrain or export a model there first")
    try:
        model_type = load_model_config(cfg.model).model_type
    except UsageError:
        return
    kind = modality(model_type)
    if kind is not None and kind != cfg.data.task:
        model = "a speech" if kind == "audio" else "a text"
        raise UsageError(
            f"model.name_or_path: {cfg.model.name_or_path} is {model} model ({model_type}) and data.task is "
            f"{cfg.data.task}; give it {kind} data (a {'speech' if kind == 'audio' else 'text'} recipe) or choose a "
            f"{'speech' if cfg.data.task == 'audio' else 'text'} model"
        )


def load_processor(cfg):
    """What turns the data into model inputs: the tokenizer for text, the feature extractor for audio."""
    check_modality(cfg)
    if cfg.data.task == "text":
        return load_tokenizer(cfg)
    return _load_preprocessor(cfg, AutoFeatureExtractor, "feature extractor")


def load_model_config(m: ClassifierModelArgs, **changes):
    """The model's config (with `changes`), or UsageError naming the model."""
    try:
        return AutoConfig.from_pretrained(
            m.name_or_path, revision=m.revision, trust_remote_code=m.trust_remote_code, **changes
        )
    except (OSError, ValueError) as err:
        raise UsageError(f"model.name_or_path: could not load {m.name_or_path} ({first_line(err)})") from None


def load_backbone(m: ClassifierModelArgs, scratch: bool = False, seed: int = 0):
    """The encoder without a head (`AutoModel`): pretrained, or randomly initialised from `seed` with its config."""
    config = load_model_config(m)
    if scratch:
        torch.manual_seed(seed)
        return AutoModel.from_config(config, trust_remote_code=m.trust_remote_code)
    try:
        return AutoModel.from_pretrained(m.name_or_path, revision=m.revision, trust_remote_code=m.trust_remote_code)
    except (OSError, ValueError) as err:
        raise UsageError(f"model.name_or_path: could not load {m.name_or_path} ({first_line(err)})") from None
