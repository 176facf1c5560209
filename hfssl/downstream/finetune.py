"""`hfssl finetune`: sequence classification on the Trainer API, from an hfssl export, a local model or a Hub name.

The recipe's `training:` block is `TrainingArguments`, field for field. hfssl adds the data checks, the label maps,
early stopping on the best-model metric, test-set prediction, a metrics JSON and an export whose model card carries
the results as model-index metadata. With few labels it trains at least `finetune.min_steps` steps and, with fewer
than `finetune.min_validation` validation examples to choose on, keeps the last step instead of the "best" one; a
separate learning rate for the head, layer-wise learning-rate decay and a linear probe before fine-tuning (LP-FT)
are settings of the `finetune` section.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import datasets
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import (
    AutoModelForAudioClassification,
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from hfssl.cards import TEMPLATES, base_model, compute_rows, hub_dataset_ids, model_name
from hfssl.collators.classification import AudioClassificationCollator
from hfssl.config import FinetuneConfig
from hfssl.data.labelled import LabelledSplits, load_labelled
from hfssl.downstream.loaders import load_model_config, load_processor
from hfssl.errors import UsageError
from hfssl.io import atomic_dir, check_output_dir, disk_full, no_space, write_json
from hfssl.metrics import metric_names, trainer_compute_metrics, trainer_regression_metrics, trainer_scores
from hfssl.models.speech import samples_per_frame, uses_filterbanks
from hfssl.models.text import usable_positions
from hfssl.trackers import finetuning_trackers, finish_finetuning_trackers

logger = logging.getLogger(__name__)


# TrainingArguments changes for a run scored at its last step, as one row of a sweep or a suite: no evaluation, no
# checkpoint chosen or saved, no logging, no progress bar, no tracker (dozens of short runs in a folder deleted after)
SCORED_AT_LAST_STEP = {
    "eval_strategy": "no",
    "save_strategy": "no",
    "logging_strategy": "no",
    "load_best_model_at_end": False,
    "disable_tqdm": True,
    "report_to": "none",
}


def training_arguments(cfg: FinetuneConfig, **changes) -> TrainingArguments:
    """The recipe's `training:` block (plus `changes`) as `TrainingArguments`, its complaints as UsageError."""
    values = dataclasses.asdict(cfg.training) | changes
    values["report_to"] = finetuning_trackers(values.get("report_to")) or "none"
    metric = values.get("metric_for_best_model")
    names = (*metric_names(cfg.data.regression), "loss")
    if metric is not None and metric.removeprefix("eval_") not in names:
        raise UsageError(
            f"training.metric_for_best_model: {metric!r} is not a metric of this run; choose one of {', '.join(names)}"
        )
    # The Trainer saves its arguments (training_args.bin) with every checkpoint: a token goes to the environment
    # the Hub client reads instead, never to disk.
    token = values.pop("hub_token", None)
    if token:
        os.environ["HF_TOKEN"] = token
    try:
        return TrainingArguments(**values)
    except (ValueError, TypeError) as err:
        raise UsageError(f"training: {' '.join(str(err).split())}") from None


def load_classifier(cfg: FinetuneConfig, label_names: list[str], noise: dict | None = None):
    """A sequence (text) or audio classifier with the label maps, pretrained or (from_scratch) randomly initialised.
    A pretrained speech encoder keeps its convolutional feature encoder frozen, as wav2vec 2.0 fine-tuning does, unless
    `model.freeze_feature_encoder` is off."""
    m = cfg.model
    labels = {
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: i for i, name in enumerate(label_names)},
    }
    if cfg.data.regression:  # one output, squared error: the transformers heads' regression problem type
        labels = {"num_labels": 1, "problem_type": "regression", "id2label": {0: "score"}, "label2id": {"score": 0}}
    config = load_model_config(m, **labels)
    augment = m.spec_augment()
    if augment and not hasattr(config, "mask_time_prob"):
        raise UsageError(
            f"model.{next(iter(augment))}: SpecAugment is for speech encoders; {m.name_or_path} has no such setting"
        )
    config.update(augment)
    if m.layer_sum:
        if not hasattr(config, "use_weighted_layer_sum"):
            raise UsageError(
                f"model.layer_sum: a weighted sum of layers is for speech encoders; {m.name_or_path} has no such "
                "setting"
            )
        config.use_weighted_layer_sum = True
    config.update(noise or {})
    if config.model_type == "modernbert":
        config.classifier_pooling = m.pooling
    auto = AutoModelForAudioClassification if cfg.data.task == "audio" else AutoModelForSequenceClassification
    if m.from_scratch:
        return auto.from_config(config, trust_remote_code=m.trust_remote_code)
    model = auto.from_pretrained(
        m.name_or_path, config=config, revision=m.revision, trust_remote_code=m.trust_remote_code
    )
    if cfg.data.task == "audio" and m.freeze_feature_encoder and hasattr(model, "freeze_feature_encoder"):
        model.freeze_feature_encoder()
    return model


