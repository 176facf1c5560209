"""The objectives package: one dict from objective name to module, the schema a recipe's objective decides, the
contract every module and objective keeps, and the hooks' timing in the loop."""

import re
import types
from pathlib import Path

import pytest
import torch
from helpers import hfssl, one_line_error

from hfssl import objectives
from hfssl.config import SPEECH_ARCHS, PretrainConfig, SpeechPretrainConfig
from hfssl.errors import UsageError
from hfssl.objectives import OBJECTIVES, load_pretrain, masked_speech, mlm, objective_name, pretrain_schema, wav2vec2

PACKAGE = Path(objectives.__file__).parents[1]


def test_pretrain_schema_follows_the_architecture():
    assert pretrain_schema({"model": {"arch": "wav2vec2"}}) is wav2vec2.SCHEMA
    assert pretrain_schema({"model": {"arch": "bert"}}) is mlm.SCHEMA
    assert pretrain_schema({}) is mlm.SCHEMA
    assert pretrain_schema({}, {"model.arch": "wav2vec2-conformer"}) is wav2vec2.SCHEMA


def test_the_objective_name_decides_before_the_architecture():
    assert pretrain_schema({"objective": {"name": "best-rq"}}) is OBJECTIVES["best-rq"].SCHEMA
    assert pretrain_schema({"model": {"arch": "hubert"}, "objective": {"name": "mlm"}}) is mlm.SCHEMA
    assert pretrain_schema({"objective": {"name": "mlm"}}, {"objective.name": "hubert"}) is OBJECTIVES["hubert"].SCHEMA
    # A section with settings but no name no longer makes a recipe speech: the architecture decides.
    assert objective_name({"objective": {"num_negatives": 5}}) == "mlm"
    assert objective_name({"model": {"arch": "wavlm"}}) == "wav2vec2"


def test_each_objective_has_its_own_schema_of_its_modality():
    for name, module in OBJECTIVES.items():
        cfg = module.SCHEMA()
        assert cfg.objective.name == name
        assert isinstance(cfg, SpeechPretrainConfig if objectives.is_speech(name) else PretrainConfig)
    assert len({module.SCHEMA for module in OBJECTIVES.values()}) == len(OBJECTIVES)


def test_the_old_name_of_wav2vec2_upgrades_with_one_log_line(tmp_path, caplog):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  arch: wav2vec2\nobjective:\n  name: contrastive\n  num_negatives: 7\n")
    with caplog.at_level("WARNING", logger="hfssl.objectives"):
        cfg = load_pretrain(recipe)
    assert type(cfg) is wav2vec2.SCHEMA and cfg.objective.name == "wav2vec2" and cfg.objective.num_negatives == 7
    lines = [r.getMessage() for r in caplog.records if r.name == "hfssl.objectives"]
    assert lines == ["objective.name: 'contrastive' is called 'wav2vec2' now; training wav2vec2"]
    assert load_pretrain(None, {"objective.name": "contrastive"}).objective.name == "wav2vec2"


# A setting of one objective given to another: (objective trained, key, value, the objectives that take the key).
FOREIGN = [
    ("mlm", "objective.rtd_weight", "2", "rtd"),
    ("clm", "objective.temperature", "0.1", "simcse"),
    ("mlm", "objective.num_negatives", "5", "wav2vec2"),
    ("wav2vec2", "objective.label_dim", "64", "hubert"),
    ("wav2vec2", "objective.mel_bins", "40", "best-rq or reconstruction"),
    ("hubert", "objective.num_negatives", "5", "wav2vec2"),
    ("hubert", "objective.codebook_size", "16", "best-rq"),
    ("best-rq", "objective.ema_decay", "0.9", "data2vec"),
    ("best-rq", "targets.clusters", "8", "hubert"),
    ("reconstruction", "objective.codebook_dim", "8", "best-rq"),
    ("reconstruction", "objective.generator_size", "0.5", "rtd"),
    ("data2vec", "objective.unmasked_weight", "0.5", "hubert, best-rq or reconstruction"),
    ("data2vec", "objective.num_negatives", "5", "wav2vec2"),
    ("wav2vec2", "tokenizer.vocab_size", "500", "mlm, rtd, clm or simcse"),
    ("mlm", "data.batch_seconds", "4", "wav2vec2, hubert, best-rq, reconstruction or data2vec"),
]


@pytest.mark.parametrize("name, key, value, takers", FOREIGN, ids=[f"{n}-{k}" for n, k, _, _ in FOREIGN])
def test_another_objectives_setting_is_one_line_naming_who_takes_it(name, key, value, takers, tmp_path):
    message = f"{key}: only objective.name {takers} takes it; this recipe trains {name}"
    with pytest.raises(UsageError) as err:  # on the command line
        load_pretrain(None, {"objective.name": name, key: value})
    assert str(err.value) == message
    section, field = key.split(".")
    recipe = tmp_path / "r.yaml"  # in a recipe
    other = f"  {field}: {value}\n" if section == "objective" else f"{section}:\n  {field}: {value}\n"
    recipe.write_text(f"objective:\n  name: {name}\n" + other)
    with pytest.raises(UsageError) as err:
        load_pretrain(recipe)
    assert str(err.value) == message


