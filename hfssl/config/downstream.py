"""The sections of the downstream commands: `hfssl finetune`, `probe`, `label-efficiency` and `evaluate`."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from hfssl.config.loader import arg, check
from hfssl.config.pretrain import ExportArgs, HubArgs


@dataclass
class ClassifierModelArgs:
    name_or_path: str = arg(
        "runs/mlm-tiny/final", "model to fine-tune: an hfssl export, a local model directory or a Hub name"
    )
    from_scratch: bool = arg(False, "random initialisation with the same architecture (the no-pretraining baseline)")
    pooling: Literal["mean", "cls"] = arg(
        "mean", "how ModernBERT pools tokens for the classifier (mean suits packed MLM pretraining)"
    )
    freeze_feature_encoder: bool = arg(
        True, "audio: keep a pretrained encoder's convolutional feature encoder frozen (wav2vec 2.0 fine-tuning)"
    )
    mask_time_prob: float | None = arg(
        None,
        "audio: SpecAugment while fine-tuning, the chance of each frame starting a masked span (empty: the "
        "checkpoint's own, 0.05 in hfssl's exports)",
    )
    mask_time_length: int | None = arg(None, "audio: frames per SpecAugment time span (empty: the checkpoint's own)")
    mask_feature_prob: float | None = arg(
        None, "audio: SpecAugment while fine-tuning, the chance of each feature channel starting a masked run"
    )
    layer_sum: bool = arg(
        False,
        "audio: the head reads a softmax-weighted sum of every layer's hidden states, its weights learnt in "
        "fine-tuning (SUPERB), instead of the last layer alone: a speech encoder's middle layers often carry more "
        "of what a task needs (transformers' use_weighted_layer_sum)",
    )
    revision: str | None = arg(None, "Hub revision of the model (branch, tag or commit)")
    trust_remote_code: bool = arg(False, "allow custom model code from a Hub checkpoint (off unless you ask)")

    def __post_init__(self):
        for name in ("mask_time_prob", "mask_feature_prob"):
            value = getattr(self, name)
            check(value is None or 0.0 <= value < 1.0, f"model.{name}", f"must be in [0, 1), got {value}")
        check(
            self.mask_time_length is None or self.mask_time_length >= 1, "model.mask_time_length", "must be at least 1"
        )

    def spec_augment(self) -> dict:
        """The SpecAugment fields the recipe sets, as config changes."""
        names = ("mask_time_prob", "mask_time_length", "mask_feature_prob")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclass
class LabelledDataArgs:
    task: Literal["text", "audio"] = arg("text", "what is classified: text (or text pairs), or audio clips")
    train: str = arg(
        "synthetic",
        "labelled training data: 'synthetic' (the embedded topic task), a .json/.jsonl/.csv/.parquet file, a glob, "
        "a directory, or a Hub dataset name",
    )
    validation: str | None = arg(None, "validation data (same forms); empty: a Hub split or a held-out fraction")
    test: str | None = arg(None, "test data (same forms); empty: a Hub split or a held-out fraction")
    text_column: str = arg("text", "column with the text (the first text of a pair)")
    text_pair_column: str | None = arg(None, "column with the second text of a pair (empty: single texts)")
    label_column: str = arg("label", "column with the labels (strings or integers)")
    regression: bool = arg(
        False,
        "the labels are real-valued scores (STS-B's similarity): a one-output regression head, squared-error loss, "
        "Pearson and Spearman correlation",
    )
    hub_config: str | None = arg(
        None,
        "Hub dataset configuration name; with it, a local folder in data.train is a copy of the dataset's Hub "
        "repository",
    )
    hub_split: str = arg("train", "Hub split to train on")
    hub_validation_split: str | None = arg(None, "Hub split to validate on (empty: hold out validation_fraction)")
    hub_test_split: str | None = arg(None, "Hub split to test on (empty: hold out test_fraction)")
    hub_revision: str | None = arg(None, "Hub dataset revision")
    validation_fraction: float = arg(0.1, "fraction of training examples held out for validation when none is given")
    test_fraction: float = arg(0.1, "fraction of training examples held out for testing when none is given (0: none)")
    label_fraction: float = arg(1.0, "train on this fraction of the training labels (stratified, seeded), in (0, 1]")
    few_label_validation: Literal["fraction", "none", "full"] = arg(
        "fraction",
        "with label_fraction below 1, what chooses the checkpoint and stops early: 'fraction' validates on the same "
        "fraction of the validation split (stratified, seeded), as a user with that few labels would; 'none' trains "
        "every epoch and keeps the last, with no validation; 'full' the whole validation split (more labels than "
        "the run trains on: its scores flatter few-label training)",
    )
    max_length: int = arg(128, "tokens per example; longer texts are truncated")
    audio_column: str = arg("audio", "audio: column holding the audio in Hub datasets and parquet files")
    path_column: str = arg("path", "audio: column holding file paths in .csv/.jsonl lists")
    max_seconds: float = arg(10.0, "audio: seconds per example; longer clips are cut to their start")
    synthetic_examples: int = arg(
        3000, "examples in the embedded task (before the splits): topics for text, spoken keywords for audio"
    )
    synthetic_task: Literal["topics", "same_topic", "word_order"] = arg(
        "topics",
        "text: which embedded task; topics (a document's topic, 8 classes), same_topic (whether two passages share "
        "a topic, a pair task), word_order (whether a sentence is as written or has two neighbouring words swapped, "
        "an acceptability task)",
    )
    cache_dir: str | None = arg(None, "where datasets caches loaded data (empty: the datasets default)")

    def __post_init__(self):
        check(0.0 < self.label_fraction <= 1.0, "data.label_fraction", f"must be in (0, 1], got {self.label_fraction}")
        for name in ("validation_fraction", "test_fraction"):
            value = getattr(self, name)
            check(0.0 <= value < 1.0, f"data.{name}", f"must be in [0, 1), got {value}")
        check(self.max_length > 1, "data.max_length", "must be at least 2")
        check(self.max_seconds > 0, "data.max_seconds", "must be positive")
        check(self.synthetic_examples >= 20, "data.synthetic_examples", "must be at least 20")


@dataclass
class FinetuneArgs:
    early_stopping_patience: int | None = arg(
        3, "stop after this many evaluations without improvement of training.metric_for_best_model (empty: never)"
    )
    head_learning_rate: float | None = arg(
        None,
        "learning rate of the new classification head, which starts from random (empty: training.learning_rate, "
        "which the pretrained encoder gets)",
    )
    freeze_encoder: bool = arg(
        False, "train the classification head only, on the frozen encoder's features: a probe, for the fewest labels"
    )
    min_steps: int = arg(
        300,
        "optimizer steps at least, however few the labels: with few labels an epoch is a few steps, and "
        "training.num_train_epochs alone stops a run before the encoder has adapted (0: the epochs decide)",
    )
    min_validation: int = arg(
        100,
        "validation examples needed to choose the checkpoint and stop early on them; with fewer, the run trains its "
        "whole budget and keeps the last step, as label-efficiency sweeps do (a handful of examples picks by noise)",
    )
    layer_lr_decay: float = arg(
        1.0,
        "layer-wise learning-rate decay: each encoder layer learns at this factor times the rate of the layer above "
        "it, the embeddings (or a speech encoder's feature encoder) below the first layer; the head at its own rate "
        "(1: one rate for the whole encoder)",
    )
    probe_steps: int = arg(
        0,
        "linear probe, then fine-tune (LP-FT): train only the head for this many optimizer steps, then the whole "
        "model, so the head the encoder's first updates follow is no longer random (0: fine-tune from the start)",
    )

    def __post_init__(self):
        check(
            self.early_stopping_patience is None or self.early_stopping_patience >= 0,
            "finetune.early_stopping_patience",
            f"must not be negative (empty or 0: never stop early), got {self.early_stopping_patience}",
        )
        check(
            self.head_learning_rate is None or self.head_learning_rate > 0,
            "finetune.head_learning_rate",
            f"must be positive, got {self.head_learning_rate}",
        )
        check(self.min_steps >= 0, "finetune.min_steps", f"must not be negative, got {self.min_steps}")
        check(self.min_validation >= 0, "finetune.min_validation", f"must not be negative, got {self.min_validation}")
        check(
            0.0 < self.layer_lr_decay <= 1.0,
            "finetune.layer_lr_decay",
            f"must be in (0, 1], got {self.layer_lr_decay}",
        )
        check(self.probe_steps >= 0, "finetune.probe_steps", f"must not be negative, got {self.probe_steps}")
        check(
            not (self.probe_steps and self.freeze_encoder),
            "finetune.probe_steps",
            "finetune.freeze_encoder trains only the head throughout; a probe phase before fine-tuning needs it false",
        )


def _training_section() -> type:
    """A section with every `TrainingArguments` field (its help, its default unless hfssl sets one), so that a
    recipe's `training:` block maps one-to-one onto `TrainingArguments`."""
    from transformers import TrainingArguments

    hfssl_defaults = {
        "output_dir": "runs/finetune",
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "logging_strategy": "epoch",
        "load_best_model_at_end": True,
        "metric_for_best_model": "f1",
        "greater_is_better": True,
        "save_total_limit": 2,
        "num_train_epochs": 10.0,
        # for the tiny and mini encoders short pretraining budgets make (the tiny one wants 2e-3: bench/README.md);
        # a base-size checkpoint from the Hub wants 2e-5 to 5e-5
        "learning_rate": 1e-3,
        "warmup_steps": 0.1,
        "per_device_train_batch_size": 32,
        "per_device_eval_batch_size": 64,
        "report_to": "tensorboard",  # in <output_dir>/runs; any tracker the Trainer drives, or none
        "seed": 0,
        # the model card reports how much data the classifier saw (text tokens, audio samples)
        "include_num_input_tokens_seen": "non_padding",
    }
    hints = typing.get_type_hints(TrainingArguments)
    simple = {bool, int, float, str}
    fields = []
    for f in dataclasses.fields(TrainingArguments):
        if not f.init:
            continue
        tp = hints[f.name]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if tp in simple:
            pass
        elif typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1 and args[0] in simple:
            pass
        elif typing.get_origin(tp) in (typing.Union, types.UnionType) and all(
            isinstance(a, type) and issubclass(a, str) for a in args
        ):
            tp = str | None if type(None) in typing.get_args(tp) else str  # an Enum of strings, or a string
        else:
            tp = Any
        if f.name in hfssl_defaults:
            default = hfssl_defaults[f.name]
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        default = default.value if hasattr(default, "value") and isinstance(default, str) else default
        help = " ".join((f.metadata.get("help") or "TrainingArguments." + f.name).split())
        fields.append((f.name, tp, arg(default, help)))
    return dataclasses.make_dataclass("TrainingSection", fields, namespace={"__post_init__": _check_training})


