"""`hfssl pretrain`: the one Accelerate training loop. Setup, then the loop, then the export."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import (
    DataLoaderConfiguration,
    DistributedType,
    ProjectConfiguration,
    broadcast_object_list,
    gather_object,
    get_int_from_env,
    set_seed,
)
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoTokenizer, PreTrainedModel, get_scheduler

from hfssl.collators.text import MLMCollator, SpanMaskCollator, WholeWordMaskCollator
from hfssl.config import (
    LabelledDataArgs,
    MaskingArgs,
    PretrainConfig,
    SpeechPretrainConfig,
    TrainArgs,
    dump,
    to_dict,
)
from hfssl.data.labelled import load_labelled
from hfssl.data.stream import stream_loader
from hfssl.data.text import estimate_tokens, load_corpus, pack, tokenize_corpus
from hfssl.errors import TrainingStopped, UsageError
from hfssl.export import build_objective, export_model, load_weights
from hfssl.io import atomic_dir, write_json, write_text
from hfssl.model import MaskedLM, build_model, check_positions
from hfssl.probe import probe
from hfssl.tokenizer import train_tokenizer

logger = logging.getLogger(__name__)

DRY_RUN_WARMUP, DRY_RUN_TIMED = 3, 5
SCHEDULES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}
STATE_FILE = "trainer_state.json"


def synced_clock(accelerator: Accelerator) -> float:
    """The time once the device has finished the work queued so far."""
    if accelerator.device.type == "cuda":
        torch.cuda.synchronize(accelerator.device)
    return time.perf_counter()


def make_collator(masking: MaskingArgs, tokenizer, seed: int):
    common = dict(
        tokenizer=tokenizer,
        mask_rate=masking.mask_rate,
        replace_prob=masking.replace_prob,
        random_prob=masking.random_prob,
        seed=seed,
    )
    if masking.strategy == "whole_word":
        return WholeWordMaskCollator(**common)
    if masking.strategy == "span":
        return SpanMaskCollator(**common, span_p=masking.span_p, max_span=masking.max_span)
    return MLMCollator(**common)


def resolve_mixed_precision(choice: str) -> str:
    if choice != "auto":
        return choice
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def launched_processes() -> int:
    """How many processes the launcher started: torchrun and `accelerate launch --multi_gpu` say so in WORLD_SIZE,
    mpirun in its own variable."""
    return get_int_from_env(["WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"], 1)


def on_cpus(launched: int) -> bool:
    """Whether several launched processes must share the work on CPUs (gloo). Accelerate joins processes into one
    run only over a GPU-like device or when told to use the CPU; without one it lets each process train alone."""
    if launched < 2:
        return False
    return not torch.accelerator.is_available() or torch.accelerator.current_accelerator().type == "mps"


def single_process_warning(num_processes: int, launched: int) -> str | None:
    """One line when a launch meant for several processes trains in one. `accelerate launch --cpu --num_processes N`
    (or `--num_processes N` without a GPU) starts a single process; it sets the rendezvous address meant for the
    others, but no WORLD_SIZE."""
    if num_processes > 1:
        return None
    if launched > 1:
        return f"{launched} processes were launched but each trains alone; the run is not distributed"
    if "ACCELERATE_USE_CPU" in os.environ and "MASTER_ADDR" in os.environ:
        return (
            "accelerate launch was asked for several processes but started one, as it does with --cpu or without "
            "several GPUs; on CPUs run torchrun --nproc_per_node N -m hfssl ... or accelerate launch --multi_gpu "
            "--num_processes N -m hfssl ..."
        )
    return None


def shards_weights(accelerator: Accelerator) -> bool:
    """Whether each process holds only a shard of the weights (FSDP, DeepSpeed ZeRO-3)."""
    if accelerator.distributed_type == DistributedType.FSDP:
        return True
    plugin = accelerator.state.deepspeed_plugin
    return accelerator.distributed_type == DistributedType.DEEPSPEED and plugin.zero_stage == 3


def transformer_layers(model: torch.nn.Module) -> list[str]:
    """Class names of the model's transformer layers: the elements of module lists whose members hold attention."""
    names = set()
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module):
            if any("attn" in name or "attention" in name for name, _ in module[0].named_children()):
                names.add(type(module[0]).__name__)
    return sorted(names)


