"""The classic pipeline a practitioner tries before pretraining anything, so that every report says whether
pretraining beat it: for text, TF-IDF and logistic regression; for speech, MFCC statistics and logistic regression.

Text: scikit-learn's `TfidfVectorizer` (word 1-2 grams, sublinear tf) fitted on the training texts it is given and
no others, then `LogisticRegression` with a fixed C (`TFIDF_C`); a pair's two texts are joined by `PAIR_SEPARATOR`.

Speech: each clip (decoded, mono, cut to its first `max_seconds`) becomes 13 MFCCs (25 ms windows every 10 ms, 23 mel
bands: the features HuBERT's first iteration clusters, `hfssl.data.mfcc.MfccFeatures`) with their deltas and
delta-deltas; their means and standard deviations over the clip's frames are its 78 features. The classifier is
`hfssl.downstream.probe.fit_probe`: standardised features, L2-penalised logistic regression fitted with L-BFGS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from hfssl.config import LabelledDataArgs
from hfssl.downstream.probe import fit_probe
from hfssl.errors import UsageError
from hfssl.metrics import compute_classification_metrics

HOP_SECONDS = 0.010
# Fixed, never tuned on a scored split. On the validation splits of the embedded topics, same-topic and word-order
# tasks (1%, 10% and all of 2,400 labels, three seeds), C 1, 10 and 100 all scored within 3 points of each other.
TFIDF_C = 10.0
PAIR_SEPARATOR = " [SEP] "  # a word of its own, so that no bigram spans the two texts
TFIDF, MFCC = "tfidf", "mfcc"
TITLES = {TFIDF: "TF-IDF + LR", MFCC: "MFCC + LR"}
"""The baselines' names, as their rows' model (label-efficiency) or method (evaluate) says, and their titles."""


@dataclass(frozen=True)
class Baseline:
    """A task's classic pipeline.

    `inputs(split)` turns a labelled split into what the pipeline reads (an array indexed by example), once per split,
    so that each label subsample only indexes it; `score(train_inputs, train_labels, tests, seed)` fits on the
    training inputs alone and returns the classification metrics on each `(inputs, labels)` of `tests`.
    """

    name: str
    """its rows' model (label-efficiency) or method (evaluate) name"""
    title: str
    """its column, legend and row label"""
    about: str
    """what it is, for a card"""
    inputs: Callable[[Any], Any]
    score: Callable[[Any, torch.Tensor, Sequence[tuple[Any, torch.Tensor]], int], list[dict]]


def for_task(data: LabelledDataArgs, num_classes: int, sampling_rate: int | None = None, l2: float = 1e-3) -> Baseline:
    """The classic pipeline of `data`'s task: TF-IDF + LR for text (and text pairs), MFCC statistics + LR for audio
    clips at `sampling_rate` (the classifier's L2 penalty `l2`, as the probe's)."""
    if data.regression:
        raise UsageError("data.regression: the classic baselines classify; they score no real-valued labels")
    if data.task == "audio":
        if sampling_rate is None:
            raise ValueError("the MFCC baseline needs the clips' sampling rate")
        return Baseline(
            name=MFCC,
            title=TITLES[MFCC],
            about="MFCC statistics (means and deviations of 13 MFCCs, deltas and delta-deltas) with logistic "
            "regression",
            inputs=partial(mfcc_features, sampling_rate=sampling_rate, max_seconds=data.max_seconds),
            score=partial(_mfcc_scores, num_classes=num_classes, l2=l2),
        )
    return Baseline(
        name=TFIDF,
        title=TITLES[TFIDF],
        about=f"TF-IDF of word 1-2 grams (sublinear tf, the vocabulary of the training texts only) with logistic "
        f"regression (C {TFIDF_C:g})",
        inputs=texts,
        score=_tfidf_scores,
    )


def texts(dataset) -> np.ndarray:
    """The examples' texts as an object array, a pair's two joined by `PAIR_SEPARATOR`."""
    if "text_pair" not in dataset.column_names:
        return np.asarray(dataset["text"], dtype=object)
    return np.asarray([a + PAIR_SEPARATOR + b for a, b in zip(dataset["text"], dataset["text_pair"], strict=True)])


def tfidf_pipeline(seed: int):
    """An unfitted scikit-learn pipeline: TF-IDF of word 1-2 grams (sublinear tf), then logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        LogisticRegression(C=TFIDF_C, max_iter=1000, random_state=seed),
    )


def _tfidf_scores(train_x: np.ndarray, train_y: torch.Tensor, tests, seed: int) -> list[dict]:
    # the vectorizer's vocabulary and idf come from train_x alone: the pipeline is fitted before it sees a test text
    model = tfidf_pipeline(seed).fit(list(train_x), train_y.tolist())
    return [compute_classification_metrics(model.predict(list(x)).tolist(), y.tolist()) for x, y in tests]


def _mfcc_scores(train_x: torch.Tensor, train_y: torch.Tensor, tests, seed: int, num_classes: int, l2: float):
    return [
        fit_probe(train_x[:, None], train_y, x[:, None], y, num_classes, layer=0, l2=l2, seed=seed) for x, y in tests
    ]


def mfcc_statistics(features, clip: np.ndarray) -> torch.Tensor:
    """(78,) float32: the mean and standard deviation over the clip's frames of `features(clip)` (frames, 39)."""
    frames = features(clip)
    return torch.cat([frames.mean(0), frames.std(0, unbiased=False)])


def mfcc_features(dataset, sampling_rate: int, max_seconds: float) -> torch.Tensor:
    """[examples, 78] MFCC statistics of a dataset's undecoded "audio" column, each clip cut as fine-tuning cuts it."""
    from hfssl.data.audio import decode_audio
    from hfssl.data.mfcc import MfccFeatures

    features = MfccFeatures(sampling_rate, round(HOP_SECONDS * sampling_rate))
    limit = round(max_seconds * sampling_rate)
    audio = dataset.select_columns(["audio"])
    return torch.stack([mfcc_statistics(features, decode_audio(row["audio"], sampling_rate)[:limit]) for row in audio])