def _check_training(self) -> None:
    """The ranges of the `training:` fields hfssl relies on, which `TrainingArguments` itself leaves unchecked."""
    check(self.learning_rate > 0, "training.learning_rate", f"must be positive, got {self.learning_rate}")
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size"):
        check(getattr(self, name) > 0, f"training.{name}", f"must be positive, got {getattr(self, name)}")
    check(
        self.num_train_epochs > 0 or self.max_steps > 0,
        "training.num_train_epochs",
        f"must be positive (or set training.max_steps), got {self.num_train_epochs}",
    )


TrainingSection = _training_section()


@dataclass
class SelfTrainingArgs:
    unlabeled: str | None = arg(
        None,
        "unlabeled examples to pseudo-label, in the forms data.train takes (text: also a .txt file, one example a "
        "line; the text in data.text_column; audio: clips as data.train lists them, without labels); empty: no "
        "self-training",
    )
    rounds: int = arg(
        2,
        "noisy-student rounds: the model trained so far labels the unlabeled examples, and a new student, from the "
        "same starting weights, trains on the labels and its confident pseudo-labels with noise on",
    )
    threshold: float = arg(0.9, "keep a pseudo-label when the teacher's probability for its class reaches this")
    per_class: float = arg(
        10.0,
        "keep at most this many pseudo-labels per labelled example of the class, the most confident first, so one "
        "class the teacher favours cannot flood the rest",
    )
    max_unlabeled: int | None = arg(None, "pseudo-label at most this many unlabeled examples, a seeded sample")
    dropout: float = arg(
        0.1, "the student's dropout (hidden, attention, feed-forward), at least this, whatever the checkpoint's"
    )
    spec_augment: float = arg(
        0.05, "audio: the student's SpecAugment mask_time_prob, at least this (model.mask_time_prob if higher)"
    )

    def __post_init__(self):
        check(self.rounds >= 1, "self_training.rounds", f"must be at least 1, got {self.rounds}")
        check(0.0 < self.threshold < 1.0, "self_training.threshold", f"must be in (0, 1), got {self.threshold}")
        check(self.per_class > 0, "self_training.per_class", f"must be positive, got {self.per_class}")
        check(self.max_unlabeled is None or self.max_unlabeled > 0, "self_training.max_unlabeled", "must be positive")
        check(0.0 <= self.dropout < 1.0, "self_training.dropout", f"must be in [0, 1), got {self.dropout}")
        check(
            0.0 <= self.spec_augment < 1.0, "self_training.spec_augment", f"must be in [0, 1), got {self.spec_augment}"
        )