def head_parameter_names(model) -> set[str]:
    """The parameters outside the encoder (`base_model_prefix`): the classification head a task adds."""
    prefix = model.base_model_prefix + "."
    return {name for name, _ in model.named_parameters() if not name.startswith(prefix)}


def freeze_encoder(model) -> None:
    """Leave only the classification head trainable."""
    for parameter in model.base_model.parameters():
        parameter.requires_grad_(False)


_LAYER = re.compile(
    r"\.layers?\.(\d+)\."
)  # a transformer layer's index in a parameter name (BERT, ModernBERT, wav2vec2...)
_BELOW_LAYERS = ("embed", "feature", "masked_spec")  # encoder parameters without a layer index that sit below layer 0


def layer_rate_factors(model, decay: float) -> dict[str, float]:
    """Encoder parameter name -> its learning-rate factor under layer-wise decay: the top layer 1, each layer below
    `decay` times the one above, the embeddings (or a speech encoder's feature encoder) `decay` below the first layer;
    parameters above the layers (a final norm) 1. Head parameters are left out."""
    head = head_parameter_names(model)
    layers = model.config.num_hidden_layers
    factors = {}
    for name, _ in model.named_parameters():
        if name in head:
            continue
        index = _LAYER.search(name)
        if index is not None:
            depth = layers - int(index.group(1)) - 1
        elif any(part in name for part in _BELOW_LAYERS):
            depth = layers
        else:
            depth = 0
        factors[name] = decay**depth
    return factors


def grouped_optimizer(trainer: Trainer, head_learning_rate: float | None, layer_lr_decay: float = 1.0):
    """The optimizer `training.optim` names, with the head at `head_learning_rate` (None: `training.learning_rate`)
    and the encoder at `training.learning_rate`, each layer scaled by `layer_lr_decay` per layer from the top; weight
    decay as the Trainer applies it (not on biases and norms). The Trainer's schedule scales every group's rate
    alike."""
    model, args = trainer.model, trainer.args
    cls, kwargs = trainer.get_optimizer_cls_and_kwargs(args, model)
    decay, head = set(trainer.get_decay_parameter_names(model)), head_parameter_names(model)
    factors = layer_rate_factors(model, layer_lr_decay)
    head_rate = head_learning_rate if head_learning_rate is not None else args.learning_rate
    groups: dict[tuple[float, bool], list] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            rate = head_rate if name in head else args.learning_rate * factors[name]
            groups.setdefault((rate, name in decay), []).append(parameter)
    return cls(
        [
            {"params": params, "lr": rate, "weight_decay": args.weight_decay if decays else 0.0}
            for (rate, decays), params in groups.items()
        ],
        **kwargs,
    )


class ProbeFirst(TrainerCallback):
    """LP-FT: the encoder stays frozen for the first `steps` optimizer steps, so only the head trains (a linear
    probe), then the whole model fine-tunes. The optimizer holds every parameter from the start; a frozen one has no
    gradient, so the optimizer leaves it (and its state) alone until it thaws."""

    def __init__(self, model, steps: int):
        self.steps = steps
        head = head_parameter_names(model)
        self.frozen = [p for n, p in model.named_parameters() if n not in head and p.requires_grad]

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step < self.steps:
            for parameter in self.frozen:
                parameter.requires_grad_(False)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.steps:
            for parameter in self.frozen:
                parameter.requires_grad_(True)


