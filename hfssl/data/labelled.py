"""Labelled data for fine-tuning and probing: train/validation/test splits with a "label" ClassLabel column.

Sources are those of the text corpora (the embedded synthetic set, local files, a glob, a directory, a Hub dataset),
with the text, optional text-pair and label columns named in the recipe. Labels may be strings or integers; the
class list is taken from the training split, and a validation or test label that training never saw is an error
rather than a silently wrong id.
"""

from __future__ import annotations

import math
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from hfssl.config import LabelledDataArgs
from hfssl.data.synthetic import synthetic_documents
from hfssl.data.text import _check_utf8, _first_line, _local_files, _read_error
from hfssl.errors import UsageError

SYNTHETIC_SEED = 10_000  # far from pretraining seeds: the task's documents are not the pretraining corpus's
_TEXT_FILES = {".json", ".jsonl", ".csv"}


@dataclass
class LabelledSplits:
    """The three splits (test may be None), each with columns text[, text_pair], label (a ClassLabel);
    `full_validation` is the validation split's size before a few-label subsample."""

    train: datasets.Dataset
    validation: datasets.Dataset
    test: datasets.Dataset | None
    label_names: list[str]
    source: str
    full_validation: int = 0


def load_labelled(data: LabelledDataArgs, seed: int = 0) -> LabelledSplits:
    """Load, check and split the labelled data named by `data`, then keep `data.label_fraction` of train (and of
    validation, unless `data.few_label_validation` says otherwise).

    Raises:
        UsageError: a missing or unreadable source, a missing column, an empty split, a single class, or a label in
            validation/test that train does not have.
    """
    if data.train == "synthetic":
        splits = _synthetic(data)
    else:
        splits = _from_sources(data, seed)
    names = [] if data.regression else _label_names(splits["train"], data)
    for split, dataset in splits.items():
        if dataset is not None:
            splits[split] = _with_labels(dataset, names, split, data)
    if "validation" not in splits:
        if len(splits["train"]) < 4:
            raise UsageError(f"data.train: {data.train} has {len(splits['train'])} examples, too few to split")
        held = splits["train"].train_test_split(
            test_size=data.validation_fraction or 0.1, seed=seed, stratify_by_column=_stratify(splits["train"])
        )
        splits["train"], splits["validation"] = held["train"], held["test"]
    full_validation = len(splits["validation"])
    if data.label_fraction < 1.0:
        splits["train"] = subsample(splits["train"], data.label_fraction, seed)
        if data.few_label_validation == "fraction":
            # as many validation labels, relative to the split, as training labels: selecting a checkpoint on the
            # whole split would use more labels than the run claims to have
            splits["validation"] = subsample(splits["validation"], data.label_fraction, seed)
    for split in ("train", "validation"):
        if len(splits[split]) == 0:
            raise UsageError(f"data.{split}: the {split} split is empty")
    return LabelledSplits(
        splits["train"],
        splits["validation"],
        splits.get("test"),
        names,
        "synthetic" if data.train == "synthetic" else data.train,
        full_validation,
    )


def subsample(train: datasets.Dataset, fraction: float, seed: int) -> datasets.Dataset:
    """A seeded, stratified `fraction` of `train` with at least one example of every class (of real-valued labels:
    a seeded sample, at least two examples)."""
    rng = np.random.default_rng(seed)
    if not _is_classes(train):
        count = min(len(train), max(2, round(fraction * len(train))))
        return train.select(sorted(rng.choice(len(train), size=count, replace=False).tolist()))
    labels = np.asarray(train["label"])
    keep = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = max(1, round(fraction * len(members)))
        keep.extend(rng.choice(members, size=count, replace=False).tolist())
    return train.select(sorted(keep))


def _is_classes(dataset: datasets.Dataset) -> bool:
    """Whether the labels are classes (a ClassLabel column), not real-valued scores (data.regression)."""
    return isinstance(dataset.features["label"], datasets.ClassLabel)


def _stratify(dataset: datasets.Dataset) -> str | None:
    """The column to stratify a split by: the labels, when they are classes with two examples each at least."""
    if not _is_classes(dataset):
        return None
    counts = np.bincount(np.asarray(dataset["label"]))
    return "label" if counts[counts > 0].min() >= 2 else None


