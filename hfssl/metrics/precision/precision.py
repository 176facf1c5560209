"""Precision, as a local `evaluate` module: `evaluate.load("<path to this folder>")`, no Hub access."""

import datasets
import evaluate

from hfssl.metrics.classification import precision_recall_f1

_DESCRIPTION = """
Precision is the share of a class's predictions that are right: TP / (TP + FP). With more than two
classes the per-class scores are averaged (macro by default). A class never predicted has precision 0.0 (a zero
denominator counts as 0.0: scikit-learn's default, without its warning).
"""

_CITATION = ""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class ids.
    references (`list` of `int`): true class ids, as many as predictions (at least one).
    average (`str`, default "macro"): "macro": unweighted mean over classes; "weighted": mean weighted by each class's
        count in the references; "micro": from the counts summed over classes; "binary": class `pos_label` alone
        (at most two classes in the data).
    labels (`list` of `int`, optional): the classes to average over; by default every class in predictions or
        references. Not allowed with average="binary".
    pos_label (`int`, default 1): the positive class for average="binary".

Returns:
    precision (`float`): in [0, 1].

Example:
    >>> precision = evaluate.load("hfssl/metrics/precision")
    >>> precision.compute(predictions=[0, 1, 2, 1], references=[0, 1, 1, 1])
    {'precision': 0.6666666666666666}
"""


class Precision(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
            format="numpy",
        )

    def _compute(self, predictions, references, average="macro", labels=None, pos_label=1):
        scores = precision_recall_f1(predictions, references, average=average, labels=labels, pos_label=pos_label)
        return {"precision": scores[0]}
