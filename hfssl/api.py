"""hfssl from Python: one function per command, the very code `hfssl COMMAND` runs (the command line only parses its
arguments, calls these and prints what they return).

Every function takes a recipe: a YAML path, the name of a shipped recipe (``"text/mlm-tiny"``), a config that
`load_recipe` returned (changed or not), or None for the defaults. Settings over the recipe's come two ways, which
may be mixed (keywords win):

- ``overrides``, a dict of dotted keys, as on the command line: ``{"train.max_steps": 10}``;
- keywords, the dot spelled as a double underscore: ``train__max_steps=10``.

A string value is read as on the command line (``"3e-4"``, ``"[0, 1]"``, ``""`` for none); any other value (an int,
a list, a path, None) is taken as it is and checked against the schema. Bad input raises `hfssl.UsageError` with the
one line the command line prints; a run that cannot usefully go on raises `hfssl.TrainingStopped`. Nothing exits.

    import hfssl

    run = hfssl.pretrain("text/mlm-tiny", train__max_steps=60, train__output_dir="runs/mlm")
    tuned = hfssl.finetune("text/classify-tiny", model__name_or_path=run.path, training__output_dir="runs/topics")
    print(tuned.metrics["test"]["accuracy"])
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from hfssl.errors import UsageError

COMMANDS = ("pretrain", "finetune", "probe", "evaluate", "label_efficiency", "train_tokenizer")
"""What `load_recipe`'s `command` may name: the function a recipe is for, which decides its schema."""


@dataclass(frozen=True)
class Result:
    """What a run leaves: where its output is, its metrics (as also written there), and where its push went."""

    path: Path
    """The exported model (pretrain, finetune: `<output_dir>/final`), the scores' file (probe), the folder of tables
    (evaluate, label_efficiency) or the tokenizer's folder (train_tokenizer)."""
    metrics: dict = field(default_factory=dict)
    url: str | None = None
    """The Hub commit the run's push made (`hub.push_to_hub`); None when it pushed nothing."""
    repo_id: str | None = None
    """The Hub repository it pushed to."""


def load_recipe(
    recipe: Any = None, overrides: Mapping[str, Any] | None = None, *, command: str = "pretrain", **settings: Any
) -> Any:
    """The validated config a recipe gives `command`, with the settings over it (see the module docstring).

    Args:
        recipe: a YAML path, a shipped recipe's name, a config (validated again, with the settings applied), or None.
        overrides: ``{"section.key": value}``.
        command: the function the recipe is for: one of `COMMANDS` (a pretraining recipe's schema follows its
            ``objective.name``).
        settings: ``section__key=value``.

    Returns:
        The config: `hfssl.config` dataclasses, one attribute per section (``cfg.train.max_steps``).
    """
    given = _settings(overrides, settings)
    if command not in COMMANDS:
        raise UsageError(f"command: {command!r} takes no recipe; choose one of {', '.join(COMMANDS)}")
    from hfssl import config as config_lib

    if _is_config(recipe):
        wanted = (
            (config_lib.PretrainConfig, config_lib.SpeechPretrainConfig) if command == "pretrain" else schema(command)
        )
        if not isinstance(recipe, wanted):
            raise UsageError(f"recipe: a {type(recipe).__name__} is not the config of a {command} recipe")
        return config_lib.load_values(type(recipe), config_lib.to_dict(recipe), given, type(recipe).__name__)
    if command == "pretrain":
        from hfssl.objectives import load_pretrain

        return load_pretrain(recipe, given)
    return config_lib.load(schema(command), recipe, given)