def few_label_changes(cfg: FinetuneConfig, args: TrainingArguments, n_train: int, n_validation: int) -> dict:
    """TrainingArguments changes for a run with few labels: at least `finetune.min_steps` optimizer steps where the
    epochs give fewer, and no checkpoint choice or early stopping on fewer than `finetune.min_validation` validation
    examples (the last step is kept). Empty when neither applies or the recipe set `training.max_steps` itself."""
    changes = {}
    per_step = args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps
    by_epochs = math.ceil(args.num_train_epochs * math.ceil(n_train / per_step))
    if args.max_steps <= 0 and by_epochs < cfg.finetune.min_steps:
        changes["max_steps"] = cfg.finetune.min_steps
    if args.eval_strategy != "no" and args.load_best_model_at_end and n_validation < cfg.finetune.min_validation:
        changes |= {"eval_strategy": "no", "load_best_model_at_end": False}
    notes = []
    if "max_steps" in changes:
        notes.append(f"{cfg.finetune.min_steps} steps (finetune.min_steps; the epochs give {by_epochs})")
    if "eval_strategy" in changes:
        notes.append(
            f"the last step kept (fewer than finetune.min_validation {cfg.finetune.min_validation} to choose on)"
        )
    if notes:
        logger.info("%d training and %d validation examples: %s", n_train, n_validation, "; ".join(notes))
    return changes


def tokenize(splits: LabelledSplits, tokenizer, max_length: int) -> dict[str, datasets.Dataset]:
    pair = "text_pair" in splits.train.column_names

    def encode(batch):
        second = batch["text_pair"] if pair else None
        return tokenizer(batch["text"], second, truncation=True, max_length=max_length)

    out = {}
    for name in ("train", "validation", "test"):
        split = getattr(splits, name)
        if split is not None:
            drop = [c for c in split.column_names if c != "label"]
            out[name] = split.map(encode, batched=True, remove_columns=drop, desc=f"Tokenizing {name}")
    return out


@dataclasses.dataclass
class Prepared:
    """What every model a fine-tuning run trains shares: its arguments, processor, data and collator."""

    cfg: FinetuneConfig
    args: TrainingArguments
    changes: dict
    """TrainingArguments changes of the caller and the task, before the few-label ones (`few`)."""
    few: dict
    processor: Any
    splits: LabelledSplits
    encoded: dict[str, Any]
    collator: Any
    unlabeled: Any = None
    """Self-training's unlabeled examples, encoded as the training split is."""

    def arguments_for(self, n_train: int, **changes) -> TrainingArguments:
        """The run's arguments for a model trained on `n_train` examples (a self-training student's step floor
        counts its pseudo-labels too), with `changes`."""
        base = training_arguments(self.cfg, **self.changes)
        few = few_label_changes(self.cfg, base, n_train, len(self.encoded["validation"]))
        return training_arguments(self.cfg, **(self.changes | few | changes))


def prepare(cfg: FinetuneConfig, changes: dict | None = None) -> Prepared:
    """The arguments, processor, data and collator, checked before any training."""
    audio = cfg.data.task == "audio"
    changes = dict(changes or {})
    if audio:  # clips stay undecoded in the dataset; the collator reads the "audio" column the Trainer would drop
        changes.setdefault("remove_unused_columns", False)
    if cfg.data.label_fraction < 1.0 and cfg.data.few_label_validation == "none":
        changes |= {"eval_strategy": "no", "load_best_model_at_end": False}
    args = training_arguments(cfg, **changes)
    processor = load_processor(cfg)  # before the data, so a bad checkpoint fails before any work
    if not audio:
        config = load_model_config(cfg.model)
        limit = usable_positions(config) if hasattr(config, "max_position_embeddings") else None
        if limit is not None and cfg.data.max_length > limit:
            raise UsageError(
                f"data.max_length: {cfg.data.max_length} exceeds the model's {limit} positions "
                "(max_position_embeddings)"
            )
    splits = load_labelled(cfg.data, seed=args.seed)
    if audio:
        encoded = {n: s for n in ("train", "validation", "test") if (s := getattr(splits, n)) is not None}
        collator = AudioClassificationCollator(processor, cfg.data.max_seconds)
    else:
        encoded = tokenize(splits, processor, cfg.data.max_length)
        collator = DataCollatorWithPadding(processor, pad_to_multiple_of=8)
    few = few_label_changes(cfg, args, len(encoded["train"]), len(encoded["validation"]))
    if few:
        args = training_arguments(cfg, **(changes | few))
    prepared = Prepared(cfg, args, changes, few, processor, splits, encoded, collator)
    # label-efficiency sweeps and suites fine-tune through here too, and their configs have no self-training
    if getattr(getattr(cfg, "self_training", None), "unlabeled", None):
        from hfssl.downstream.self_training import load_pool

        prepared.unlabeled = load_pool(cfg, prepared)
    return prepared


