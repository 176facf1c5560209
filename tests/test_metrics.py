"""The local classification metrics: against a reference written from the definitions, by property, at the edges,
offline, and as a Trainer's `compute_metrics`."""

import json
import math
import os
import subprocess
import sys
import warnings
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from transformers import EvalPrediction

from hfssl.metrics import (
    METRIC_NAMES,
    classification_metrics,
    compute_classification_metrics,
    load_metric,
    metric_path,
    trainer_compute_metrics,
)
from hfssl.metrics.classification import accuracy, matthews_correlation, precision_recall_f1

AVERAGES = ("macro", "micro", "weighted")


# Loading offline, with an empty cache, in a fresh interpreter: that interpreter spends most of its time importing
# evaluate (which imports transformers and torch), so it starts with this file's first test and runs beside the rest.

OFFLINE_SCRIPT = """
import json
import socket


def refuse(*args, **kwargs):
    raise OSError("the network was used")


socket.socket.connect = refuse
socket.create_connection = refuse

from hfssl.metrics import compute_classification_metrics

print(json.dumps(compute_classification_metrics([0, 1, 2, 2], [0, 1, 2, 1])))
"""


@pytest.fixture(scope="module", autouse=True)
def offline_run(tmp_path_factory):
    """The script above, run with the Hub offline, sockets refused, a new HF_HOME and a working directory of its own."""
    workdir = tmp_path_factory.mktemp("offline")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "XDG_CACHE"))}
    env |= {"HF_HOME": str(workdir / "hf_home"), "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1"}
    with open(workdir / "stdout", "w") as stdout, open(workdir / "stderr", "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", OFFLINE_SCRIPT], cwd=workdir, env=env, stdout=stdout, stderr=stderr
        )
    yield process, workdir
    if process.poll() is None:
        process.kill()
    process.wait()


# The reference: exact fractions from plain loops over a confusion matrix, F1 as the harmonic mean of precision and
# recall, and the multiclass Matthews correlation as Gorodkin defines it (the covariance of one-hot vectors).


def ratio(numerator, denominator) -> Fraction:
    return Fraction(numerator, denominator) if denominator else Fraction(0)


def harmonic_mean(a: Fraction, b: Fraction) -> Fraction:
    return 2 * a * b / (a + b) if a + b else Fraction(0)


def reference_accuracy(predictions, references) -> Fraction:
    return Fraction(sum(p == t for p, t in zip(predictions, references, strict=True)), len(references))


def reference_precision_recall_f1(predictions, references, average="macro", labels=None, pos_label=1):
    present = set(predictions) | set(references)
    if average == "binary":
        labels = [pos_label]
    elif labels is None:
        labels = sorted(present)
    classes = sorted(present | set(labels))
    confusion = {(t, p): 0 for t in classes for p in classes}
    for p, t in zip(predictions, references, strict=True):
        confusion[t, p] += 1
    tp = {k: confusion[k, k] for k in labels}
    predicted = {k: sum(confusion[t, k] for t in classes) for k in labels}
    actual = {k: sum(confusion[k, p] for p in classes) for k in labels}
    if average in ("micro", "binary"):
        precision = ratio(sum(tp.values()), sum(predicted.values()))
        recall = ratio(sum(tp.values()), sum(actual.values()))
        return precision, recall, harmonic_mean(precision, recall)
    per_class = {}
    for k in labels:
        precision, recall = ratio(tp[k], predicted[k]), ratio(tp[k], actual[k])
        per_class[k] = (precision, recall, harmonic_mean(precision, recall))
    if average == "macro":
        return tuple(sum(per_class[k][i] for k in labels) / len(labels) for i in range(3))
    total = sum(actual.values())
    return tuple(sum(per_class[k][i] * actual[k] for k in labels) / total if total else Fraction(0) for i in range(3))


def reference_matthews(predictions, references) -> float:
    classes = sorted(set(predictions) | set(references))
    n = len(references)
    x = [[int(p == k) for k in classes] for p in predictions]
    y = [[int(t == k) for k in classes] for t in references]
    mean_x = [Fraction(sum(row[k] for row in x), n) for k in range(len(classes))]
    mean_y = [Fraction(sum(row[k] for row in y), n) for k in range(len(classes))]

    def covariance(a, mean_a, b, mean_b):
        return sum((a[i][k] - mean_a[k]) * (b[i][k] - mean_b[k]) for i in range(n) for k in range(len(classes)))

    cov_xx, cov_yy = covariance(x, mean_x, x, mean_x), covariance(y, mean_y, y, mean_y)
    if cov_xx == 0 or cov_yy == 0:
        return 0.0
    return float(covariance(x, mean_x, y, mean_y)) / math.sqrt(float(cov_xx * cov_yy))


