"""Training speed on a CPU under each memory allocator: glibc's default, glibc with its mmap path off, the same set
by hfssl's own `train.cpu_heap` (the loop's default on a CPU), jemalloc, tcmalloc. At large batches a step's
activations outgrow glibc's largest mmap threshold (32 MiB on 64-bit), so every one is mapped from the kernel,
page-faulted in and unmapped again each step: the time shows up as system time.

    OMP_NUM_THREADS=2 python bench/cpu_allocator.py --out runs/bench-cpu-allocator.json
    OMP_NUM_THREADS=2 python bench/cpu_allocator.py --rows crops:512 --rounds 1 --steps 6   # a smoke run

Each row is one of hfssl's objectives on hfssl's tiny preset (ModernBERT, 2 x 128, vocabulary 4,096, random token
ids), trained with AdamW in a child process started with the allocator's environment:
- `crops:B`: `objective.views: crops` as `recipes/text/simcse-crops-tiny.yaml` trains it: B texts a step, two views
  each, every view 8-64 tokens long (a 10-50% crop of a 128-token text with its two special tokens), padded per view
  to a multiple of 8, so allocation sizes change from step to step as they do in training;
- `mlm:B`: masked LM as `recipes/text/mlm-tiny.yaml` trains it: B packed rows of 128 tokens, 30% predicted.
The child times `--steps` optimizer steps after `--warmup` and reports the median step, the user and system CPU
seconds of the timed steps, and its peak resident memory. Allocators run in a rotated order each of `--rounds`
rounds; the table gives each one's median over rounds and its speed against glibc's default measured in the same
run. jemalloc and tcmalloc are loaded with LD_PRELOAD from Debian's `libjemalloc2` and `libtcmalloc-minimal4`
(rows for a library not installed are left out, and say so).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

LIBRARIES = Path("/usr/lib/x86_64-linux-gnu")
ALLOCATORS = {
    "glibc (default)": {},
    # no mmap for large blocks, and freed memory kept for the next step instead of trimmed back to the kernel
    "glibc, mmap off": {"GLIBC_TUNABLES": "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184"},
    # the same through hfssl's own call, as the loop makes it on a CPU (train.cpu_heap, on by default)
    "glibc, train.cpu_heap": {"BENCH_CPU_HEAP": "1"},
    "jemalloc": {"LD_PRELOAD": str(LIBRARIES / "libjemalloc.so.2")},
    "tcmalloc": {"LD_PRELOAD": str(LIBRARIES / "libtcmalloc_minimal.so.4")},
}
BASELINE = "glibc (default)"


def child(kind: str, batch: int, steps: int, warmup: int, seed: int) -> dict:
    """Time `steps` optimizer steps of the `kind` objective at `batch`, after `warmup`."""
    import torch
    from tokenizers import Tokenizer
    from tokenizers.models import WordPiece
    from transformers import AutoModel, AutoModelForMaskedLM, PreTrainedTokenizerFast

    from hfssl.config import ModelArgs
    from hfssl.models.text import build_model
    from hfssl.objectives.mlm import MaskedLM
    from hfssl.objectives.simcse import SimCSE

    if os.environ.get("BENCH_CPU_HEAP") == "1":
        from hfssl import malloc

        if not malloc.keep_heap():
            sys.exit("error: train.cpu_heap: glibc refused the settings")
    torch.manual_seed(seed)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = specials + [f"w{i}" for i in range(4096 - len(specials))]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordPiece({word: i for i, word in enumerate(words)}, unk_token="[UNK]")),
        **dict(zip(("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"), specials, strict=True)),
    )
    args = ModelArgs(arch="modernbert", size="tiny")
    if kind == "crops":
        objective = SimCSE(build_model(args, tokenizer, AutoModel), "mean", 0.05)
    else:
        objective = MaskedLM(build_model(args, tokenizer, AutoModelForMaskedLM))
    objective.train()
    optimizer = torch.optim.AdamW(objective.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(seed)

    def ids(rows: int, length: int) -> torch.Tensor:
        return torch.randint(len(specials), 4096, (rows, length), generator=generator)

    def crops_view() -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.randint(8, 65, (batch,), generator=generator)
        width = -(-int(lengths.max()) // 8) * 8
        mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
        return ids(batch, width) * mask, mask

    def inputs() -> dict[str, torch.Tensor]:
        if kind == "crops":
            (a, a_mask), (b, b_mask) = crops_view(), crops_view()
            views = {"input_ids": a, "attention_mask": a_mask}
            return views | {"positive_input_ids": b, "positive_attention_mask": b_mask}
        input_ids = ids(batch, 128)
        labels = torch.where(torch.rand(batch, 128, generator=generator) < 0.3, input_ids, -100)
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}

    times, cpu = [], None
    for step in range(warmup + steps):
        if step == warmup:
            cpu = resource.getrusage(resource.RUSAGE_SELF)
        batch_inputs = inputs()
        start = time.perf_counter()
        objective(**batch_inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    end = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "step_s": statistics.median(times),
        "user_s": (end.ru_utime - cpu.ru_utime) / steps,
        "system_s": (end.ru_stime - cpu.ru_stime) / steps,
        "peak_rss_mib": end.ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }


def run_child(row: str, allocator: str, args) -> dict:
    kind, batch = row.split(":")
    command = [sys.executable, __file__, "--child", kind, batch, "--steps", str(args.steps), "--warmup",
               str(args.warmup)]  # fmt: skip
    env = os.environ | ALLOCATORS[allocator]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        sys.exit(f"error: {row} under {allocator}: the child failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def available() -> list[str]:
    names = []
    for name, env in ALLOCATORS.items():
        library = env.get("LD_PRELOAD")
        if library and not Path(library).is_file():
            print(f"{name}: {library} is not installed (apt-get install libjemalloc2 libtcmalloc-minimal4); left out")
            continue
        names.append(name)
    return names


def table(results: dict) -> str:
    lines = [
        "| row | allocator | s/step (median of rounds) | vs glibc default | user CPU-s/step | system CPU-s/step "
        "| peak RSS MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for row, by_allocator in results.items():
        base = statistics.median(r["step_s"] for r in by_allocator[BASELINE])
        for allocator, runs in by_allocator.items():
            step = statistics.median(r["step_s"] for r in runs)
            user = statistics.median(r["user_s"] for r in runs)
            system = statistics.median(r["system_s"] for r in runs)
            rss = max(r["peak_rss_mib"] for r in runs)
            lines.append(
                f"| {row} | {allocator} | {step:.3f} | {base / step:.2f}x | {user:.2f} | {system:.2f} | {rss:,.0f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=["crops:512", "crops:1024", "mlm:64", "mlm:256"],
                        help="objective:batch, objective crops or mlm")  # fmt: skip
    parser.add_argument("--allocators", nargs="+", choices=list(ALLOCATORS), default=list(ALLOCATORS),
                        metavar="NAME", help=f"which to run, of: {', '.join(ALLOCATORS)}")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="each allocator runs once a round, in a rotated order")
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps per child")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "BATCH"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.steps, args.warmup, seed=0)))
        return {}
    for row in args.rows:
        kind, _, batch = row.partition(":")
        if kind not in ("crops", "mlm") or not batch.isdigit() or int(batch) < 1:
            sys.exit(f"error: --rows: {row!r} is not objective:batch with objective crops or mlm")
    if args.steps < 1 or args.warmup < 0 or args.rounds < 1:
        sys.exit("error: --steps and --rounds must be at least 1, --warmup at least 0")
    if BASELINE not in args.allocators:
        sys.exit(f"error: --allocators: {BASELINE!r} is the baseline every row is compared with; include it")
    names = [name for name in available() if name in args.allocators]
    results: dict[str, dict[str, list]] = {row: {name: [] for name in names} for row in args.rows}
    for round_ in range(args.rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for row in args.rows:
            for name in order:
                result = run_child(row, name, args)
                results[row][name].append(result)
                print(json.dumps({"round": round_, "row": row, "allocator": name, **result}), flush=True)
    print(table(results))
    if args.out:
        from hfssl import io

        io.write_json(args.out, {"args": {k: str(v) for k, v in vars(args).items()}, "results": results})
    return results


if __name__ == "__main__":
    main()
