"""The objectives package: one dict from objective name to module, the schema a recipe's objective decides, the
contract every module and objective keeps, and the hooks' timing in the loop."""

import re
import types
import typing
from pathlib import Path

import pytest
import torch
from helpers import hfssl, one_line_error

from hfssl import config as config_lib
from hfssl import objectives
from hfssl.config import PretrainConfig, SpeechPretrainConfig
from hfssl.errors import UsageError
from hfssl.objectives import OBJECTIVES, objective_name, pretrain_schema

PACKAGE = Path(objectives.__file__).parents[1]


def test_pretrain_schema_follows_the_architecture():
    assert pretrain_schema({"model": {"arch": "wav2vec2"}}) is SpeechPretrainConfig
    assert pretrain_schema({"model": {"arch": "bert"}}) is PretrainConfig
    assert pretrain_schema({}) is PretrainConfig
    assert pretrain_schema({"objective": {"name": "contrastive"}}) is SpeechPretrainConfig
    assert pretrain_schema({}, {"model.arch": "wav2vec2-conformer"}) is SpeechPretrainConfig


def test_the_objective_name_decides_before_the_architecture():
    assert pretrain_schema({"objective": {"name": "best-rq"}}) is SpeechPretrainConfig
    assert pretrain_schema({"model": {"arch": "hubert"}, "objective": {"name": "mlm"}}) is PretrainConfig
    assert pretrain_schema({"objective": {"name": "mlm"}}, {"objective.name": "hubert"}) is SpeechPretrainConfig
    # A section with settings but no name no longer makes a recipe speech: the architecture decides.
    assert objective_name({"objective": {"num_negatives": 5}}) == "mlm"
    assert objective_name({"model": {"arch": "wavlm"}}) == "contrastive"


def test_an_unknown_objective_lists_the_choices():
    with pytest.raises(UsageError, match="objective.name: 'electra' is not an objective; choose one of mlm, "):
        pretrain_schema({"objective": {"name": "electra"}})


def test_an_unknown_objective_is_one_line_on_the_command_line(tmp_path):
    done = hfssl("pretrain", "text/mlm-tiny", "--objective.name", "nope", "--train.output_dir", tmp_path, check=False)
    line = one_line_error(done)
    assert "objective.name" in line and all(name in line for name in OBJECTIVES)
    assert not any(tmp_path.iterdir())


def test_every_schema_choice_is_an_objective_of_that_schema():
    """The `objective.name` choices each schema offers are exactly the objectives whose module uses it."""
    for schema in (PretrainConfig, SpeechPretrainConfig):
        choices = typing.get_args(typing.get_type_hints(config_lib.sections(schema)["objective"])["name"])
        assert sorted(choices) == sorted(name for name, module in OBJECTIVES.items() if module.SCHEMA is schema)
        assert schema().objective.name in choices


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_every_module_provides_the_contract(name):
    module = OBJECTIVES[name]
    assert module.UNIT in ("tokens", "audio_seconds")
    for member in ("setup", "rebuild", "export", "describe"):
        assert callable(getattr(module, member)), member
    text = module.describe(config_lib.load(module.SCHEMA, None, {"objective.name": name}))
    assert text.endswith(".") and len(text) > 80


def test_every_objective_class_has_the_hooks():
    from hfssl.objectives.masked_speech import MaskedPrediction
    from hfssl.objectives.mlm import MaskedLM
    from hfssl.objectives.wav2vec2 import Contrastive

    for cls in (MaskedLM, Contrastive, MaskedPrediction):
        assert "loss" in cls.stat_names
        for hook in ("before_forward", "after_optimizer_step", "health", "summarise"):
            assert callable(getattr(cls, hook)), (cls, hook)


def test_no_objective_name_is_compared_outside_the_package():
    """Only the objectives package and the schema spell an objective's name: nothing else branches on one."""
    names = re.compile(r"\"(hubert|best-rq|contrastive|reconstruction|mlm|clm)\"")
    hits = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "objectives" not in path.parts and path.name != "config.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if names.search(line)
    ]
    assert not hits


def test_hooks_run_before_each_forward_and_after_each_optimizer_step(tmp_path, monkeypatch):
    """With 2 micro-batches per optimizer step: `before_forward` sees the steps taken so far twice each, and
    `after_optimizer_step` the new count once per step."""
    from hfssl.objectives import mlm
    from hfssl.pretrain import pretrain

    calls = []

    def recording_setup(cfg, accelerator, work_dir, resuming):
        made = mlm.setup(cfg, accelerator, work_dir, resuming)
        objective = made.objective
        objective.before_forward = lambda step: calls.append(("before", step))
        objective.after_optimizer_step = lambda step: calls.append(("after", step))
        return made

    monkeypatch.setitem(OBJECTIVES, "mlm", types.SimpleNamespace(**{**vars(mlm), "setup": recording_setup}))
    values = {
        "model.num_layers": "1", "model.hidden_size": "32", "model.num_heads": "2", "data.synthetic_documents": "300",
        "data.seq_len": "32", "tokenizer.vocab_size": "300", "train.batch_size": "4", "train.grad_accum": "2",
        "train.max_steps": "3", "train.eval_every": "3", "train.save_every": "3", "train.eval_batches": "1",
        "train.probe_every": "0", "train.output_dir": str(tmp_path / "run"),
    }  # fmt: skip
    metrics = pretrain(config_lib.load(PretrainConfig, "text/mlm-tiny", values))
    assert metrics["steps"] == 3
    assert metrics["probes"] == []  # train.probe_every 0: never
    expected = []
    for step in range(3):
        expected += [("before", step), ("before", step), ("after", step + 1)]
    assert calls == expected
    assert torch.isfinite(torch.tensor(metrics["train_loss"]))
