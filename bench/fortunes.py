"""A real-text task hfssl never saw, built offline from Debian's fortune-cookie files, for bench/objectives.py.

    apt-get download fortunes fortunes-min && mkdir fortunes && for f in fortunes*.deb; do dpkg-deb -x $f fortunes; done
    python bench/fortunes.py fortunes/usr/share/games/fortunes runs/fortunes

Debian's `fortunes` package holds about 15,000 quotations, jokes, definitions and verses in English, filed by
category (computers, politics, science, ...). Writes to the output folder:
- `task-train.jsonl`, `task-test.jsonl`: the fortunes of `--categories` (text, label = category), shuffled and split
  (`--test-share` to test, stratified, seeded): a topic task whose labels are a human curator's filing, noisy at the
  edges (a joke about programmers' politics could sit in either), unlike the embedded synthetic task;
- `corpus.txt`: every fortune of every category but the test ones, one per line (line breaks inside a fortune become
  spaces): the unlabelled text a user would pretrain on, about 0.4M words.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

CATEGORIES = ("computers", "definitions", "people", "politics", "science", "songs-poems", "work", "men-women")


def read_fortunes(path: Path) -> list[str]:
    """The fortunes of one strfile source file, each on one line with its whitespace collapsed."""
    text = path.read_text(encoding="utf-8", errors="replace")
    return [" ".join(part.split()) for part in text.split("\n%\n") if part.strip() and part.strip() != "%"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the fortunes folder (usr/share/games/fortunes of the package)")
    parser.add_argument("out", type=Path, help="where the task and corpus files go")
    parser.add_argument("--categories", default=",".join(CATEGORIES), help="comma-separated categories to classify")
    parser.add_argument("--test-share", type=float, default=0.2, help="share of each category held out for testing")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    files = {p.name: p for p in sorted(args.source.iterdir()) if p.is_file() and not p.suffix}
    categories = [c for c in args.categories.split(",") if c]
    missing = [c for c in categories if c not in files]
    if not files or missing:
        parser.error(f"{args.source}: no fortune file for {', '.join(missing) or 'any category'}")
    rng = random.Random(args.seed)
    train, test, held_out = [], [], set()
    for category in categories:
        fortunes = sorted(set(read_fortunes(files[category])))
        rng.shuffle(fortunes)
        cut = round(len(fortunes) * args.test_share)
        test += [{"text": text, "label": category} for text in fortunes[:cut]]
        train += [{"text": text, "label": category} for text in fortunes[cut:]]
        held_out.update(fortunes[:cut])
    rng.shuffle(train)
    rng.shuffle(test)
    corpus = sorted({text for path in files.values() for text in read_fortunes(path)} - held_out)
    rng.shuffle(corpus)

    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("task-train.jsonl", train), ("task-test.jsonl", test)):
        tmp = args.out / f"{name}.tmp"
        tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
        tmp.replace(args.out / name)
    tmp = args.out / "corpus.txt.tmp"
    tmp.write_text("".join(text + "\n" for text in corpus))
    tmp.replace(args.out / "corpus.txt")
    words = sum(len(text.split()) for text in corpus)
    print(f"{len(train)} training and {len(test)} test examples in {len(categories)} categories; corpus: "
          f"{len(corpus)} fortunes, {words:,} words -> {args.out}")  # fmt: skip


if __name__ == "__main__":
    main()
