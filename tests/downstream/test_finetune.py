"""`hfssl finetune` on an hfssl export: the run, its outputs, loading without hfssl, and bad input."""

import json
import re
import shutil
import subprocess
import sys

import pytest
import torch
from huggingface_hub import ModelCard

from hfssl.__main__ import main
from hfssl.data.synthetic import TOPICS

FAST = {
    "data.synthetic_examples": "400",
    "data.max_length": "64",
    "training.num_train_epochs": "2",
    "training.per_device_train_batch_size": "16",
    "training.learning_rate": "1e-3",
    "finetune.min_steps": "0",  # the epochs decide, and 40 validation examples choose (the few-label tests below)
    "finetune.min_validation": "0",
}


def cli(*args) -> list[str]:
    return [str(a) for a in args]


def options(values: dict) -> list[str]:
    return [item for key, value in values.items() for item in (f"--{key}", str(value))]


@pytest.fixture(scope="module")
def finetuned(mlm_export, tmp_path_factory):
    out = tmp_path_factory.mktemp("finetune") / "run"
    main(
        cli(
            "finetune",
            "text/classify-tiny",
            "--model.name_or_path",
            mlm_export,
            "--training.output_dir",
            out,
            *options(FAST),
        )
    )
    return out


def test_outputs_metrics_and_card(finetuned):
    metrics = json.loads((finetuned / "metrics.json").read_text())
    for split in ("validation", "test"):
        assert set(metrics[split]) >= {"accuracy", "f1", "precision", "recall", "matthews_correlation", "loss"}
        assert 0.0 <= metrics[split]["accuracy"] <= 1.0
    assert metrics["labels"] == sorted(TOPICS)
    final = finetuned / "final"
    assert (final / "model.safetensors").is_file() and (final / "tokenizer.json").is_file()
    config = json.loads((final / "config.json").read_text())
    assert sorted(config["id2label"].values()) == sorted(TOPICS)
    card = ModelCard.load(final / "README.md")
    results = card.data.eval_results
    assert {r.metric_type for r in results} == {"accuracy", "f1", "precision", "recall", "matthews_correlation"}
    accuracy = next(r.metric_value for r in results if r.metric_type == "accuracy")
    assert accuracy == pytest.approx(metrics["test"]["accuracy"], abs=1e-4)
    assert card.data.pipeline_tag == "text-classification"
    assert not list(finetuned.glob("final.tmp*"))


