"""Spearman's correlation, as a local `evaluate` module: `evaluate.load("<path to this folder>")`, no Hub access."""

import datasets
import evaluate

from hfssl.metrics.regression import spearman

_DESCRIPTION = """
Spearman's rank correlation measures how monotonically the predicted scores follow the
reference scores: Pearson's correlation of their ranks (ties share the mean rank), as STS benchmarks report.
"""

_CITATION = ""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): predicted scores.
    references (`list` of `float`): reference scores, as many as predictions (at least two).

Returns:
    spearman (`float`): in [-1, 1]; 0.0 when either series is constant.
"""


class Spearman(evaluate.Metric):
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
        return {"spearman": spearman(predictions, references)}
