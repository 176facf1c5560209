"""Real text hfssl never saw, built from Debian's package lists: a section classifier, a corpus and retrieval pairs.

    apt-get update -o Acquire::Languages=en
    OMP_NUM_THREADS=1 python bench/debian_packages.py --out runs/data/debian-packages

`apt-cache dumpavail` gives every package of the configured archive (bookworm main: 63,697) with its section and
its one-line short description; the long descriptions are in apt's English translation index, which Debian's
container images skip (`Acquire::Languages "none"`), hence the `-o Acquire::Languages=en` on the update. Packages
are split by source package (all binaries of one source on one side, so `libfoo1` and `libfoo-dev`, which share their
long description, never sit on both), stratified by section and seeded. Writes to `--out`:
- `train.csv`, `validation.csv`, `test.csv` (columns `text,label`): text = short description + long description as
  one line, label = section (a `contrib/`/`non-free/` prefix dropped); sections with fewer than `--min-section`
  packages are dropped, as are exact repeats of a text (the first package by name keeps it). For `hfssl finetune`:
  `data.train/validation/test` = these files, `data.text_column: text`, `data.label_column: label`;
- `train-2000.csv`, `train-10000.csv`: stratified seeded subsets of `train.csv` (every section at least once);
- `corpus.txt`: the training packages' texts, one per line, none that a validation or test package also has: the
  unlabelled text to pretrain on (`data.train` of `hfssl pretrain`);
- `pairs-train.jsonl`, `pairs-test.jsonl` (columns `anchor`, `positive`, as supervised SimCSE reads pairs): short
  description -> long description of the train / test packages, without empty long descriptions, repeated long or
  short descriptions (the -dbg/-dev/-doc boilerplate) or, for test, any text a training pair has;
- `baselines.json`: TF-IDF (word 1-2 grams, sublinear tf) + logistic regression (L2, C = 1, one-vs-rest liblinear)
  on 2,000 / 10,000 / all training labels (the subsets drawn at `--seed`, `--seed`+1, `--seed`+2), test accuracy and
  macro-F1; TF-IDF recall@1 and @10 of short -> long description among the first `--retrieval-pairs` test pairs
  (cosine), printed as tables.
The same `--seed` on the same package lists gives the same files; everything is written to a temporary folder that
replaces `--out` at the end. About 4 minutes on a busy 2-core machine (under 1 GB), most of it the regressions.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

APT_HELPER = "/usr/lib/apt/apt-helper"  # decompresses apt's lists (lz4 in Debian's images) as apt reads them
ARCHIVE_AREAS = ("contrib/", "non-free-firmware/", "non-free/")
SUBSETS = (2000, 10000)
SPLITS = ("train", "validation", "test")
RECALL_AT = (1, 10)
LANGUAGES = "Acquire::Languages=en"  # Debian's container images set "none": no long descriptions
TRANSLATIONS_HINT = f"run `apt-get update -o {LANGUAGES}` first"


class BuildError(Exception):
    """A missing tool or list: printed as one line, without a traceback."""


@dataclass
class Package:
    name: str
    source: str
    section: str
    short: str
    long: str

    @property
    def text(self) -> str:
        return f"{self.short.rstrip('.')}. {self.long}" if self.long else self.short


def run(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise BuildError(f"{command[0]} not found: this needs Debian's apt") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise BuildError(f"`{' '.join(command)}` failed: {last}")
    return done.stdout


def stanzas(text: str) -> list[dict[str, str]]:
    """deb822 paragraphs as {field: value}, continuation lines kept with their newlines."""
    out = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields:
            out.append(fields)
    return out


def long_text(lines: list[str]) -> str:
    """A long description (its lines after the first) as one line: " ." paragraph breaks and list layout become
    single spaces."""
    return " ".join(" ".join("" if line.strip() == "." else line for line in lines).split())


def translations() -> dict[str, tuple[str, str]]:
    """Description-md5 -> (short, long) from apt's English translation indices."""
    files = run(["apt-get", "indextargets", "-o", LANGUAGES, "--format", "$(FILENAME)", "Identifier: Translations"])
    files = files.split()
    found = [f for f in files if Path(f).exists()]
    if not found:
        raise BuildError(f"apt has no English translation index (the long descriptions): {TRANSLATIONS_HINT}")
    out = {}
    for file in found:
        for fields in stanzas(run([APT_HELPER, "cat-file", file])):
            description = fields.get("Description-en")
            if description and "Description-md5" in fields:
                first, *rest = description.split("\n")
                out[fields["Description-md5"]] = (" ".join(first.split()), long_text(rest))
    return out