def check_fsdp_units(accelerator: Accelerator, objective: torch.nn.Module) -> None:
    """FSDP shards each transformer layer as its own unit. The layer classes an accelerate config names must be
    the model's; where it names none, hfssl names the model's own, so one config serves every architecture."""
    if accelerator.distributed_type != DistributedType.FSDP:
        return
    plugin = accelerator.state.fsdp_plugin
    if getattr(plugin.auto_wrap_policy, "__name__", None) != "transformer_auto_wrap_policy":
        return
    layers = transformer_layers(objective)
    if not plugin.transformer_cls_names_to_wrap:
        plugin.transformer_cls_names_to_wrap = layers
        return
    present = {type(m).__name__ for m in objective.modules()}
    absent = [name for name in plugin.transformer_cls_names_to_wrap if name not in present]
    if absent:
        raise UsageError(
            f"fsdp_transformer_layer_cls_to_wrap: {', '.join(absent)} is not a module of this model, whose "
            f"transformer layers are {', '.join(layers)}; leave the option out and hfssl names them"
        )


def make_accelerator(t: TrainArgs, run_dir: Path) -> Accelerator:
    """The run's Accelerator: several launched processes train as one, on GPUs or (gloo) on CPUs."""
    launched = launched_processes()
    accelerator = Accelerator(
        cpu=on_cpus(launched),
        gradient_accumulation_steps=t.grad_accum,
        mixed_precision=resolve_mixed_precision(t.mixed_precision),
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs")),
        # Shuffles with seed + epoch, so a resumed run sees the same order, and every process the same permutation
        # (each takes its share of it), whatever the global seed is when the loader is prepared.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=t.seed),
        # The loop steps the schedule once per optimizer step, so warmup and length count optimizer steps for any
        # number of processes (a prepared scheduler otherwise steps once per process on each call).
        step_scheduler_with_optimizer=False,
    )
    warning = single_process_warning(accelerator.num_processes, launched)
    if warning is not None:
        logger.warning(warning)
    return accelerator


def find_checkpoint(resume: str, run_dir: Path) -> Path:
    """The latest complete checkpoint in `resume` ('auto': the run directory), or UsageError."""
    where = run_dir if resume == "auto" else Path(resume)
    if (where / STATE_FILE).is_file():
        return where
    found = sorted((where / "checkpoints").glob("step-*/" + STATE_FILE)) + sorted(where.glob("step-*/" + STATE_FILE))
    if not found:
        raise UsageError(f"{where}: holds no checkpoint (expected checkpoints/step-*/{STATE_FILE})")
    return max(found, key=lambda p: int(p.parent.name.split("-")[1])).parent


def load_tokenizer(name_or_path: str, field: str):
    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as err:
        reason = str(err).splitlines()[0]
        raise UsageError(f"{field}: could not load a tokenizer from {name_or_path!r} ({reason})") from None


def prepare_tokenizer(cfg: PretrainConfig, corpus, run_dir: Path, accelerator: Accelerator, resuming: bool):
    """Load or train the tokenizer on the main process, save it into the run, and load that copy everywhere."""
    saved = run_dir / "tokenizer"
    if accelerator.is_main_process and not (resuming and saved.is_dir()):
        if cfg.tokenizer.path:
            tokenizer = load_tokenizer(cfg.tokenizer.path, "tokenizer.path")
        elif cfg.model.name_or_path:
            tokenizer = load_tokenizer(cfg.model.name_or_path, "model.name_or_path")
        else:
            tokenizer = train_tokenizer(
                CorpusTexts(corpus, cfg.tokenizer.max_documents),
                kind=cfg.tokenizer.kind,
                vocab_size=cfg.tokenizer.vocab_size,
                min_frequency=cfg.tokenizer.min_frequency,
                lowercase=cfg.tokenizer.lowercase,
                model_max_length=cfg.model.max_position_embeddings,
            )
        source = cfg.tokenizer.path or cfg.model.name_or_path or "the tokenizer"
        if tokenizer.mask_token_id is None:
            raise UsageError(f"{source}: the tokenizer has no mask token, which masked-LM pretraining needs")
        if tokenizer.pad_token_id is None:
            raise UsageError(f"{source}: the tokenizer has no padding token")
        with atomic_dir(saved) as tmp:
            tokenizer.save_pretrained(tmp)
    accelerator.wait_for_everyone()
    return AutoTokenizer.from_pretrained(saved)


