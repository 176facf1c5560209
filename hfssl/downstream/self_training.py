"""Self-training on the unlabeled pool the user already has (noisy student, Xie et al. 2020; for text, Du et al.
2021): the fine-tuned model labels the unlabeled examples, its confident labels join the real ones, and a new
student, from the same starting weights, trains on both with noise on (dropout, and SpecAugment for speech).
The student is the next round's teacher.

The teacher predicts without noise; the student learns with it, so it has to be right where the teacher was sure
under perturbations the teacher never saw, which is where it can grow past the teacher. Each round's pseudo-labels
come from the newest teacher, keeping only the ones whose probability reaches `self_training.threshold`, and at most
`self_training.per_class` per labelled example of the class, the most confident first.

Which model the run keeps follows the fine-tuning rule for choosing checkpoints: with at least
`finetune.min_validation` validation examples, the round that scored best on them (the first fine-tuning counts as
round 0); with fewer, the last round. A first fine-tuning that is not clearly above chance on validation (`at_chance`)
labels nothing worth learning from: the rounds are skipped and the card says why."""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import Trainer

from hfssl.data.labelled import load_unlabeled
from hfssl.errors import UsageError
from hfssl.metrics import trainer_scores

logger = logging.getLogger(__name__)

DROPOUT_FIELDS = (
    "hidden_dropout_prob", "attention_probs_dropout_prob", "hidden_dropout", "attention_dropout",
    "activation_dropout", "feat_proj_dropout", "embedding_dropout", "mlp_dropout", "embd_pdrop", "resid_pdrop",
    "attn_pdrop", "classifier_dropout",
)  # fmt: skip
"""The dropout fields of the transformers configs hfssl fine-tunes (BERT, RoBERTa, ELECTRA, ModernBERT, GPT-2,
Llama, wav2vec 2.0, HuBERT, Wav2Vec2-BERT); a config has some of them."""


def load_pool(cfg, prep):
    """The unlabeled pool, encoded as the training split is, at most `self_training.max_unlabeled` (a seeded
    sample), after refusing a task self-training cannot label."""
    s = cfg.self_training
    if cfg.data.regression or cfg.data.text_pair_column:
        kind = "real-valued scores" if cfg.data.regression else "text pairs"
        raise UsageError(f"self_training.unlabeled: self-training pseudo-labels classes of single examples, not {kind}")
    pool = load_unlabeled(s.unlabeled, cfg.data)
    if s.max_unlabeled is not None and len(pool) > s.max_unlabeled:
        pool = pool.shuffle(seed=prep.args.seed).select(range(s.max_unlabeled))
    if cfg.data.task == "audio":
        return pool

    def encode(batch):
        return prep.processor(batch["text"], truncation=True, max_length=cfg.data.max_length)

    return pool.map(encode, batched=True, remove_columns=["text"], desc="Tokenizing unlabeled")


def student_noise(config, s) -> dict:
    """Config changes that turn a model's noise up for a student: each dropout field to `s.dropout` at least, and
    a speech encoder's SpecAugment time masking to `s.spec_augment` at least."""
    noise = {
        name: max(getattr(config, name), s.dropout)
        for name in DROPOUT_FIELDS
        if isinstance(getattr(config, name, None), float | int)
    }
    if hasattr(config, "mask_time_prob"):
        noise["mask_time_prob"] = max(config.mask_time_prob or 0.0, s.spec_augment)
    return noise


def pseudo_labels(probabilities: np.ndarray, labelled_counts: np.ndarray, s) -> tuple[np.ndarray, np.ndarray]:
    """Indices and classes of the examples to pseudo-label: top probability at least `s.threshold`, and of each
    class at most `s.per_class` times its labelled examples (at least one), the most confident first."""
    top, confidence = probabilities.argmax(axis=1), probabilities.max(axis=1)
    keep = []
    for label in range(probabilities.shape[1]):
        members = np.flatnonzero((top == label) & (confidence >= s.threshold))
        cap = max(1, int(s.per_class * labelled_counts[label]))
        keep.append(members[np.argsort(-confidence[members], kind="stable")[:cap]])
    chosen = np.sort(np.concatenate(keep)) if keep else np.array([], dtype=int)
    return chosen, top[chosen]


def predict_probabilities(trainer: Trainer, pool) -> np.ndarray:
    logits = trainer.predict(pool, metric_key_prefix="pool").predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    return torch.from_numpy(logits).float().softmax(dim=1).numpy()