def read_packages() -> list[Package]:
    """Every package apt knows, with its long description where the translation index has it."""
    described = translations()
    packages = []
    for fields in stanzas(run(["apt-cache", "dumpavail"])):
        if "Package" not in fields or "Section" not in fields:
            continue
        section = fields["Section"]
        for area in ARCHIVE_AREAS:
            section = section.removeprefix(area)
        short, long = described.get(fields.get("Description-md5", ""), (fields.get("Description", ""), ""))
        source = fields.get("Source", fields["Package"]).split(" ")[0]
        packages.append(Package(fields["Package"], source, section, " ".join(short.split()), long))
    if not packages:
        raise BuildError("`apt-cache dumpavail` lists no packages: run `apt-get update` first")
    if not any(p.long for p in packages):
        raise BuildError(f"no package has a long description: {TRANSLATIONS_HINT}")
    return sorted(packages, key=lambda p: p.name)


def split_by_source(packages: list[Package], shares: dict[str, float], rng: random.Random) -> dict[str, list[Package]]:
    """Source packages dealt to the splits section by section (a source's section: that of most of its packages),
    largest first, each to the split furthest below its share of the section's packages; sources of equal size in
    seeded order. A section of one source (tasksel's `tasks`) thus lands in train alone."""
    groups: dict[str, list[Package]] = defaultdict(list)
    for package in packages:
        groups[package.source].append(package)
    by_section: dict[str, list[list[Package]]] = defaultdict(list)
    for source in sorted(groups):
        members = groups[source]
        by_section[Counter(p.section for p in members).most_common(1)[0][0]].append(members)
    splits: dict[str, list[Package]] = {split: [] for split in SPLITS}
    fractions = {"train": 1 - shares["test"] - shares["validation"], **shares}
    for section in sorted(by_section):
        sources = by_section[section]
        rng.shuffle(sources)
        sources.sort(key=len, reverse=True)  # stable: the shuffle orders sources of one size
        dealt = dict.fromkeys(SPLITS, 0)
        for members in sources:
            split = min(SPLITS, key=lambda split: dealt[split] / fractions[split])
            splits[split].extend(members)
            dealt[split] += len(members)
    for rows in splits.values():
        rng.shuffle(rows)
    return splits


def stratified(rows: list[dict], size: int, rng: random.Random) -> list[dict]:
    """A seeded sample of `size` rows with each label in proportion (largest remainders), every label at least once."""
    by_label: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_label[row["label"]].append(row)
    labels = sorted(by_label)
    quotas = {label: size * len(by_label[label]) / len(rows) for label in labels}
    counts = {label: max(1, math.floor(quotas[label])) for label in labels}
    for label in sorted(labels, key=lambda label: counts[label] - quotas[label])[: max(0, size - sum(counts.values()))]:
        counts[label] += 1
    chosen = [row for label in labels for row in rng.sample(by_label[label], min(counts[label], len(by_label[label])))]
    rng.shuffle(chosen)
    return chosen


def pairs(packages: list[Package], exclude: set[str] = frozenset()) -> list[dict]:
    """(short, long) of packages with a long description, each long and each short description once; none whose
    text is in `exclude`."""
    seen_long, seen_short, out = set(exclude), set(exclude), []
    for package in packages:
        if not package.long or package.long in seen_long or package.short.lower() in seen_short:
            continue
        seen_long.add(package.long)
        seen_short.add(package.short.lower())
        out.append({"anchor": package.short, "positive": package.long})
    return out


