"""Classification metrics as local `evaluate` modules, loaded by path so they never need the Hub.

`evaluate.load("accuracy")` fetches a script from the Hub and fails offline; `evaluate.load(<folder>)` copies a local
script into the modules cache (`$HF_HOME/modules`) and imports it from there. Each module here is a thin
`evaluate.Metric` over the numpy arithmetic in `hfssl.metrics.classification`.

Loaded modules are cached for the life of the process and shared: `compute(predictions=..., references=...)` in one
call leaves nothing behind, but interleaving `add_batch` calls from two places would mix their examples. For a
private instance, `evaluate.load(metric_path(name))`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import evaluate
import numpy as np

from hfssl.metrics.classification import check_class_ids
from hfssl.metrics.regression import check_scores

if TYPE_CHECKING:
    from transformers import EvalPrediction

METRIC_NAMES = ("accuracy", "f1", "precision", "recall", "matthews_correlation")
REGRESSION_METRIC_NAMES = ("pearson", "spearman")  # real-valued labels (data.regression), as STS-B reports

# Positions the transformers losses ignore (token classification pads labels with it); they are not examples.
_IGNORE_INDEX = -100


def metric_path(name: str) -> str:
    """The folder holding metric `name`'s script, as `evaluate.load` takes it."""
    if name not in (*METRIC_NAMES, *REGRESSION_METRIC_NAMES):
        known = ", ".join((*METRIC_NAMES, *REGRESSION_METRIC_NAMES))
        raise ValueError(f"unknown metric {name!r}; the local metrics are {known}")
    return str(Path(__file__).parent / name)


@functools.cache
def load_metric(name: str) -> evaluate.EvaluationModule:
    """Load one of `METRIC_NAMES` (or `REGRESSION_METRIC_NAMES`) from its local script (no network), once per process.

    F1, precision and recall average over classes with `average="macro"` unless `compute` is given another.
    """
    # In memory: no Arrow files under $HF_HOME/metrics, and no file locks between processes that each compute.
    return evaluate.load(metric_path(name), keep_in_memory=True)


@functools.cache
def classification_metrics() -> evaluate.CombinedEvaluations:
    """All of `METRIC_NAMES` as one `evaluate.combine`; F1, precision and recall are macro averages.

    `CombinedEvaluations.compute` hands the same keyword arguments to every module (accuracy would reject
    `average=`), so the macro average comes from the modules' own default rather than from a call argument.
    """
    return evaluate.combine([load_metric(name) for name in METRIC_NAMES])


def compute_classification_metrics(predictions, references) -> dict[str, float]:
    """Accuracy, macro F1/precision/recall and Matthews correlation of predicted against true class ids.

    Args:
        predictions: predicted class ids, 1-D, integers.
        references: true class ids, as many.

    Returns:
        `{"accuracy", "f1", "precision", "recall", "matthews_correlation"}` -> Python float.

    Raises:
        ValueError: empty, mismatched, not 1-D, or not integers (evaluate itself would truncate floats to classes).
    """
    predictions, references = check_class_ids(predictions, references)
    results = classification_metrics().compute(predictions=predictions, references=references)
    return {name: float(results[name]) for name in METRIC_NAMES}


def trainer_compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
    """`compute_metrics` for `transformers.Trainer` on a classification head.

    Takes the logits (the first element when the model returns a tuple), predicts the argmax over the last axis,
    drops positions whose label is -100, and returns `compute_classification_metrics` of the rest.
    """
    logits = eval_prediction.predictions
    if isinstance(logits, tuple):
        logits = logits[0]
    predictions = np.asarray(logits).argmax(axis=-1).reshape(-1)
    references = np.asarray(eval_prediction.label_ids).reshape(-1)
    if predictions.shape != references.shape:
        raise ValueError(
            f"{predictions.shape[0]} predictions from logits of shape {np.shape(logits)} but "
            f"{references.shape[0]} labels"
        )
    keep = references != _IGNORE_INDEX
    return compute_classification_metrics(predictions[keep], references[keep])


def trainer_scores(metrics: dict) -> dict[str, float]:
    """A Trainer's `evaluate`/`predict` metrics without their prefix ({"eval_accuracy": ...} -> {"accuracy": ...}),
    keeping the classification (or regression) metrics and the loss, not the run's timings."""
    out = {}
    for key, value in metrics.items():
        name = key.partition("_")[2]
        if name in METRIC_NAMES or name in REGRESSION_METRIC_NAMES or name == "loss":
            out[name] = float(value)
    return out


def metric_names(regression: bool) -> tuple[str, ...]:
    """The scores a classifier reports, or a regressor (data.regression)."""
    return REGRESSION_METRIC_NAMES if regression else METRIC_NAMES


def compute_regression_metrics(predictions, references) -> dict[str, float]:
    """Pearson's and Spearman's correlation of predicted against reference scores (1-D, at least two)."""
    predictions, references = check_scores(predictions, references)
    return {
        name: float(load_metric(name).compute(predictions=predictions, references=references)[name])
        for name in REGRESSION_METRIC_NAMES
    }


def trainer_regression_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
    """`compute_metrics` for `transformers.Trainer` on a one-output regression head."""
    predictions = eval_prediction.predictions
    if isinstance(predictions, tuple):
        predictions = predictions[0]
    return compute_regression_metrics(
        np.asarray(predictions).reshape(-1), np.asarray(eval_prediction.label_ids).reshape(-1)
    )
