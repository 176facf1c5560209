"""The pretraining objectives, one module each, and the one dict that maps a recipe's `objective.name` to its module.

Adding an objective: its own module here (the members `base.ObjectiveModule` lists), one line in `OBJECTIVES`, its
name in the `objective.name` choices of its schema in `hfssl.config`, a recipe and its tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hfssl import config as config_lib
from hfssl.config import SPEECH_ARCHS, PretrainConfig, SpeechPretrainConfig
from hfssl.errors import UsageError
from hfssl.objectives import clm, data2vec, masked_speech, mlm, rtd, simcse, wav2vec2
from hfssl.objectives.base import ObjectiveModule

OBJECTIVES: dict[str, ObjectiveModule] = {
    "mlm": mlm,
    "rtd": rtd,
    "clm": clm,
    "simcse": simcse,
    "contrastive": wav2vec2,
    "hubert": masked_speech,
    "best-rq": masked_speech,
    "reconstruction": masked_speech,
    "data2vec": data2vec,
}

# The objective a recipe trains when it names none: its schema's default, and the schema follows `model.arch`.
DEFAULT_TEXT = PretrainConfig().objective.name
DEFAULT_SPEECH = SpeechPretrainConfig().objective.name


def objective_name(values: Any, overrides: dict[str, str] | None = None) -> str:
    """The objective a recipe (`values`, with command-line `overrides`) trains: its `objective.name`, else the
    default of the modality its `model.arch` names (text when it names none)."""
    values = values if isinstance(values, dict) else {}
    overrides = overrides or {}
    name = overrides.get("objective.name")
    if name is None and isinstance(values.get("objective"), dict):
        name = values["objective"].get("name")
    if name is None:
        arch = overrides.get("model.arch")
        if arch is None and isinstance(values.get("model"), dict):
            arch = values["model"].get("arch")
        return DEFAULT_SPEECH if arch in SPEECH_ARCHS else DEFAULT_TEXT
    if name not in OBJECTIVES:
        raise UsageError(f"objective.name: {name!r} is not an objective; choose one of {', '.join(OBJECTIVES)}")
    return name


def pretrain_schema(values: Any, overrides: dict[str, str] | None = None) -> type:
    """`PretrainConfig` (text) or `SpeechPretrainConfig` (speech): the schema of the objective the recipe trains."""
    return OBJECTIVES[objective_name(values, overrides)].SCHEMA


def load_pretrain(recipe: str | Path, overrides: dict[str, str] | None = None) -> Any:
    """A pretraining recipe -> its validated config, in the schema of the objective it trains."""
    return config_lib.load(pretrain_schema(config_lib.read_recipe(recipe), overrides), recipe, overrides)


def module(cfg: Any) -> ObjectiveModule:
    """The module of the objective a loaded pretraining config trains."""
    return OBJECTIVES[cfg.objective.name]