def _synthetic(data: LabelledDataArgs) -> dict[str, datasets.Dataset]:
    """The embedded task (topics for text, spoken keywords for audio), its splits drawn from disjoint seeds."""
    n = data.synthetic_examples
    sizes = {
        "test": math.floor(n * data.test_fraction),
        "validation": max(8, math.floor(n * data.validation_fraction)),
    }
    sizes["train"] = n - sizes["test"] - sizes["validation"]
    splits = {}
    for offset, (split, size) in enumerate(sizes.items()):
        if size == 0:
            continue
        if data.task == "audio":
            from hfssl.data.synthetic_audio import synthetic_keywords

            splits[split] = synthetic_keywords(size, SYNTHETIC_SEED + offset).select_columns(["audio", "label"])
            continue
        splits[split] = _SYNTHETIC_TEXT[data.synthetic_task](size, SYNTHETIC_SEED + offset)
    return splits


def _topics(size: int, seed: int) -> datasets.Dataset:
    documents = synthetic_documents(size, seed)
    return datasets.Dataset.from_dict(
        {"text": [d["text"] for d in documents], "label": [d["topic"] for d in documents]}
    )


def _passage(text: str, sentences: int = 2) -> str:
    return " ".join(re.split(r"(?<=[.!?]) ", text)[:sentences])


def _same_topic(size: int, seed: int) -> datasets.Dataset:
    """Pairs of two-sentence passages from different documents, half of them about the same topic."""
    rng = random.Random(seed)
    documents = synthetic_documents(3 * size, seed)
    by_topic: dict[str, list[str]] = {}
    for d in documents:
        by_topic.setdefault(d["topic"], []).append(_passage(d["text"]))
    rows = {"text": [], "text_pair": [], "label": []}
    for d in documents[:size]:
        same = rng.random() < 0.5
        topic = d["topic"] if same else rng.choice([t for t in by_topic if t != d["topic"]])
        rows["text"].append(_passage(d["text"]))
        rows["text_pair"].append(rng.choice([p for p in by_topic[topic] if p != rows["text"][-1]] or by_topic[topic]))
        rows["label"].append("same" if same else "different")
    return datasets.Dataset.from_dict(rows)


def _word_order(size: int, seed: int) -> datasets.Dataset:
    """Single sentences, about half as generated and half with two neighbouring (different) words after the first
    swapped."""
    rng = random.Random(seed)
    sentences = [s for d in synthetic_documents(size, seed) for s in re.split(r"(?<=[.!?]) ", d["text"])]
    rows = {"text": [], "label": []}
    for sentence in rng.sample(sentences, min(size, len(sentences))):
        words = sentence.rstrip(".!?").split()
        # not the first word: a capital in mid-sentence would give the swap away
        spots = [i for i in range(1, len(words) - 1) if words[i].lower() != words[i + 1].lower()]
        if rng.random() < 0.5 and spots:
            i = rng.choice(spots)
            words[i], words[i + 1] = words[i + 1], words[i]
            rows["text"].append(" ".join(words) + sentence[-1])
            rows["label"].append("unacceptable")
        else:
            rows["text"].append(sentence)
            rows["label"].append("acceptable")
    return datasets.Dataset.from_dict(rows)


_SYNTHETIC_TEXT = {"topics": _topics, "same_topic": _same_topic, "word_order": _word_order}


def _from_sources(data: LabelledDataArgs, seed: int) -> dict[str, datasets.Dataset]:
    splits = {"train": _load(data.train, "data.train", data, data.hub_split)}
    for split, source, hub_split in (
        ("validation", data.validation, data.hub_validation_split),
        ("test", data.test, data.hub_test_split),
    ):
        if source:
            splits[split] = _load(source, f"data.{split}", data, hub_split or split)
        elif hub_split and (_dataset_repo(data.train, data) or _local_files(data.train, "data.train") is None):
            splits[split] = _load(data.train, f"data.hub_{split}_split", data, hub_split)
    if "test" not in splits and data.test_fraction > 0:
        names = [] if data.regression else _label_names(splits["train"], data)
        train = _with_labels(splits["train"], names, "train", data)
        if len(train) < 4:
            raise UsageError(f"data.train: {data.train} has {len(train)} examples, too few to hold out a test split")
        held = train.train_test_split(test_size=data.test_fraction, seed=seed, stratify_by_column=_stratify(train))
        splits["train"], splits["test"] = held["train"], held["test"]
    return splits


def _dataset_repo(source: str, data: LabelledDataArgs) -> bool:
    """Whether `source` is a local copy of a Hub dataset repository (`hf download NAME --repo-type dataset
    --local-dir DIR`), loaded by configuration and split as the Hub name would be: a folder, with data.hub_config."""
    return data.hub_config is not None and Path(os.path.expanduser(source)).is_dir()