def pretrain(
    recipe: Any = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    resume: bool | str | os.PathLike = False,
    **settings: Any,
) -> Result:
    """Pretrain as the recipe says (`hfssl pretrain`), export the model to ``<train.output_dir>/final`` and push it
    where ``hub.push_to_hub`` says.

    Args:
        resume: go on from the latest complete checkpoint: True for the recipe's ``train.output_dir``, or a run
            directory (``--resume [DIR]``).

    Returns:
        `Result`: ``path`` the exported model, ``metrics`` the final metrics (``eval_loss``, ``steps``, ...).
    """
    cfg = load_recipe(recipe, overrides, **settings)
    from hfssl.hub import check_can_push
    from hfssl.pretrain import pretrain as run

    check_can_push(cfg.hub)
    resume = resume if isinstance(resume, bool | str) else os.fspath(resume)
    if cfg.train.time_budget is not None:
        from hfssl.budget import plan_run

        plan_run(cfg, resume)
    metrics = run(cfg, resume=resume)
    return _pushed(cfg.hub, Path(cfg.train.output_dir) / "final", metrics)


def dry_run(recipe: Any = None, overrides: Mapping[str, Any] | None = None, **settings: Any) -> dict:
    """What a pretraining run will read, take and write (`hfssl pretrain --dry-run`), from a few timed steps; writes
    nothing to the output directory. Returns the report (`hfssl.dry_run.format_report` prints it); with
    ``train.time_budget``, the run is estimated as its budget plans it, and ``budget_plan`` is the plan's text."""
    cfg = load_recipe(recipe, overrides, **settings)
    from hfssl.dry_run import dry_run as estimate

    plan = None
    if cfg.train.time_budget is not None:
        from hfssl.budget import plan_dry_run

        plan = plan_dry_run(cfg)  # and sets train.max_steps to the recipe's own plan
    report = estimate(cfg)
    return report if plan is None else report | {"budget_plan": plan}


def finetune(
    recipe: Any = None, overrides: Mapping[str, Any] | None = None, *, overwrite: bool = False, **settings: Any
) -> Result:
    """Fine-tune a classifier with the Trainer (`hfssl finetune`), export it to ``<training.output_dir>/final`` and
    push it where ``hub.push_to_hub`` says.

    Args:
        overwrite: replace an earlier fine-tuning's output in ``training.output_dir`` (``--overwrite``).

    Returns:
        `Result`: ``path`` the exported classifier, ``metrics`` its ``validation`` and ``test`` scores and more.
    """
    cfg = load_recipe(recipe, overrides, command="finetune", **settings)
    from hfssl.downstream.finetune import finetune as run
    from hfssl.hub import check_can_push

    if cfg.hub.push_checkpoints:
        raise UsageError(
            "hub.push_checkpoints: pretraining only; for fine-tuning checkpoints use the Trainer's own "
            "(--training.push_to_hub true --training.hub_strategy all_checkpoints)"
        )
    check_can_push(cfg.hub)
    metrics = run(cfg, overwrite=overwrite)
    return _pushed(cfg.hub, Path(cfg.training.output_dir) / "final", metrics)


def probe(
    recipe: Any = None, overrides: Mapping[str, Any] | None = None, *, overwrite: bool = False, **settings: Any
) -> Result:
    """Score frozen features with a linear probe (`hfssl probe`).

    Args:
        overwrite: replace an existing ``probe.output`` file (``--overwrite``).

    Returns:
        `Result`: ``path`` the scores' JSON file (``probe.output``), ``metrics`` the scores (``accuracy``, ``f1``,
        ``layer``, ...).
    """
    cfg = load_recipe(recipe, overrides, command="probe", **settings)
    from hfssl.downstream.probe import probe_model

    return Result(Path(cfg.probe.output), probe_model(cfg, overwrite=overwrite))


def evaluate(recipe: Any = None, overrides: Mapping[str, Any] | None = None, **settings: Any) -> Result:
    """Run a suite of tasks on one model (`hfssl evaluate`): results.json/.csv/.md, and the model card's entries.
    The recipe's data settings, and those given here, apply to every task over the task's own (from a config
    object, those that differ from the defaults).

    Returns:
        `Result`: ``path`` the suite's output folder, ``metrics`` its ``summary`` rows and ``average``.
    """
    cfg = load_recipe(recipe, overrides, command="evaluate", **settings)
    from hfssl import config as config_lib
    from hfssl.downstream.suites import run_suite

    given = _settings(overrides, settings)
    if _is_config(recipe):
        defaults = schema("evaluate")().data
        keys = {k for k in config_lib.to_dict(cfg.data) if getattr(cfg.data, k) != getattr(defaults, k)}
    else:
        values = config_lib.read_recipe(recipe) if recipe is not None else {}
        keys = set(values.get("data") or {})
    keys |= {k.removeprefix("data.") for k in given if k.startswith("data.")}
    result = run_suite(cfg, {key: getattr(cfg.data, key) for key in keys})
    return Result(Path(cfg.suite.output_dir), result)