def self_train(prep, teacher: Trainer, train_classifier: Callable[..., Trainer]) -> tuple[Trainer, list[dict]]:
    """`self_training.rounds` noisy-student rounds after the fine-tuned `teacher`, each student trained by
    `train_classifier` (fine-tuning's, `hfssl.downstream.finetune.train_classifier`); returns the model kept and a
    row per round (round 0 the first fine-tuning): pseudo-labels added, per class, and the validation scores."""
    cfg, s = prep.cfg, prep.cfg.self_training
    train = prep.encoded["train"]
    labelled_counts = np.bincount(np.asarray(train["label"]), minlength=len(prep.splits.label_names))
    metric = (prep.args.metric_for_best_model or "accuracy").removeprefix("eval_")
    greater = prep.args.greater_is_better if prep.args.metric_for_best_model else True
    rows = [{"round": 0, "pseudo_labels": 0, "train_examples": len(train), "validation": scores(teacher, prep)}]
    kept, kept_round = teacher, 0
    run_dir = Path(cfg.training.output_dir)
    if reason := at_chance(rows[0]["validation"], prep):
        logger.warning("self-training skipped: %s", reason)
        rows[0] |= {"kept": True, "skipped": reason}
        return teacher, rows
    for number in range(1, s.rounds + 1):
        chosen, labels = pseudo_labels(predict_probabilities(teacher, prep.unlabeled), labelled_counts, s)
        pseudo = prep.unlabeled.select(chosen.tolist()).add_column("label", labels.tolist())
        pseudo = pseudo.cast_column("label", train.features["label"])
        student_train = datasets.concatenate_datasets([train, pseudo]).shuffle(seed=prep.args.seed + number)
        folder = run_dir / "self-training" / f"round-{number}"
        args = prep.arguments_for(len(student_train), output_dir=str(folder))
        logger.info(
            "self-training round %d: %d of %d unlabeled examples pseudo-labelled (threshold %s); student on %d",
            number, len(chosen), len(prep.unlabeled), s.threshold, len(student_train),
        )  # fmt: skip
        student = train_classifier(prep, student_train, args, noise=student_noise(teacher.model.config, s))
        counts = np.bincount(labels, minlength=len(prep.splits.label_names))
        rows.append({
            "round": number,
            "pseudo_labels": int(len(chosen)),
            "pseudo_labels_per_class": dict(zip(prep.splits.label_names, map(int, counts), strict=True)),
            "train_examples": len(student_train),
            "steps": student.state.global_step,
            "validation": scores(student, prep),
        })  # fmt: skip
        if not chooses_on_validation(prep) or better(rows[-1], rows[kept_round], metric, greater):
            kept, kept_round = student, number
        teacher = student
    for row in rows:
        row["kept"] = row["round"] == kept_round
    if prep.args.save_strategy == "no":
        shutil.rmtree(run_dir / "self-training", ignore_errors=True)
    return kept, rows


def scores(trainer: Trainer, prep) -> dict:
    return trainer_scores(trainer.evaluate(prep.encoded["validation"], metric_key_prefix="eval"))


def at_chance(validation: dict, prep) -> str | None:
    """Why the fine-tuned teacher's pseudo-labels would be noise: its validation accuracy no more than two standard
    errors above what always answering the most frequent validation class scores. The margin grows as validation
    shrinks, so a handful of examples passes only a teacher that gets most of them right. None when it is clearly
    above, or when there is no validation accuracy to judge by (no validation split, regression)."""
    accuracy = validation.get("accuracy")
    if accuracy is None or len(prep.encoded["validation"]) == 0:
        return None
    labels = np.asarray(prep.encoded["validation"]["label"])
    majority = np.bincount(labels).max() / len(labels)
    error = math.sqrt(majority * (1 - majority) / len(labels))
    if accuracy > majority + 2 * error:
        return None
    return (
        f"the fine-tuned model's validation accuracy {accuracy:.3f} is within two standard errors of always answering "
        f"the most frequent class ({majority:.3f} on {len(labels)} examples), so its pseudo-labels would be noise"
    )


def chooses_on_validation(prep) -> bool:
    return len(prep.encoded["validation"]) >= prep.cfg.finetune.min_validation


def better(row: dict, best: dict, metric: str, greater: bool) -> bool:
    new, old = row["validation"].get(metric), best["validation"].get(metric)
    if new is None or old is None:
        return False
    return new > old if greater else new < old


def describe(rows: list[dict], threshold: float) -> str:
    """The card's account of self-training: a sentence and a table of the rounds."""
    if skipped := rows[0].get("skipped"):
        return f"Self-training (noisy student) was skipped: {skipped}."
    kept = next(r["round"] for r in rows if r["kept"])
    names = [k for k in ("accuracy", "f1") if k in rows[0]["validation"]] or ["loss"]
    lines = [
        f"Self-training (noisy student): {len(rows) - 1} rounds in which the model so far labelled the unlabeled "
        f"pool, pseudo-labels with probability at least {threshold} joined the labelled examples, and a new "
        f"student with dropout (and, for speech, SpecAugment) trained on both. Kept: round {kept}.",
        "",
        "| round | pseudo-labels added | training examples | " + " | ".join(f"validation {n}" for n in names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for r in rows:
        values = " | ".join(f"{r['validation'].get(n, float('nan')):.4f}" for n in names)
        lines.append(f"| {r['round']} | {r['pseudo_labels']:,} | {r['train_examples']:,} | {values} |")
    return "\n".join(lines)
