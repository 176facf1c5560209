"""Pearson's correlation, as a local `evaluate` module: `evaluate.load("<path to this folder>")`, no Hub access."""

import datasets
import evaluate

from hfssl.metrics.regression import pearson

_DESCRIPTION = """
Pearson's correlation coefficient measures how linearly the predicted scores follow the
reference scores: the covariance of the two over the product of their standard deviations.
"""

_CITATION = ""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): predicted scores.
    references (`list` of `float`): reference scores, as many as predictions (at least two).

Returns:
    pearson (`float`): in [-1, 1]; 0.0 when either series is constant.
"""


class Pearson(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
            format="numpy",
        )

    def _compute(self, predictions, references):
        return {"pearson": pearson(predictions, references)}