def train_classifier(
    prep: Prepared, train_dataset, args: TrainingArguments | None = None, noise: dict | None = None
) -> Trainer:
    """A classifier from the recipe's starting weights, trained on `train_dataset` (`noise`: config changes, a
    self-training student's dropout and SpecAugment)."""
    cfg, args = prep.cfg, args or prep.args
    set_seed(args.seed)  # the new head's initialisation too (the Trainer seeds only what comes after it)
    model = load_classifier(cfg, prep.splits.label_names, noise)
    if cfg.finetune.freeze_encoder:
        freeze_encoder(model)
    callbacks = []
    patience = cfg.finetune.early_stopping_patience
    if patience and args.load_best_model_at_end and args.eval_strategy != "no":
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=patience))
    if cfg.finetune.probe_steps:
        callbacks.append(ProbeFirst(model, cfg.finetune.probe_steps))
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=prep.encoded["validation"],
        processing_class=prep.processor,
        data_collator=prep.collator,
        compute_metrics=trainer_regression_metrics if cfg.data.regression else trainer_compute_metrics,
        callbacks=callbacks,
    )
    if cfg.finetune.head_learning_rate is not None or cfg.finetune.layer_lr_decay < 1.0:
        trainer.optimizer = grouped_optimizer(trainer, cfg.finetune.head_learning_rate, cfg.finetune.layer_lr_decay)
    train(trainer)
    return trainer


def finetune(cfg: FinetuneConfig, export: bool = True, changes: dict | None = None, overwrite: bool = False) -> dict:
    """Fine-tune, evaluate on validation and test, export to `<output_dir>/final`; returns the metrics. With
    `self_training.unlabeled`, noisy-student rounds follow (`hfssl.downstream.self_training`).

    `changes` overrides TrainingArguments fields for this run (label-efficiency sweeps use it). An earlier
    fine-tune in the output directory is refused, or with `overwrite` replaced.
    """
    start = time.time()
    check_output_dir(Path(cfg.training.output_dir), "training.output_dir")
    replace_earlier(Path(cfg.training.output_dir), overwrite)
    audio = cfg.data.task == "audio"
    prep = prepare(cfg, changes)
    args, processor, splits, encoded, few = prep.args, prep.processor, prep.splits, prep.encoded, prep.few
    trainer = train_classifier(prep, encoded["train"])
    rounds = None
    if prep.unlabeled is not None:
        from hfssl.downstream.self_training import self_train

        trainer, rounds = self_train(prep, trainer, train_classifier)
        args = trainer.args
    metrics = {
        "model": cfg.model.name_or_path,
        "from_scratch": cfg.model.from_scratch,
        "train_examples": len(encoded["train"]),
        "labels": splits.label_names,
        "selection": describe_selection(args, cfg, splits, len(encoded["validation"]), few),
        "validation": trainer_scores(trainer.evaluate(encoded["validation"], metric_key_prefix="eval")),
    }
    if rounds is not None:
        metrics["self_training"] = rounds
    if "test" in encoded:
        metrics["test"] = trainer_scores(trainer.predict(encoded["test"], metric_key_prefix="test").metrics)
    finish_finetuning_trackers(args.report_to)
    metrics["wall_time_s"] = time.time() - start
    metrics["device"] = str(args.device)
    metrics["num_processes"] = args.world_size
    metrics["steps"] = trainer.state.global_step
    # non-padding input positions: tokens for text, samples for audio (None when the recipe turned counting off)
    seen = trainer.state.num_input_tokens_seen if args.include_num_input_tokens_seen != "no" else None
    if audio:
        # the attention mask counts samples, or the filterbank frames of an encoder that reads them
        per_position = samples_per_frame(trainer.model.config) if uses_filterbanks(trainer.model.config) else 1
        metrics["audio_seconds_seen"] = None if seen is None else seen * per_position / processor.sampling_rate
    else:
        metrics["tokens_seen"] = seen
    if export and trainer.is_world_process_zero():
        run_dir = Path(cfg.training.output_dir)
        final = run_dir / "final"
        with atomic_dir(final) as tmp:
            trainer.save_model(str(tmp))
            processor.save_pretrained(tmp)
            render_card(cfg, splits, metrics, trainer.model).save(tmp / "README.md")
        write_json(run_dir / "metrics.json", metrics)
        logger.info("fine-tuned model in %s", final)
    return metrics


