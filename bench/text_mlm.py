"""Text masked-LM benchmark: hfssl against what a transformers user would write, in one process.

    python bench/text_mlm.py            # the full benchmark, ~10-15 minutes on a 2-core CPU
    python bench/text_mlm.py --quick    # a smoke test, under a minute

1. Training throughput, same ModernBERT (`text/mlm-tiny`), data, batch, steps and hyperparameters. hfssl:
   `hfssl.pretrain.pretrain`. Baseline: run_mlm.py written out by hand on hfssl's train split and tokenizer:
   `datasets.map` tokenization, `group_texts` (each 1000-document map batch concatenated, its remainder dropped),
   `DataCollatorForLanguageModeling`, `AutoModelForMaskedLM.from_config` on the config hfssl saved (full-vocabulary
   head, loss from the model's forward), torch AdamW, `get_scheduler`, an `Accelerator` loop. Timing: torch's global
   optimizer-step hook stamps every step on both sides, so hfssl's loop is timed untouched; tokens/s = tokens per step
   * (N - 1) / (last stamp - first stamp), which leaves out setup, the first step's one-off costs and evaluation
   (hfssl runs with eval_every = save_every = N and no probe, so it evaluates only after the last step). Quality: both
   models are scored by one function on hfssl's packed validation blocks masked by its evaluation collator (seed + 1,
   the recipe's mask rate): mean cross-entropy over masked tokens. It reproduces hfssl's own metrics.json eval loss.
   hfssl runs twice, with `data.packing` documents (the recipe's default: each token attends only to its own
   document, positions restart with it) and separator (the same blocks, attention across documents); each model is
   scored as it was trained (document masks for the first, none for the second and the baseline), on the same
   masked tokens. On a GPU the document run uses sdpa with a block-diagonal mask too: hfssl builds no flash-attention
   varlen path, so GPU MFU rows of issue 14 are not measured here.

2. Collator examples/s on 2,000 tokenized synthetic documents (up to 128 tokens, batches of 32), passes interleaved,
   median kept; with one torch thread (as in DataLoader workers) and with torch's default count (the main process,
   num_workers 0). `MLMCollator` against `DataCollatorForLanguageModeling` fed as run_mlm.py feeds it (`input_ids`
   and `special_tokens_mask`, its fast path); `WholeWordMaskCollator` against `whole_word_mask=True`, which in
   transformers 5 needs examples pre-padded to one length with `offset_mapping`; `SpanMaskCollator` for information.

3. The shipped recipe against the plain transformers recipe at equal wall time: post-norm `BertForMaskedLM` of the
   tiny preset's depth and width, dropout 0.1, 15% masking, lr 5e-4, BERT's AdamW (0.9, 0.999, eps 1e-8, decay 0.01),
   linear schedule with the same warmup share, the data path of (1). The recipe runs `--recipe-steps` (default 600,
   its schedule decaying over them; 0: all 2,000 of its steps, about 4x as long). The baseline trains for as long as
   hfssl's whole run took (tokenizer, tokenization, evaluations, probes, checkpoints, export: the baseline gets the
   better deal), on a schedule planned from a timing of its own steps, stopping at the deadline. Both are scored as in
   (1), at 15% masking; hfssl's export is loaded with `AutoModelForMaskedLM`.

`--attention` runs only this: hfssl's loop at each `--seq-lens` (128 and 1024) with `--batch-tokens` per step, document
packing with block-sparse attention (`model.attention: auto`), with dense masks (`dense`), and separator packing,
`--steps` each, timed as in (1), in turn `--repeats` times (median kept). Targets (issue 27): block-sparse >= 1.0x
separator at seq 128, >= 1.3x at 1024.

`--line-by-line` runs only this: hfssl's loop with `data.packing` none, `data.group_by_length` true against false,
`--steps` each, timed as in (1); tokens/s counts non-padding tokens; the padding share is computed from the training
lines' lengths for each run's first epoch of batches; eval losses are each run's metrics.json (same validation lines).

On a small shared machine a busy neighbour stalls every multi-threaded torch op until its thread is scheduled, so
the table prints how many cores other processes kept busy during each timing; `--threads 1` is steadier when not 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import statistics
import tempfile
import time
import warnings
from itertools import chain, islice
from pathlib import Path

import datasets
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.data import DataLoader
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    DataCollatorForLanguageModeling,
    get_scheduler,
)

from hfssl.collators.text import MLMCollator, SpanMaskCollator, WholeWordMaskCollator
from hfssl.config import PretrainConfig
from hfssl.data.buckets import padding_shares
from hfssl.data.synthetic import synthetic_documents
from hfssl.data.text import load_corpus, pack, tokenize_corpus
from hfssl.distributed import resolve_mixed_precision
from hfssl.models.text import model_inputs
from hfssl.objectives import load_pretrain
from hfssl.pretrain import pretrain

logger = logging.getLogger("bench.text_mlm")

RECIPE = "text/mlm-tiny"
# The two loops see different data orders and masks; eval losses this close count as equal. A single seed at a few
# hundred steps only catches gross quality loss: when a tiny model leaves the loss plateau varies by seed, and the
# baseline's eval loss after 300 steps ranged over 3.7-4.7 across seeds 0-2.
EQUAL_LOSS = 1.01
# "Clearly lower": at least 5% below the plain recipe's loss.
CLEARLY_LOWER = 0.95


class StepClock:
    """Stamps the end of every optimizer step, of any optimizer, through torch's global post-step hook."""

    def __init__(self, device: torch.device):
        self.sync = device.type == "cuda"
        self.stamps: list[float] = []

    def _stamp(self, *_):
        if self.sync:
            torch.cuda.synchronize()
        self.stamps.append(time.perf_counter())

    def __enter__(self) -> StepClock:
        self.handle = register_optimizer_step_post_hook(self._stamp)
        return self

    def __exit__(self, *exc):
        self.handle.remove()

    def train_time(self) -> tuple[float, int]:
        """Seconds from the first step's end to the last's, and the number of steps they cover."""
        return self.stamps[-1] - self.stamps[0], len(self.stamps) - 1


