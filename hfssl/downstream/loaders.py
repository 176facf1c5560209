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


def load_processor(cfg):
    """What turns the data into model inputs: the tokenizer for text, the feature extractor for audio."""
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