class CorpusTexts:
    """The corpus' "text" column, at most `limit` documents, iterable more than once (tokenizer training reads
    it twice)."""

    def __init__(self, corpus, limit: int | None):
        self.corpus, self.limit = corpus, limit

    def __iter__(self):
        for i, example in enumerate(self.corpus):
            if self.limit is not None and i >= self.limit:
                return
            yield example["text"]


def load_probe_data(t, task: str = "text", max_seconds: float = 10.0):
    """Labelled data for `train.probe_every`: half of it fits the probe, half scores it."""
    data = LabelledDataArgs(
        task=task,
        train=t.probe_data,
        synthetic_examples=t.probe_examples,
        validation_fraction=0.5,
        test_fraction=0.0,
        max_length=128,
        max_seconds=max_seconds,
    )
    return load_labelled(data, seed=t.seed)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no decay on biases and normalisation weights (every parameter with fewer than 2 dims)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@dataclass
class Setup:
    """What an objective brings to the loop. The loop itself never asks which objective it is running: it calls
    `objective(**batch)`, steps on `.loss`, logs `.logs`, and evaluates from `.stats` through `summarise`."""

    objective: torch.nn.Module
    """forward(**batch) -> output with .loss, .stats (per-example sums) and .logs; plus summarise(), set_step(),
    health()."""
    model: PreTrainedModel
    train_loader: DataLoader
    collator: Any
    """The training collator; its stream position is restored on resume."""
    eval_set: Any
    eval_batches: list[list[int]]
    """Validation batches (dataset indices), in order; each process evaluates every `num_processes`-th one."""
    eval_collator: Any
    export: Callable[[torch.nn.Module, Path, dict], None]
    """Writes the final model from the unwrapped objective, given the run's metrics."""
    unit: str
    """What `count` measures, for logs and metrics: "tokens" or "audio_seconds"."""
    count: Callable[[dict], torch.Tensor]
    probe: Callable[[torch.nn.Module], dict] | None = None
    data_size: Callable[[], tuple[float | None, str]] | None = None
    """For --dry-run: the training data's size in `unit`s (None: unknown) and how it was found."""
    streaming: bool = False
    prepare_train_loader: bool = True
    """False: the loader already yields this process's batches (a stream split by node); the loop moves them to
    the device itself."""


