"""Model FLOPs utilisation (MFU) of hfssl's masked-LM pretraining on a CUDA GPU: presets mini, small and base, bf16.

    python bench/mfu.py --out runs/bench-mfu.json   # on a GPU: the full table, ~5 minutes on an H100 (estimate)
    python bench/mfu.py --quick                     # on a GPU: the grid at a few steps, a smoke test, ~2 minutes
    OMP_NUM_THREADS=1 python bench/mfu.py --quick --device cpu --peak-tflops 0.2 --presets mini --seq-lens 128 \\
        --threads 1                                 # on a CPU: a smoke test of the script, not an MFU
    python bench/mfu.py --device cpu --roofline --presets small base --seq-lens 128 512 --compare-at none \\
        --batch-tokens 8192 --steps 8 --warmup 3    # on a CPU: each row as a share of this machine's matmul rate,
                                                    # with executed FLOPs and the profiler's top operators

What runs: hfssl's own loop, `hfssl.pretrain.pretrain` on the `text/mlm-tiny` recipe (ModernBERT, sparse MLM head,
document packing, synthetic corpus, its WordPiece tokenizer: 4,096 tokens asked, ~2.5k learnt) with overrides:
`model.size` and `data.seq_len` per row, a fixed token budget per optimizer step (`--batch-tokens`, split into
`train.grad_accum` micro-batches of `--micro-batch-tokens`), bf16 mixed precision on CUDA (fp32 on a CPU), `--steps`
optimizer steps, evaluation and checkpoint only after the last (and the loop's usual evaluation of the untrained
model before the first), no probe, and a synthetic corpus large enough that no row wraps to a second epoch. By
default two more rows at the base preset and the longest sequence: `train.compile: true`, and `data.packing:
separator` (the same blocks, attention across documents, no document mask), both at equal budget. Timing:
`StepTimes` times each optimizer step through torch's global post-step hook (synchronising CUDA), so the
loop runs untouched; tokens/s = tokens per step * timed steps / the timed steps' seconds (from the end of the last
warm-up step): the first `--warmup` steps (allocator growth, cuDNN/sdpa kernel choice, compilation) are left out,
and so are setup, evaluation and the export.

Model FLOPs per token (the PaLM paper's appendix B accounting, extended to the sparse MLM head), counted from the
model built from the run's saved config:
    6 * N_encoder                     encoder forward (2 per weight) and backward (4): N_encoder = every parameter of
                                      the encoder (`model.base_model`) outside its `embeddings` module
  + 12 * layers * hidden * seq_len    attention scores and weighted values (QK^T and AV: 2 * 2 * seq_len * hidden
                                      per layer forward, x3 with backward), every layer as full bidirectional
                                      attention, as MFU conventionally counts it: block-sparse document attention
                                      (`model.attention: auto`) executes fewer (only the tiles' windows), which the
                                      --roofline table's executed count shows
  + 6 * N_head * mask_rate            the MLM head (ModernBERT's `head` transform, hidden x hidden, and its `decoder`,
                                      hidden x vocabulary, tied to the embeddings), which hfssl runs only on the
                                      masked positions: `masking.mask_rate` of the tokens (0.3 in the recipe)
Norms, activations, softmax, rotary embeddings and the optimizer are not counted (standard for MFU). MFU = model
FLOPs per token * tokens/s / the device's dense bf16 tensor-core peak (`PEAK_TFLOPS`, or `--peak-tflops`).

Duration (estimate, not yet measured on a GPU): each row's timed steps take seconds on an H100 (base at 1024 tokens:
~479 MFLOP/token, 64k tokens a step, ~0.08 s a step at 40% MFU); the run's time goes to setup per row (synthetic
corpus, tokenization, packing, model build: ~10-25 s with 16 cores), the evaluations and the export, and
compilation (~1 minute for the compiled row): ~5 minutes for the 8 default rows, within the 8-minute limit set for a
GPU session. The table prints each row's wall time so the next session can correct this estimate.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import datasets
import torch
from transformers import AutoConfig

from hfssl.objectives.mlm import rebuild
from hfssl.pretrain import pretrain

logger = logging.getLogger("bench.mfu")

sys.path.insert(0, str(Path(__file__).parent))  # text_mlm's recipe, imported where it is used

PRESETS = ("mini", "small", "base")
SEQ_LENS = (128, 1024)
TARGET_MFU = 0.40  # issue 14: base preset at seq 1024, on a GPU
TARGET_ROW = ("base", 1024)
# The synthetic corpus averages ~55 tokens a document (46 words) with the recipe's tokenizer; 50 sizes the corpus
# with room to spare, so that no timed step wraps to a second epoch.
TOKENS_PER_DOCUMENT = 50

# Dense (no 2:4 sparsity) bf16 tensor-core peaks in TFLOPS, matched against torch.cuda.get_device_name() in order.
# NVIDIA's datasheets quote bf16 "with sparsity", twice the dense figure:
# - H100 SXM 1,979 -> 989.4 and H100 PCIe 1,513 -> 756 (H100 datasheet, nvidia.com/en-us/data-center/h100; dense
#   989.4 tabulated at glennklockwood.com/garden/processors/h100); H200 SXM has the H100 SXM's compute, 1,979 -> 989.4
#   (H200 datasheet, nvidia.com/en-us/data-center/h200). NVL boards run at lower clocks: not listed, give the flag.
# - A100 (SXM and PCIe) 624 -> 312 (A100 datasheet, nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf).
# - L40S 733 -> 362.05 (L40S datasheet, nvidia.com/en-us/data-center/l40s).
# - L4 242 -> 121 (L4 datasheet, nvidia.com/en-us/data-center/l4).
# - A10 250 -> 125 (A10 datasheet, nvidia.com/en-us/data-center/products/a10-gpu). AWS's A10G is not the A10: it
#   trades tensor throughput for CUDA-core throughput (baseten.co/blog/nvidia-a10-vs-a10g-for-ml-model-inference) and
#   NVIDIA publishes no datasheet for it, so it is left out (the word boundaries keep A10G and A100 off the A10 row).
PEAK_TFLOPS = (
    (r"\bH100 PCIe\b", 756.0),
    (r"\bH[12]00\b(?!.*\b(PCIe|NVL)\b)", 989.4),
    (r"\bA100\b", 312.0),
    (r"\bL40S\b", 362.05),
    (r"\bL4\b", 121.0),
    (r"\bA10\b", 125.0),
)


def matmul_rate(device: torch.device, size: int = 4096, repeats: int = 5) -> float:
    """This machine's dense matmul rate in TFLOPS, the roofline a training step is held against: the best of
    `repeats` products of two `size` x `size` matrices, fp32 on a CPU (the threads torch has, as the run's), bf16 on
    CUDA, after one untimed product."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = math.inf
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:  # the first warms up the allocator and the kernel choice
            best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e12


def device_peak(device: torch.device, override: float | None, roofline: bool = False) -> tuple[float, str]:
    """The dense bf16 peak (TFLOPS) MFU is measured against, and where it comes from; exits with one line when the
    device is not listed and no `--peak-tflops` was given. With `roofline`, the peak is this machine's measured
    matmul rate (`matmul_rate`) instead of a datasheet's."""
    if roofline:
        rate = matmul_rate(device)
        precision = "bf16" if device.type == "cuda" else f"fp32, {torch.get_num_threads()} threads"
        return rate, f"the measured 4096x4096 matmul rate, {rate * 1e3:.1f} GFLOP/s ({precision}): a roofline share"
    if device.type != "cuda":
        if override is None:
            sys.exit("bench/mfu.py: MFU needs a CUDA device; on a CPU give --peak-tflops for a smoke test")
        return override, f"--peak-tflops {override:g} on {device.type} (a smoke test: not a GPU MFU)"
    if not torch.cuda.is_available():
        sys.exit("bench/mfu.py: --device cuda, but torch finds no CUDA device")
    name = torch.cuda.get_device_name(device)
    if override is not None:
        return override, f"--peak-tflops {override:g} ({name})"
    for pattern, tflops in PEAK_TFLOPS:
        if re.search(pattern, name):
            return tflops, f"{name}: dense bf16 tensor-core peak {tflops:g} TFLOPS (datasheet)"
    sys.exit(f"bench/mfu.py: no bf16 peak listed for {name!r}; give its dense bf16 TFLOPS with --peak-tflops")


def flops_per_token(cfg, model_config) -> dict:
    """Model FLOPs per trained token (forward and backward) of run config `cfg`, by the module docstring's
    accounting, from the model built on the meta device (no memory) from its saved `model_config`."""
    with torch.device("meta"):
        objective = rebuild(cfg, model_config)
    encoder = objective.model.base_model
    embeddings = {id(p) for p in encoder.embeddings.parameters()}
    n_encoder = sum(p.numel() for p in encoder.parameters() if id(p) not in embeddings)
    head_params = {id(p): p for name in objective.head for p in getattr(objective.model, name).parameters()}
    n_head = sum(p.numel() for p in head_params.values())
    layers, hidden = model_config.num_hidden_layers, model_config.hidden_size
    parts = {
        "encoder": 6 * n_encoder,
        "attention": 12 * layers * hidden * cfg.data.seq_len,
        "head": 6 * n_head * cfg.masking.mask_rate,
    }
    return {**parts, "total": sum(parts.values()), "encoder_params": n_encoder, "head_params": n_head}


class LastSteps:
    """With `--roofline`, the run's last two optimizer steps: the next-to-last under `FlopCounterMode` (every FLOP the
    step's matmuls and attention calls execute, forward, backward and optimizer: the exact count), the last under
    torch's profiler (its operators by self time). Entered and left from torch's optimizer-step hook, so the loop
    runs untouched; both steps are slowed by the counting and left out of the timing."""

    def __init__(self, steps: int):
        self.steps, self.done = steps, 0
        self.flops = None
        self.operators: list[dict] = []

    def __enter__(self) -> LastSteps:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self.handle = register_optimizer_step_post_hook(self._step)
        return self

    def __exit__(self, *exc):
        self.handle.remove()
        self._close()

    def _step(self, *_):
        from torch.profiler import ProfilerActivity, profile
        from torch.utils.flop_counter import FlopCounterMode

        self.done += 1
        if self.done == self.steps - 2:
            self.counter = FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS)
            self.counter.__enter__()
        elif self.done == self.steps - 1:
            self.counter.__exit__(None, None, None)
            self.flops = self.counter.get_total_flops()
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
            self.profiler = profile(activities=activities)
            self.profiler.__enter__()
        elif self.done == self.steps:
            self._close()

    def _close(self):
        profiler, self.profiler = getattr(self, "profiler", None), None
        if profiler is None:
            return
        profiler.__exit__(None, None, None)
        events = [e for e in profiler.key_averages() if e.self_cpu_time_total > 0]
        total = sum(e.self_cpu_time_total for e in events)
        events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
        self.operators = [
            {"name": e.key, "share": e.self_cpu_time_total / total, "calls": e.count} for e in events[:TOP_OPERATORS]
        ]


