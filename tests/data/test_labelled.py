import json

import datasets
import pytest

from hfssl.config import LabelledDataArgs
from hfssl.data import labelled
from hfssl.data.labelled import load_labelled, subsample
from hfssl.data.synthetic import TOPICS
from hfssl.errors import UsageError


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def rows(n, offset=0, classes=("pos", "neg", "mid")):
    return [{"a": f"first {i}", "b": f"second {i}", "y": classes[i % len(classes)]} for i in range(offset, offset + n)]


def test_synthetic_task_splits_are_disjoint_and_labelled_by_topic():
    splits = load_labelled(LabelledDataArgs(synthetic_examples=400))
    assert splits.label_names == sorted(TOPICS)
    texts = [set(s["text"]) for s in (splits.train, splits.validation, splits.test)]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    assert len(splits.train) + len(splits.validation) + len(splits.test) == 400
    assert isinstance(splits.train.features["label"], datasets.ClassLabel)


def test_subsample_is_stratified_seeded_and_keeps_every_class():
    train = load_labelled(LabelledDataArgs(synthetic_examples=400)).train
    small = subsample(train, 0.01, seed=0)
    assert set(small["label"]) == set(range(len(TOPICS)))
    assert small["text"] == subsample(train, 0.01, seed=0)["text"]
    assert small["text"] != subsample(train, 0.01, seed=1)["text"]
    assert abs(len(subsample(train, 0.5, seed=0)) - len(train) / 2) <= len(TOPICS)


def test_text_pairs_from_files_with_named_columns(tmp_path):
    data = LabelledDataArgs(
        train=str(write_jsonl(tmp_path / "train.jsonl", rows(60))),
        validation=str(write_jsonl(tmp_path / "valid.jsonl", rows(9, 100))),
        text_column="a", text_pair_column="b", label_column="y", test_fraction=0.2,
    )  # fmt: skip
    splits = load_labelled(data)
    assert splits.label_names == ["mid", "neg", "pos"]
    assert set(splits.train.column_names) == {"text", "text_pair", "label"}
    assert len(splits.validation) == 9 and len(splits.test) == 12 and len(splits.train) == 48
    first = splits.validation[0]
    assert first["text"] == "first 100" and first["text_pair"] == "second 100"
    assert splits.label_names[first["label"]] == "neg"  # 100 % 3 == 1 -> "neg"


def test_hub_path_reads_named_splits(tmp_path, monkeypatch):
    repo = tmp_path / "repo" / "data"
    write_jsonl(repo / "train.jsonl", rows(30))
    write_jsonl(repo / "validation.jsonl", rows(6, 50))
    write_jsonl(repo / "test.jsonl", rows(6, 80))
    monkeypatch.setattr(labelled, "_local_files", lambda source, key: None)
    data = LabelledDataArgs(
        train=str(tmp_path / "repo"), text_column="a", label_column="y",
        hub_validation_split="validation", hub_test_split="test",
    )  # fmt: skip
    splits = load_labelled(data)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (30, 6, 6)
    assert splits.test["text"][0] == "first 80"


def test_integer_labels_keep_their_order(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [{"text": f"t {i}", "label": i % 3 * 5} for i in range(30)])
    splits = load_labelled(LabelledDataArgs(train=str(path)))
    assert splits.label_names == ["0", "5", "10"]


def test_plain_text_is_refused(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("one\ntwo\n")
    with pytest.raises(UsageError, match="plain text"):
        load_labelled(LabelledDataArgs(train=str(path)))