def test_pipeline_loads_it_without_hfssl(finetuned):
    code = f"""
import sys
from transformers import pipeline
classify = pipeline("text-classification", model={str(finetuned / "final")!r})
out = classify("Lena chopped an onion and boiled the soup in the kitchen.")
assert "hfssl" not in sys.modules
print(out[0]["label"])
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() in TOPICS


def test_learns_the_topics_from_the_pretrained_model(finetuned):
    # 8 classes: chance is 0.125.
    metrics = json.loads((finetuned / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.3


# --------------------------------------------------------------------------- bad input


def run_error(capsys, *args) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(cli(*args))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hfssl: error: "), err
    return err[0]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


ROWS = [{"sentence": f"text number {i}", "label": ["good", "bad"][i % 2]} for i in range(40)]


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing_label", "no column 'label'"),
        ("missing_text", "no column 'sentence'"),
        ("unseen_label", "label 'meh' does not occur in the training data"),
        ("single_class", "single class"),
        ("empty_split", "is empty"),
        ("fraction_zero", "data.label_fraction: must be in (0, 1]"),
        ("fraction_above_one", "data.label_fraction: must be in (0, 1]"),
        ("no_tokenizer", "has no loadable tokenizer"),
        ("negative_learning_rate", "training.learning_rate: must be positive, got -1.0"),
        ("unknown_metric", "training.metric_for_best_model: 'auroc' is not a metric of this run; choose one of "),
        ("score_not_a_number", "row 3 has label 'good', not a number"),
        ("regression_metric", "'f1' is not a metric of this run; choose one of pearson, spearman, loss"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path, mlm_export, case, expected):
    train = write_jsonl(tmp_path / "train.jsonl", ROWS)
    valid = write_jsonl(tmp_path / "valid.jsonl", ROWS[:10])
    model = mlm_export
    extra = []
    if case == "missing_label":
        train = write_jsonl(tmp_path / "train.jsonl", [{"sentence": r["sentence"]} for r in ROWS])
    elif case == "missing_text":
        train = write_jsonl(tmp_path / "train.jsonl", [{"text": r["sentence"], "label": r["label"]} for r in ROWS])
    elif case == "unseen_label":
        valid = write_jsonl(tmp_path / "valid.jsonl", ROWS[:9] + [{"sentence": "so so", "label": "meh"}])
    elif case == "single_class":
        train = write_jsonl(tmp_path / "train.jsonl", [dict(r, label="good") for r in ROWS])
    elif case == "empty_split":
        valid.write_text("")
    elif case == "fraction_zero":
        extra = ["--data.label_fraction", "0"]
    elif case == "fraction_above_one":
        extra = ["--data.label_fraction", "1.5"]
    elif case == "negative_learning_rate":
        extra = ["--training.learning_rate", "-1"]
    elif case == "unknown_metric":
        extra = ["--training.metric_for_best_model", "auroc"]
    elif case in ("score_not_a_number", "regression_metric"):
        scores = [dict(r, label=float(i % 5)) for i, r in enumerate(ROWS)]
        if case == "score_not_a_number":
            scores[2]["label"] = "good"
        train = write_jsonl(tmp_path / "train.jsonl", scores)
        valid = write_jsonl(tmp_path / "valid.jsonl", scores[:10] if case == "score_not_a_number" else scores[3:13])
        extra = ["--data.regression", "true"]
        extra += ["--training.metric_for_best_model", "spearman" if case == "score_not_a_number" else "f1"]
    elif case == "no_tokenizer":
        model = tmp_path / "bare"
        shutil.copytree(mlm_export, model)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
            (model / name).unlink(missing_ok=True)
    out = tmp_path / "out"
    message = run_error(
        capsys,
        "finetune",
        "text/classify-tiny",
        "--model.name_or_path",
        model,
        "--data.train",
        train,
        "--data.validation",
        valid,
        "--data.text_column",
        "sentence",
        "--training.output_dir",
        out,
        *extra,
    )
    assert expected in message
    assert not out.exists()


def test_missing_model_directory_is_named(capsys, tmp_path):
    message = run_error(capsys, "finetune", "text/classify-tiny", "--model.name_or_path", tmp_path / "no" / "model")
    assert "no such directory" in message and str(tmp_path / "no" / "model") in message


def test_a_hub_token_is_never_written(mlm_export, tmp_path):
    """`--training.hub_token` reaches the Hub client through the environment, not the Trainer's saved arguments."""
    out = tmp_path / "out"
    token = "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"
    args = ["finetune", "text/classify-tiny", "--model.name_or_path", mlm_export, "--training.output_dir", out,
            "--data.synthetic_examples", "100", "--data.max_length", "32", "--training.num_train_epochs", "1",
            "--training.hub_token", token, "--finetune.min_steps", "0"]  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "hfssl", *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    written = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "training_args.bin" for p in written)
    assert not [p for p in written if token.encode() in p.read_bytes()]
    assert token not in done.stdout + done.stderr


# --------------------------------------------------------------------------- few labels: head rate, frozen encoder


