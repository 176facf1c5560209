"""Classification scores on integer class ids, in numpy: the arithmetic behind the local `evaluate` modules.

Every score is a plain Python float. Where a ratio's denominator is zero (precision of a class never predicted,
recall of a class absent from the references, F1 of a class in neither) it counts as 0.0: scikit-learn's default
(`zero_division="warn"`), without the warning, which would fire on most evaluations early in fine-tuning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

AVERAGES = ("macro", "micro", "weighted", "binary")


def check_class_ids(predictions, references) -> tuple[np.ndarray, np.ndarray]:
    """Return both as 1-D integer arrays, or raise ValueError saying what is wrong with them."""
    predictions = np.asarray(predictions)
    references = np.asarray(references)
    for name, values in (("predictions", predictions), ("references", references)):
        if values.ndim != 1:
            raise ValueError(f"{name} must be a 1-D sequence of class ids, got shape {values.shape}")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if len(predictions) == 0:
        raise ValueError("predictions and references are empty: a classification score needs at least one example")
    for name, values in (("predictions", predictions), ("references", references)):
        # evaluate casts floats to int64 by truncation, so 0.9 would silently become class 0.
        if not (np.issubdtype(values.dtype, np.integer) or values.dtype == bool):
            raise ValueError(f"{name} must be integer class ids, got dtype {values.dtype} (take the argmax of logits)")
    return predictions.astype(np.int64), references.astype(np.int64)


def _counts(predictions: np.ndarray, references: np.ndarray, labels: np.ndarray):
    """Per label: how often it was predicted correctly, predicted at all, and present in the references."""
    classes = np.union1d(np.union1d(predictions, references), labels)
    predicted_at = np.searchsorted(classes, predictions)
    actual_at = np.searchsorted(classes, references)
    correct = np.bincount(actual_at[predictions == references], minlength=len(classes))
    predicted = np.bincount(predicted_at, minlength=len(classes))
    actual = np.bincount(actual_at, minlength=len(classes))
    pick = np.searchsorted(classes, labels)
    return correct[pick], predicted[pick], actual[pick]


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise numerator / denominator, 0.0 where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros_like(numerator)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def accuracy(predictions, references) -> float:
    """Share of examples whose predicted class is the reference class."""
    predictions, references = check_class_ids(predictions, references)
    return float(np.mean(predictions == references))


def precision_recall_f1(
    predictions,
    references,
    *,
    average: str = "macro",
    labels: Sequence[int] | None = None,
    pos_label: int = 1,
) -> tuple[float, float, float]:
    """Precision, recall and F1, averaged over classes.

    Args:
        predictions: predicted class ids.
        references: true class ids.
        average: "macro": unweighted mean of the per-class scores; "weighted": their mean weighted by how often each
            class occurs in the references; "micro": the scores of the counts summed over classes (with all classes
            equal to accuracy); "binary": the scores of class `pos_label` alone, for data with at most two classes.
        labels: the classes to score and average over; by default every class in predictions or references. A
            listed class absent from both scores 0.0.
        pos_label: the positive class for `average="binary"`.

    Returns:
        `(precision, recall, f1)`, a ratio with a zero denominator counting as 0.0.
    """
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    predictions, references = check_class_ids(predictions, references)
    if average == "binary":
        if labels is not None:
            raise ValueError("labels has no effect with average='binary'; pass pos_label, or another average")
        present = np.union1d(predictions, references)
        if len(present) > 2:
            raise ValueError(
                f"average='binary' needs at most two classes, found {len(present)}: {present.tolist()}; "
                "use average='macro', 'micro' or 'weighted'"
            )
        if len(present) == 2 and pos_label not in present:
            raise ValueError(f"pos_label={pos_label} is not one of the classes {present.tolist()}")
        labels = [pos_label]
    elif labels is None:
        labels = np.union1d(predictions, references)
    labels = np.unique(np.asarray(labels, dtype=np.int64))
    if len(labels) == 0:
        raise ValueError("labels is empty: there is no class to score")
    correct, predicted, actual = _counts(predictions, references, labels)

    if average in ("micro", "binary"):
        correct, predicted, actual = correct.sum(), predicted.sum(), actual.sum()
    precision = _ratio(correct, predicted)
    recall = _ratio(correct, actual)
    # 2tp / (2tp + fp + fn): defined whenever the class was predicted or present, unlike 2pr / (p + r).
    f1 = _ratio(2 * correct, predicted + actual)
    if average == "macro":
        return float(precision.mean()), float(recall.mean()), float(f1.mean())
    if average == "weighted":
        total = actual.sum()
        if total == 0:
            return 0.0, 0.0, 0.0
        return tuple(float(np.dot(score, actual) / total) for score in (precision, recall, f1))
    return float(precision), float(recall), float(f1)


def matthews_correlation(predictions, references) -> float:
    """Matthews correlation coefficient over all classes: Gorodkin's R_K, which is Matthews' for two classes.

    From the K x K confusion matrix with c correct out of s examples, p_k predictions and t_k references of class k:
    (c s - sum p_k t_k) / sqrt((s^2 - sum p_k^2) (s^2 - sum t_k^2)), in [-1, 1]. It is 0.0 when undefined, that is
    when all predictions or all references are one class.
    """
    predictions, references = check_class_ids(predictions, references)
    classes = np.union1d(predictions, references)
    # Python ints: exact, where the int64 products overflow past ~3e9 examples.
    p = np.bincount(np.searchsorted(classes, predictions), minlength=len(classes)).tolist()
    t = np.bincount(np.searchsorted(classes, references), minlength=len(classes)).tolist()
    c = int(np.sum(predictions == references))
    s = len(predictions)
    numerator = c * s - sum(pk * tk for pk, tk in zip(p, t, strict=True))
    spread = (s * s - sum(pk * pk for pk in p)) * (s * s - sum(tk * tk for tk in t))
    if spread == 0:
        return 0.0
    # One square root of the exact product, so perfect predictions give exactly 1.0.
    return numerator / math.sqrt(spread)
