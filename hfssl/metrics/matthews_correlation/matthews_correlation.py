"""Matthews correlation, as a local `evaluate` module: `evaluate.load("<path to this folder>")`, no Hub access."""

import datasets
import evaluate

from hfssl.metrics.classification import matthews_correlation

_DESCRIPTION = """
The Matthews correlation coefficient is the correlation between predicted and true classes, computed from the whole
confusion matrix, so it stays informative when classes are imbalanced. For K classes it is Gorodkin's R_K: with c
examples right out of s, p_k predictions and t_k references of class k,
(c s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2) (s^2 - sum_k t_k^2)); for two classes this is Matthews'
(TP TN - FP FN) / sqrt((TP + FP) (TP + FN) (TN + FP) (TN + FN)). It is 1.0 for perfect predictions, 0.0 for chance,
and -1.0 for a binary classifier that is always wrong. It is 0.0 where undefined: when every prediction, or every
reference, is the same class.
"""

_CITATION = """
@article{matthews1975comparison,
  title = {Comparison of the predicted and observed secondary structure of {T4} phage lysozyme},
  author = {Matthews, Brian W.},
  journal = {Biochimica et Biophysica Acta (BBA) - Protein Structure},
  volume = {405},
  number = {2},
  pages = {442--451},
  year = {1975}
}
@article{gorodkin2004comparing,
  title = {Comparing two {K}-category assignments by a {K}-category correlation coefficient},
  author = {Gorodkin, Jan},
  journal = {Computational Biology and Chemistry},
  volume = {28},
  number = {5--6},
  pages = {367--374},
  year = {2004}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class ids.
    references (`list` of `int`): true class ids, as many as predictions (at least one).

Returns:
    matthews_correlation (`float`): in [-1, 1].

Example:
    >>> matthews_correlation = evaluate.load("hfssl/metrics/matthews_correlation")
    >>> matthews_correlation.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])
    {'matthews_correlation': 0.5773502691896258}
"""


class MatthewsCorrelation(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
            format="numpy",
        )

    def _compute(self, predictions, references):
        return {"matthews_correlation": matthews_correlation(predictions, references)}