class OtherLoad:
    """Cores other processes kept busy, on average, while the block ran (None without Linux's /proc/stat)."""

    cores: float | None = None

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        """CPU seconds busy on the machine and in this process (children included), and the wall clock."""
        try:
            with open("/proc/stat") as f:
                jiffies = [int(x) for x in f.readline().split()[1:9]]
        except OSError:
            return None
        machine = (sum(jiffies) - jiffies[3] - jiffies[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
        return machine, sum(os.times()[:4]), time.perf_counter()

    def __enter__(self) -> OtherLoad:
        self.start = self._sample()
        return self

    def __exit__(self, *exc):
        end = self._sample()
        if self.start is not None and end is not None:
            machine, own, wall = (b - a for a, b in zip(self.start, end, strict=True))
            self.cores = max(0.0, (machine - own) / wall)


def hfssl_config(overrides: dict[str, str]) -> PretrainConfig:
    return load_pretrain(RECIPE, overrides)


def group_texts(batch: dict[str, list], block_size: int) -> dict[str, list]:
    """run_mlm.py's grouping: concatenate the map batch, cut it into blocks, drop the remainder."""
    joined = {key: list(chain.from_iterable(values)) for key, values in batch.items()}
    usable = len(joined["input_ids"]) // block_size * block_size
    return {key: [v[i : i + block_size] for i in range(0, usable, block_size)] for key, v in joined.items()}


def baseline_blocks(corpus: datasets.Dataset, tokenizer, seq_len: int) -> datasets.Dataset:
    """Tokenize (specials per document, as run_mlm.py) and group into `seq_len` blocks."""

    def tokenize(batch):
        return tokenizer(batch["text"], return_special_tokens_mask=True, return_token_type_ids=False, verbose=False)

    tokenized = corpus.map(tokenize, batched=True, remove_columns=corpus.column_names)
    return tokenized.map(group_texts, batched=True, fn_kwargs={"block_size": seq_len})


def train_baseline(model, tokenizer, blocks, cfg: PretrainConfig, steps: int, deadline: float | None = None) -> dict:
    """The transformers-only loop: `steps` optimizer steps, or fewer if `deadline` (perf_counter) comes first."""
    t = cfg.train
    accelerator = Accelerator(mixed_precision=t.mixed_precision)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=cfg.masking.mask_rate)
    loader = DataLoader(blocks, batch_size=t.batch_size, shuffle=True, collate_fn=collator)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=t.lr,
        betas=(t.adam_beta1, t.adam_beta2),
        eps=t.adam_eps,
    )
    scheduler = get_scheduler(
        "linear", optimizer, num_warmup_steps=round(t.warmup_ratio * steps), num_training_steps=steps
    )
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    model.train()
    step, tokens = 0, torch.zeros((), dtype=torch.long, device=accelerator.device)
    while step < steps and (deadline is None or time.perf_counter() < deadline):
        for batch in loader:
            loss = model(**batch).loss
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), t.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            tokens += batch["attention_mask"].sum()
            step += 1
            if step >= steps or (deadline is not None and time.perf_counter() >= deadline):
                break
    return {"model": accelerator.unwrap_model(model), "steps": step, "tokens_per_step": tokens.item() / step}


