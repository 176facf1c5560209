"""Sentence embeddings learnt without labels on real text, against TF-IDF: recall@1 of a Debian package's long
description from its short one, for encoders pretrained on the packages' unlabeled descriptions alone.

    OMP_NUM_THREADS=1 python bench/debian_embeddings.py --data runs/data/debian-packages \
        --mlm runs/deb-mlm-tiny/final --seeds 0 1 --work-dir runs/deb-embeddings --out runs/deb-embeddings.json
    OMP_NUM_THREADS=1 python bench/debian_embeddings.py ... --variants "crops from scratch" \
        --set train.max_steps=1600 --work-dir runs/deb-embeddings-1600      # one setting changed, runs of its own

`--data` is `bench/debian_packages.py`'s folder: `corpus.txt` (the training packages' descriptions, one per line) is
all the encoders train on; the first `--pairs` (2,000) pairs of `pairs-test.jsonl` score them exactly as that script
scores TF-IDF: each short description's cosine with every long description, recall@k = the share of short
descriptions whose own long description has fewer than k others scoring strictly higher. The pairs never train
anything. Rows:
- TF-IDF (word 1-2 grams, sublinear tf), its idf fitted on the 4,000 evaluation texts and on `corpus.txt`;
- random init (with `--mlm`): `--mlm`'s architecture and tokenizer with random weights (one per seed),
  mean-pooled, reading the first `--max-len` tokens of a text; and each of `--random-sizes` (hfssl's presets,
  `--mlm`'s tokenizer) with random weights and the idf-weighted mean `objective.token_weights: idf` exports (idf
  over `corpus.txt`): what the pooling alone does, with nothing trained;
- masked LM (with `--mlm`): `--mlm` (`hfssl pretrain recipes/text/mlm-tiny.yaml --data.train CORPUS`),
  mean-pooled, as many;
- each of `--variants`, trained here once per seed on `corpus.txt` from the masked LM or from scratch (a tiny
  encoder and a WordPiece tokenizer of `--vocab` tokens trained on the corpus), each export reading as many tokens
  as its recipe says (`objective.embed_len`, else `data.seq_len`), every run with `OMP_NUM_THREADS`'s threads;
  `--set KEY=VALUE` changes a setting of every variant. A run whose export is already in `--work-dir` is scored
  again, not retrained, and keeps the times it was trained in (wall, and CPU of the process and its tokenizing
  children).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformers import AutoConfig, AutoModel, AutoTokenizer  # noqa: E402

from hfssl import io  # noqa: E402
from hfssl.api import pretrain  # noqa: E402
from hfssl.downstream import embeddings  # noqa: E402
from hfssl.objectives import load_pretrain  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))  # the TF-IDF baseline and the mean-pooled wrapper of sibling benches

RECALL_AT = (1, 10)
# name -> (recipe, start, settings over the recipe's): "mlm" continues from --mlm, "scratch" trains a tiny encoder
VARIANTS = {
    "SimCSE (dropout views) from the masked LM": ("text/simcse-tiny", "mlm", {}),
    "SimCSE (dropout views) from scratch": ("text/simcse-tiny", "scratch", {}),
    "crops from the masked LM": ("text/simcse-crops-tiny", "mlm", {"train.lr": "3e-4"}),
    "crops from scratch": ("text/simcse-crops-tiny", "scratch", {}),
}


def read_pairs(path: Path, count: int) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(count), f, strict=False)]


def recall(model, pairs: list[dict], batch_size: int = 64) -> dict[str, float]:
    """`bench/debian_packages.py`'s retrieval scoring, on `model`'s (a SentenceTransformer's) embeddings."""

    def encode(texts: list[str]) -> torch.Tensor:
        return model.encode(texts, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True).cpu()

    scores = encode([p["anchor"] for p in pairs]) @ encode([p["positive"] for p in pairs]).T
    # rank = candidates scoring strictly higher than the right one; ties count in the query's favour
    rank = (scores > scores.diagonal()[:, None]).sum(1)
    return {f"recall@{k}": float((rank < k).float().mean()) for k in RECALL_AT}


def overrides(args, recipe: str, start: str, settings: dict, seed: int, out: Path) -> dict[str, str]:
    values = {
        "data.train": str(args.data / "corpus.txt"),
        "train.output_dir": str(out),
        "train.seed": str(seed),
        "train.probe_every": "",
        **settings,
    }
    if start == "mlm":
        values["model.name_or_path"] = str(args.mlm)
    else:
        values |= {"model.name_or_path": "", "model.arch": "modernbert", "model.size": "tiny"}
        values |= {"tokenizer.kind": "wordpiece", "tokenizer.vocab_size": str(args.vocab)}
    return values | dict(args.set)


def train(args, name: str, seed: int) -> tuple[Path, dict]:
    """The variant's export for `seed`, trained here unless `--work-dir` has it, and the times it took."""
    recipe, start, settings = VARIANTS[name]
    out = args.work_dir / f"{slug(name)}-seed{seed}"
    times = out / "bench-times.json"
    if not times.is_file():
        cfg = load_pretrain(Path(__file__).parents[1] / "recipes" / f"{recipe}.yaml", overrides(args, recipe, start,
                            settings, seed, out))  # fmt: skip
        wall, cpu = time.perf_counter(), cpu_seconds()
        result = pretrain(cfg)  # with train.time_budget, plans the run first
        spent = {
            "wall_s": time.perf_counter() - wall,
            "cpu_s": cpu_seconds() - cpu,
            "threads": torch.get_num_threads(),
            "steps": result.metrics["steps"],
        }
        times.write_text(json.dumps(spent, indent=2))
    return out / "final", json.loads(times.read_text())


def cpu_seconds() -> float:
    """CPU time of this process and of the finished processes it started (the tokenizing ones)."""
    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    )


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def random_encoder(mlm: Path, max_len: int, seed: int, size: str | None = None, weights: torch.Tensor | None = None):
    """`mlm`'s tokenizer and architecture (or hfssl's `size` preset of it) with random weights drawn from `seed`,
    mean-pooled; with `weights` (`corpus_idf`'s), the mean weighted by them, as `token_weights: idf` exports it."""
    from hfssl.config import ModelArgs
    from hfssl.models.text import build_model

    tokenizer = AutoTokenizer.from_pretrained(mlm)
    with tempfile.TemporaryDirectory(prefix="bench-deb-embeddings-") as folder:
        torch.manual_seed(seed)
        config = AutoConfig.from_pretrained(mlm)
        if size is None:
            model = AutoModel.from_config(config)
        else:
            model = build_model(ModelArgs(arch=config.model_type, size=size), tokenizer, AutoModel)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        return embeddings.build(Path(folder), "mean", max_len, "cpu", weights)