@dataclass
class FinetuneConfig:
    model: ClassifierModelArgs = field(default_factory=ClassifierModelArgs)
    data: LabelledDataArgs = field(default_factory=LabelledDataArgs)
    finetune: FinetuneArgs = field(default_factory=FinetuneArgs)
    self_training: SelfTrainingArgs = field(default_factory=SelfTrainingArgs)
    training: TrainingSection = field(default_factory=TrainingSection)
    export: ExportArgs = field(default_factory=ExportArgs)
    hub: HubArgs = field(default_factory=HubArgs)


@dataclass
class ProbeArgs:
    layer: str = arg(
        "weighted", "'weighted' (a learned softmax mix of all layers), 'last', or a layer number (0: embeddings)"
    )
    l2: float = arg(1e-3, "L2 penalty on the classifier weights (features are standardised)")
    batch_size: int = arg(64, "examples per forward pass when extracting features")
    output: str = arg("runs/probe/probe.json", "where the probe's scores are written")

    def __post_init__(self):
        check(self.l2 >= 0, "probe.l2", "must not be negative")
        check(self.batch_size > 0, "probe.batch_size", "must be positive")


@dataclass
class ProbeConfig:
    model: ClassifierModelArgs = field(default_factory=ClassifierModelArgs)
    data: LabelledDataArgs = field(default_factory=LabelledDataArgs)
    probe: ProbeArgs = field(default_factory=ProbeArgs)