TOP_OPERATORS = 6


class StepTimes:
    """Each optimizer step's own seconds, from torch's global post-step hook (synchronising CUDA). With `probe` (the
    run's step count, for `--roofline`), also this machine's matmul rate taken right after each step, so every step is
    held against the rate of the same seconds: a shared CPU's speed drifts by tens of percent within minutes, which
    one rate per row cannot follow. A step's time runs from the end of the previous probe to its own end, so the
    probes are never timed. The last two steps (counted and profiled by `LastSteps`) are not probed: a matmul under
    the FLOP counter would be counted as the step's. Register it before `LastSteps`, whose hook opens the counter
    after the step before them, so that step's probe runs first. `probe` 0: never probes."""

    def __init__(self, device: torch.device, probe: int = 0):
        self.device, self.probe = device, probe
        self.seconds: list[float] = []  # each step's own time, probes excluded
        self.rates: list[float] = []  # the rate measured right after it
        self.since = time.perf_counter()

    def __enter__(self) -> StepTimes:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self.since = time.perf_counter()
        self.handle = register_optimizer_step_post_hook(self._step)
        return self

    def __exit__(self, *exc):
        self.handle.remove()

    def _step(self, *_):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        end = time.perf_counter()
        self.seconds.append(end - self.since)
        if len(self.seconds) <= self.probe - 2:
            self.rates.append(matmul_rate(self.device, repeats=1))
        self.since = time.perf_counter()


