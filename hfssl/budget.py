"""`train.time_budget`: a run planned once from its own measured step time, as Cramming trains on a budget.

Before a budgeted run starts, `plan_run` measures it as `--dry-run` does (its setup, a few timed steps, one
evaluation batch, a probe, a checkpoint write and the export, in a scratch directory) and turns the budget into
`train.max_steps`. The schedule's warmup and decay are fractions of those steps, and every checkpoint keeps them
(`planned_steps` in its state), so a resumed run follows the plan it started with and ends where an uninterrupted
one would. `--dry-run` with a budget prints the plan for each model size and vocabulary size (`plan_grid`) and the
one it would pick, with the reason."""

from __future__ import annotations

import copy
import logging
import math
import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import get_args, get_type_hints

from accelerate.utils import broadcast_object_list

from hfssl.checkpoint import read_state, resume_from
from hfssl.dry_run import DRY_RUN_TIMED, DRY_RUN_WARMUP, duration, measure
from hfssl.errors import UsageError

logger = logging.getLogger(__name__)

MIN_STEPS = 10
"""The fewest steps a budget may plan: fewer leave warmup and decay no room."""
TOKENS_PER_PARAMETER = 20
"""The grid's rule for the model size: the largest whose plan trains on at least this many tokens (speech: 20 ms
frames) per parameter outside the embeddings (Chinchilla's compute-optimal ratio)."""
VOCAB_SIZES = (4096, 8192, 16384, 32768)
WORD_MIN_COUNT = 2
"""A word type counts towards the vocabulary the corpus needs when it occurs at least this often (the tokenizers'
default `min_frequency`)."""
FRAMES_PER_SECOND = 50  # the speech encoders' 20 ms frames
MEASURE_STEPS = 100_000
"""The measurement's schedule length: it stops timing long before, and only its step time is used."""


@dataclass(frozen=True)
class Plan:
    """What a budget buys, from one measured run."""

    steps: int
    budget: float
    spent: float
    """Seconds gone before the run proper starts: the measurement itself."""
    fixed: float
    """Seconds the run spends whatever its length: setup, the first and last evaluation, the export."""
    per_step: float
    """Seconds of a step, with its share of the evaluations, probes and checkpoints due every so many steps."""
    report: dict

    @property
    def units(self) -> float:
        """Tokens (or audio seconds) the planned steps train on."""
        return self.steps * self.report["units_per_step"]

    def per_parameter(self) -> float:
        """Planned tokens (speech: frames) per parameter outside the embeddings."""
        r = self.report
        units = self.units * (FRAMES_PER_SECOND if r["unit"] == "audio_seconds" else 1)
        return units / max(1, r["parameters"] - r["embedding_parameters"])

    def describe(self) -> str:
        r = self.report
        return (
            f"{self.steps:,} steps in {duration(self.budget)}: {duration(self.spent)} measuring, "
            f"{duration(self.fixed)} for setup, first and last evaluation and export, then {self.per_step:.3f} s a "
            f"step ({r['step_seconds']:.3f} s training, the rest evaluations, probes and checkpoints every so many)"
        )


def plan_steps(report: dict, t, budget: float, spent: float) -> Plan:
    """The steps that fit in `budget` seconds after `spent`, for a run `report` (`dry_run.measure`) measured.

    `t` is the run's `train` section: how often it evaluates, probes and checkpoints."""
    one_eval = report["eval_batches"] * report["eval_batch_seconds"]
    probe = report["probe_seconds"] if report["probes"] else 0.0
    fixed = report["setup_seconds"] + 2 * one_eval + probe + report["export_seconds"]
    per_step = report["step_seconds"] + one_eval / t.eval_every + report["checkpoint_seconds"] / t.save_every
    if probe:
        per_step += probe / t.probe_every
    steps = math.floor((budget - spent - fixed) / per_step)
    return Plan(steps=steps, budget=budget, spent=spent, fixed=fixed, per_step=per_step, report=report)


MEASURE_SHARE, MEASURE_MAX = 0.02, 60.0
"""A budgeted run times its steps for this share of the budget (at most `MEASURE_MAX` seconds): a few steps of a
few milliseconds each are too few to plan thousands by."""


def measuring(cfg):
    """`cfg` as the measurement runs it: no budget, and room for as many timed steps as it takes."""
    probe = copy.deepcopy(cfg)
    probe.train.time_budget = None
    probe.train.max_steps, probe.train.epochs = MEASURE_STEPS, None
    return probe


def measure_budgeted(cfg) -> dict:
    return measure(measuring(cfg), min_seconds=min(MEASURE_MAX, MEASURE_SHARE * cfg.train.budget_seconds))