@torch.no_grad()
def evaluate(objective, setup: Setup, accelerator: Accelerator, max_batches: int | None) -> dict:
    """The objective's evaluation metrics from per-example sums, added up across processes.

    The evaluation collator is reseeded first, so every evaluation masks the same positions. Where every process
    holds all the weights, the unwrapped model runs, so a process with fewer batches than others never waits on a
    collective inside forward. Where each holds a shard (FSDP, ZeRO-3), forward gathers the weights, a collective
    all must join: each process runs the wrapped model equally often, repeating a batch whose sums it drops."""
    raw = accelerator.unwrap_model(objective)
    sharded = shards_weights(accelerator)
    model = objective if sharded else raw
    model.eval()
    setup.eval_collator.reset()
    batches = setup.eval_batches[:max_batches] if max_batches is not None else setup.eval_batches
    mine = batches[accelerator.process_index :: accelerator.num_processes]
    rounds = -(-len(batches) // accelerator.num_processes) if sharded else len(mine)
    padded = mine + batches[:1] * (rounds - len(mine))
    loader = DataLoader(setup.eval_set, batch_sampler=padded, collate_fn=setup.eval_collator)
    totals = torch.zeros(len(raw.stat_names), dtype=torch.float64, device=accelerator.device)
    for i, batch in enumerate(loader):
        out = model(**{k: v.to(accelerator.device) for k, v in batch.items()})
        if i < len(mine):
            totals += torch.stack([out.stats[name].sum() for name in raw.stat_names])
    # Every process joins the reduction, including one that had no batch to evaluate.
    totals = accelerator.reduce(totals, "sum")
    model.train()
    return raw.summarise(dict(zip(raw.stat_names, totals.tolist(), strict=True)))


class WholeWeights:
    """The trained objective with every weight in place, on the main process (None on the others), for the probe
    and the export.

    Under DDP or ZeRO-1/2 every process holds all the weights, and this is the trained module itself. Under FSDP or
    ZeRO-3 each holds a shard: every process must call this, as it gathers the full state dict (a collective),
    which the main process loads into a copy built once from the model's config, on its device."""

    def __init__(self, accelerator: Accelerator, objective: torch.nn.Module, cfg, model_config):
        self.accelerator = accelerator
        self.objective = objective
        self.cfg = cfg
        self.model_config = model_config
        self.copy: tuple[torch.nn.Module, PreTrainedModel] | None = None

    def __call__(self) -> torch.nn.Module | None:
        accelerator = self.accelerator
        if not shards_weights(accelerator):
            return accelerator.unwrap_model(self.objective) if accelerator.is_main_process else None
        weights = accelerator.get_state_dict(self.objective)
        if not accelerator.is_main_process:
            return None
        if self.copy is None:
            with torch.random.fork_rng(devices=[]):  # its random init must not move the run's random stream
                objective, model = build_objective(self.cfg, self.model_config)
            self.copy = objective.to(accelerator.device), model
        load_weights(*self.copy, weights, "the weights gathered from the processes' shards")
        return self.copy[0]


def save_checkpoint(accelerator: Accelerator, run_dir: Path, state: dict, keep_last: int) -> Path:
    """`accelerator.save_state` into a temporary directory, renamed into place once complete; the last K kept."""
    final = run_dir / "checkpoints" / f"step-{state['step']:07d}"
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json(tmp / STATE_FILE, state)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        kept = sorted(p for p in final.parent.glob("step-*") if not p.name.endswith(".tmp"))
        for old in kept[:-keep_last]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def text_setup(cfg: PretrainConfig, accelerator: Accelerator, run_dir: Path, resuming: bool) -> Setup:
    """Masked-LM: the corpus, the tokenizer (trained on it unless given), packed blocks and the masking collators."""
    check_positions(cfg.model, cfg.data.seq_len)
    t = cfg.train
    with accelerator.main_process_first():
        train_corpus, eval_corpus = load_corpus(cfg.data, seed=t.seed)
    tokenizer = prepare_tokenizer(cfg, train_corpus, run_dir, accelerator, resuming=resuming)
    with accelerator.main_process_first():
        train_set = pack(tokenize_corpus(train_corpus, tokenizer, cfg.data), tokenizer, cfg.data)
        eval_set = pack(tokenize_corpus(eval_corpus, tokenizer, cfg.data), tokenizer, cfg.data)
    streaming = isinstance(train_set, torch.utils.data.IterableDataset)
    model = build_model(cfg.model, tokenizer)
    objective = MaskedLM(model)
    collator = make_collator(cfg.masking, tokenizer, seed=t.seed)
    eval_collator = make_collator(cfg.masking, tokenizer, seed=t.seed + 1)
    if streaming:
        # Each process and worker packs its own part of the stream; batches carry their position for checkpoints.
        train_loader = stream_loader(partial(train_set.batches, t.batch_size), collator, accelerator, t.num_workers)
    else:
        train_loader = DataLoader(
            train_set,
            batch_size=t.batch_size,
            shuffle=True,
            collate_fn=collator,
            num_workers=t.num_workers,
            pin_memory=torch.cuda.is_available(),
            # Its own generator: starting an epoch's iterator must not draw from the global RNG, which a resumed run
            # restores (dropout comes from it).
            generator=torch.Generator().manual_seed(t.seed),
        )
    eval_size = t.eval_batch_size or t.batch_size
    eval_batches = [list(range(i, min(i + eval_size, len(eval_set)))) for i in range(0, len(eval_set), eval_size)]
    probe_splits = load_probe_data(t) if t.probe_every else None

    def run_probe(raw: torch.nn.Module) -> dict:
        return probe(raw.model.base_model, tokenizer, probe_splits, batch_size=eval_size, device=accelerator.device)

    def export(raw: torch.nn.Module, out_dir: Path, metrics: dict) -> None:
        export_model(raw.model, tokenizer, out_dir, cfg, metrics)

    def data_size() -> tuple[float | None, str]:
        if streaming:
            return estimate_tokens(train_corpus, tokenizer, cfg.data)
        return train_set.num_tokens, f"counted in the {len(train_set):,} training sequences"

    return Setup(
        objective=objective,
        model=model,
        train_loader=train_loader,
        collator=collator,
        eval_set=eval_set,
        eval_batches=eval_batches,
        eval_collator=eval_collator,
        export=export,
        unit="tokens",
        count=lambda batch: batch["attention_mask"].sum(),
        probe=run_probe if probe_splits is not None else None,
        data_size=data_size,
        streaming=streaming,
        prepare_train_loader=not streaming,
    )


def pretrain(cfg: PretrainConfig | SpeechPretrainConfig, resume: str | None = None, dry_run: bool = False) -> dict:
    """Pretrain as `cfg` says (masked-LM for text, masked prediction for speech); returns the final metrics (also
    written to metrics.json).

    With `dry_run`, nothing is written to the output directory: the setup works in a scratch directory, a few
    optimizer steps are timed, and the result is `hfssl.dry_run.report`'s estimate of the whole run instead."""
    started = time.time()
    run_dir = Path(cfg.train.output_dir)
    if dry_run and resume:
        raise UsageError("--dry-run estimates a run from its start; leave out --resume")
    checkpoint = find_checkpoint(resume, run_dir) if resume else None
    if checkpoint is None and not dry_run and any((run_dir / "checkpoints").glob("step-*")):
        raise UsageError(
            f"train.output_dir: {run_dir} holds checkpoints of an earlier run; pass --resume to continue it "
            "or choose another output directory"
        )
    t = cfg.train
    accelerator = make_accelerator(t, run_dir)
    # A dry run's tokenizer, targets and export go to a scratch directory that every process shares.
    work_dir = run_dir
    if dry_run:
        work_dir = Path(
            broadcast_object_list([mkdtemp(prefix="hfssl-dry-run-") if accelerator.is_main_process else ""])[0]
        )
    set_seed(t.seed)
    if isinstance(cfg, SpeechPretrainConfig):
        from hfssl.speech import speech_setup

        setup = speech_setup(cfg, accelerator, work_dir)
    else:
        setup = text_setup(cfg, accelerator, work_dir, resuming=checkpoint is not None)
    if setup.streaming and t.max_steps is None:
        raise UsageError("train.max_steps: a streamed corpus has no known length; set train.max_steps")
    if accelerator.is_main_process and not dry_run:
        write_text(run_dir / "config.yaml", dump(cfg))
        with atomic_dir(run_dir / "model_config") as tmp:
            setup.model.config.save_pretrained(tmp)

    objective = torch.compile(setup.objective) if t.compile else setup.objective
    optimizer = torch.optim.AdamW(
        param_groups(objective, t.weight_decay),
        lr=t.lr,
        betas=(t.adam_beta1, t.adam_beta2),
        eps=t.adam_eps,
        fused=torch.cuda.is_available() or None,
    )
    check_fsdp_units(accelerator, objective)
    if setup.prepare_train_loader:
        # In one call with the model: DeepSpeed takes its micro-batch size from the loader.
        objective, optimizer, train_loader = accelerator.prepare(objective, optimizer, setup.train_loader)
    else:
        objective, optimizer = accelerator.prepare(objective, optimizer)
        train_loader = setup.train_loader
    raw = accelerator.unwrap_model(objective)
    whole_weights = WholeWeights(accelerator, objective, cfg, setup.model.config)
    steps_per_epoch = None if setup.streaming else max(1, math.ceil(len(train_loader) / t.grad_accum))
    total_steps = t.max_steps or math.ceil(t.epochs * steps_per_epoch)
    warmup = t.warmup_steps if t.warmup_steps is not None else round(t.warmup_ratio * total_steps)
    scheduler = get_scheduler(SCHEDULES[t.schedule], optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
    scheduler = accelerator.prepare(scheduler)

    seen_key = f"{setup.unit}_seen"
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "micro_batches": 0, seen_key: 0, "evals": []}
    state["num_processes"] = accelerator.num_processes
    if checkpoint is not None:
        state = json.loads((checkpoint / STATE_FILE).read_text())
        # The data position and the random states are per process: another count would repeat or skip data.
        if state.get("num_processes", accelerator.num_processes) != accelerator.num_processes:
            raise UsageError(
                f"--resume: {checkpoint} was written by {state['num_processes']} processes and this run has "
                f"{accelerator.num_processes}; resume with {state['num_processes']}"
            )
        accelerator.load_state(str(checkpoint))
        if setup.streaming:  # where each of this process's parts of the stream stood, and its masking streams
            train_loader.load_state_dict(state["streams"][accelerator.process_index])
        elif t.num_workers:
            logger.warning(
                "train.num_workers %d: the run resumes at the right batch, but DataLoader workers mask it anew, so it "
                "will not match an uninterrupted run exactly (it does with train.num_workers 0)",
                t.num_workers,
            )
        # The collator's stream position is the number of batches trained on (it runs a batch ahead of training).
        setup.collator.load_state_dict({"seed": t.seed, "calls": state["micro_batches"]})
        logger.info("resumed from %s at step %d", checkpoint, state["step"])

    tracker_config = {f"{s}.{k}": v for s, sec in to_dict(cfg).items() for k, v in sec.items()}
    if not dry_run:
        accelerator.init_trackers(
            "pretrain", config={k: v for k, v in tracker_config.items() if isinstance(v, (int, float, str, bool))}
        )
    if checkpoint is None and not dry_run:
        initial = evaluate(objective, setup, accelerator, t.eval_batches)
        state["evals"].append({"step": 0, **initial})
        accelerator.log({f"eval/{k}": v for k, v in initial.items()}, step=0)
        logger.info("step 0: eval loss %.4f", initial["loss"])

    # A dry run times a few optimizer steps after a warm-up (the first steps pay for compilation and allocation).
    warmup = min(DRY_RUN_WARMUP, total_steps - 1)
    stop = min(total_steps, warmup + DRY_RUN_TIMED) if dry_run else total_steps
    progress = tqdm(total=stop, initial=state["step"], disable=not accelerator.is_local_main_process, desc="pretrain")
    window: dict[str, torch.Tensor] = {}
    window_batches = 0
    window_units = torch.zeros((), device=accelerator.device, dtype=torch.float64)
    seen_before = state[seen_key]
    local_units = torch.zeros((), device=accelerator.device, dtype=torch.float64)
    window_start = time.time()
    train_loss = float("nan")
    timed_from = synced_clock(accelerator)
    objective.train()
    while state["step"] < stop:
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(state["epoch"])
        loader = train_loader
        if state["batch_in_epoch"] and not setup.streaming:  # a stream resumes from its saved position instead
            loader = accelerator.skip_first_batches(train_loader, state["batch_in_epoch"])
        for batch in loader:
            batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
            raw.set_step(state["step"])
            with accelerator.accumulate(objective):
                out = objective(**batch)
                accelerator.backward(out.loss)
                grad_norm = None
                if accelerator.sync_gradients and t.max_grad_norm is not None:
                    grad_norm = accelerator.clip_grad_norm_(objective.parameters(), t.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            state["batch_in_epoch"] += 1
            state["micro_batches"] += 1
            for name, value in {"loss": out.loss, **out.logs}.items():
                window[name] = window.get(name, 0.0) + value.detach().float()
            window_batches += 1
            units = setup.count(batch)
            window_units += units
            local_units += units
            if not accelerator.sync_gradients:
                continue
            if not accelerator.optimizer_step_was_skipped:  # fp16 skips a step whose gradients overflowed
                scheduler.step()
            state["step"] += 1
            progress.update(1)
            step = state["step"]

            if step % t.log_every == 0 or step == total_steps:
                names = sorted(window)
                means = accelerator.reduce(torch.stack([window[n] for n in names]) / window_batches, "mean").tolist()
                logs = dict(zip(names, means, strict=True))
                train_loss = logs["loss"]
                if not math.isfinite(train_loss):
                    progress.close()  # so that the reason is the last line the user sees
                    raise TrainingStopped(
                        f"step {step}: the training loss is {train_loss}; lower train.lr, keep "
                        f"train.max_grad_norm set, or try train.mixed_precision bf16 or no (fp16 overflows)"
                    )
                per_s = accelerator.reduce(window_units, "sum").item() / max(time.time() - window_start, 1e-9)
                lr = scheduler.get_last_lr()[0]
                record = {f"train/{k}": v for k, v in logs.items()}
                record.update({"train/lr": lr, f"train/{setup.unit}_per_s": per_s})
                if grad_norm is not None:
                    record["train/grad_norm"] = float(grad_norm)
                accelerator.log(record, step=step)
                progress.set_postfix(loss=f"{train_loss:.3f}", lr=f"{lr:.2e}", rate=f"{per_s:,.0f}")
                problem = raw.health(logs, step)
                if problem is not None:
                    progress.close()
                    raise TrainingStopped(problem)
                window.clear()
                window_batches = 0
                window_units.zero_()
                window_start = time.time()

            if dry_run:  # only timing steps: no evaluation, probe or checkpoint
                if step == warmup:
                    timed_from = synced_clock(accelerator)
                if step >= stop:
                    break
                continue

            if step % t.eval_every == 0 or step == total_steps:
                metrics = evaluate(objective, setup, accelerator, t.eval_batches)
                state["evals"].append({"step": step, **metrics})
                accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=step)
                logger.info("step %d: eval %s", step, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))

            if setup.probe is not None and (step % t.probe_every == 0 or step == total_steps):
                whole = whole_weights()
                if accelerator.is_main_process:
                    scores = setup.probe(whole)
                    state.setdefault("probes", []).append({"step": step, "accuracy": scores["accuracy"]})
                    accelerator.log({"probe/accuracy": scores["accuracy"], "probe/f1": scores["f1"]}, step=step)
                    logger.info("step %d: probe accuracy %.3f", step, scores["accuracy"])
                accelerator.wait_for_everyone()

            if step % t.save_every == 0 or step == total_steps:
                state[seen_key] = seen_before + accelerator.reduce(local_units, "sum").item()
                if setup.streaming:
                    state["streams"] = gather_object([train_loader.state_dict()])
                save_checkpoint(accelerator, run_dir, state, t.keep_last)
            if step >= total_steps:
                break
        else:
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
    progress.close()
    if dry_run:
        from hfssl.dry_run import report

        timing = {
            "warmup_steps": warmup,
            "timed_steps": stop - warmup,
            "step_seconds": (synced_clock(accelerator) - timed_from) / (stop - warmup),
            "units_per_step": accelerator.reduce(local_units, "sum").item() / stop,
        }
        result = report(
            cfg,
            setup,
            accelerator,
            objective,
            whole_weights,
            optimizer,
            scheduler,
            total_steps,
            steps_per_epoch,
            timing,
            work_dir,
        )
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            shutil.rmtree(work_dir, ignore_errors=True)
        accelerator.end_training()
        return result

    final_eval = state["evals"][-1]
    metrics = {
        "steps": state["step"],
        seen_key: state[seen_key],
        "train_loss": train_loss,
        **{f"eval_{k}": v for k, v in final_eval.items() if k != "step"},
        "initial_eval_loss": state["evals"][0]["loss"] if state["evals"][0]["step"] == 0 else None,
        "evals": state["evals"],
        "probes": state.get("probes", []),
        "wall_time_s": time.time() - started,
        "num_processes": accelerator.num_processes,
        "device": str(accelerator.device),
    }
    whole = whole_weights()
    if accelerator.is_main_process:
        setup.export(whole, run_dir / "final", metrics)
        write_json(run_dir / "metrics.json", metrics)
    # Last: ending the run also ends the process group, which the barrier before it still needs.
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics
