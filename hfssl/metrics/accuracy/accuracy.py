"""Accuracy, as a local `evaluate` module: `evaluate.load("<path to this folder>")`, no Hub access."""

import datasets
import evaluate

from hfssl.metrics.classification import accuracy

_DESCRIPTION = """
Accuracy is the share of examples whose predicted class is the reference class: (TP + TN) / (TP + TN + FP + FN) for
two classes, correct / total for any number.
"""

_CITATION = ""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class ids.
    references (`list` of `int`): true class ids, as many as predictions (at least one).

Returns:
    accuracy (`float`): in [0, 1]; 1.0 when every prediction is right.

Example:
    >>> accuracy = evaluate.load("hfssl/metrics/accuracy")
    >>> accuracy.compute(predictions=[0, 1, 2, 1], references=[0, 1, 1, 1])
    {'accuracy': 0.75}
"""


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
            format="numpy",
        )

    def _compute(self, predictions, references):
        return {"accuracy": accuracy(predictions, references)}
