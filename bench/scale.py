"""Streaming text pretraining at two corpus sizes: peak memory should not grow with the corpus.

    python bench/scale.py            # ~5 minutes on a 2-core CPU
    python bench/scale.py --quick    # a smoke test

Writes a corpus of `--documents` documents of hfssl's synthetic text as jsonl files (4 of them) in a temporary
directory, and the same corpus x10 (the 4 files written 10 times over: 40 files), trains one WordPiece tokenizer on
the first, then pretrains `text/mlm-tiny` with `data.streaming: true` for the same `--steps` optimizer steps on each
(`--workers` DataLoader workers, one evaluation and one checkpoint at the end, no probe). Each corpus trains in a fresh
Python process, so its RSS high-water mark (`getrusage`: the process itself, and the largest of its DataLoader workers,
reaped when the loader ends) is its own. Throughput is tokens per second between the first and the last optimizer
step (torch's global step hook, as in `text_mlm.py`), so setup and the final evaluation stay out of it.

Target: the x10 corpus's peak memory within 10% of the x1 corpus's, for the process and for its workers.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "text" / "mlm-tiny.yaml"
FILES = 4
SCALE = 10
TARGET = 1.10  # x10's peak memory at most this multiple of x1's


def write_corpus(folder: Path, documents: int, copies: int) -> int:
    """`documents` synthetic documents in FILES jsonl files, written `copies` times over; returns the bytes written."""
    from hfssl.data.synthetic import synthetic_documents

    texts = [doc["text"] for doc in synthetic_documents(documents, seed=0)]
    folder.mkdir(parents=True)
    share = -(-len(texts) // FILES)
    for copy in range(copies):
        for i in range(FILES):
            lines = (json.dumps({"text": text}) + "\n" for text in texts[i * share : (i + 1) * share])
            (folder / f"part-{copy:02d}-{i}.jsonl").write_text("".join(lines))
    return sum(f.stat().st_size for f in folder.iterdir())


def child(args: argparse.Namespace) -> None:
    """One configuration, in this fresh process: train, then print its measurements as one JSON line."""
    sys.path.insert(0, str(Path(__file__).parent))
    import torch
    from text_mlm import OtherLoad, StepClock

    from hfssl.objectives import load_pretrain
    from hfssl.pretrain import pretrain

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {
        "data.train": str(args.corpus),
        "data.streaming": "true",
        "data.validation_documents": "200",
        "tokenizer.path": str(args.tokenizer),
        "train.max_steps": str(args.steps),
        "train.eval_every": str(args.steps),
        "train.save_every": str(args.steps),
        "train.eval_batches": "2",
        "train.log_every": "10",
        "train.probe_every": "null",
        "train.num_workers": str(args.workers),
        "train.output_dir": str(args.run),
    }
    cfg = load_pretrain(RECIPE, overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with StepClock(device) as clock, OtherLoad() as other:
        metrics = pretrain(cfg)
    gc.collect()  # the loader's workers are reaped once its iterator is gone
    seconds, steps = clock.train_time()
    tokens_per_step = metrics["tokens_seen"] / metrics["steps"]
    result = {
        "tokens_per_s": tokens_per_step * steps / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if args.workers else None,
        "tokens_seen": metrics["tokens_seen"],
        "other_cores": other.cores,
    }
    print("RESULT " + json.dumps(result))


def measure(args: argparse.Namespace, corpus: Path, tokenizer: Path, run: Path) -> dict:
    command = [sys.executable, __file__, "--child", "--corpus", corpus, "--tokenizer", tokenizer, "--run", run]
    command += ["--steps", args.steps, "--workers", args.workers] + (
        ["--threads", args.threads] if args.threads else []
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    done = subprocess.run(list(map(str, command)), capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{corpus.name}: the run failed:\n{done.stderr[-3000:]}")
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])


def ratio_row(name: str, small: float | None, large: float | None, target: float | None) -> str:
    if small is None or large is None:
        return f"{name:<28} {'-':>10}"
    ratio = large / small
    verdict = "" if target is None else f"  {'PASS' if ratio <= target else 'MISS'} (target <= {target:.2f}x)"
    return f"{name:<28} {ratio:>9.3f}x{verdict}"


def table(rows: dict) -> str:
    one, ten = rows["x1"], rows[f"x{SCALE}"]
    lines = [
        f"{'corpus':<8} {'size':>9} {'documents':>10} {'peak RSS':>10} {'worker peak':>12} {'tokens/s':>9} {'busy':>5}",
    ]
    for name, r in rows.items():
        worker = "-" if r["peak_worker_rss_mb"] is None else f"{r['peak_worker_rss_mb']:,.0f} MB"
        busy = "-" if r["other_cores"] is None else f"{r['other_cores']:.1f}"
        lines.append(
            f"{name:<8} {r['bytes'] / 1e6:>6.1f} MB {r['documents']:>10,} {r['peak_rss_mb']:>7,.0f} MB "
            f"{worker:>12} {r['tokens_per_s']:>9,.0f} {busy:>5}"
        )
    lines.append("")
    lines.append(ratio_row(f"peak RSS x{SCALE} / x1", one["peak_rss_mb"], ten["peak_rss_mb"], TARGET))
    lines.append(ratio_row(f"worker peak x{SCALE} / x1", one["peak_worker_rss_mb"], ten["peak_worker_rss_mb"], TARGET))
    lines.append(ratio_row(f"tokens/s x{SCALE} / x1", one["tokens_per_s"], ten["tokens_per_s"], None))
    lines.append("busy: cores other processes kept busy during the run (on a shared machine, throughput follows it)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=12_000, help="documents in the x1 corpus (x10: 10 times)")
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps on each corpus")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (train.num_workers)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own)")
    parser.add_argument("--quick", action="store_true", help="a small corpus and a few steps: a smoke test")
    parser.add_argument("--out", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        logging.basicConfig(level=logging.WARNING)
        return child(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.quick:
        args.documents, args.steps = 2_000, 12

    from hfssl.data.synthetic import synthetic_documents
    from hfssl.tokenizer import train_tokenizer

    rows = {}
    with tempfile.TemporaryDirectory(prefix="hfssl-bench-scale-") as work:
        work = Path(work)
        texts = (doc["text"] for doc in synthetic_documents(args.documents, seed=0))
        train_tokenizer(texts, vocab_size=4096, model_max_length=128).save_pretrained(work / "tokenizer")
        for name, copies in (("x1", 1), (f"x{SCALE}", SCALE)):
            corpus = work / name
            size = write_corpus(corpus, args.documents, copies)
            logging.info("%s: %.1f MB in %d files; training %d steps", name, size / 1e6, FILES * copies, args.steps)
            start = time.perf_counter()
            rows[name] = measure(args, corpus, work / "tokenizer", work / f"run-{name}")
            rows[name].update(bytes=size, documents=args.documents * copies, wall_s=time.perf_counter() - start)
    print(table(rows))
    result = {"documents": args.documents, "steps": args.steps, "workers": args.workers, "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