def label_efficiency(recipe: Any = None, overrides: Mapping[str, Any] | None = None, **settings: Any) -> Result:
    """Pretrained against from scratch at several label fractions (`hfssl label-efficiency`): table, plot and
    model-card section.

    Returns:
        `Result`: ``path`` the sweep's output folder, ``metrics`` its ``rows``, ``summary`` and ``verdict``.
    """
    cfg = load_recipe(recipe, overrides, command="label_efficiency", **settings)
    from hfssl.downstream.label_efficiency import label_efficiency as sweep

    return Result(Path(cfg.sweep.output_dir), sweep(cfg))


def train_tokenizer(
    recipe: Any = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    out: str | os.PathLike,
    overwrite: bool = False,
    **settings: Any,
) -> Result:
    """Train a WordPiece, byte-level BPE or Unigram tokenizer on the recipe's corpus (`hfssl tokenizer train`) and
    save it to `out` (replacing what is there only with `overwrite`).

    Returns:
        `Result`: ``path`` the tokenizer's folder, ``metrics`` its ``kind`` and ``vocab_size``.
    """
    cfg = load_recipe(recipe, overrides, command="train_tokenizer", **settings)
    from hfssl.data.text import load_corpus
    from hfssl.io import atomic_dir, check_replaceable
    from hfssl.tokenizer import train_on_corpus

    out = Path(out)
    check_replaceable(out, overwrite)
    corpus, _ = load_corpus(cfg.data)
    tokenizer = train_on_corpus(corpus, cfg.tokenizer, model_max_length=cfg.data.seq_len)
    with atomic_dir(out) as tmp:
        tokenizer.save_pretrained(tmp)
    return Result(out, {"kind": cfg.tokenizer.kind, "vocab_size": len(tokenizer)})


def export(checkpoint: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """A pretraining checkpoint (``checkpoints/step-N``, or a run directory for its latest) as a model
    `from_pretrained` loads, with its preprocessor and card (`hfssl export`); returns where it went."""
    from hfssl.export import export_checkpoint
    from hfssl.io import check_replaceable

    check_replaceable(Path(out), overwrite)
    return export_checkpoint(checkpoint, out)


def _pushed(hub, final: Path, metrics: dict) -> Result:
    """A trained model's `Result`, after pushing it where the recipe's `hub` section says."""
    from hfssl.hub import push_final

    url = push_final(hub, final)
    return Result(final, metrics, url, hub.repo_id if url is not None else None)


def _is_config(recipe: Any) -> bool:
    return is_dataclass(recipe) and not isinstance(recipe, type)


def schema(command: str) -> type:
    """The schema of `command`'s recipes (not pretrain's: that follows the recipe's ``objective.name``)."""
    from hfssl.config import EvaluateConfig, FinetuneConfig, LabelEfficiencyConfig, ProbeConfig, TokenizerTrainConfig

    return {
        "finetune": FinetuneConfig,
        "probe": ProbeConfig,
        "evaluate": EvaluateConfig,
        "label_efficiency": LabelEfficiencyConfig,
        "train_tokenizer": TokenizerTrainConfig,
    }[command]


def _settings(overrides: Mapping[str, Any] | None, keywords: dict[str, Any]) -> dict[str, Any]:
    """``{"section.key": value}`` from the overrides dict and the ``section__key`` keywords (which win); paths as
    strings, the one form the schema's types take."""
    given = dict(overrides or {})
    for key, value in keywords.items():
        section, sep, name = key.partition("__")
        if not (sep and section and name):
            raise UsageError(f"{key}: a setting is section__key=value (e.g. train__max_steps=10)")
        given[f"{section}.{name}"] = value
    return {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in given.items()}
