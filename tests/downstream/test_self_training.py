"""Self-training on an unlabeled pool: which pseudo-labels are kept, the students' noise, and a fine-tuning run that
labels its pool, trains a student on both and says so in its metrics and card."""

import json
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
from transformers import BertConfig, Wav2Vec2Config

from hfssl import config as config_lib
from hfssl.config import FinetuneConfig, LabelledDataArgs
from hfssl.data.labelled import load_labelled
from hfssl.downstream.finetune import finetune
from hfssl.downstream.self_training import at_chance, describe, pseudo_labels, student_noise
from hfssl.errors import UsageError


def test_pseudo_labels_keep_the_confident_and_cap_each_class_by_its_labels():
    probabilities = np.array([
        [0.95, 0.05], [0.97, 0.03], [0.91, 0.09], [0.60, 0.40], [0.02, 0.98], [0.50, 0.50], [0.99, 0.01],
    ])  # fmt: skip
    s = SimpleNamespace(threshold=0.9, per_class=2.0)
    chosen, labels = pseudo_labels(probabilities, np.array([1, 3]), s)
    # class 0: four confident rows, at most 2 x 1 labelled -> the two most confident (6: 0.99, 1: 0.97)
    assert chosen.tolist() == [1, 4, 6] and labels.tolist() == [0, 1, 0]
    chosen, _ = pseudo_labels(probabilities, np.array([1, 3]), SimpleNamespace(threshold=0.999, per_class=2.0))
    assert chosen.size == 0


def test_students_get_at_least_the_noise_asked_for_and_never_less_than_their_own():
    s = SimpleNamespace(dropout=0.2, spec_augment=0.1)
    noise = student_noise(BertConfig(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.3), s)
    assert noise["hidden_dropout_prob"] == 0.2 and noise["attention_probs_dropout_prob"] == 0.3
    assert "mask_time_prob" not in noise
    speech = student_noise(Wav2Vec2Config(mask_time_prob=0.0, hidden_dropout=0.0), s)
    assert speech["mask_time_prob"] == 0.1 and speech["hidden_dropout"] == 0.2


def test_a_teacher_at_chance_on_validation_is_not_asked_for_pseudo_labels():
    """Two standard errors above always answering the majority class: on 100 validation examples, 40 of them the
    majority, that is 0.40 + 2 x 0.049 = 0.498; on 5 examples of 5 classes, 0.2 + 2 x 0.179 = 0.558."""

    def prep(labels):
        return SimpleNamespace(encoded={"validation": datasets.Dataset.from_dict({"label": labels})})

    reason = at_chance({"accuracy": 0.49}, prep([0] * 40 + [1] * 30 + [2] * 30))
    assert "0.490 is within two standard errors" in reason and "(0.400 on 100 examples)" in reason
    assert at_chance({"accuracy": 0.51}, prep([0] * 40 + [1] * 30 + [2] * 30)) is None
    assert at_chance({"accuracy": 0.4}, prep([0, 1, 2, 3, 4])) is not None  # 2 of 5 right: not clearly above
    assert at_chance({"accuracy": 0.6}, prep([0, 1, 2, 3, 4])) is None
    assert at_chance({"loss": 1.0}, prep([0, 1])) is None  # regression: no accuracy to judge by
    assert at_chance({"accuracy": 0.0}, prep([])) is None  # no validation examples: nothing to judge by
    rows = [{"round": 0, "pseudo_labels": 0, "train_examples": 10, "validation": {"accuracy": 0.49},
             "kept": True, "skipped": reason}]  # fmt: skip
    assert describe(rows, 0.9) == f"Self-training (noisy student) was skipped: {reason}."


def test_self_training_settings_out_of_range_name_the_field():
    for key, value in (("rounds", "0"), ("threshold", "1.0"), ("per_class", "0"), ("dropout", "1.5")):
        with pytest.raises(UsageError, match=f"self_training.{key}"):
            config_lib.load(FinetuneConfig, "text/classify-tiny", {f"self_training.{key}": value})


@pytest.fixture(scope="module")
def self_trained(mlm_export, tmp_path_factory):
    """A few-label fine-tuning of the embedded topics with one self-training round on the training texts whose
    labels it was not given."""
    root = tmp_path_factory.mktemp("self-training")
    data = LabelledDataArgs(synthetic_examples=300)
    pool = root / "unlabeled.txt"
    pool.write_text("\n".join(load_labelled(data).train["text"]) + "\n")
    values = {
        "model.name_or_path": str(mlm_export),
        "data.synthetic_examples": "300",
        "data.label_fraction": "0.2",
        "training.output_dir": str(root / "run"),
        "training.per_device_train_batch_size": "16",
        "finetune.min_steps": "40",
        "finetune.min_validation": "0",
        "self_training.unlabeled": str(pool),
        "self_training.rounds": "1",
        "self_training.threshold": "0.3",
    }
    metrics = finetune(config_lib.load(FinetuneConfig, "text/classify-tiny", values))
    return root / "run", metrics


def test_a_round_adds_pseudo_labels_and_trains_a_student_on_both(self_trained):
    run, metrics = self_trained
    first, student = metrics["self_training"]
    assert first["round"] == 0 and first["pseudo_labels"] == 0 and first["train_examples"] == metrics["train_examples"]
    assert 0 < student["pseudo_labels"] == sum(student["pseudo_labels_per_class"].values())
    assert student["train_examples"] == first["train_examples"] + student["pseudo_labels"]
    assert sum(row["kept"] for row in metrics["self_training"]) == 1
    assert json.loads((run / "metrics.json").read_text())["self_training"] == metrics["self_training"]


def test_the_card_tells_each_rounds_pseudo_labels_and_validation_score(self_trained):
    run, metrics = self_trained
    card = (run / "final" / "README.md").read_text()
    assert "Self-training (noisy student): 1 rounds" in card
    student = metrics["self_training"][1]
    assert f"| 1 | {student['pseudo_labels']:,} | {student['train_examples']:,} | " in card


def test_an_unlabeled_pool_without_text_is_one_line(tmp_path, mlm_export):
    pool = tmp_path / "pool.csv"
    pool.write_text("body\nsome words\n")
    values = {
        "model.name_or_path": str(mlm_export),
        "training.output_dir": str(tmp_path / "run"),
        "self_training.unlabeled": str(pool),
    }
    with pytest.raises(UsageError, match=r"self_training.unlabeled: .*pool.csv has no column 'text'"):
        finetune(config_lib.load(FinetuneConfig, "text/classify-tiny", values))
    assert not (tmp_path / "run").exists()