def random_labels(seed: int, n_classes: int, n: int = 150):
    """Predictions right about half the time, over class ids that are neither contiguous nor all positive."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(np.arange(-5, 50), size=n_classes, replace=False)
    references = ids[rng.integers(0, n_classes, n)]
    predictions = np.where(rng.random(n) < 0.5, references, ids[rng.integers(0, n_classes, n)])
    return predictions.tolist(), references.tolist(), sorted(ids.tolist())


CASES = [(0, 2), (1, 2), (2, 3), (3, 7)]


@pytest.mark.parametrize(("seed", "n_classes"), CASES)
def test_every_metric_matches_the_reference(seed, n_classes):
    predictions, references, ids = random_labels(seed, n_classes)
    compute = {name: load_metric(name).compute for name in METRIC_NAMES}

    assert compute["accuracy"](predictions=predictions, references=references)["accuracy"] == pytest.approx(
        float(reference_accuracy(predictions, references))
    )
    assert compute["matthews_correlation"](predictions=predictions, references=references)[
        "matthews_correlation"
    ] == pytest.approx(reference_matthews(predictions, references))

    settings_ = [{"average": average} for average in AVERAGES]
    # A subset of the classes, and a class that never occurs (which scores 0.0 and pulls macro down).
    settings_ += [{"average": average, "labels": ids[:2]} for average in AVERAGES]
    settings_ += [{"average": average, "labels": [*ids, 999]} for average in AVERAGES]
    if n_classes == 2:
        settings_ += [{"average": "binary", "pos_label": ids[0]}, {"average": "binary", "pos_label": ids[1]}]
    for kwargs in settings_:
        expected = reference_precision_recall_f1(predictions, references, **kwargs)
        for name, value in zip(("precision", "recall", "f1"), expected, strict=True):
            result = compute[name](predictions=predictions, references=references, **kwargs)
            assert result[name] == pytest.approx(float(value)), (name, kwargs)


def test_two_class_matthews_is_the_textbook_formula():
    predictions, references, (negative, positive) = random_labels(seed=5, n_classes=2)
    pairs = list(zip(predictions, references, strict=True))
    tp, tn = pairs.count((positive, positive)), pairs.count((negative, negative))
    fp, fn = pairs.count((positive, negative)), pairs.count((negative, positive))
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert matthews_correlation(predictions, references) == pytest.approx(expected)


def test_default_average_is_macro_and_combined_results_are_plain_floats():
    predictions, references, _ = random_labels(seed=7, n_classes=4)
    results = compute_classification_metrics(np.array(predictions), np.array(references))
    assert list(results) == list(METRIC_NAMES)
    assert all(type(value) is float for value in results.values())
    for name in ("precision", "recall", "f1"):
        macro = load_metric(name).compute(predictions=predictions, references=references, average="macro")[name]
        assert results[name] == macro
    assert results == classification_metrics().compute(predictions=predictions, references=references)


@pytest.mark.parametrize(("seed", "n_classes"), CASES)
def test_agrees_with_scikit_learn(seed, n_classes):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    predictions, references, ids = random_labels(seed, n_classes)
    results = compute_classification_metrics(predictions, references)
    assert results["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(references, predictions))
    assert results["matthews_correlation"] == pytest.approx(sklearn_metrics.matthews_corrcoef(references, predictions))
    settings_ = [{"average": average, "labels": labels} for average in AVERAGES for labels in (None, [*ids, 999])]
    if n_classes == 2:
        settings_ += [{"average": "binary", "pos_label": pos_label} for pos_label in ids]
    for kwargs in settings_:
        expected = sklearn_metrics.precision_recall_fscore_support(
            references, predictions, zero_division=0.0, **kwargs
        )[:3]
        assert precision_recall_f1(predictions, references, **kwargs) == pytest.approx(expected), kwargs


# Properties, on the numpy arithmetic the modules wrap (fast enough for many examples).

class_ids = st.integers(min_value=-3, max_value=6)
# (predictions, references) of one length.
labelled = st.lists(st.tuples(class_ids, class_ids), min_size=1, max_size=60).map(
    lambda pairs: tuple(zip(*pairs, strict=True))
)


def all_scores(predictions, references) -> dict:
    scores = {"accuracy": accuracy(predictions, references)}
    scores["matthews_correlation"] = matthews_correlation(predictions, references)
    for average in AVERAGES:
        p, r, f = precision_recall_f1(predictions, references, average=average)
        scores |= {f"precision_{average}": p, f"recall_{average}": r, f"f1_{average}": f}
    return scores


@settings(max_examples=10, deadline=None)
@given(references=st.lists(class_ids, min_size=2, max_size=60))
def test_perfect_predictions_score_one(references):
    assume(len(set(references)) >= 2)
    assert compute_classification_metrics(references, references) == {name: 1.0 for name in METRIC_NAMES}
    assert set(all_scores(references, references).values()) == {1.0}


@settings(max_examples=50)
@given(labelled)
def test_scores_stay_in_range(data):
    scores = all_scores(*data)
    assert -1.0 <= scores.pop("matthews_correlation") <= 1.0
    assert all(0.0 <= value <= 1.0 for value in scores.values())


@settings(max_examples=50)
@given(labelled, st.randoms(use_true_random=False))
def test_example_order_does_not_matter(data, rng):
    predictions, references = data
    order = list(range(len(references)))
    rng.shuffle(order)
    shuffled = [predictions[i] for i in order], [references[i] for i in order]
    assert all_scores(*shuffled) == all_scores(predictions, references)


@settings(max_examples=50)
@given(labelled, st.lists(st.integers(-1000, 1000), min_size=10, max_size=10, unique=True))
def test_consistent_relabelling_does_not_change_scores(data, new_ids):
    predictions, references = data
    rename = dict(zip(range(-3, 7), new_ids, strict=True))
    renamed = [rename[p] for p in predictions], [rename[t] for t in references]
    before, after = all_scores(predictions, references), all_scores(*renamed)
    assert after == pytest.approx(before, abs=1e-12)


# Edges.


def test_single_class_present():
    assert compute_classification_metrics([3, 3, 3], [3, 3, 3]) == {
        "accuracy": 1.0,
        "f1": 1.0,
        "precision": 1.0,
        "recall": 1.0,
        "matthews_correlation": 0.0,  # undefined: nothing to correlate
    }
    results = compute_classification_metrics([1, 1, 0, 1], [1, 1, 1, 1])
    assert results["matthews_correlation"] == 0.0
    # Class 0: predicted once, never right, never present -> 0.0 for all three; class 1: P 1, R 3/4, F1 6/7.
    assert results["precision"] == pytest.approx(1 / 2)
    assert results["recall"] == pytest.approx(3 / 8)
    assert results["f1"] == pytest.approx(3 / 7)


def test_a_class_never_predicted_scores_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # numpy's divide-by-zero
        results = compute_classification_metrics([0, 1, 1, 1], [0, 1, 2, 2])
    # Per class (precision, recall, F1): 0 -> (1, 1, 1), 1 -> (1/3, 1, 1/2), 2 -> (0, 0, 0).
    assert results["precision"] == pytest.approx(4 / 9)
    assert results["recall"] == pytest.approx(2 / 3)
    assert results["f1"] == pytest.approx(1 / 2)
    assert results["accuracy"] == 0.5


def test_binary_average():
    predictions, references = [0, 1, 1, 0, 1], [0, 1, 0, 0, 0]
    f1 = load_metric("f1")
    assert f1.compute(predictions=predictions, references=references, average="binary")["f1"] == pytest.approx(1 / 2)
    assert f1.compute(predictions=predictions, references=references, average="binary", pos_label=0)[
        "f1"
    ] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="at most two classes"):
        f1.compute(predictions=[0, 1, 2], references=[0, 1, 1], average="binary")
    with pytest.raises(ValueError, match="pos_label=1 is not one of the classes"):
        f1.compute(predictions=[0, 2], references=[2, 0], average="binary")


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_empty_input_is_a_clear_error_and_leaves_the_shared_module_usable(name):
    with pytest.raises(ValueError, match="empty"):
        load_metric(name).compute(predictions=[], references=[])
    assert load_metric(name).compute(predictions=[0, 1], references=[0, 1])[name] == 1.0


@pytest.mark.parametrize(
    ("predictions", "references", "match"),
    [
        ([], [], "empty"),
        ([0, 1], [0], "2 predictions but 1 references"),
        ([0.0, 1.0], [0, 1], "integer class ids"),
        ([[0, 1]], [[0, 1]], "1-D"),
    ],
)
def test_bad_input_is_a_clear_error(predictions, references, match):
    with pytest.raises(ValueError, match=match):
        compute_classification_metrics(predictions, references)


def test_bad_arguments():
    with pytest.raises(ValueError, match="average must be one of"):
        load_metric("precision").compute(predictions=[0, 1], references=[0, 1], average="samples")
    with pytest.raises(ValueError, match="accuracy, f1, precision, recall, matthews_correlation"):
        load_metric("roc_auc")


def test_loaded_modules_are_cached():
    assert load_metric("f1") is load_metric("f1")
    assert classification_metrics() is classification_metrics()
    assert load_metric("recall").name == "recall"


def test_metric_paths_hold_the_scripts():
    for name in METRIC_NAMES:
        script = os.path.join(metric_path(name), f"{name}.py")
        with open(script, encoding="utf-8") as f:
            source = f.read()
        # evaluate reads each `import` line as one library name: `import datasets, evaluate` would fail to load.
        assert all("," not in line for line in source.splitlines() if line.startswith("import "))


# As a Trainer's compute_metrics.


def test_trainer_compute_metrics_takes_the_argmax_of_tuple_logits():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(40, 3)).astype(np.float32)
    labels = rng.integers(0, 3, 40)
    hidden = rng.normal(size=(40, 8))
    results = trainer_compute_metrics(EvalPrediction(predictions=(logits, hidden), label_ids=labels))
    assert results == compute_classification_metrics(logits.argmax(-1), labels)
    assert trainer_compute_metrics(EvalPrediction(predictions=logits, label_ids=labels)) == results


def test_trainer_compute_metrics_skips_ignored_positions():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, 5, 3))
    labels = rng.integers(0, 3, (4, 5))
    labels[:, -2:] = -100
    results = trainer_compute_metrics(EvalPrediction(predictions=logits, label_ids=labels))
    kept = labels != -100
    assert results == compute_classification_metrics(logits.argmax(-1)[kept], labels[kept])


def test_loads_offline_with_an_empty_cache(offline_run):
    process, workdir = offline_run
    assert process.wait(timeout=300) == 0, (workdir / "stderr").read_text()
    results = json.loads((workdir / "stdout").read_text().strip().splitlines()[-1])
    assert results == compute_classification_metrics([0, 1, 2, 2], [0, 1, 2, 1])
    # evaluate copied the scripts into the empty cache it was given, so nothing came from an earlier run's.
    copied = {path.name for path in (workdir / "hf_home" / "modules" / "evaluate_modules" / "metrics").iterdir()}
    assert copied >= set(METRIC_NAMES)


# --------------------------------------------------------------------------- correlations (regression labels)


def test_correlations_as_local_modules():
    import evaluate

    from hfssl.metrics import compute_regression_metrics, metric_path

    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    y = 0.5 * x + rng.normal(size=50)
    pearson = evaluate.load(metric_path("pearson")).compute(predictions=x, references=y)["pearson"]
    assert pearson == pytest.approx(np.corrcoef(x, y)[0, 1])
    # ties share their mean rank: ranks of [1, 2, 2, 3] are [1, 2.5, 2.5, 4]
    scores = compute_regression_metrics([1.0, 2.0, 2.0, 3.0], [10.0, 20.0, 30.0, 40.0])
    assert scores["spearman"] == pytest.approx(np.corrcoef([1, 2.5, 2.5, 4], [1, 2, 3, 4])[0, 1])
    assert compute_regression_metrics(np.exp(x), x)["spearman"] == pytest.approx(1.0)  # monotone, not linear
    assert compute_regression_metrics([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == {"pearson": 0.0, "spearman": 0.0}


@pytest.mark.parametrize(
    "predictions, references, message",
    [([1.0], [1.0], "at least two"), ([1.0, 2.0], [1.0], "2 predictions but 1"), ([1.0, np.nan], [1.0, 2.0], "finite")],
)
def test_correlations_refuse_what_they_cannot_score(predictions, references, message):
    from hfssl.metrics import compute_regression_metrics

    with pytest.raises(ValueError, match=message):
        compute_regression_metrics(predictions, references)