def corpus_idf(mlm: Path, corpus: list[str]) -> torch.Tensor:
    """Each token id of `mlm`'s tokenizer weighed by its idf over the texts of `corpus`."""
    tokenizer = AutoTokenizer.from_pretrained(mlm)
    ids = (row for start in range(0, len(corpus), 1000) for row in tokenizer(corpus[start : start + 1000])["input_ids"])
    return embeddings.idf(*embeddings.document_counts(ids, len(tokenizer)))


def summary(runs: list[dict]) -> dict:
    out = {}
    for key in (*(f"recall@{k}" for k in RECALL_AT), "cpu_s", "wall_s"):
        values = [r[key] for r in runs if key in r]
        if values:
            out[key] = statistics.mean(values)
            out[f"{key}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return out


def table(rows: dict[str, dict], pairs: int) -> str:
    lines = [
        f"| encoder (short -> long description among {pairs:,}) | recall@1 | recall@10 | pretraining, CPU-min |",
        "|---|---|---|---|",
    ]
    for name, s in rows.items():
        cells = [
            f"{s[k]:.3f}" + (f" ± {s[k + '_sd']:.3f}" if s.get(k + "_sd") else "") for k in ("recall@1", "recall@10")
        ]
        minutes = f"{s['cpu_s'] / 60:.1f}" if "cpu_s" in s else ""
        lines.append(f"| {name} | {' | '.join(cells)} | {minutes} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="bench/debian_packages.py's output folder")
    parser.add_argument("--mlm", type=Path, help="a masked-LM export pretrained on --data's corpus; without it, "
                        "the random init and masked LM rows are left out")  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="VARIANT",
                        help=f"the contrastive runs to train and score (default: all of {list(VARIANTS)})")  # fmt: skip
    parser.add_argument("--set", action="append", default=[], type=lambda s: tuple(s.split("=", 1)),
                        help="KEY=VALUE: a setting of every variant's recipe, e.g. train.max_steps=500")  # fmt: skip
    parser.add_argument("--vocab", type=int, default=4096, help="the scratch encoders' tokenizer size")
    parser.add_argument("--random-sizes", nargs="*", default=["tiny", "mini", "small"], metavar="SIZE",
                        help="hfssl presets scored as random encoders, idf-weighted (--mlm's tokenizer)")  # fmt: skip
    parser.add_argument("--pairs", type=int, default=2000, help="test pairs to rank (the TF-IDF baseline's 2,000)")
    parser.add_argument("--max-len", type=int, default=32, help="tokens a baseline encoder reads (the crops recipe's)")
    parser.add_argument("--work-dir", type=Path, required=True, help="the runs go here (and are reused from here)")
    parser.add_argument("--out", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    for name in ("corpus.txt", "pairs-test.jsonl"):
        if not (args.data / name).is_file():
            sys.exit(f"error: {args.data / name}: missing (build it with bench/debian_packages.py)")
    needs_mlm = [name for name in args.variants if VARIANTS[name][1] == "mlm"]
    if args.mlm is None and needs_mlm:
        sys.exit(f"error: --mlm: the variant {needs_mlm[0]!r} continues from a masked LM; give its export")
    logging.basicConfig(level=logging.WARNING)
    from debian_packages import retrieval_baseline
    from embeddings import mean_pooled

    pairs = read_pairs(args.data / "pairs-test.jsonl", args.pairs)
    corpus = (args.data / "corpus.txt").read_text(encoding="utf-8").splitlines()
    tfidf = retrieval_baseline(pairs, corpus)
    rows = {f"TF-IDF, idf fitted on the {fitted_on}": scores for fitted_on, scores in tfidf.items()}
    if args.mlm is not None:
        rows["random init, mean-pooled"] = summary(
            [recall(random_encoder(args.mlm, args.max_len, seed), pairs) for seed in args.seeds]
        )
        weights = corpus_idf(args.mlm, corpus) if args.random_sizes else None
        for size in args.random_sizes:
            rows[f"random init ({size}), idf-weighted mean"] = summary(
                [recall(random_encoder(args.mlm, args.max_len, seed, size, weights), pairs) for seed in args.seeds]
            )
        rows["masked LM, mean-pooled"] = recall(mean_pooled(args.mlm, args.max_len), pairs)
    runs = []
    for name in args.variants:
        for seed in args.seeds:
            export, spent = train(args, name, seed)
            runs.append({"variant": name, "seed": seed, **recall(embeddings.load(export), pairs), **spent})
            print(json.dumps(runs[-1]), flush=True)
        rows[name] = summary([r for r in runs if r["variant"] == name])
    print(table(rows, len(pairs)))
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows, "runs": runs}
    if args.out:
        io.write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
