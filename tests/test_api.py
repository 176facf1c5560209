"""hfssl from Python: a fresh process that only imports hfssl pretrains, fine-tunes, evaluates and exports a tiny
model; the settings' two spellings; errors raised, not exits; the command line as a layer over the same functions;
`import hfssl`, `hfssl --help` and `hfssl --version` without torch."""

import importlib
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import env

import hfssl
from hfssl import api
from hfssl.__main__ import main
from hfssl.config import FinetuneConfig, ProbeConfig, TokenizerTrainConfig
from hfssl.objectives.mlm import MLMConfig

END_TO_END = """
import json, sys
import hfssl

assert "torch" not in sys.modules  # import hfssl alone loads none of the stack
tiny = {"model.num_layers": 2, "model.hidden_size": 64, "model.num_heads": 2, "data.synthetic_documents": 500,
        "data.seq_len": 64, "tokenizer.vocab_size": 1000, "train.batch_size": 16, "train.lr": 3e-3,
        "train.probe_every": None}
run = hfssl.pretrain("text/mlm-tiny", tiny, train__max_steps=10, train__eval_every=10, train__save_every=10,
                     train__output_dir="runs/mlm")
tuned = hfssl.finetune("text/classify-tiny", model__name_or_path=run.path, training__output_dir="runs/topics",
                       data__synthetic_examples=160, data__max_length=64, training__num_train_epochs=1,
                       training__per_device_train_batch_size=16, finetune__min_steps=0, finetune__min_validation=0)
suite = hfssl.evaluate("text/evaluate-tiny", model__name_or_path=run.path, suite__output_dir="runs/suite",
                       suite__tasks=["topics-probe"], suite__seeds=[0], data__synthetic_examples=160,
                       data__max_length=64)
exported = hfssl.export("runs/mlm", "runs/export")
print(json.dumps({"pretrained": [str(run.path), run.metrics["eval_loss"], run.metrics["steps"]],
                  "tuned": [str(tuned.path), tuned.metrics["test"]["accuracy"]],
                  "suite": [str(suite.path), suite.metrics["average"]], "exported": str(exported)}))
"""


