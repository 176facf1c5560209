"""What `hfssl evaluate` (suites) and `hfssl label-efficiency` (sweeps) share: running every point (a task, a label
fraction) with each seed, the rows' mean and standard deviation over seeds, and the rows, tables and card section they
write. Each command keeps what it alone reports: its row fields, its table's columns, its card's words."""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

Point = TypeVar("Point")


def sweep(
    points: Iterable[Point], seeds: Callable[[Point], Sequence[int]], run: Callable[[Point, int], list[dict]]
) -> list[dict]:
    """`run(point, seed)` for every point and each of its `seeds(point)`, in order; their rows, concatenated."""
    rows = []
    for point in points:
        for seed in seeds(point):
            rows += run(point, seed)
    return rows


def summarise(
    rows: list[dict],
    by: Sequence[str],
    scores: Mapping[str, tuple[str, str]],
    counts: Sequence[str] = (),
    order: Callable[[dict], tuple] | None = None,
) -> list[dict]:
    """One entry per group of rows (the seeds of one point) that agree on the `by` fields: those fields, the mean of
    each `counts` field rounded, for each `scores` field its mean and standard deviation under the names `scores`
    maps it to (the deviation is 0 for one seed), and the number of seeds.

    Entries come in the order their groups first appear in `rows`, or sorted by `order(entry)`."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[name] for name in by), []).append(row)
    summary = []
    for key, members in groups.items():
        entry = dict(zip(by, key, strict=True))
        for name in counts:
            entry[name] = round(statistics.mean(r[name] for r in members))
        for name, (mean_name, std_name) in scores.items():
            values = [r[name] for r in members]
            entry[mean_name] = statistics.mean(values)
            entry[std_name] = statistics.stdev(values) if len(values) > 1 else 0.0
        entry["seeds"] = len(members)
        summary.append(entry)
    return sorted(summary, key=order) if order is not None else summary


def csv_text(rows: list[dict], columns: Sequence[str]) -> str:
    """The rows as CSV with a header of `columns`; a row's other fields are left out, its missing ones empty."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def markdown_table(header: Sequence[str], lines: Iterable[Sequence[str]]) -> str:
    """A markdown table; an empty cell is written as one space."""

    def line(cells: Sequence[str]) -> str:
        return "|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|"

    return "\n".join([line(header), "|" + "---|" * len(header), *(line(cells) for cells in lines)])


def card_section(start: str, end: str, heading: str, body: Sequence[str]) -> str:
    """A model-card section between the `start` and `end` markers, so that `hfssl.cards.put_card_section` replaces
    it when the command runs again."""
    return "\n".join([start, f"## {heading}", "", *body, end, ""])
