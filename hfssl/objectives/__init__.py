"""The pretraining objectives, one module each, and the one dict that maps a recipe's `objective.name` to its module.

Adding an objective: its own module here (the members `base.ObjectiveModule` lists, its settings and its schema
among them), one line in `OBJECTIVES`, a recipe and its tests. Nothing in `hfssl.config` names an objective.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, get_args, get_type_hints

from hfssl import config as config_lib
from hfssl.config import SPEECH_ARCHS, ModelArgs, SpeechPretrainConfig
from hfssl.errors import UsageError
from hfssl.objectives import best_rq, clm, data2vec, hubert, mlm, reconstruction, rtd, simcse, wav2vec2
from hfssl.objectives.base import ObjectiveModule

logger = logging.getLogger(__name__)

OBJECTIVES: dict[str, ObjectiveModule] = {
    "mlm": mlm,
    "rtd": rtd,
    "clm": clm,
    "simcse": simcse,
    "wav2vec2": wav2vec2,
    "hubert": hubert,
    "best-rq": best_rq,
    "reconstruction": reconstruction,
    "data2vec": data2vec,
}

RENAMED = {"contrastive": "wav2vec2"}
"""Objective names recipes used before, and the name each trains under now."""

# The objective a recipe trains when it names none: its modality's first, and the modality follows `model.arch`.
DEFAULT_TEXT = "mlm"
DEFAULT_SPEECH = "wav2vec2"


def is_speech(name: str) -> bool:
    return issubclass(OBJECTIVES[name].SCHEMA, SpeechPretrainConfig)


def objective_name(values: Any, overrides: dict[str, str] | None = None) -> str:
    """The objective a recipe (`values`, with command-line `overrides`) trains: its `objective.name`, else the
    default of the modality its `model.arch` names (text when it names none). A name from before a rename is
    upgraded in place, with one log line."""
    values = values if isinstance(values, dict) else {}
    overrides = overrides if overrides is not None else {}
    name = overrides.get("objective.name")
    section = values.get("objective")
    if name is None and isinstance(section, dict):
        name = section.get("name")
    if name is None:
        arch = overrides.get("model.arch")
        if arch is None and isinstance(values.get("model"), dict):
            arch = values["model"].get("arch")
        return DEFAULT_SPEECH if arch in SPEECH_ARCHS else DEFAULT_TEXT
    if name in RENAMED:
        logger.warning("objective.name: %r is called %r now; training %s", name, RENAMED[name], RENAMED[name])
        name = RENAMED[name]
        if "objective.name" in overrides:
            overrides["objective.name"] = name
        if isinstance(section, dict) and "name" in section:
            section["name"] = name
    if name not in OBJECTIVES:
        raise UsageError(f"objective.name: {name!r} is not an objective; choose one of {', '.join(OBJECTIVES)}")
    return name


def pretrain_schema(values: Any, overrides: dict[str, str] | None = None) -> type:
    """The schema of the objective the recipe trains (its module's `SCHEMA`)."""
    return OBJECTIVES[objective_name(values, overrides)].SCHEMA


def owners(section: str, key: str | None = None) -> list[str]:
    """The objectives whose schema has `section` (and `key` in it)."""
    found = []
    for name, module in OBJECTIVES.items():
        secs = config_lib.sections(module.SCHEMA)
        if section in secs and (key is None or key in config_lib.section_fields(secs[section])):
            found.append(name)
    return found


def _at_default(section: str, key: str, value: Any, name: str) -> bool:
    """Whether `value` is the default of `section.key` in objective `name`'s schema."""
    return getattr(getattr(OBJECTIVES[name].SCHEMA(), section), key, object()) == value


def refuse_foreign(values: dict, overrides: dict[str, str], name: str, saved: bool = False) -> None:
    """Refuse, with one line naming the key and the objectives that take it, a section or setting that objective
    `name`'s schema lacks but another's has. A run's own config.yaml (`saved`) written before each objective had its
    own settings holds every objective's, at their defaults: those are dropped, and any other value refused too."""
    secs = config_lib.sections(OBJECTIVES[name].SCHEMA)

    def refuse(key: str, takers: list[str]) -> UsageError:
        who = ", ".join(takers[:-1]) + " or " + takers[-1] if len(takers) > 1 else takers[0]
        return UsageError(f"{key}: only objective.name {who} takes it; this recipe trains {name}")

    # The command line first: what the user just typed is what the message should name.
    for dotted in overrides:
        section, _, key = dotted.partition(".")
        takers = owners(section, key or None)
        if takers and name not in takers:
            raise refuse(dotted, takers)
    for section, given in list(values.items()):
        takers = owners(section)
        if section not in secs and takers:
            fields = given.items() if isinstance(given, dict) else ()
            if not (saved and all(_at_default(section, k, v, takers[0]) for k, v in fields)):
                first = next(iter(given), None) if isinstance(given, dict) else None
                raise refuse(f"{section}.{first}" if first else section, takers)
            del values[section]
        elif section in secs and isinstance(given, dict):
            own = config_lib.section_fields(secs[section])
            for key in [k for k in given if k not in own]:
                takers = owners(section, key)
                if not takers:
                    continue  # the loader names it unknown, with the keys that would be valid
                if not (saved and _at_default(section, key, given[key], takers[0])):
                    raise refuse(f"{section}.{key}", takers)
                del given[key]


def load_pretrain(recipe: str | Path | None, overrides: dict[str, str] | None = None, saved: bool = False) -> Any:
    """A pretraining recipe (None: the defaults) and `section.key -> string` overrides -> its validated config, in
    the schema of the objective it trains. `saved`: the recipe is a run's own config.yaml (see `refuse_foreign`)."""
    values = config_lib.read_recipe(recipe) if recipe is not None else {}
    source = str(recipe) if recipe is not None else "command line"
    overrides = dict(overrides or {})
    if not isinstance(values, dict):
        raise UsageError(f"{source}: expected a mapping of sections, got {type(values).__name__}")
    name = objective_name(values, overrides)
    check_modality(values, overrides, name, source)
    refuse_foreign(values, overrides, name, saved)
    return config_lib.load_values(OBJECTIVES[name].SCHEMA, values, overrides, source)


def check_modality(values: dict, overrides: dict[str, str], name: str, source: str) -> None:
    """Where `model.arch`, not `objective.name`, chose the recipe's modality and the recipe itself holds a setting
    only the other modality's objectives take (a speech architecture given to a text recipe, say), one line blames
    the architecture, not the setting."""
    section = values.get("objective")
    if "objective.name" in overrides or (isinstance(section, dict) and "name" in section):
        return
    model = values.get("model")
    arch = overrides.get("model.arch") or (model.get("arch") if isinstance(model, dict) else None)
    if arch is None:
        return
    speech = is_speech(name)
    given = []  # the recipe's own settings: one typed on the command line is that line's to refuse
    for sec, keys in values.items():
        given += [(sec, key) for key in keys] if isinstance(keys, dict) else [(sec, "")]
    for sec, key in given:
        takers = owners(sec, key or None)
        if takers and all(is_speech(taker) != speech for taker in takers):
            kind, other = ("speech", "text") if speech else ("text", "speech")
            choices = SPEECH_ARCHS if other == "speech" else get_args(get_type_hints(ModelArgs)["arch"])
            raise UsageError(
                f"model.arch: {arch} is a {kind} architecture and {source} is a {other} recipe "
                f"({sec}.{key} in it is a {other} setting); choose a {other} architecture: {', '.join(choices)}"
            )


def module(cfg: Any) -> ObjectiveModule:
    """The module of the objective a loaded pretraining config trains."""
    return OBJECTIVES[cfg.objective.name]