def test_a_fresh_process_that_imports_only_hfssl_pretrains_finetunes_evaluates_and_exports(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", END_TO_END], cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    final, eval_loss, steps = out["pretrained"]
    assert final == "runs/mlm/final" and steps == 10 and 0 < eval_loss < 20
    assert json.loads((tmp_path / "runs/mlm/metrics.json").read_text())["eval_loss"] == eval_loss
    assert out["tuned"][0] == "runs/topics/final" and (tmp_path / "runs/topics/final/model.safetensors").is_file()
    assert 0 <= out["tuned"][1] <= 1
    suite, average = out["suite"]
    assert json.loads((tmp_path / suite / "results.json").read_text())["average"] == average
    assert (tmp_path / out["exported"] / "model.safetensors").is_file()


def test_import_hfssl_help_and_version_load_no_torch():
    code = textwrap.dedent(
        """
        import contextlib, io, sys
        import hfssl
        from hfssl.__main__ import main
        for argv in (["--help"], ["--version"]):
            with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):
                main(argv)
            print(out.getvalue().strip().splitlines()[-1])
        print("torch" in sys.modules, "transformers" in sys.modules)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True, check=True)
    *_, version, loaded = done.stdout.strip().splitlines()
    assert version == f"hfssl {hfssl.__version__}" and loaded == "False False"


def test_every_public_name_resolves_and_the_functions_outlive_their_modules_import():
    importlib.import_module("hfssl.pretrain")  # modules with the API's names: loading them rebinds nothing
    importlib.import_module("hfssl.export")
    from hfssl import export, pretrain

    assert pretrain is api.pretrain and export is api.export and hfssl.pretrain is api.pretrain
    assert callable(sys.modules["hfssl.pretrain"].setup)  # the loop's module, reached by its own name
    for name in hfssl.__all__:
        assert getattr(hfssl, name) is not None, name
    assert issubclass(hfssl.UsageError, hfssl.HfsslError) and issubclass(hfssl.TrainingStopped, hfssl.HfsslError)
    with pytest.raises(AttributeError):
        hfssl.no_such_name  # noqa: B018


def test_settings_as_a_dict_of_dotted_keys_or_as_keywords_the_keywords_winning():
    by_dict = hfssl.load_recipe("text/mlm-tiny", {"train.max_steps": 7, "train.lr": "5e-4", "data.seq_len": 64})
    by_keywords = hfssl.load_recipe("text/mlm-tiny", train__max_steps=7, train__lr=5e-4, data__seq_len="64")
    assert isinstance(by_dict, MLMConfig) and by_dict == by_keywords
    assert (by_dict.train.max_steps, by_dict.train.lr, by_dict.data.seq_len) == (7, 5e-4, 64)
    both = hfssl.load_recipe("text/mlm-tiny", {"train.max_steps": 7}, train__max_steps=9)
    assert both.train.max_steps == 9
    paths = hfssl.load_recipe("text/mlm-tiny", train__output_dir=Path("runs") / "x", train__probe_every=None)
    assert paths.train.output_dir == str(Path("runs") / "x") and paths.train.probe_every is None


def test_load_recipe_gives_each_command_its_schema_and_checks_a_config_again():
    assert isinstance(hfssl.load_recipe("text/classify-tiny", command="finetune"), FinetuneConfig)
    assert isinstance(hfssl.load_recipe("text/probe-tiny", command="probe"), ProbeConfig)
    assert isinstance(hfssl.load_recipe(None, command="train_tokenizer"), TokenizerTrainConfig)
    cfg = hfssl.load_recipe("text/mlm-tiny")
    again = hfssl.load_recipe(cfg, train__max_steps=5)
    assert type(again) is MLMConfig and again.train.max_steps == 5 and again.model == cfg.model
    cfg.train.lr = -1.0  # changed by hand: checked when it is loaded again
    with pytest.raises(hfssl.UsageError, match="train.lr"):
        hfssl.load_recipe(cfg)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: hfssl.load_recipe("text/mlm-tiny", train__max_steps="abc"), "train.max_steps: expected an integer"),
        (lambda: hfssl.load_recipe("text/mlm-tiny", train__max_steps=2.5), "train.max_steps: expected an integer"),
        (lambda: hfssl.load_recipe("text/mlm-tiny", train__lrate=1), "unknown key 'train.lrate'"),
        (lambda: hfssl.load_recipe("text/mlm-tiny", max_steps=1), "max_steps: a setting is section__key"),
        (lambda: hfssl.load_recipe("text/mlm-tiny", command="push"), "command: 'push' takes no recipe"),
        (lambda: hfssl.load_recipe("no/such-recipe"), "no/such-recipe: no such recipe file"),
        (lambda: hfssl.pretrain(FinetuneConfig()), "a FinetuneConfig is not the config of a pretrain recipe"),
        (lambda: hfssl.pretrain("text/mlm-tiny", train__max_steps=0), "train.max_steps: must be positive"),
        (lambda: hfssl.finetune("text/classify-tiny", hub__push_checkpoints=True), "hub.push_checkpoints"),
        (lambda: hfssl.export("no/such/run", "out"), "no/such/run"),
    ],
    ids=["string", "float", "unknown", "no-section", "command", "recipe", "config", "pretrain", "finetune", "export"],
)
def test_bad_input_raises_usage_error_with_the_command_lines_message(call, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(hfssl.UsageError, match=re.escape(message)):
        call()
    assert list(tmp_path.iterdir()) == []


def test_the_command_line_hands_its_options_to_the_api_and_prints_what_it_returns(monkeypatch, capsys):
    calls = []

    def probe(recipe, overrides, overwrite=False):
        calls.append((recipe, overrides, overwrite))
        return api.Result(Path("runs/p.json"), {"accuracy": 0.5, "f1": 0.25, "layer": 2, "from_scratch": False})

    monkeypatch.setattr(api, "probe", probe)
    main(["probe", "text/probe-tiny", "--probe.layer", "2", "--data.synthetic_examples", "100", "--overwrite"])
    assert calls == [("text/probe-tiny", {"probe.layer": "2", "data.synthetic_examples": "100"}, True)]
    assert capsys.readouterr().out == "probe accuracy 0.5000, macro F1 0.2500 (layer 2); runs/p.json\n"