def _cpu_attention(query, key, value, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query, key, value)


def _cpu_attention_backward(grad, query, key, value, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(grad, query, key, value)


# torch's FlopCounterMode counts the CUDA sdpa kernels but not the CPU one: the same formulas (every score of the
# query x key matrix the call computes, masked or not), as shapes, for the CPU's forward and backward.
CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward,
}


def run_row(args, device, work: Path, preset: str, seq_len: int, packing: str, compile_: bool) -> dict:
    """One row: hfssl's loop at `preset` and `seq_len` for `args.steps` steps; its throughput and FLOPs."""
    from text_mlm import hfssl_config

    batch_size, grad_accum = args.micro_batch_tokens // seq_len, args.batch_tokens // args.micro_batch_tokens
    documents = math.ceil(1.1 * args.steps * args.batch_tokens / TOKENS_PER_DOCUMENT)
    name = f"{preset}-{seq_len}-{packing}{'-compile' if compile_ else ''}"
    run = work / name
    steps = str(args.steps)
    overrides = {
        "model.size": preset,
        "model.max_position_embeddings": str(max(512, seq_len)),
        "data.seq_len": str(seq_len),
        "data.packing": packing,
        "data.synthetic_documents": str(max(2000, documents)),
        "train.batch_size": str(batch_size),
        "train.grad_accum": str(grad_accum),
        "train.max_steps": steps,
        "train.eval_every": steps,
        "train.save_every": steps,
        "train.eval_batches": "2",
        "train.probe_every": "",
        "train.mixed_precision": "bf16" if device.type == "cuda" else "no",
        "train.compile": str(compile_).lower(),
        "train.output_dir": str(run),
    }
    if args.tokenizer:  # the first row's, so the later rows skip training one
        overrides["tokenizer.path"] = str(args.tokenizer)
    cfg = hfssl_config(overrides)
    logger.info("%s: batch %d x %d x %d accumulated, %d steps", name, batch_size, seq_len, grad_accum, args.steps)
    # A shared machine's speed drifts by tens of percent over minutes: with --roofline each row is held against the
    # matmul rate measured just before and just after it, not only the one taken at the start.
    rates = [matmul_rate(device)] if args.roofline else []
    start = time.perf_counter()
    last = LastSteps(args.steps if args.roofline else math.inf)
    times = StepTimes(device, args.steps if args.roofline else 0)
    with times, last:
        metrics = pretrain(cfg)
    wall = time.perf_counter() - start
    if args.roofline:
        rates.append(matmul_rate(device))
    peak = sum(rates) / len(rates) if rates else args.peak
    args.tokenizer = args.tokenizer or run / "tokenizer"
    tokens_per_step = metrics["tokens_seen"] / metrics["steps"]
    # The timing starts where the last warm-up step ends. With --roofline it stops at the last probed step: the two
    # after it were counted and profiled.
    timed = len(times.rates) if args.roofline else len(times.seconds)
    warmup = min(args.warmup, timed - 2)
    seconds, step_rates = times.seconds[warmup:timed], times.rates[warmup:]
    tps = tokens_per_step * len(seconds) / sum(seconds)
    step_tflops = [last.flops / t / 1e12 for t in seconds] if last.flops else []
    flops = flops_per_token(cfg, AutoConfig.from_pretrained(run / "model_config"))
    achieved = flops["total"] * tps
    return {
        "preset": preset,
        "seq_len": seq_len,
        "packing": packing,
        "compile": compile_,
        "batch_size": batch_size,
        "grad_accum": grad_accum,
        "tokens_per_step": tokens_per_step,
        "steps": metrics["steps"],
        "timed_steps": len(seconds),
        "tokens_per_s": tps,
        "flops_per_token": flops,
        "tflops": achieved / 1e12,
        "mfu": achieved / (peak * 1e12),
        "peak_tflops": peak,
        "matmul_rates": rates,
        "wall_s": wall,
        # Executed FLOPs per token (FlopCounterMode over one whole step) and the profiled step's top operators.
        "counted_flops_per_token": last.flops / tokens_per_step if last.flops else None,
        "counted_share": last.flops / tokens_per_step * tps / (peak * 1e12) if last.flops else None,
        "operators": last.operators,
        # Each timed step's executed TFLOPS and the matmul rate measured right after it. The row's figure is the
        # median of the one over the median of the other: a slow second hits a step or its probe, rarely both, so
        # step-by-step ratios scatter on both sides (48-106% in one row) where the medians hold still.
        "step_tflops": step_tflops,
        "paired_rates": step_rates,
        "paired_share": statistics.median(step_tflops) / statistics.median(step_rates) if step_tflops else None,
    }