def _load(source: str, key: str, data: LabelledDataArgs, hub_split: str) -> datasets.Dataset:
    if data.task == "audio":
        return _load_audio(source, key, data, hub_split)
    dataset, _ = _read(source, key, data, hub_split, plain_text=False)
    wanted = [data.text_column, data.label_column] + ([data.text_pair_column] if data.text_pair_column else [])
    missing = [c for c in wanted if c not in dataset.column_names]
    if missing:
        raise UsageError(
            f"{key}: {source} has no column {missing[0]!r} (set data.{_setting(missing[0], data)}); "
            f"its columns are: {', '.join(dataset.column_names)}"
        )
    dataset = dataset.select_columns(wanted)
    for column in wanted[:1] + wanted[2:]:  # the texts: a classifier given nothing to read fails deep in a tokenizer
        empty = next((i for i, text in enumerate(dataset[column]) if text is None or not str(text).strip()), None)
        if empty is not None:
            raise UsageError(f"{key}: {source} row {empty + 1}: column {column!r} is empty")
    renames = {data.text_column: "text", data.label_column: "label", data.text_pair_column: "text_pair"}
    return dataset.rename_columns({old: new for old, new in renames.items() if old and old != new})


def _read(
    source: str, key: str, data: LabelledDataArgs, hub_split: str, plain_text: bool
) -> tuple[datasets.Dataset, str | None]:
    """A text source as `datasets` loads it, and its local builder (None for a Hub dataset); a .txt file only with
    `plain_text` (one example a line, in a "text" column)."""
    local = None if _dataset_repo(source, data) else _local_files(source, key)
    try:
        if local is None:
            dataset = datasets.load_dataset(
                source, data.hub_config, split=hub_split, revision=data.hub_revision, cache_dir=data.cache_dir
            )
        else:
            builder, files = local
            if builder == "text" and not plain_text:
                raise UsageError(
                    f"{key}: {source} is plain text; labelled data needs a .json/.jsonl/.csv/.parquet file"
                )
            if all(os.path.getsize(f) == 0 for f in files):
                raise UsageError(f"{key}: {source} is empty")
            for file in files:
                if os.path.splitext(file)[1].lower() in _TEXT_FILES | {".txt"}:
                    _check_utf8(file, key)
            dataset = datasets.load_dataset(builder, data_files=files, split="train", cache_dir=data.cache_dir)
    except UsageError:
        raise
    except Exception as err:  # offline, unknown name, malformed file: all the user's to fix
        if local is None:
            raise UsageError(f"{key}: could not load dataset {source!r}: {_first_line(err)}") from err
        raise UsageError(f"{key}: could not read {source!r}: {_read_error(local[1], err)}") from err
    if len(dataset) == 0:
        raise UsageError(f"{key}: {source} is empty")
    return dataset, None if local is None else local[0]


def _scan_clips(source: str, key: str, data: LabelledDataArgs, hub_split: str) -> datasets.Dataset:
    """Clips scanned like pretraining audio: undecoded, usable ones only, at most `data.max_seconds` each read."""
    from hfssl.config import AudioDataArgs
    from hfssl.data.audio import scan_audio

    audio = AudioDataArgs(
        audio_column=data.audio_column,
        path_column=data.path_column,
        hub_config=data.hub_config,
        hub_revision=data.hub_revision,
        cache_dir=data.cache_dir,
        min_seconds=0.01,
        max_seconds=max(data.max_seconds, 0.01),
        batch_seconds=max(data.max_seconds, 0.01),
    )
    return scan_audio(source, key, audio, split=hub_split)


def _load_audio(source: str, key: str, data: LabelledDataArgs, hub_split: str) -> datasets.Dataset:
    """Labelled clips: an audio folder (labels from class folders or metadata.csv), a list of files, parquet or a
    Hub dataset, scanned like pretraining audio; columns audio (undecoded) and label."""
    dataset = _scan_clips(source, key, data, hub_split)
    if data.label_column not in dataset.column_names:
        raise UsageError(
            f"{key}: {source} has no column {data.label_column!r} (set data.label_column, or put the clips in one "
            f"folder per class); its columns are: {', '.join(dataset.column_names)}"
        )
    dataset = dataset.select_columns(["audio", data.label_column])
    return dataset.rename_columns({data.label_column: "label"}) if data.label_column != "label" else dataset


def _setting(column: str, data: LabelledDataArgs) -> str:
    if column == data.label_column:
        return "label_column"
    return "text_column" if column == data.text_column else "text_pair_column"