def replace_earlier(run_dir: Path, overwrite: bool) -> None:
    """Refuse an output directory that holds an earlier fine-tune unless `overwrite`; with it, remove that run's
    checkpoints, which the Trainer would otherwise rotate with (and resume its best model from) the new run's."""
    earlier = [p for p in (run_dir / "final", run_dir / "metrics.json") if p.exists()]
    earlier += sorted(run_dir.glob("checkpoint-*"))
    if earlier and not overwrite:
        raise UsageError(
            f"training.output_dir: {run_dir} holds an earlier fine-tune ({earlier[0].name}); pass --overwrite to "
            "replace it, or choose another output directory"
        )
    for checkpoint in run_dir.glob("checkpoint-*"):
        shutil.rmtree(checkpoint, ignore_errors=True)


def train(trainer: Trainer) -> None:
    """`trainer.train()`; a checkpoint the Trainer could not finish for a full disk (no trainer state, which it
    writes last) is removed, and the run stops in one line."""
    try:
        trainer.train()
    except Exception as err:
        if not disk_full(err):
            raise
        partial = Path(trainer.args.output_dir) / f"checkpoint-{trainer.state.global_step}"
        if not (partial / "trainer_state.json").is_file():
            shutil.rmtree(partial, ignore_errors=True)
        raise no_space(partial, "the earlier checkpoints are as they were") from None


def describe_selection(
    args: TrainingArguments, cfg: FinetuneConfig, splits: LabelledSplits, n_val: int, few: dict | None = None
) -> str:
    """How the kept checkpoint was chosen, and with how many validation labels (`few`: what `few_label_changes`
    changed)."""
    budget = f" of at least {cfg.finetune.min_steps} steps (finetune.min_steps)" if "max_steps" in (few or {}) else ""
    if "eval_strategy" in (few or {}):
        return (
            f"none: the last step{budget} was kept ({n_val} validation examples are fewer than "
            f"finetune.min_validation {cfg.finetune.min_validation}: too few to choose a checkpoint on)"
        )
    if args.eval_strategy == "no" or not args.load_best_model_at_end:
        return f"none: the last step{budget} was kept (no validation-based selection or early stopping)"
    metric = args.metric_for_best_model.removeprefix("eval_")
    every = "epoch" if args.eval_strategy == "epoch" else f"{args.eval_steps:g} steps"
    text = f"the best {metric} on the validation split, evaluated every {every}"
    patience = cfg.finetune.early_stopping_patience
    if patience:
        text += f", stopping after {patience} evaluations without improvement"
    if cfg.data.label_fraction >= 1.0:
        return f"{text} ({n_val} examples)"
    if cfg.data.few_label_validation == "fraction":
        return f"{text} ({n_val} of its {splits.full_validation} examples: the training labels' fraction)"
    return (
        f"{text} (all {n_val} examples, though training used {cfg.data.label_fraction:g} of its labels: more labels "
        "chose the checkpoint than trained it)"
    )