def is_target(row: dict) -> bool:
    """Whether issue 14's target judges `row`: base at seq 1024 with the recipe's documents packing, compiled or not."""
    return (row["preset"], row["seq_len"], row["packing"]) == (*TARGET_ROW, "documents")


def verdict(row: dict, device: str) -> str:
    if device != "cuda":
        return "not judged (not a GPU)"
    return "PASS" if row["mfu"] >= TARGET_MFU else "MISS"


def table(results: dict) -> str:
    """The rows as a markdown table, the target in its own column of the row it judges."""
    lines = [
        f"MFU of hfssl's loop ({results['precision']}) against {results['peak_source']}",
        f"FLOPs per token: {results['accounting']}",
        "",
        "| preset | seq | packing | compile | batch tokens | tokens/s | TFLOPS | MFU | target | GFLOP/token "
        "(enc+attn+head) | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        f = r["flops_per_token"]
        split = "+".join(f"{f[k] / 1e9:.3f}" for k in ("encoder", "attention", "head"))
        target = f">= {TARGET_MFU:.0%} {verdict(r, results['device'])}" if is_target(r) else ""
        lines.append(
            f"| {r['preset']} | {r['seq_len']} | {r['packing']} | {'yes' if r['compile'] else 'no'} "
            f"| {r['tokens_per_step']:,.0f} ({r['batch_size']}x{r['seq_len']}x{r['grad_accum']}) "
            f"| {r['tokens_per_s']:,.0f} | {r['tflops']:.3g} | {r['mfu']:.1%} | {target} "
            f"| {f['total'] / 1e9:.3f} = {split} | {r['wall_s']:.0f} |"
        )
    if not any(is_target(r) for r in results["rows"]):
        lines += ["", f"target (base at seq 1024, MFU >= {TARGET_MFU:.0%}): not run"]
    counted = [r for r in results["rows"] if r.get("counted_flops_per_token")]
    if counted:
        lines += [
            "",
            "Executed FLOPs (FlopCounterMode over one whole step: forward, backward, optimizer) and the profiled step's"
            " operators by self time:",
            "",
            "| preset | seq | packing | executed GFLOP/token | matmul GFLOP/s before / after | share of their mean "
            "| steps' GFLOP/s (range) / probes' (range) | share, paired medians | top operators (self time) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in counted:
            top = ", ".join(f"{o['name'].removeprefix('aten::')} {o['share']:.0%}" for o in r["operators"])
            spread = " / ".join(
                f"{statistics.median(xs) * 1e3:.0f} ({min(xs) * 1e3:.0f}-{max(xs) * 1e3:.0f})"
                for xs in (r["step_tflops"], r["paired_rates"])
            )
            lines.append(
                f"| {r['preset']} | {r['seq_len']} | {r['packing']} | {r['counted_flops_per_token'] / 1e9:.3f} "
                f"| {' / '.join(f'{x * 1e3:.0f}' for x in r['matmul_rates'])} | {r['counted_share']:.1%} "
                f"| {spread} | {r['paired_share']:.1%} | {top} |"
            )
    return "\n".join(lines)


ACCOUNTING = (
    "6 x encoder non-embedding params + 12 x layers x hidden x seq_len (full attention; document masks and sliding "
    "windows not subtracted) + 6 x MLM-head params (head transform + decoder) x mask_rate (sparse head)"
)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", choices=PRESETS, default=list(PRESETS), help="model.size presets")
    parser.add_argument("--seq-lens", nargs="+", type=int, default=list(SEQ_LENS), help="data.seq_len values")
    parser.add_argument("--batch-tokens", type=int, help="tokens per optimizer step (default 65536; --quick 8192)")
    parser.add_argument(
        "--micro-batch-tokens", type=int, help="tokens per micro-batch, the rest by train.grad_accum (default: all)"
    )
    parser.add_argument("--steps", type=int, help="optimizer steps per row (default 30; --quick 8)")
    parser.add_argument("--warmup", type=int, help="first steps left out of the timing (default 5; --quick 3)")
    parser.add_argument(
        "--compare-at",
        choices=[*PRESETS, "none"],
        default="base",
        help="preset for the extra rows at the longest sequence: train.compile and separator packing (none: skip)",
    )
    parser.add_argument("--compile", action="store_true", help="train.compile on every grid row too")
    parser.add_argument("--packing", choices=["documents", "separator"], default="documents", help="grid rows' packing")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak (needed off the listed GPUs)")
    parser.add_argument(
        "--roofline", action="store_true", help="hold the rows against this machine's measured matmul rate instead"
    )
    parser.add_argument("--quick", action="store_true", help="few steps, small batches, no extra rows: a smoke test")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if available, else cpu")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own)")
    parser.add_argument("--out", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    quick = args.quick
    args.batch_tokens = args.batch_tokens or (8192 if quick else 65536)
    args.steps = args.steps or (8 if quick else 30)
    if args.warmup is None:
        args.warmup = 3 if quick else 5
    args.micro_batch_tokens = args.micro_batch_tokens or args.batch_tokens
    for seq_len in args.seq_lens:  # before any row runs
        if args.batch_tokens % args.micro_batch_tokens or args.micro_batch_tokens % seq_len:
            sys.exit(
                f"bench/mfu.py: --micro-batch-tokens {args.micro_batch_tokens} must divide --batch-tokens "
                f"{args.batch_tokens} and be a multiple of --seq-lens {seq_len}"
            )
    if args.warmup < 1 or args.steps < args.warmup + 2 + 2 * args.roofline:
        sys.exit(f"bench/mfu.py: --steps {args.steps}, --warmup {args.warmup}: need warmup >= 1 and 2 timed steps")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logger.setLevel(logging.INFO)
    datasets.disable_progress_bars()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu":
        # Accelerate's switch for every Accelerator in the process, hfssl's included.
        os.environ["ACCELERATE_USE_CPU"] = "true"
    args.peak, peak_source = device_peak(device, args.peak_tflops, args.roofline)
    args.tokenizer = None

    runs = [(p, s, args.packing, args.compile) for p in args.presets for s in args.seq_lens]
    if args.compare_at != "none" and not quick:
        longest = max(args.seq_lens)
        runs += [(args.compare_at, longest, args.packing, True), (args.compare_at, longest, "separator", args.compile)]
        runs = list(dict.fromkeys(runs))
    results = {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "precision": "bf16 autocast" if device.type == "cuda" else "fp32",
        "peak_tflops": args.peak,
        "peak_source": peak_source,
        "accounting": ACCOUNTING,
        "quick": quick,
        "rows": [],
    }
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hfssl-mfu-") as work:
        for row in runs:
            results["rows"].append(run_row(args, device, Path(work), *row))
    results["wall_s"] = time.perf_counter() - start
    print(table(results))
    print(f"\n{len(runs)} rows in {results['wall_s']:.0f} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
