import argparse
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
from hfssl.objectives import OBJECTIVES, is_speech, load_pretrain

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
    if command == "pretrain":
        cfg = load_pretrain(recipe)
        assert type(cfg) is OBJECTIVES[cfg.objective.name].SCHEMA
        modality = SpeechPretrainConfig if "/speech/" in str(recipe) else PretrainConfig
        assert isinstance(cfg, modality) and is_speech(cfg.objective.name) == (modality is SpeechPretrainConfig)
        return
    schema = {
        "finetune": FinetuneConfig,
        "probe": ProbeConfig,
        "label-efficiency": LabelEfficiencyConfig,
        "evaluate": EvaluateConfig,
    }[command]
    cfg = config_lib.load(schema, recipe)
    assert isinstance(cfg, schema)
    if command == "evaluate":
        assert load_suite(cfg.suite.name)


@pytest.mark.parametrize("suite", SUITES, ids=lambda p: p.stem)
def test_every_shipped_suite_loads_by_name_and_by_path(suite):
    by_name, by_path = load_suite(suite.stem), load_suite(str(suite))
    assert by_name == by_path and len({task.name for task in by_name}) == len(by_name)


def test_yaml_values_and_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  max_steps: 5\n  lr: 1\nmasking:\n  strategy: span\n")
    cfg = load_pretrain(recipe, {"train.max_steps": "200", "data.train": "corpus.txt", "export.language": "[en, fr]"})
    assert cfg.train.max_steps == 200
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.masking.strategy == "span"
    assert cfg.data.train == "corpus.txt"
    assert cfg.export.language == ["en", "fr"]
    assert cfg.model == PretrainConfig().model


def test_string_choices_are_not_yaml_booleans():
    cfg = load_pretrain(None, {"train.mixed_precision": "no"})
    assert cfg.train.mixed_precision == "no"


@pytest.mark.parametrize(
    "given, packing", [("true", "documents"), ("false", "none"), ("separator", "separator"), (None, "documents")]
)
def test_packing_choices_and_older_recipes_booleans(tmp_path, given, packing):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data:\n  seq_len: 64\n" + (f"  packing: {given}\n" if given else ""))
    assert load_pretrain(recipe).data.packing == packing
    if given:
        assert load_pretrain(None, {"data.packing": given}).data.packing == packing


def test_override_to_empty_and_strings_stay_strings(tmp_path):
    cfg = load_pretrain(None, {"train.max_steps": "null", "train.epochs": "2", "data.hub_config": "2"})
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
        ("", {"objective.name": "electra"}, "objective.name: 'electra' is not an objective; choose one of mlm, rtd"),
        ("", {"nosuch": "1"}, "nosuch"),
    ],
)
def test_bad_recipes_name_the_key(tmp_path, text, overrides, expected):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(text)
    with pytest.raises(UsageError) as err:
        load_pretrain(recipe, overrides)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_probe_every_zero_means_never():
    """Users write 0 for "never", as they leave it empty (a run with 0 probes nothing: test_objectives' hook test)."""
    for value in ("0", ""):
        cfg = load_pretrain("text/mlm-tiny", {"train.probe_every": value})
        assert not cfg.train.probe_every


def test_a_yaml_error_names_its_line(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("train:\n  max_steps: 5\n  lr: [1\n")
    with pytest.raises(UsageError, match=r"bad.yaml: not valid YAML \(line 4, column 1: "):
        config_lib.read_recipe(recipe)


def test_missing_and_malformed_recipe(tmp_path):
    with pytest.raises(UsageError, match="no such recipe"):
        load_pretrain(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_pretrain(bad)


def test_shipped_recipe_by_name():
    cfg = load_pretrain("text/mlm-tiny")
    assert cfg.model.size == "tiny"


# Every command's schemas: pretraining's are every objective's.
COMMAND_SCHEMAS = {
    "pretrain": [module.SCHEMA for module in OBJECTIVES.values()],
    "hubert-targets": [OBJECTIVES["hubert"].SCHEMA],
    "finetune": [FinetuneConfig],
    "probe": [ProbeConfig],
    "label-efficiency": [LabelEfficiencyConfig],
    "evaluate": [EvaluateConfig],
    "tokenizer train": [TokenizerTrainConfig],
}


def command_help(command: str) -> str:
    """The --help text of `command`, one line per option (no wrapping), whitespace collapsed."""
    parser = build_parser()
    for word in command.split():
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
    return " ".join(parser.format_help().split())


@pytest.mark.parametrize("command", COMMAND_SCHEMAS)
def test_help_lists_every_field_with_its_whole_doc_and_default(command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100000")  # argparse wraps at the terminal's width, hyphens included
    text = command_help(command)
    for schema in COMMAND_SCHEMAS[command]:
        defaults = schema()
        for name, section in config_lib.sections(schema).items():
            for key, (tp, fld) in config_lib.section_fields(section).items():
                option = f"--{name}.{key} VALUE "
                assert option in text, option
                doc = " ".join(fld.metadata["help"].split()).replace("%%", "%")  # argparse's %-formatting
                if key != "name":  # objective.name's help lists every objective's own line instead
                    doc += f" [{config_lib.describe(tp)}; default: {getattr(getattr(defaults, name), key)!r}]"
                assert doc in text, f"{command}: {name}.{key}"


@pytest.mark.parametrize("command", COMMAND_SCHEMAS)
def test_every_field_is_documented(command):
    for schema in COMMAND_SCHEMAS[command]:
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


def test_a_renamed_key_is_read_under_its_new_name_with_one_log_line(tmp_path, caplog):
    recipe = tmp_path / "sweep.yaml"
    recipe.write_text("sweep:\n  min_steps: 12\n  seeds: [0]\n")
    from hfssl.__main__ import settings_given

    args = build_parser().parse_args(["label-efficiency", str(recipe), "--sweep.min_steps", "7"])
    with caplog.at_level("WARNING", logger="hfssl.config.loader"):
        cfg = config_lib.load(LabelEfficiencyConfig, recipe)
        by_option = config_lib.load(LabelEfficiencyConfig, None, settings_given(args))
    assert cfg.finetune.min_steps == 12 and cfg.sweep.seeds == [0] and by_option.finetune.min_steps == 7
    lines = [r.getMessage() for r in caplog.records if r.name == "hfssl.config.loader"]
    assert lines == [
        f"{recipe}: sweep.min_steps is called finetune.min_steps now; read as finetune.min_steps",
        "--sweep.min_steps is called --finetune.min_steps now; read as finetune.min_steps",
    ]