def test_head_learning_rate_is_its_own_parameter_group(mlm_export, tmp_path):
    from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

    from hfssl.downstream.finetune import grouped_optimizer, head_parameter_names

    model = AutoModelForSequenceClassification.from_pretrained(mlm_export, num_labels=3)
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-4, weight_decay=0.01, report_to="none")
    optimizer = grouped_optimizer(Trainer(model=model, args=args), head_learning_rate=3e-3)
    names = {id(p): n for n, p in model.named_parameters()}
    head = head_parameter_names(model)
    assert head and all(not n.startswith(model.base_model_prefix + ".") for n in head)
    seen = set()
    for group in optimizer.param_groups:
        members = {names[id(p)] for p in group["params"]}
        assert group["lr"] == (3e-3 if members <= head else 1e-4) and (members <= head or not members & head)
        assert group["weight_decay"] in (0.0, 0.01)
        seen |= members
    assert seen == set(names.values())  # every parameter in exactly one group
    assert any(g["weight_decay"] == 0.0 for g in optimizer.param_groups)  # biases and norms do not decay


def test_frozen_encoder_trains_only_the_head_and_spec_augment_is_set(speech_export, tmp_path):
    from conftest import finetune_tiny
    from safetensors.torch import load_file

    out = finetune_tiny(
        speech_export, tmp_path / "kw", "speech/keywords-tiny",
        **{"data.synthetic_examples": "60", "data.max_seconds": "1.0", "finetune.freeze_encoder": "true",
           "finetune.head_learning_rate": "1e-2", "model.mask_time_prob": "0.2", "model.mask_time_length": "3",
           "model.layer_sum": "true"},
    )  # fmt: skip
    before = load_file(str(speech_export / "model.safetensors"))
    after = load_file(str(out / "final" / "model.safetensors"))
    prefix = "wav2vec2."
    encoder = {k.removeprefix(prefix): v for k, v in after.items() if k.startswith(prefix)}
    assert encoder.keys() == before.keys() and all(torch.equal(encoder[k], before[k]) for k in before)
    config = json.loads((out / "final" / "config.json").read_text())
    assert config["mask_time_prob"] == 0.2 and config["mask_time_length"] == 3
    # the learnt mix of layers is the head's (trained), saved, and read back by the plain transformers class
    assert config["use_weighted_layer_sum"] is True and "layer_weights" in after
    assert not torch.equal(
        after["layer_weights"], torch.ones_like(after["layer_weights"]) / len(after["layer_weights"])
    )
    card = ModelCard.load(out / "final" / "README.md")
    assert "encoder stayed frozen" in card.text and "0.01" in card.text and "weighted sum" in card.text


@pytest.mark.parametrize(
    "change, expected",
    [
        (["--finetune.head_learning_rate", "0"], "finetune.head_learning_rate: must be positive"),
        (["--model.mask_time_prob", "1.5"], "model.mask_time_prob: must be in [0, 1)"),
        (["--model.mask_time_prob", "0.1"], "model.mask_time_prob: SpecAugment is for speech encoders"),
        (["--model.layer_sum", "true"], "model.layer_sum: a weighted sum of layers is for speech encoders"),
    ],
)
def test_few_label_settings_out_of_range_are_one_line(capsys, tmp_path, mlm_export, change, expected):
    out = tmp_path / "out"
    message = run_error(
        capsys, "finetune", "text/classify-tiny", "--model.name_or_path", mlm_export, "--training.output_dir", out,
        *change,
    )  # fmt: skip
    assert expected in message
    assert not out.exists()


# --------------------------------------------------------------------------- few labels: what selects the checkpoint


@pytest.mark.parametrize("mode", ["fraction", "none", "full"])
def test_few_label_validation_draws_the_same_fraction_by_default(mode):
    from hfssl.config import LabelledDataArgs
    from hfssl.data.labelled import load_labelled

    whole = load_labelled(LabelledDataArgs(synthetic_examples=400), seed=0)
    few = load_labelled(LabelledDataArgs(synthetic_examples=400, label_fraction=0.25, few_label_validation=mode))
    assert few.full_validation == len(whole.validation) == 40
    assert len(few.train) < len(whole.train) / 3
    if mode == "fraction":
        assert 8 <= len(few.validation) <= 14  # about a quarter of 40, at least one per topic seen there
        assert set(few.validation["text"]) <= set(whole.validation["text"])
    else:
        assert len(few.validation) == 40