def eval_batches(cfg: PretrainConfig, tokenizer, validation, mask_rate: float, device) -> list[dict]:
    """hfssl's evaluation batches (packed validation blocks, token collator seeded seed + 1) at `mask_rate`, with
    the document layout (which `masked_loss` uses only when asked: the masks are the same either way)."""
    blocks = pack(tokenize_corpus(validation, tokenizer, cfg.data), tokenizer, cfg.data)
    m = cfg.masking
    collator = MLMCollator(
        tokenizer,
        mask_rate=mask_rate,
        replace_prob=m.replace_prob,
        random_prob=m.random_prob,
        seed=cfg.train.seed + 1,
        documents=True,
    )
    loader = DataLoader(blocks, batch_size=cfg.train.eval_batch_size or cfg.train.batch_size, collate_fn=collator)
    return [{k: v.to(device) for k, v in batch.items()} for batch in islice(loader, cfg.train.eval_batches)]


@torch.no_grad()
def masked_loss(model, batches: list[dict], documents: bool = False) -> float:
    """Mean cross-entropy over the masked tokens of `batches`, from the model's full logits; with `documents`, each
    token attending only to its own document, as document packing trains."""
    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        layout = (batch["document_ids"], batch["position_ids"]) if documents else ()
        logits = model(**model_inputs(model, batch["input_ids"], batch["attention_mask"], *layout)).logits
        masked = batch["labels"] != -100
        total += F.cross_entropy(logits[masked].float(), batch["labels"][masked], reduction="sum").item()
        count += int(masked.sum())
    model.train()
    return total / count


def hfssl_throughput(args, device, run: Path, packing: str, extra: dict[str, str] | None = None) -> dict:
    """hfssl's loop on the recipe for `args.steps` steps with `data.packing` `packing` (and the `extra` overrides):
    its config, metrics, tokens/s (non-padding tokens) and the other processes' load."""
    steps = str(args.steps)
    cfg = hfssl_config(
        {**args.overrides, "train.max_steps": steps, "train.eval_every": steps, "train.save_every": steps,
         "train.probe_every": "", "train.output_dir": str(run), "data.packing": packing, **(extra or {})}
    )  # fmt: skip
    logger.info("throughput: hfssl, %s packing %s, %d steps", packing, extra or "", args.steps)
    with StepClock(device) as clock, OtherLoad() as load:
        metrics = pretrain(cfg)
    seconds, intervals = clock.train_time()
    tps = metrics["tokens_seen"] / metrics["steps"] * intervals / seconds
    return {"cfg": cfg, "metrics": metrics, "tokens_per_s": tps, "load": load.cores}