@dataclass
class SweepArgs:
    fractions: list[float] = arg([0.01, 0.1, 1.0], "fractions of the training labels to train on, each in (0, 1]")
    seeds: list[int] = arg([0, 1, 2], "seeds per fraction (label subsample, initialisation, data order)")
    method: Literal["finetune", "probe"] = arg("finetune", "fine-tune the whole model, or probe frozen features")
    output_dir: str = arg("runs/label-efficiency", "where the table, the plot and the card section are written")
    update_card: bool = arg(True, "add the results as a section of the model's card (a local model directory)")
    baseline: bool = arg(
        True,
        "also fit the task's classic pipeline on the same subsamples (text: TF-IDF + logistic regression; audio: MFCC "
        "statistics + logistic regression), so the table and the verdict line say whether pretraining beat it",
    )

    def __post_init__(self):
        check(bool(self.fractions), "sweep.fractions", "needs at least one fraction")
        for i, fraction in enumerate(self.fractions):
            check(0.0 < fraction <= 1.0, f"sweep.fractions[{i}]", f"must be in (0, 1], got {fraction}")
        check(bool(self.seeds), "sweep.seeds", "needs at least one seed")


@dataclass
class LabelEfficiencyConfig:
    RENAMED: ClassVar[dict[str, str]] = {"sweep.min_steps": "finetune.min_steps"}  # one step floor for all fine-tuning

    model: ClassifierModelArgs = field(default_factory=ClassifierModelArgs)
    data: LabelledDataArgs = field(default_factory=LabelledDataArgs)
    finetune: FinetuneArgs = field(default_factory=FinetuneArgs)
    training: TrainingSection = field(default_factory=TrainingSection)
    probe: ProbeArgs = field(default_factory=ProbeArgs)
    sweep: SweepArgs = field(default_factory=SweepArgs)
    export: ExportArgs = field(default_factory=ExportArgs)


@dataclass
class SuiteArgs:
    name: str = arg(
        "embedded",
        "the suite: embedded (hfssl's generated text tasks, no downloads), keywords (speech: the embedded keyword "
        "task, probed SUPERB-style and fine-tuned), glue (nyu-mll/glue), embeddings (sentence embeddings as they "
        "are on hfssl's generated similarity and retrieval sets), sts (STS-B), mteb-sts (MTEB's STS tasks, with the "
        "mteb package), or a YAML file that lists tasks",
    )
    tasks: list[str] = arg([], "run only these of the suite's tasks (empty: all)")
    seeds: list[int] = arg([0, 1, 2], "seeds per task (initialisation, data order; the probe's start)")
    data_dir: str | None = arg(
        None,
        "a local copy of the Hub dataset the suite's tasks name (hf download nyu-mll/glue --repo-type dataset "
        "--local-dir DIR), read instead of the Hub",
    )
    output_dir: str = arg("runs/evaluate", "where results.json, results.csv and the table (results.md) are written")
    update_card: bool = arg(True, "add the table to the model's card, and its scores as model-index entries")
    baseline: bool = arg(
        True,
        "also fit the classic pipeline (text: TF-IDF + logistic regression; audio: MFCC statistics + logistic "
        "regression) on each classification task's training data with each seed: rows of their own, out of the "
        "average and the model-index",
    )

    def __post_init__(self):
        check(bool(self.seeds), "suite.seeds", "needs at least one seed")


@dataclass
class EvaluateConfig:
    """`hfssl evaluate`: one export, one set of hyperparameters, every task of a suite, several seeds. The data
    section's settings (those a recipe or the command line sets) apply to every task, over the task's own."""

    model: ClassifierModelArgs = field(default_factory=ClassifierModelArgs)
    data: LabelledDataArgs = field(default_factory=LabelledDataArgs)
    finetune: FinetuneArgs = field(default_factory=FinetuneArgs)
    training: TrainingSection = field(default_factory=TrainingSection)
    probe: ProbeArgs = field(default_factory=ProbeArgs)
    suite: SuiteArgs = field(default_factory=SuiteArgs)