def plan_run(cfg, resume: str | bool | None) -> Plan | None:
    """Set `cfg.train.max_steps` from the budget: the plan a checkpoint to resume from kept, else a new one from
    a measurement of this run (None then is returned for a resumed run)."""
    t = cfg.train
    checkpoint = resume_from(resume, Path(t.output_dir))
    if checkpoint is not None:
        planned = read_state(checkpoint).get("planned_steps")
        if planned is None:
            raise UsageError(
                f"train.time_budget: {checkpoint} was saved by a run without a time budget; resume it without one"
            )
        t.max_steps, t.epochs, t.planned = planned, None, True
        return None
    began = time.perf_counter()
    report = measure_budgeted(cfg)
    plan = plan_steps(report, t, t.budget_seconds, time.perf_counter() - began)
    # The main process's measurement decides for every process.
    steps = broadcast_object_list([plan.steps])[0]
    if steps < MIN_STEPS:
        raise UsageError(
            f"train.time_budget: {t.time_budget} leaves room for {max(0, steps)} steps of {plan.per_step:.2f} s after "
            f"{duration(plan.spent + plan.fixed)} of measuring, setup, evaluation and export; at least {MIN_STEPS} "
            "steps are needed"
        )
    # `planned` is no setting (the schema's fields are): it tells the loop the budget has become max_steps.
    t.max_steps, t.epochs, t.planned = steps, None, True
    logger.info("time budget %s: %s", t.time_budget, plan.describe())
    return plan


def word_types(corpus, lowercase: bool, limit: int | None) -> int:
    """Word types (runs of letters and digits) that occur at least `WORD_MIN_COUNT` times in the corpus's texts."""
    counts: Counter[str] = Counter()
    for i, example in enumerate(corpus):
        if limit is not None and i >= limit:
            break
        text = example["text"].lower() if lowercase else example["text"]
        counts.update(re.findall(r"\w+", text))
    return sum(1 for n in counts.values() if n >= WORD_MIN_COUNT)


@dataclass(frozen=True)
class Cell:
    size: str
    vocab: int | None
    plan: Plan


def plan_grid(cfg) -> tuple[list[Cell], Cell, str, int | None]:
    """The budget's plan for each model size (and, when the run trains its tokenizer, each vocabulary size), the
    cell the rules pick, the reason, and the corpus's word types (None for speech or a given tokenizer)."""
    t = cfg.train
    sizes = [cfg.model.size] if cfg.model.name_or_path else list(get_args(get_type_hints(type(cfg.model))["size"]))
    text = hasattr(cfg, "tokenizer")
    trains_tokenizer = text and not (cfg.tokenizer.path or cfg.model.name_or_path)
    types, vocabs, paths = None, [None], {}
    with tempfile.TemporaryDirectory(prefix="hfssl-plan-") as scratch:
        if trains_tokenizer:
            types, paths = _tokenizers(cfg, Path(scratch))
            vocabs = list(paths)
        cells = []
        for vocab in vocabs:
            for size in sizes:
                cell = copy.deepcopy(cfg)
                cell.model.size = size
                for override in ("num_layers", "hidden_size", "num_heads", "intermediate_size"):
                    if hasattr(cell.model, override):
                        setattr(cell.model, override, None)
                if vocab is not None:
                    cell.tokenizer.vocab_size, cell.tokenizer.path = vocab, paths[vocab]
                report = measure(measuring(cell))  # a dry run's few timed steps: 20 cells take long enough
                cells.append(Cell(size, vocab, plan_steps(report, t, t.budget_seconds, measuring_seconds(report))))
    chosen, reason = pick(cells, types)
    return cells, chosen, reason, types


def _tokenizers(cfg, scratch: Path) -> tuple[int, dict[int, str]]:
    """The corpus's word types, and a tokenizer trained on it for each candidate vocabulary size, saved in
    `scratch` (trained once, where each size's cells would each train it again)."""
    from hfssl.data.text import load_corpus
    from hfssl.tokenizer import train_on_corpus

    corpus, _ = load_corpus(cfg.data, cfg.train.seed)
    types = word_types(corpus, cfg.tokenizer.lowercase, cfg.tokenizer.max_documents)
    paths = {}
    for vocab in sorted({*VOCAB_SIZES, cfg.tokenizer.vocab_size}):
        args = copy.deepcopy(cfg.tokenizer)
        args.vocab_size = vocab
        tokenizer = train_on_corpus(corpus, args, model_max_length=cfg.model.max_position_embeddings)
        paths[vocab] = str(scratch / f"vocab-{vocab}")
        tokenizer.save_pretrained(paths[vocab])
    return types, paths