def throughput(args, device, corpus, run: Path) -> dict:
    """Comparison 1: hfssl's loop, with document and with separator packing, against the transformers-only loop,
    same ModernBERT, data and steps."""
    documents = hfssl_throughput(args, device, run, "documents")
    separator = hfssl_throughput(args, device, run.with_name("throughput-separator"), "separator")
    cfg, metrics, hfssl_tps = documents["cfg"], documents["metrics"], documents["tokens_per_s"]

    logger.info("throughput: transformers baseline, %d steps", args.steps)
    tokenizer = AutoTokenizer.from_pretrained(run / "tokenizer")
    set_seed(cfg.train.seed)
    config = AutoConfig.from_pretrained(run / "model_config")
    model = AutoModelForMaskedLM.from_config(config, attn_implementation="sdpa")
    blocks = baseline_blocks(corpus[0], tokenizer, cfg.data.seq_len)
    with StepClock(device) as clock, OtherLoad() as base_load:
        base = train_baseline(model, tokenizer, blocks, cfg, args.steps)
    seconds, intervals = clock.train_time()
    base_tps = base["tokens_per_step"] * intervals / seconds

    batches = eval_batches(cfg, tokenizer, corpus[1], cfg.masking.mask_rate, device)
    trained = AutoModelForMaskedLM.from_pretrained(run / "final").to(device)
    trained_separator = AutoModelForMaskedLM.from_pretrained(run.with_name("throughput-separator") / "final")
    result = {
        "model": f"{cfg.model.arch} {cfg.model.size}",
        "steps": args.steps,
        "mask_rate": cfg.masking.mask_rate,
        "hfssl_tokens_per_s": hfssl_tps,
        "separator_tokens_per_s": separator["tokens_per_s"],
        "baseline_tokens_per_s": base_tps,
        "hfssl_eval_loss": masked_loss(trained, batches, documents=True),
        "hfssl_metrics_eval_loss": metrics["eval_loss"],
        "separator_eval_loss": masked_loss(trained_separator.to(device), batches),
        "separator_metrics_eval_loss": separator["metrics"]["eval_loss"],
        "baseline_eval_loss": masked_loss(base["model"], batches),
        "other_cores": [documents["load"], separator["load"], base_load.cores],
    }
    return result