def render_card(cfg: FinetuneConfig, splits: LabelledSplits, metrics: dict, model) -> ModelCard:
    task = "audio-classification" if cfg.data.task == "audio" else "text-classification"
    synthetic = "keywords" if cfg.data.task == "audio" else "topics"
    dataset_name = f"hfssl synthetic {synthetic}" if splits.source == "synthetic" else splits.source
    dataset_type = f"hfssl/synthetic-{synthetic}" if splits.source == "synthetic" else splits.source
    split_name = "test" if "test" in metrics else "validation"
    shown = metric_names(cfg.data.regression)
    hub_data = splits.source != "synthetic" and bool(hub_dataset_ids(splits.source))
    results = [
        EvalResult(
            task_type=task,
            dataset_type=dataset_type,
            dataset_name=dataset_name,
            dataset_config=cfg.data.hub_config if hub_data else None,
            dataset_revision=cfg.data.hub_revision if hub_data else None,
            dataset_split=split_name,
            metric_type=name,
            metric_value=round(value, 4),
            metric_args={"average": "macro"} if name in ("f1", "precision", "recall") else None,
        )
        for name, value in metrics[split_name].items()
        if name in shown
    ]
    name = model_name(cfg.export, cfg.training.output_dir)
    card_data = ModelCardData(
        model_name=name,
        language=cfg.export.language or None,
        license=cfg.export.license,
        library_name="transformers",
        pipeline_tag=task,
        tags=["hfssl", task, model.config.model_type, *cfg.export.tags],
        datasets=cfg.export.datasets or hub_dataset_ids(cfg.data.train, cfg.data.validation, cfg.data.test) or None,
        base_model=None if cfg.model.from_scratch else base_model(cfg.export, cfg.model.name_or_path),
        eval_results=results,
    )
    t = cfg.training
    f = cfg.finetune
    hyperparameters = {
        "learning rate": t.learning_rate,
        "head learning rate": f.head_learning_rate if f.head_learning_rate is not None else t.learning_rate,
        "epochs (at most)": t.num_train_epochs,
        "batch size": t.per_device_train_batch_size,
        "checkpoint selection": metrics.get("selection"),
        "training examples": metrics["train_examples"],
        "optimizer steps": metrics.get("steps"),
        "seed": t.seed,
    }
    if cfg.data.task == "audio":
        seconds = metrics.get("audio_seconds_seen")
        seen = ("audio seen", "not counted" if seconds is None else f"{seconds / 3600:,.3f} h")
    else:
        tokens = metrics.get("tokens_seen")
        seen = ("tokens seen", "not counted" if tokens is None else f"{int(tokens):,}")
    table = "\n".join(
        f"| {split} | " + " | ".join(f"{metrics[split].get(m, float('nan')):.4f}" for m in shown) + " |"
        for split in ("validation", "test")
        if split in metrics
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATES / "classifier.md"),
        model_name=name,
        base=cfg.model.name_or_path if not cfg.model.from_scratch else "random initialisation (no pretraining)",
        arch=model.config.model_type,
        labels=", ".join(splits.label_names),
        regression=cfg.data.regression,
        data=dataset_name,
        hyperparameters=hyperparameters,
        compute=compute_rows(metrics, seen),
        objective=describe_finetune_objective(cfg, model, metrics.get("self_training")),
        metric_names=" | ".join(shown),
        metric_rule="|".join(["---"] * (len(shown) + 1)),
        results_table=table,
        load_path=name,
        kind="audio" if cfg.data.task == "audio" else "text",
        pipeline_task=task,
        auto_class="AutoModelForAudioClassification"
        if cfg.data.task == "audio"
        else "AutoModelForSequenceClassification",
        example='"clip.wav"  # or {"raw": waveform, "sampling_rate": rate}'
        if cfg.data.task == "audio"
        else '"a text like the training data"',
    )


def describe_finetune_objective(cfg: FinetuneConfig, model, self_training: list[dict] | None = None) -> str:
    if self_training:
        from hfssl.downstream.self_training import describe

        first = describe_finetune_objective(cfg, model)
        return f"{first}\n\n{describe(self_training, cfg.self_training.threshold)}"
    start = "random initialisation" if cfg.model.from_scratch else "the pretrained weights"
    if cfg.data.regression:
        text = (
            f"Supervised fine-tuning from {start}, with a new one-output regression head over the pooled encoder "
            "outputs; the loss is the squared error against the real-valued labels."
        )
    else:
        text = (
            f"Supervised fine-tuning from {start}, with a new classification head over the pooled encoder outputs; "
            f"the loss is cross-entropy over the {model.config.num_labels} labels."
        )
    if cfg.model.layer_sum:
        text += " The head read a softmax-weighted sum of every layer's hidden states, its weights learnt with it."
    if cfg.finetune.freeze_encoder:
        return text + " The encoder stayed frozen: only the head was trained, on its features."
    conv = getattr(model.base_model, "feature_extractor", None)  # a speech encoder's convolutional front end
    if conv is not None and not any(p.requires_grad for p in conv.parameters()):
        text += " The convolutional feature encoder stayed frozen, as in wav2vec 2.0 fine-tuning."
    augment = [f"{name} {value}" for name, value in cfg.model.spec_augment().items()]
    if augment:
        text += f" SpecAugment masked the encoder's inputs while training ({', '.join(augment)})."
    return text


def summary(metrics: dict) -> str:
    split = "test" if "test" in metrics else "validation"
    scores = metrics[split]
    if "pearson" in scores:
        return f"{split}: Pearson {scores['pearson']:.4f}, Spearman {scores['spearman']:.4f}"
    return (
        f"{split}: accuracy {scores.get('accuracy', float('nan')):.4f}, macro F1 {scores.get('f1', float('nan')):.4f}"
    )