@pytest.mark.parametrize("mode", ["fraction", "none"])
def test_few_label_runs_select_on_few_labels_or_none(mlm_export, tmp_path, mode):
    from conftest import finetune_tiny

    out = finetune_tiny(
        mlm_export, tmp_path / "run", "text/classify-tiny",
        **FAST, **{"data.label_fraction": "0.25", "data.few_label_validation": mode},
    )  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    last = max(out.glob("checkpoint-*"), key=lambda path: int(path.name.rpartition("-")[2]))
    state = json.loads((last / "trainer_state.json").read_text())
    evaluations = [entry for entry in state["log_history"] if "eval_loss" in entry]
    if mode == "none":
        assert metrics["selection"].startswith("none: the last step") and not evaluations
        assert state["best_model_checkpoint"] is None
    else:
        assert "of its 40 examples: the training labels' fraction" in metrics["selection"]
        assert len(evaluations) == 2 and state["best_model_checkpoint"] is not None  # one per epoch, then the best
    card = ModelCard.load(out / "final" / "README.md")
    assert metrics["selection"] in card.text


# --------------------------------------------------------------------------- regression (STS-B's kind of labels)


def test_a_regression_head_learns_scores_and_loads_without_hfssl(mlm_export, tmp_path):
    from conftest import finetune_tiny

    fillers = "friend morning sister brother green week day dollars pill".split()  # words the tiny tokenizer knows
    rows = []
    for i in range(240):
        cows = i % 6  # the score to predict, 0-5: how many times the second text says "cow"
        first = [fillers[(i + k) % 9] for k in range(5)]
        second = ["cow"] * cows + [fillers[(i + 3 + k) % 9] for k in range(5 - cows)]
        rows.append({"text": " ".join(first), "text_pair": " ".join(second), "label": float(cows)})
    data = {split: write_jsonl(tmp_path / f"{split}.jsonl", rows[a:b])
            for split, a, b in (("train", 0, 200), ("validation", 200, 220), ("test", 220, 240))}  # fmt: skip
    out = finetune_tiny(
        mlm_export, tmp_path / "sts", "text/classify-tiny",
        **{"data.train": str(data["train"]), "data.validation": str(data["validation"]), "data.test": str(data["test"]),
           "data.text_pair_column": "text_pair", "data.regression": "true", "data.max_length": "32",
           "training.metric_for_best_model": "spearman", "training.num_train_epochs": "5"},
    )  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["test"]) == {"pearson", "spearman", "loss"} and metrics["labels"] == []
    assert metrics["test"]["spearman"] > 0.5  # the cows are there to be counted
    config = json.loads((out / "final" / "config.json").read_text())
    assert config["problem_type"] == "regression" and len(config["id2label"]) == 1
    card = ModelCard.load(out / "final" / "README.md")
    assert {r.metric_type for r in card.data.eval_results} == {"pearson", "spearman"}
    assert "regressor" in card.text and "squared error" in card.text
    code = f"""
import sys
from transformers import pipeline
score = pipeline("text-classification", model="{out / "final"}")(
    {{"text": "friend morning sister", "text_pair": "cow cow green"}}, function_to_apply="none"
)["score"]
assert "hfssl" not in sys.modules and isinstance(score, float)
print(score)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("frozen", [True, False])
def test_audio_objective_says_whether_the_front_end_was_frozen(frozen):
    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    from hfssl.config import ClassifierModelArgs, FinetuneConfig
    from hfssl.downstream.finetune import describe_finetune_objective

    config = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32, 32),
        conv_stride=(5, 2),
        conv_kernel=(10, 3),
        num_labels=3,
    )
    model = Wav2Vec2ForSequenceClassification(config)
    if frozen:
        model.freeze_feature_encoder()
    cfg = FinetuneConfig(model=ClassifierModelArgs(mask_time_prob=0.1))
    text = describe_finetune_objective(cfg, model)
    assert "from the pretrained weights" in text and "cross-entropy over the 3 labels" in text
    assert ("feature encoder stayed frozen" in text) is frozen
    assert "SpecAugment masked the encoder's inputs while training (mask_time_prob 0.1)" in text


def test_a_frozen_encoder_is_said_to_be_frozen():
    from transformers import BertConfig, BertForSequenceClassification

    from hfssl.config import FinetuneArgs, FinetuneConfig
    from hfssl.downstream.finetune import describe_finetune_objective

    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, num_labels=2)
    model = BertForSequenceClassification(config)
    text = describe_finetune_objective(FinetuneConfig(finetune=FinetuneArgs(freeze_encoder=True)), model)
    assert "The encoder stayed frozen: only the head was trained" in text
    assert "stayed frozen" not in describe_finetune_objective(FinetuneConfig(), model)


# --------------------------------------------------------------------------- few labels: a step budget, no noisy choice


def few_label_cfg(**changes):
    from hfssl import config as config_lib
    from hfssl.config import FinetuneConfig

    return config_lib.load(FinetuneConfig, "text/classify-tiny", {k: str(v) for k, v in changes.items()})


@pytest.mark.parametrize(
    "n_train, n_validation, expected",
    [
        (40, 5, {"max_steps": 300, "eval_strategy": "no", "load_best_model_at_end": False}),  # 40 x 10 / 32: 20 steps
        (40, 500, {"max_steps": 300}),
        (10_000, 5, {"eval_strategy": "no", "load_best_model_at_end": False}),  # 3,130 steps by the epochs
        (10_000, 500, {}),
    ],
)
def test_few_labels_get_a_step_budget_and_no_choice_on_a_handful(n_train, n_validation, expected, tmp_path):
    from hfssl.downstream.finetune import few_label_changes, training_arguments

    cfg = few_label_cfg(**{"training.output_dir": tmp_path, "training.num_train_epochs": 10})
    assert cfg.finetune.min_steps == 300 and cfg.finetune.min_validation == 100  # the defaults this test reads
    assert few_label_changes(cfg, training_arguments(cfg), n_train, n_validation) == expected


def test_a_recipes_own_step_count_or_no_selection_is_left_alone(tmp_path):
    from hfssl.downstream.finetune import few_label_changes, training_arguments

    cfg = few_label_cfg(**{"training.output_dir": tmp_path})
    own = training_arguments(cfg, max_steps=50, eval_strategy="no", load_best_model_at_end=False)
    assert few_label_changes(cfg, own, 40, 5) == {}
    off = few_label_cfg(**{"training.output_dir": tmp_path, "finetune.min_steps": 0, "finetune.min_validation": 0})
    assert few_label_changes(off, training_arguments(off), 40, 5) == {}


def test_a_few_label_run_trains_its_budget_and_keeps_the_last_step(mlm_export, tmp_path):
    from conftest import finetune_tiny

    out = finetune_tiny(
        mlm_export, tmp_path / "run", "text/classify-tiny",
        **FAST | {"data.label_fraction": "0.1", "finetune.min_steps": "12", "finetune.min_validation": "100",
                  "finetune.early_stopping_patience": "1"},
    )  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_examples"] < 40 and metrics["steps"] == 12  # 2 epochs of 2 batches would be 4 steps
    assert metrics["selection"].startswith("none: the last step of at least 12 steps (finetune.min_steps) was kept")
    assert "fewer than finetune.min_validation 100" in metrics["selection"]
    card = ModelCard.load(out / "final" / "README.md")
    assert metrics["selection"] in card.text


def test_layer_wise_decay_scales_each_layer_below_the_top(mlm_export, speech_export, tmp_path):
    from transformers import (
        AutoModelForAudioClassification,
        AutoModelForSequenceClassification,
        Trainer,
        TrainingArguments,
    )

    from hfssl.downstream.finetune import grouped_optimizer, head_parameter_names, layer_rate_factors

    for model in (
        AutoModelForSequenceClassification.from_pretrained(mlm_export, num_labels=3),
        AutoModelForAudioClassification.from_pretrained(speech_export, num_labels=3),
    ):
        layers = model.config.num_hidden_layers
        factors = layer_rate_factors(model, 0.5)
        assert factors.keys() == {n for n, _ in model.named_parameters()} - head_parameter_names(model)
        by_layer = {}
        for name, factor in factors.items():
            index = next((int(part) for part in name.split(".") if part.isdigit()), None)
            if ".layers." in name or ".layer." in name:
                by_layer.setdefault(index, set()).add(factor)
        assert sorted(by_layer) == list(range(layers))
        assert all(by_layer[i] == {0.5 ** (layers - 1 - i)} for i in range(layers))  # the top layer at full rate
        embeddings = [f for n, f in factors.items() if "embed" in n or "feature_" in n]
        assert embeddings and set(embeddings) == {0.5**layers}  # below the first layer
        args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-3, report_to="none")
        optimizer = grouped_optimizer(Trainer(model=model, args=args), None, 0.5)
        rates = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                assert rates[id(parameter)] == pytest.approx(1e-3 * factors.get(name, 1.0)), name


def test_linear_probe_first_moves_only_the_head_then_everything(mlm_export, tmp_path):
    from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

    from hfssl.downstream.finetune import ProbeFirst, head_parameter_names

    model = AutoModelForSequenceClassification.from_pretrained(mlm_export, num_labels=2)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    head = head_parameter_names(model)
    data = [{"input_ids": torch.tensor([2, 5 + i % 7, 9, 3]), "labels": torch.tensor(i % 2)} for i in range(32)]
    seen = {}

    class Watch(ProbeFirst):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (2, 3):  # after the probe phase's last step, and after one more
                moved = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), start[n])}
                seen[state.global_step] = moved
            super().on_step_end(args, state, control, **kwargs)

    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=8, learning_rate=1e-2, report_to="none",
        save_strategy="no", logging_strategy="no", disable_tqdm=True,
    )  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[Watch(model, 2)])
    trainer.train()
    assert seen[2] and seen[2] <= head  # two steps of a linear probe: the encoder untouched
    assert seen[3] - head  # then the encoder trains too
    assert all(p.requires_grad for p in model.parameters())


def test_few_label_settings_out_of_range_are_refused():
    from hfssl.errors import UsageError

    for key, value, message in (
        ("finetune.min_steps", -1, "finetune.min_steps: must not be negative"),
        ("finetune.layer_lr_decay", 1.5, "finetune.layer_lr_decay: must be in (0, 1]"),
        ("finetune.probe_steps", -2, "finetune.probe_steps: must not be negative"),
    ):
        with pytest.raises(UsageError, match=re.escape(message)):
            few_label_cfg(**{key: value})
    with pytest.raises(UsageError, match="finetune.probe_steps: finetune.freeze_encoder trains only the head"):
        few_label_cfg(**{"finetune.probe_steps": 5, "finetune.freeze_encoder": "true"})


def test_the_same_seed_ends_on_the_same_weights(mlm_export, tmp_path):
    """Fine-tuning repeats exactly on one machine: the new head's initialisation follows the seed as the rest does."""
    from conftest import finetune_tiny
    from safetensors.torch import load_file

    changes = {"data.synthetic_examples": "60", "data.max_length": "32"}
    runs = [finetune_tiny(mlm_export, tmp_path / f"run{i}", "text/classify-tiny", **changes) for i in range(2)]
    first, second = (load_file(str(run / "final" / "model.safetensors")) for run in runs)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert (
        json.loads((runs[0] / "metrics.json").read_text())["test"]
        == json.loads((runs[1] / "metrics.json").read_text())["test"]
    )