def attention(args, device, run: Path) -> dict:
    """--attention: hfssl's loop at each of `args.seq_lens` with the same tokens per step, document packing with
    block-sparse attention (`model.attention` auto) and with dense masks, against separator packing; `args.steps`
    each, tokens/s timed as in comparison 1, the three run in turn `args.repeats` times and the median kept (a shared
    machine's speed drifts by 20% from one minute to the next); eval losses from each run's metrics.json."""
    runs = {
        "block-sparse": ("documents", {"model.attention": "auto"}),
        "dense": ("documents", {"model.attention": "dense"}),
        "separator": ("separator", {}),
    }
    rows = []
    for seq_len in args.seq_lens:
        shape = {
            "data.seq_len": str(seq_len),
            "train.batch_size": str(max(1, args.batch_tokens // seq_len)),
            "model.max_position_embeddings": str(max(512, seq_len)),
        }
        results = {name: [] for name in runs}
        for attempt in range(args.repeats):
            for name, (packing, extra) in runs.items():
                out = run / f"{seq_len}-{name}-{attempt}"
                results[name].append(hfssl_throughput(args, device, out, packing, shape | extra))
        row = {"seq_len": seq_len, "batch_size": int(shape["train.batch_size"])}
        for name, done in results.items():
            row[name] = {
                "tokens_per_s": statistics.median(r["tokens_per_s"] for r in done),
                "all_tokens_per_s": [r["tokens_per_s"] for r in done],
                "eval_loss": done[0]["metrics"]["eval_loss"],
                "load": max((r["load"] for r in done if r["load"] is not None), default=None),
            }
        rows.append(row)
    return {"steps": args.steps, "repeats": args.repeats, "rows": rows}


def attention_table(r: dict) -> str:
    lines = [
        f"{r['steps']} steps, median of {r['repeats']}   tokens/s: block-sparse   dense  separator"
        "   block-sparse/separator  dense/separator"
        "   eval loss: block-sparse  dense  separator   other cores busy"
    ]
    for row in r["rows"]:
        b, d, s = (row[k] for k in ("block-sparse", "dense", "separator"))
        target = 1.3 if row["seq_len"] >= 1024 else 1.0
        ratio = b["tokens_per_s"] / s["tokens_per_s"]
        lines.append(
            f"seq {row['seq_len']:>5} x {row['batch_size']:<3} {b['tokens_per_s']:>15,.0f} {d['tokens_per_s']:>7,.0f}"
            f" {s['tokens_per_s']:>10,.0f} {ratio:>12.2f}x {'PASS' if ratio >= target else 'MISS'} (>={target}x)"
            f" {d['tokens_per_s'] / s['tokens_per_s']:>10.2f}x {b['eval_loss']:>20.4f} {d['eval_loss']:>6.4f}"
            f" {s['eval_loss']:>9.4f}   "
            + "/".join("?" if x["load"] is None else f"{x['load']:.1f}" for x in (b, d, s))
        )
    return "\n".join(lines)


def line_by_line(args, device, run: Path) -> dict:
    """--line-by-line: hfssl's loop with `data.packing` none, batches grouped by length against random batches, same
    steps; tokens/s counts non-padding tokens, and the padding share is that of each run's first epoch of batches."""
    grouped = hfssl_throughput(args, device, run, "none", {"data.group_by_length": "true"})
    mixed = hfssl_throughput(args, device, run.with_name("lines-random"), "none", {"data.group_by_length": "false"})
    cfg = grouped["cfg"]
    tokenizer = AutoTokenizer.from_pretrained(run / "tokenizer")
    train, _ = load_corpus(cfg.data, seed=cfg.train.seed)
    lengths = pack(tokenize_corpus(train, tokenizer, cfg.data), tokenizer, cfg.data).lengths()
    size = cfg.train.batch_size
    grouped_padding, random_padding = padding_shares(lengths, size, cfg.train.seed)
    return {
        "steps": args.steps,
        "batch_size": size,
        "seq_len": cfg.data.seq_len,
        "grouped_tokens_per_s": grouped["tokens_per_s"],
        "random_tokens_per_s": mixed["tokens_per_s"],
        "grouped_eval_loss": grouped["metrics"]["eval_loss"],
        "random_eval_loss": mixed["metrics"]["eval_loss"],
        "grouped_padding": grouped_padding,
        "random_padding": random_padding,
        "other_cores": [grouped["load"], mixed["load"]],
    }


def line_by_line_table(r: dict) -> str:
    speed = r["grouped_tokens_per_s"] / r["random_tokens_per_s"]
    loss = r["grouped_eval_loss"] / r["random_eval_loss"]
    return "\n".join([
        f"packing none, {r['steps']} steps of {r['batch_size']} x <= {r['seq_len']}   grouped    random   ratio",
        f"train tokens/s (non-padding)        {r['grouped_tokens_per_s']:>12,.0f} {r['random_tokens_per_s']:>9,.0f}"
        f" {speed:>6.2f}x  {'PASS' if speed >= 1.0 else 'MISS'} (>=1x)",
        f"padding share of the batches        {r['grouped_padding']:>12.1%} {r['random_padding']:>9.1%}",
        f"eval loss (metrics.json)            {r['grouped_eval_loss']:>12.4f} {r['random_eval_loss']:>9.4f}"
        f" {loss:>6.2f}x  {'PASS' if loss <= EQUAL_LOSS else 'MISS'} (<={EQUAL_LOSS}x)",
        "other processes' cores busy " + "/".join("?" if x is None else f"{x:.1f}" for x in r["other_cores"]),
    ])  # fmt: skip


def as_rows(encoding) -> list[dict]:
    return [dict(zip(encoding.keys(), values, strict=True)) for values in zip(*encoding.values(), strict=True)]


def collator_speed(args, tokenizer, seq_len: int) -> dict:
    """Comparison 2: examples/s of hfssl's collators and transformers' `DataCollatorForLanguageModeling`."""
    texts = [d["text"] for d in synthetic_documents(args.collator_examples, seed=1)]
    common = {"truncation": True, "max_length": seq_len, "return_token_type_ids": False, "verbose": False}
    dynamic = [{"input_ids": ids} for ids in tokenizer(texts, return_attention_mask=False, **common)["input_ids"]]
    with_specials = as_rows(tokenizer(texts, return_special_tokens_mask=True, **common))
    padded = as_rows(
        tokenizer(texts, padding="max_length", return_offsets_mapping=True, return_special_tokens_mask=True, **common)
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Random token replacement is not supported")
        hf_wwm = DataCollatorForLanguageModeling(tokenizer, whole_word_mask=True, mlm_probability=0.15)
    cases = {
        "token_hfssl": (MLMCollator(tokenizer), dynamic),
        "token_transformers": (DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15), with_specials),
        "whole_word_hfssl": (WholeWordMaskCollator(tokenizer), dynamic),
        "whole_word_transformers": (hf_wwm, padded),
        "span_hfssl": (SpanMaskCollator(tokenizer), dynamic),
    }
    results = {}
    threads = torch.get_num_threads()
    # One intra-op thread is how collators run in DataLoader workers; torch's default count is how they run in the
    # main process (num_workers=0, hfssl's default).
    for setting in dict.fromkeys([1, args.default_threads]):
        torch.set_num_threads(setting)
        times: dict[str, list[float]] = {name: [] for name in cases}
        with OtherLoad() as load:
            for repeat in range(args.collator_repeats + 1):  # the first pass warms up and is not kept
                for name, (collate, examples) in cases.items():
                    start = time.perf_counter()
                    for i in range(0, len(examples), 32):
                        collate(examples[i : i + 32])
                    if repeat:
                        times[name].append(time.perf_counter() - start)
        results[f"threads_{setting}"] = {name: len(cases[name][1]) / statistics.median(t) for name, t in times.items()}
        results[f"threads_{setting}"]["other_cores"] = load.cores
    torch.set_num_threads(threads)
    return results


def default_vs_plain(args, device, corpus, run: Path) -> dict:
    """Comparison 3: the shipped recipe against post-norm BERT with BERT's settings, for the same wall time."""
    overrides = {**args.overrides, "train.output_dir": str(run)}
    if args.recipe_steps:
        overrides["train.max_steps"] = str(args.recipe_steps)
    cfg = hfssl_config(overrides)
    logger.info("default recipe: hfssl %s, %d steps", RECIPE, cfg.train.max_steps)
    with OtherLoad() as hfssl_load:
        metrics = pretrain(cfg)
    budget = metrics["wall_time_s"]

    tokenizer = AutoTokenizer.from_pretrained(run / "tokenizer")
    preset = AutoConfig.from_pretrained(run / "model_config")
    bert = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=preset.hidden_size,
        num_hidden_layers=preset.num_hidden_layers,
        num_attention_heads=preset.num_attention_heads,
        intermediate_size=4 * preset.hidden_size,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=cfg.model.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
    )
    plain = dataclasses.replace(
        cfg,
        masking=dataclasses.replace(cfg.masking, mask_rate=0.15),
        train=dataclasses.replace(cfg.train, lr=5e-4, adam_beta2=0.999, adam_eps=1e-8),
    )
    blocks = baseline_blocks(corpus[0], tokenizer, cfg.data.seq_len)
    # Plan the schedule's length from the baseline's own step time, measured on a throwaway model.
    with StepClock(device) as clock:
        train_baseline(BertForMaskedLM(bert), tokenizer, blocks, plain, steps=args.calibration_steps)
    seconds, intervals = clock.train_time()
    planned = max(1, int(budget / (seconds / intervals)))
    logger.info("default recipe: plain BERT for %.0f s (~%d steps)", budget, planned)
    set_seed(cfg.train.seed)
    start = time.perf_counter()
    with OtherLoad() as base_load:
        base = train_baseline(BertForMaskedLM(bert), tokenizer, blocks, plain, planned, deadline=start + budget)
    base_seconds = time.perf_counter() - start

    batches = eval_batches(cfg, tokenizer, corpus[1], 0.15, device)
    trained = AutoModelForMaskedLM.from_pretrained(run / "final").to(device)
    return {
        "hfssl_steps": metrics["steps"],
        "hfssl_wall_s": budget,
        "baseline_steps": base["steps"],
        "baseline_planned_steps": planned,
        "baseline_wall_s": base_seconds,
        "hfssl_eval_loss": masked_loss(trained, batches),
        "baseline_eval_loss": masked_loss(base["model"], batches),
        "other_cores": [hfssl_load.cores, base_load.cores],
    }


def table(results: dict) -> str:
    """The comparisons as aligned rows: hfssl, baseline, ratio, target, PASS/MISS."""
    t, d = results["throughput"], results["default_vs_plain"]
    threads = results["default_threads"]
    c, c_main = results["collators"]["threads_1"], results["collators"][f"threads_{threads}"]

    def row(what, ours, theirs=None, target=None, passed=None):
        def cell(v):
            return "" if v is None else f"{v:,.0f}" if v >= 100 else f"{v:.4f}"

        ratio = f"{ours / theirs:.2f}x" if theirs else ""
        verdict = "" if passed is None else "PASS" if passed else "MISS"
        return f"{what:<56} {cell(ours):>9} {cell(theirs):>9} {ratio:>7}  {target or '':<8} {verdict}".rstrip()

    def others(cores):
        return "/".join("?" if x is None else f"{x:.1f}" for x in cores)

    tps = t["hfssl_tokens_per_s"] / t["baseline_tokens_per_s"]
    loss = t["hfssl_eval_loss"] / t["baseline_eval_loss"]
    packing_tps = t["hfssl_tokens_per_s"] / t["separator_tokens_per_s"]
    packing_loss = t["hfssl_eval_loss"] / t["separator_eval_loss"]
    token = c["token_hfssl"] / c["token_transformers"]
    wwm = c["whole_word_hfssl"] / c["whole_word_transformers"]
    plain = d["hfssl_eval_loss"] / d["baseline_eval_loss"]
    setup = f"comparison ({results['device']}, {results['torch_threads']} threads)"
    return "\n".join([
        f"{setup:<56} {'hfssl':>9} {'baseline':>9} {'ratio':>7}  {'target':<8} result",
        row(f"1. train tokens/s, {t['model']}, {t['steps']} steps", t["hfssl_tokens_per_s"],
            t["baseline_tokens_per_s"], ">=1.5x", tps >= 1.5),
        row(f"   eval loss @{t['mask_rate']:.0%}, same blocks and masks", t["hfssl_eval_loss"],
            t["baseline_eval_loss"], f"<={EQUAL_LOSS}x", loss <= EQUAL_LOSS),
        row("   train tokens/s, document vs separator packing (hfssl)", t["hfssl_tokens_per_s"],
            t["separator_tokens_per_s"], ">=1x", packing_tps >= 1.0),
        row("   eval loss, document vs separator packing (hfssl)", t["hfssl_eval_loss"], t["separator_eval_loss"],
            f"<={EQUAL_LOSS}x", packing_loss <= EQUAL_LOSS),
        f"   (hfssl's own metrics.json eval loss {t['hfssl_metrics_eval_loss']:.4f} documents, "
        f"{t['separator_metrics_eval_loss']:.4f} separator; separator packing vs baseline: tokens/s "
        f"{t['separator_tokens_per_s'] / t['baseline_tokens_per_s']:.2f}x, eval loss "
        f"{t['separator_eval_loss'] / t['baseline_eval_loss']:.2f}x; "
        f"other processes' cores busy {others(t['other_cores'])} documents/separator/baseline)",
        row("2. collator examples/s, 1 thread: token MLM", c["token_hfssl"], c["token_transformers"], ">=1x",
            token >= 1.0),
        row("   whole-word (transformers: pre-padded + offsets)", c["whole_word_hfssl"],
            c["whole_word_transformers"], ">=5x", wwm >= 5.0),
        row("   span (hfssl only)", c["span_hfssl"]),
        f"   (at {threads} threads: token "
        f"{c_main['token_hfssl'] / c_main['token_transformers']:.2f}x, whole-word "
        f"{c_main['whole_word_hfssl'] / c_main['whole_word_transformers']:.2f}x, span {c_main['span_hfssl']:,.0f}/s; "
        f"other processes' cores busy {others([c['other_cores'], c_main['other_cores']])})",
        row(f"3. eval loss @15%, default vs plain BERT, {d['hfssl_wall_s']:.0f} s budget", d["hfssl_eval_loss"],
            d["baseline_eval_loss"], f"<={CLEARLY_LOWER}x", plain <= CLEARLY_LOWER),
        f"   (steps: hfssl {d['hfssl_steps']}, plain BERT {d['baseline_steps']} of {d['baseline_planned_steps']} "
        f"planned, in {d['baseline_wall_s']:.0f} s; other processes' cores busy {others(d['other_cores'])})",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps of the throughput comparison")
    parser.add_argument(
        "--recipe-steps", type=int, default=600, help="steps of the default recipe in comparison 3 (0: as shipped)"
    )
    parser.add_argument("--quick", action="store_true", help="a few steps and a small corpus: a smoke test")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if available, else cpu")
    parser.add_argument("--threads", type=int, help="torch intra-op threads for training (default: torch's own)")
    parser.add_argument("--out", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--compile", action="store_true", help="torch.compile hfssl's model (train.compile) throughout")
    parser.add_argument(
        "--line-by-line",
        action="store_true",
        help="only data.packing none, batches grouped by length against random ones (--steps each)",
    )
    parser.add_argument(
        "--attention",
        action="store_true",
        help="only document packing's attention, block-sparse against dense, against separator packing (--steps each)",
    )
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[128, 1024], help="with --attention")
    parser.add_argument("--batch-tokens", type=int, default=4096, help="tokens per step with --attention")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each configuration with --attention")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logger.setLevel(logging.INFO)
    datasets.disable_progress_bars()
    args.default_threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu":
        # Accelerate's switch for every Accelerator in the process, hfssl's included.
        os.environ["ACCELERATE_USE_CPU"] = "true"
    mixed_precision = resolve_mixed_precision("auto") if device.type == "cuda" else "no"
    args.overrides = {"train.mixed_precision": mixed_precision, "train.compile": str(args.compile).lower()}
    if args.quick:
        args.overrides["data.synthetic_documents"] = "600"
        args.steps = args.recipe_steps = 4
    args.collator_examples = 128 if args.quick else 2000
    args.collator_repeats = 1 if args.quick else 7
    args.calibration_steps = 2 if args.quick else 12

    cfg = hfssl_config(args.overrides)
    corpus = load_corpus(cfg.data, seed=cfg.train.seed)
    results = {"device": str(device), "torch_threads": torch.get_num_threads(), "default_threads": args.default_threads}
    if args.attention:
        with tempfile.TemporaryDirectory(prefix="hfssl-bench-") as work:
            results["attention"] = attention(args, device, Path(work))
        print(attention_table(results["attention"]))
        if args.out:
            args.out.write_text(json.dumps(results, indent=2) + "\n")
        return results
    if args.line_by_line:
        with tempfile.TemporaryDirectory(prefix="hfssl-bench-") as work:
            results["line_by_line"] = line_by_line(args, device, Path(work, "lines-grouped"))
        print(line_by_line_table(results["line_by_line"]))
        if args.out:
            args.out.write_text(json.dumps(results, indent=2) + "\n")
        return results
    with tempfile.TemporaryDirectory(prefix="hfssl-bench-") as work:
        results["throughput"] = throughput(args, device, corpus, Path(work, "throughput"))
        logger.info("collators: %d examples, %d timed passes", args.collator_examples, args.collator_repeats)
        tokenizer = AutoTokenizer.from_pretrained(Path(work, "throughput", "tokenizer"))
        results["collators"] = collator_speed(args, tokenizer, cfg.data.seq_len)
        results["default_vs_plain"] = default_vs_plain(args, device, corpus, Path(work, "default"))
    print(table(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
