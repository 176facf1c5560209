"""F1, as a local `evaluate` module: `evaluate.load("<path to this folder>")`, no Hub access."""

import datasets
import evaluate

from hfssl.metrics.classification import precision_recall_f1

_DESCRIPTION = """
F1 is the harmonic mean of precision and recall: 2 TP / (2 TP + FP + FN). With more than two classes the
per-class scores are averaged (macro by default). A class neither predicted nor present has F1 0.0 (a zero
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
    f1 (`float`): in [0, 1].

Example:
    >>> f1 = evaluate.load("hfssl/metrics/f1")
    >>> f1.compute(predictions=[0, 1, 2, 1], references=[0, 1, 1, 1])
    {'f1': 0.6}
"""


class F1(evaluate.Metric):
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
        return {"f1": scores[2]}