def _label_names(train: datasets.Dataset, data: LabelledDataArgs) -> list[str]:
    feature = train.features["label"]
    if isinstance(feature, datasets.ClassLabel):
        names = list(feature.names)
        present = set(train["label"])
        if len(present) < 2:
            raise UsageError(
                f"data.train: {data.train} has a single class ({names[next(iter(present))]!r}); need two or more"
            )
        return names
    values = [v for v in set(train["label"]) if v is not None]
    scores = [v for v in values if isinstance(v, float) and not v.is_integer()]
    if scores:
        raise UsageError(
            f"data.train: column {data.label_column!r} of {data.train} holds real-valued scores (such as "
            f"{scores[0]:g}), not classes; set data.regression: true for a regression head"
        )
    if not values:
        raise UsageError(
            f"data.train: column {data.label_column!r} of {data.train} is empty in every row; each example needs "
            "its class"
        )
    if len(values) < 2:
        raise UsageError(
            f"data.train: column {data.label_column!r} of {data.train} has a single class ({values[0]}); need two "
            "or more"
        )
    try:
        return [str(v) for v in sorted(values)]
    except TypeError:
        raise UsageError(
            f"data.train: column {data.label_column!r} mixes label types; use all strings or all integers"
        ) from None


def _with_labels(dataset: datasets.Dataset, names: list[str], split: str, data: LabelledDataArgs) -> datasets.Dataset:
    """The split with its labels checked: real-valued scores (data.regression), or ids of `names` as a ClassLabel."""
    return _as_scores(dataset, split, data) if data.regression else _encode_labels(dataset, names, split, data)


def _as_scores(dataset: datasets.Dataset, split: str, data: LabelledDataArgs) -> datasets.Dataset:
    """Real-valued labels (data.regression) as float32, failing on one that is not a number (a file that mixes
    numbers and words reaches here as strings)."""
    feature = dataset.features["label"]
    if isinstance(feature, datasets.Value) and feature.dtype in ("float32", "float64"):
        return dataset.cast_column("label", datasets.Value("float32"))
    scores = []
    for row, value in enumerate(dataset["label"]):
        try:
            score = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            score = math.nan
        if not math.isfinite(score):
            raise UsageError(
                f"data.{split}: row {row + 1} has label {value!r}, not a number (data.regression takes real-valued "
                f"scores in column {data.label_column!r})"
            )
        scores.append(score)
    return dataset.remove_columns("label").add_column("label", scores, feature=datasets.Value("float32"))


def _encode_labels(dataset: datasets.Dataset, names: list[str], split: str, data: LabelledDataArgs) -> datasets.Dataset:
    """Map the split's labels to ids of `names` as a ClassLabel column, failing on a label train does not have."""
    feature = dataset.features["label"]
    if isinstance(feature, datasets.ClassLabel):
        if list(feature.names) == names:
            return dataset
        values = [feature.names[i] for i in dataset["label"]]
    else:
        values = [None if v is None else str(v) for v in dataset["label"]]
    for row, value in enumerate(values):
        if value is None or value.strip() in ("", "nan", "NaN"):
            raise UsageError(f"data.{split}: row {row + 1} has no label (column {data.label_column!r} is empty or NaN)")
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted({v for v in values if v not in index}, key=str)
    if unknown:
        raise UsageError(
            f"data.{split}: label {unknown[0]!r} does not occur in the training data "
            f"(training labels: {', '.join(names[:20])}{', ...' if len(names) > 20 else ''})"
        )
    ids = [index[v] for v in values]
    features = dataset.features.copy()
    features["label"] = datasets.ClassLabel(names=names)
    return dataset.remove_columns("label").add_column("label", ids).cast(features)


def load_unlabeled(source: str, data: LabelledDataArgs, key: str = "self_training.unlabeled") -> datasets.Dataset:
    """Unlabeled examples for self-training, read as `data.train` is: a "text" column (a .txt file gives one example
    a line; other files and Hub datasets their `data.text_column`), or for audio an undecoded "audio" column."""
    if data.task == "audio":
        return _scan_clips(source, key, data, data.hub_split).select_columns(["audio"])
    dataset, builder = _read(source, key, data, data.hub_split, plain_text=True)
    column = "text" if builder == "text" else data.text_column
    if column not in dataset.column_names:
        raise UsageError(
            f"{key}: {source} has no column {column!r} (set data.text_column); its columns are: "
            f"{', '.join(dataset.column_names)}"
        )
    dataset = dataset.select_columns([column]).rename_columns({column: "text"} if column != "text" else {})
    dataset = dataset.filter(lambda batch: [bool(t and t.strip()) for t in batch["text"]], batched=True)
    if len(dataset) == 0:
        raise UsageError(f"{key}: {source} holds no text")
    return dataset
