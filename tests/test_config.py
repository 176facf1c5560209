import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from hfssl import config as config_lib
from hfssl.__main__ import build_parser
from hfssl.config import (
    EvaluateConfig,
    FinetuneConfig,
    LabelEfficiencyConfig,
    PretrainConfig,
    ProbeConfig,
    SpeechPretrainConfig,
    TokenizerTrainConfig,
)
from hfssl.downstream.suites import load_suite
from hfssl.errors import UsageError
from hfssl.objectives import pretrain_schema

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for p in (ROOT / "recipes").rglob("*.yaml") if p.parent.name != "suites")
SUITES = sorted((ROOT / "recipes" / "suites").glob("*.yaml"))


def test_recipes_found():
    assert any(p.name == "mlm-tiny.yaml" for p in RECIPES)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_every_recipe_validates(recipe):
    text = recipe.read_text()
    assert text.startswith("# hfssl "), "a recipe opens with the command that runs it"
    command = text.splitlines()[0].split()[2]
    schema = {
        "pretrain": pretrain_schema(config_lib.read_recipe(recipe)),
        "finetune": FinetuneConfig,
        "probe": ProbeConfig,
        "label-efficiency": LabelEfficiencyConfig,
        "evaluate": EvaluateConfig,
    }[command]
    cfg = config_lib.load(schema, recipe)
    assert isinstance(cfg, schema)
    if "/speech/" in str(recipe) and command == "pretrain":
        assert schema is SpeechPretrainConfig
    if command == "evaluate":
        assert load_suite(cfg.suite.name)


@pytest.mark.parametrize("suite", SUITES, ids=lambda p: p.stem)
def test_every_shipped_suite_loads_by_name_and_by_path(suite):
    by_name, by_path = load_suite(suite.stem), load_suite(str(suite))
    assert by_name == by_path and len({task.name for task in by_name}) == len(by_name)


def test_yaml_values_and_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  max_steps: 5\n  lr: 1\nmasking:\n  strategy: span\n")
    cfg = config_lib.load(
        PretrainConfig, recipe, {"train.max_steps": "200", "data.train": "corpus.txt", "export.language": "[en, fr]"}
    )
    assert cfg.train.max_steps == 200
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.masking.strategy == "span"
    assert cfg.data.train == "corpus.txt"
    assert cfg.export.language == ["en", "fr"]
    assert cfg.model == PretrainConfig().model


def test_string_choices_are_not_yaml_booleans():
    cfg = config_lib.load(PretrainConfig, None, {"train.mixed_precision": "no"})
    assert cfg.train.mixed_precision == "no"


@pytest.mark.parametrize(
    "given, packing", [("true", "documents"), ("false", "none"), ("separator", "separator"), (None, "documents")]
)
def test_packing_choices_and_older_recipes_booleans(tmp_path, given, packing):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data:\n  seq_len: 64\n" + (f"  packing: {given}\n" if given else ""))
    assert config_lib.load(PretrainConfig, recipe).data.packing == packing
    if given:
        assert config_lib.load(PretrainConfig, None, {"data.packing": given}).data.packing == packing


def test_override_to_empty_and_strings_stay_strings(tmp_path):
    cfg = config_lib.load(
        PretrainConfig, None, {"train.max_steps": "null", "train.epochs": "2", "data.hub_config": "2"}
    )
    assert cfg.train.max_steps is None and cfg.train.epochs == 2.0
    assert cfg.data.hub_config == "2"


@pytest.mark.parametrize(
    "text, overrides, expected",
    [
        ("train:\n  max_step: 5\n", {}, "max_steps"),
        ("trian:\n  max_steps: 5\n", {}, "train"),
        ("train:\n  max_steps: five\n", {}, "train.max_steps: expected an integer"),
        ("train:\n  max_steps: 2.5\n", {}, "train.max_steps"),
        ("masking:\n  strategy: words\n", {}, "'token', 'whole_word', 'span'"),
        ("data:\n  packing: blocks\n", {}, "data.packing: 'blocks' is not valid; choose 'documents', 'separator'"),
        ("model:\n  dropout: yes\n", {}, "model.dropout"),
        ("train: 3\n", {}, "section 'train'"),
        ("- a\n- b\n", {}, "mapping"),
        ("", {"train.lrate": "1"}, "train.lrate"),
        ("", {"masking.mask_rate": "1.5"}, "masking.mask_rate"),
        ("", {"train.batch_size": "0"}, "train.batch_size"),
        ("", {"train.probe_every": "-1"}, "train.probe_every: must not be negative"),
        ("", {"objective.name": "contrastive"}, "objective.name: 'contrastive' is not valid; choose 'mlm'"),
        ("", {"nosuch": "1"}, "nosuch"),
    ],
)
def test_bad_recipes_name_the_key(tmp_path, text, overrides, expected):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(text)
    with pytest.raises(UsageError) as err:
        config_lib.load(PretrainConfig, recipe, overrides)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_probe_every_zero_means_never():
    """Users write 0 for "never", as they leave it empty (a run with 0 probes nothing: test_objectives' hook test)."""
    for value in ("0", ""):
        cfg = config_lib.load(PretrainConfig, "text/mlm-tiny", {"train.probe_every": value})
        assert not cfg.train.probe_every


def test_a_yaml_error_names_its_line(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("train:\n  max_steps: 5\n  lr: [1\n")
    with pytest.raises(UsageError, match=r"bad.yaml: not valid YAML \(line 4, column 1: "):
        config_lib.read_recipe(recipe)


def test_missing_and_malformed_recipe(tmp_path):
    with pytest.raises(UsageError, match="no such recipe"):
        config_lib.load(PretrainConfig, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        config_lib.load(PretrainConfig, bad)


def test_shipped_recipe_by_name():
    cfg = config_lib.load(PretrainConfig, "text/mlm-tiny")
    assert cfg.model.size == "tiny"


def test_help_lists_every_field_with_its_doc():
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices["pretrain"]
    text = sub.format_help()
    for schema in (PretrainConfig, TokenizerTrainConfig):
        for name, section in config_lib.sections(schema).items():
            for key, (_, fld) in config_lib.section_fields(section).items():
                assert f"--{name}.{key}" in text
                assert fld.metadata["help"].split()[0] in text


def test_every_field_is_documented():
    for schema in (PretrainConfig, TokenizerTrainConfig):
        for section in config_lib.sections(schema).values():
            for f in dataclasses.fields(section):
                assert f.metadata.get("help"), f"{section.__name__}.{f.name} has no help"


def test_cli_bad_key_is_one_line_no_traceback(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "hfssl", "pretrain", "text/mlm-tiny", "--train.max_steps", "abc"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert lines == ["hfssl: error: train.max_steps: expected an integer, got 'abc'"]
    assert not any(tmp_path.iterdir())
