"""Correlation scores of predicted against reference real values, in numpy: the arithmetic behind the local
`evaluate` modules `pearson` and `spearman` (STS-B's metrics). A constant series has no correlation: 0.0."""

from __future__ import annotations

import numpy as np


def check_scores(predictions, references) -> tuple[np.ndarray, np.ndarray]:
    """Both as 1-D float arrays, or ValueError saying what is wrong with them."""
    predictions = np.asarray(predictions, dtype=np.float64)
    references = np.asarray(references, dtype=np.float64)
    for name, values in (("predictions", predictions), ("references", references)):
        if values.ndim != 1:
            raise ValueError(f"{name} must be a 1-D sequence of scores, got shape {values.shape}")
        if not np.isfinite(values).all():
            raise ValueError(f"{name} hold a value that is not a finite number")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if len(predictions) < 2:
        raise ValueError("a correlation needs at least two examples")
    return predictions, references


def pearson(predictions, references) -> float:
    """Pearson's correlation coefficient."""
    x, y = check_scores(predictions, references)
    x, y = x - x.mean(), y - y.mean()
    scale = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / scale) if scale > 0 else 0.0


def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the mean of the ranks they span."""
    order = np.argsort(values, kind="stable")
    ranked = np.empty(len(values), dtype=np.float64)
    ranked[order] = np.arange(1, len(values) + 1)
    _, groups = np.unique(values, return_inverse=True)
    return np.bincount(groups, weights=ranked)[groups] / np.bincount(groups)[groups]


def spearman(predictions, references) -> float:
    """Spearman's rank correlation: Pearson's over the ranks."""
    x, y = check_scores(predictions, references)
    return pearson(ranks(x), ranks(y))