def classification_baseline(train: list[dict], test: list[dict], seed: int) -> dict[str, float]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.multiclass import OneVsRestClassifier

    # bench/objectives.py's vectorizer; its multinomial L-BFGS fit does not suit 42k texts: on all of them (690k
    # features x 53 classes) it held 10 GB and was still unconverged after 53 iterations, 7 CPU minutes. liblinear
    # fits one L2-penalised logistic regression per class (one-vs-rest) in memory the size of the weights.
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    features = vectorizer.fit_transform([row["text"] for row in train])
    classifier = OneVsRestClassifier(LogisticRegression(solver="liblinear", random_state=seed), n_jobs=1)
    classifier.fit(features, [row["label"] for row in train])
    predicted = classifier.predict(vectorizer.transform([row["text"] for row in test]))
    truth = [row["label"] for row in test]
    return {"accuracy": accuracy_score(truth, predicted), "f1": f1_score(truth, predicted, average="macro")}


def retrieval_baseline(test_pairs: list[dict], corpus: list[str]) -> dict[str, dict[str, float]]:
    """Recall@k of each anchor's own positive among all the positives, by TF-IDF cosine, with the vocabulary and
    idf fitted on the evaluation texts themselves (as bench/embeddings.py does) and on the training corpus."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    queries = [p["anchor"] for p in test_pairs]
    candidates = [p["positive"] for p in test_pairs]
    out = {}
    for fitted_on, texts in (("evaluation texts", queries + candidates), ("training corpus", corpus)):
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(texts)
        # rows are l2-normalised, so the product is the cosine
        scores = (vectorizer.transform(queries) @ vectorizer.transform(candidates).T).toarray()
        own = scores[np.arange(len(queries)), np.arange(len(queries))]
        # rank = candidates scoring strictly higher than the right one; ties count in the query's favour
        rank = (scores > own[:, None]).sum(1)
        out[fitted_on] = {f"recall@{k}": float((rank < k).mean()) for k in RECALL_AT}
    return out


def mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def replace(tmp: Path, out: Path) -> None:
    """Put the finished folder `tmp` where `out` was, the old one set aside first so neither is ever half-written."""
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/data/debian-packages"), help="the folder to (re)write")
    parser.add_argument("--seed", type=int, default=0, help="seeds the split, the subsets and the classifiers")
    parser.add_argument("--test-share", type=float, default=0.2, help="share of each section's packages for test")
    parser.add_argument("--validation-share", type=float, default=0.1, help="share for validation")
    parser.add_argument("--min-section", type=int, default=50, help="sections with fewer packages are dropped")
    parser.add_argument("--retrieval-pairs", type=int, default=2000, help="test pairs the retrieval baseline ranks")
    parser.add_argument("--no-baselines", action="store_true", help="write the data only")
    args = parser.parse_args(argv)
    if not 0 < args.test_share + args.validation_share < 1:
        parser.error("--test-share plus --validation-share must be in (0, 1)")
    tmp = args.out.with_name(args.out.name + ".tmp")  # becomes --out once complete
    try:
        build(args, tmp)
    except BuildError as err:
        sys.exit(f"error: {err}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build(args: argparse.Namespace, tmp: Path) -> None:
    started = time.perf_counter()
    packages = read_packages()
    sizes = Counter(p.section for p in packages)
    dropped = {section: n for section, n in sizes.items() if n < args.min_section}
    texts, kept = set(), []
    for package in packages:
        if package.section not in dropped and package.text not in texts:
            texts.add(package.text)
            kept.append(package)
    rng = random.Random(args.seed)
    shares = {"test": args.test_share, "validation": args.validation_share}
    split_packages = split_by_source(kept, shares, rng)
    splits = {split: [{"text": p.text, "label": p.section} for p in rows] for split, rows in split_packages.items()}
    # a guard: the deal fills train first, but a label training never saw would stop `hfssl finetune`
    labels = {row["label"] for row in splits["train"]}
    for split in ("validation", "test"):
        splits[split] = [row for row in splits[split] if row["label"] in labels]
    subsets = {size: stratified(splits["train"], size, random.Random(args.seed)) for size in SUBSETS}

    held_out = {p.text for split in ("validation", "test") for p in split_packages[split]}
    held_out |= {p.long for split in ("validation", "test") for p in split_packages[split] if p.long}
    corpus = [p.text for p in split_packages["train"] if p.text not in held_out and p.long not in held_out]
    pairs_train = pairs(split_packages["train"])
    seen = {text for pair in pairs_train for text in (pair["anchor"].lower(), pair["positive"])}
    pairs_test = pairs(split_packages["test"], exclude=seen)

    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for split, rows in splits.items():
        write_csv(tmp / f"{split}.csv", rows)
    for size, rows in subsets.items():
        write_csv(tmp / f"train-{size}.csv", rows)
    (tmp / "corpus.txt").write_text("".join(text + "\n" for text in corpus), encoding="utf-8")
    write_jsonl(tmp / "pairs-train.jsonl", pairs_train)
    write_jsonl(tmp / "pairs-test.jsonl", pairs_test)

    summary = {
        "packages": len(packages),
        "sections": len(sizes),
        "dropped_sections": dict(sorted(dropped.items())),
        "dropped_packages": sum(dropped.values()),
        "repeated_texts": len(packages) - sum(dropped.values()) - len(kept),
        "classes": len(labels),
        "examples": {split: len(rows) for split, rows in splits.items()},
        "corpus": {"documents": len(corpus), "words": sum(len(text.split()) for text in corpus)},
        "pairs": {"train": len(pairs_train), "test": len(pairs_test)},
        "seed": args.seed,
    }
    print(
        f"{summary['packages']:,} packages in {summary['sections']} sections; dropped {len(dropped)} sections under "
        f"{args.min_section} packages ({', '.join(f'{s} {n}' for s, n in sorted(dropped.items()))}: "
        f"{summary['dropped_packages']} packages) and {summary['repeated_texts']:,} repeated texts; "
        f"{len(labels)} classes, train / validation / test {len(splits['train']):,} / "
        f"{len(splits['validation']):,} / {len(splits['test']):,}; corpus {len(corpus):,} documents, "
        f"{summary['corpus']['words']:,} words; pairs train / test {len(pairs_train):,} / {len(pairs_test):,}"
    )
    if not args.no_baselines:
        summary["baselines"] = baselines(args, splits, subsets, corpus, pairs_test)
    summary["seconds"] = round(time.perf_counter() - started)
    (tmp / "baselines.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    replace(tmp, args.out)
    print(f"-> {args.out} ({summary['seconds']} s)")


def baselines(args, splits: dict[str, list[dict]], subsets: dict[int, list[dict]], corpus, pairs_test) -> dict:
    classification = {}
    for size in SUBSETS:
        # the first seed's subset is the train-SIZE.csv file
        runs = [
            classification_baseline(
                subsets[size] if seed == args.seed else stratified(splits["train"], size, random.Random(seed)),
                splits["test"],
                seed,
            )
            for seed in (args.seed, args.seed + 1, args.seed + 2)
        ]
        classification[str(size)] = {metric: mean_std([r[metric] for r in runs]) for metric in ("accuracy", "f1")}
    # one fit: the training set is fixed, and liblinear is deterministic on it
    full = classification_baseline(splits["train"], splits["test"], args.seed)
    classification["all"] = {metric: mean_std([full[metric]]) for metric in ("accuracy", "f1")}
    retrieval = retrieval_baseline(pairs_test[: args.retrieval_pairs], corpus)

    print(f"\nTF-IDF (word 1-2 grams, sublinear tf) + logistic regression, test split ({len(splits['test']):,}):\n")
    print("| training labels | accuracy | macro-F1 |\n|---|---|---|")
    for size, scores in classification.items():
        labels = len(splits["train"]) if size == "all" else int(size)
        accuracy, f1 = scores["accuracy"], scores["f1"]
        seeds = "" if size == "all" else " (3 seeds)"
        cells = [f"{scores['mean']:.3f} ± {scores['std']:.3f}" for scores in (accuracy, f1)]
        print(f"| {labels:,}{seeds} | {' | '.join(cells)} |")
    print(f"\nTF-IDF retrieval, short -> long description among {min(len(pairs_test), args.retrieval_pairs):,}:\n")
    print("| idf fitted on | recall@1 | recall@10 |\n|---|---|---|")
    for fitted_on, scores in retrieval.items():
        print(f"| {fitted_on} | {scores['recall@1']:.3f} | {scores['recall@10']:.3f} |")
    return {"classification": classification, "retrieval": retrieval, "retrieval_pairs": args.retrieval_pairs}


if __name__ == "__main__":
    main()