def test_a_targets_section_without_hubert_is_refused_even_at_its_defaults(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("objective:\n  name: best-rq\ntargets:\n  clusters: 100\n")
    with pytest.raises(
        UsageError, match="^targets.clusters: only objective.name hubert takes it; this recipe trains best-rq$"
    ):
        load_pretrain(recipe)


SPEECH_RECIPES = {
    "wav2vec2": "speech/wav2vec2-tiny",
    "hubert": "speech/hubert-tiny",
    "best-rq": "speech/best-rq-tiny",
    "reconstruction": "speech/recon-tiny",
    "data2vec": "speech/data2vec-w2v-bert-tiny",
}


@pytest.mark.parametrize("name", SPEECH_RECIPES)
def test_a_foreign_speech_setting_is_one_line_on_the_command_line(name, tmp_path):
    """Speech used to accept every speech objective's settings in silence; each objective now refuses the others'."""
    foreign = "objective.codebook_size" if name != "best-rq" else "objective.num_negatives"
    recipe = SPEECH_RECIPES[name]
    done = hfssl("pretrain", recipe, f"--{foreign}", "16", "--train.output_dir", tmp_path / "run", check=False)
    line = one_line_error(done)
    assert line.startswith(f"hfssl: error: {foreign}: only objective.name ") and line.endswith(f"trains {name}")
    assert not any(tmp_path.iterdir())


def test_a_runs_own_older_config_loads_with_other_objectives_defaults_dropped(tmp_path):
    """config.yaml written before each objective had its own settings held every speech objective's, at their
    defaults, and a targets section: `hfssl export` still reads it, and refuses a changed foreign value."""
    old = (
        "model:\n  arch: wav2vec2\nobjective:\n  name: contrastive\n  num_negatives: 7\n  label_dim: 256\n"
        "  codebook_size: 8192\n  ema_decay: 0.999\n  mel_bins: 80\ntargets:\n  clusters: 100\n  dir: null\n"
    )
    saved = tmp_path / "config.yaml"
    saved.write_text(old)
    cfg = load_pretrain(saved, saved=True)
    assert type(cfg) is wav2vec2.SCHEMA and cfg.objective.num_negatives == 7
    saved.write_text(old.replace("label_dim: 256", "label_dim: 64"))
    with pytest.raises(UsageError, match="objective.label_dim: only objective.name hubert takes it"):
        load_pretrain(saved, saved=True)
    with pytest.raises(UsageError, match="^objective.label_dim: only objective.name hubert"):  # a recipe is no run's
        load_pretrain(tmp_path / "config.yaml")


def test_an_unknown_objective_lists_the_choices():
    with pytest.raises(UsageError, match="objective.name: 'electra' is not an objective; choose one of mlm, "):
        pretrain_schema({"objective": {"name": "electra"}})


def test_an_unknown_objective_is_one_line_on_the_command_line(tmp_path):
    done = hfssl("pretrain", "text/mlm-tiny", "--objective.name", "nope", "--train.output_dir", tmp_path, check=False)
    line = one_line_error(done)
    assert "objective.name" in line and all(name in line for name in OBJECTIVES)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_every_module_provides_the_contract(name):
    module = OBJECTIVES[name]
    assert module.UNIT in ("tokens", "audio_seconds")
    for member in ("setup", "rebuild", "export", "describe"):
        assert callable(getattr(module, member)), member
    text = module.describe(load_pretrain(None, {"objective.name": name}))
    assert text.endswith(".") and len(text) > 80


def objective_classes() -> dict[str, type]:
    """Every objective module's trained class (what `setup` hands the loop), found by its `stat_names`."""
    found = {}
    for module in {*OBJECTIVES.values(), masked_speech}:
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, torch.nn.Module) and hasattr(value, "stat_names"):
                found[value.__qualname__] = value
    return found


def test_every_objective_class_has_the_hooks():
    classes = objective_classes()
    expected = {
        "MaskedLM", "ReplacedTokenDetection", "CausalLM", "SimCSE", "Contrastive", "MaskedPrediction", "TeacherStudent"
    }  # fmt: skip
    assert set(classes) == expected
    for cls in classes.values():
        assert cls.stat_names and all(isinstance(name, str) for name in cls.stat_names)
        for hook in ("before_forward", "after_optimizer_step", "health", "summarise", "forward"):
            assert callable(getattr(cls, hook)) and getattr(cls, hook) is not getattr(torch.nn.Module, hook, None), (
                cls,
                hook,
            )


def test_no_objective_name_is_compared_outside_the_package():
    """Only the objectives package spells an objective's name (the config package neither): nothing else branches
    on one. Names that are also architectures (hubert, wav2vec2) are left out of the search."""
    spelled = "|".join(re.escape(n) for n in [*OBJECTIVES, *objectives.RENAMED] if n not in SPEECH_ARCHS)
    names = re.compile(rf"[\"'](?:{spelled})[\"']")
    hits = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "objectives" not in path.parts
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
    metrics = pretrain(load_pretrain("text/mlm-tiny", values))
    assert metrics["steps"] == 3
    assert metrics["probes"] == []  # train.probe_every 0: never
    expected = []
    for step in range(3):
        expected += [("before", step), ("before", step), ("after", step + 1)]
    assert calls == expected
    assert torch.isfinite(torch.tensor(metrics["train_loss"]))
