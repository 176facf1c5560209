"""The sweep runner and the summary, CSV and table writer that suites and label-efficiency sweeps share."""

import csv
import io

import pytest

from hfssl.downstream import report


def test_sweep_runs_every_point_with_each_of_its_seeds_in_order():
    rows = report.sweep(["a", "b"], lambda point: [0] if point == "a" else [1, 2], lambda p, s: [{"p": p, "s": s}])
    assert rows == [{"p": "a", "s": 0}, {"p": "b", "s": 1}, {"p": "b", "s": 2}]


def test_summary_groups_seeds_and_keeps_the_first_order_unless_told():
    rows = [
        {"model": m, "fraction": f, "labels": n, "seed": s, "accuracy": a}
        for m, f, n, s, a in [("scratch", 0.5, 10, 0, 0.2), ("pre", 0.5, 11, 0, 0.6), ("pre", 0.5, 12, 1, 0.8),
                              ("scratch", 0.5, 10, 1, 0.4), ("pre", 0.1, 2, 0, 0.5)]
    ]  # fmt: skip
    scores = {"accuracy": ("accuracy", "accuracy_std")}
    summary = report.summarise(rows, ("model", "fraction"), scores, counts=("labels",))
    assert [(e["model"], e["fraction"]) for e in summary] == [("scratch", 0.5), ("pre", 0.5), ("pre", 0.1)]
    pre = summary[1]
    assert list(pre) == ["model", "fraction", "labels", "accuracy", "accuracy_std", "seeds"]
    assert pre["labels"] == 12 and pre["seeds"] == 2  # round(11.5): to even
    assert pre["accuracy"] == pytest.approx(0.7) and pre["accuracy_std"] == pytest.approx(0.1414, abs=1e-4)
    assert summary[2]["accuracy_std"] == 0.0  # one seed
    ordered = report.summarise(rows, ("model", "fraction"), scores, order=lambda e: (e["fraction"], e["model"]))
    assert [(e["model"], e["fraction"]) for e in ordered] == [("pre", 0.1), ("pre", 0.5), ("scratch", 0.5)]


def test_csv_and_markdown_table():
    text = report.csv_text([{"a": 1, "b": 2, "extra": 3}, {"a": 4}], ["a", "b"])
    assert list(csv.DictReader(io.StringIO(text))) == [{"a": "1", "b": "2"}, {"a": "4", "b": ""}]
    table = report.markdown_table(["x", "y"], [["1", "2"], ["**all**", ""]])
    assert table == "| x | y |\n|---|---|\n| 1 | 2 |\n| **all** | |"
    section = report.card_section("<!-- s -->", "<!-- /s -->", "Heading", ["text", "", table])
    assert section == f"<!-- s -->\n## Heading\n\ntext\n\n{table}\n<!-- /s -->\n"