def pick(cells: list[Cell], types: int | None) -> tuple[Cell, str]:
    """The vocabulary the corpus needs, then the largest model the budget trains on enough data.

    Vocabulary: the largest candidate no larger than the corpus's word types seen at least twice (a larger one
    learns pieces the corpus hardly shows, and its embeddings and output layer cost every step). Size: the largest
    whose plan reaches `TOKENS_PER_PARAMETER` tokens per parameter outside the embeddings, else the smallest."""
    reasons = []
    vocabs = sorted({c.vocab for c in cells if c.vocab is not None})
    vocab = None
    if vocabs:
        fitting = [v for v in vocabs if v <= types]
        vocab = fitting[-1] if fitting else vocabs[0]
        reasons.append(
            f"vocabulary {vocab:,}: the corpus has {types:,} word types seen at least {WORD_MIN_COUNT} times"
        )
    row = [c for c in cells if c.vocab == vocab and c.plan.steps >= MIN_STEPS]
    if not row:
        raise UsageError("train.time_budget: no model size fits a run in this budget; give a longer one")
    enough = [c for c in row if c.plan.per_parameter() >= TOKENS_PER_PARAMETER]
    chosen = enough[-1] if enough else row[0]
    got = (
        f"{chosen.plan.per_parameter():,.1f} {'frames' if chosen.plan.report['unit'] == 'audio_seconds' else 'tokens'}"
    )
    if enough:
        larger = row[row.index(chosen) + 1 :]
        beyond = f"; {larger[0].size} would get {larger[0].plan.per_parameter():,.1f}" if larger else ""
        reasons.append(
            f"size {chosen.size}: the largest whose plan trains on at least {TOKENS_PER_PARAMETER} per parameter "
            f"outside the embeddings ({got}{beyond})"
        )
    else:
        reasons.append(
            f"size {chosen.size}: the smallest; no size reaches {TOKENS_PER_PARAMETER} per parameter ({got})"
        )
    return chosen, "; ".join(reasons)


def format_grid(cells: list[Cell], chosen: Cell, reason: str, cfg) -> str:
    """The grid as the lines `hfssl pretrain --dry-run` prints under a time budget."""
    unit = "frames" if cells[0].plan.report["unit"] == "audio_seconds" else "tokens"
    head = ["size", "vocab", "parameters", "embeddings", "s/step", "steps", unit, f"{unit}/param", ""]
    rows = []
    for c in cells:
        r, p = c.plan.report, c.plan
        per = FRAMES_PER_SECOND if r["unit"] == "audio_seconds" else 1
        rows.append([
            c.size, "-" if c.vocab is None else f"{c.vocab:,}", f"{r['parameters'] / 1e6:,.2f}M",
            f"{r['embedding_parameters'] / 1e6:,.2f}M", f"{p.per_step:.3f}", f"{max(0, p.steps):,}",
            f"{max(0, p.units) * per / 1e6:,.1f}M", f"{max(0.0, p.per_parameter()):,.1f}",
            "<- picked" if c is chosen else "",
        ])  # fmt: skip
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip() for line in [head, *rows]]
    return "\n".join(
        [f"time budget {cfg.train.time_budget}, planned for each size and vocabulary:", *lines, f"pick: {reason}"]
    )


def plan_dry_run(cfg) -> str:
    """`--dry-run` under a budget: the grid (`plan_grid`) and its pick, and the plan of the recipe as given, whose
    steps it sets in `cfg.train.max_steps` for the dry run's own report."""
    cells, chosen, reason, _ = plan_grid(cfg)
    report = measure_budgeted(cfg)
    own = plan_steps(report, cfg.train, cfg.train.budget_seconds, measuring_seconds(report))
    cfg.train.max_steps, cfg.train.epochs = max(1, own.steps), None
    lines = [format_grid(cells, chosen, reason, cfg), f"this recipe as given: {own.describe()}"]
    vocab = getattr(getattr(cfg, "tokenizer", None), "vocab_size", None)
    if (chosen.size, chosen.vocab) != (cfg.model.size, vocab if chosen.vocab is not None else None):
        follow = f"--model.size {chosen.size}" + (f" --tokenizer.vocab_size {chosen.vocab}" if chosen.vocab else "")
        lines.append(f"to train the pick instead: {follow}")
    return "\n".join(lines)


def measuring_seconds(report: dict) -> float:
    """What a real run spends measuring itself before it starts: about its setup and the timed steps."""
    return report["setup_seconds"] + (DRY_RUN_WARMUP + DRY_RUN_TIMED) * report["step_seconds"]
