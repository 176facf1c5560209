"""`hfssl pretrain`: the one Accelerate training loop, for every objective: `setup()`, `begin()` (the run's config
and first evaluation), then `fit()` between the steps that evaluate, probe or checkpoint, then `finish()` (the
export). The loop asks the objective's module (`hfssl.objectives`) for everything and never which objective it is."""

from __future__ import annotations

import importlib.util
import logging
import math
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, broadcast_object_list, gather_object, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from hfssl import objectives
from hfssl.checkpoint import (
    UNREADABLE,
    check_resumable,
    damaged_file,
    has_checkpoints,
    read_state,
    remove_partial,
    resume_from,
    save_checkpoint,
    state_metrics,
)
from hfssl.config import TrainArgs, dump, to_dict
from hfssl.distributed import WholeWeights, check_fsdp_units, make_accelerator, shards_weights
from hfssl.errors import TrainingStopped, UsageError, first_line
from hfssl.faults import Preemption, check_finite, last_good, leave
from hfssl.hub import CheckpointPusher, add_revisions_to_card, list_checkpoint_revisions
from hfssl.io import atomic_dir, check_output_dir, write_json, write_text
from hfssl.objectives.base import ObjectiveModule, Setup
from hfssl.ramps import BatchWarmup, MaskRateSchedule

logger = logging.getLogger(__name__)

SCHEDULES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup", "wsd": "warmup_stable_decay"}


def make_schedule(t, optimizer, warmup: int, total_steps: int):
    """The learning-rate schedule `train.schedule` names, from transformers, over `total_steps` optimizer steps."""
    specific = None
    if t.schedule == "wsd":
        decay = max(1, round(t.decay_fraction * total_steps))
        if warmup + decay > total_steps:
            raise UsageError(
                f"train.decay_fraction: {warmup} warmup and {decay} decay steps do not fit in {total_steps} steps"
            )
        specific = {"num_decay_steps": decay, "decay_type": t.decay_shape}
    return get_scheduler(
        SCHEDULES[t.schedule],
        optimizer,
        num_warmup_steps=warmup,
        num_training_steps=total_steps,
        scheduler_specific_kwargs=specific,
    )


def make_optimizer(t: TrainArgs, objective: torch.nn.Module) -> torch.optim.Optimizer:
    """`train.optimizer` over `param_groups`: torch's AdamW, or torch-optimi's StableAdamW (whose state saves and
    loads with the checkpoint as AdamW's does)."""
    groups, betas = param_groups(objective, t.weight_decay), (t.adam_beta1, t.adam_beta2)
    if t.optimizer == "stable_adamw":
        from optimi import StableAdamW

        # optimi's default weight decay is decoupled as torch's AdamW is (scaled by the learning rate). It reaches for
        # its Triton kernels wherever Triton is installed, which a CPU cannot run.
        triton = None if torch.cuda.is_available() else False
        return StableAdamW(groups, lr=t.lr, betas=betas, weight_decay=t.weight_decay, eps=t.adam_eps, triton=triton)
    return torch.optim.AdamW(groups, lr=t.lr, betas=betas, eps=t.adam_eps, fused=torch.cuda.is_available() or None)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no decay on biases and normalisation weights (every parameter with fewer than 2 dims)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@dataclass
class Window:
    """The training logs of the steps since the last log line, summed on this process."""

    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    batches: int = 0
    units: torch.Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.float64))
    start: float = field(default_factory=time.time)


@dataclass
class Run:
    """A run in progress: what `setup` made, and where training stands."""

    cfg: Any
    accelerator: Accelerator
    module: ObjectiveModule
    """The objective's module: what the loop asks to rebuild and export the model."""
    setup: Setup
    objective: torch.nn.Module
    """The prepared objective (wrapped for DDP or FSDP); `raw` is the module itself."""
    raw: torch.nn.Module
    optimizer: Any
    scheduler: Any
    train_loader: Any
    whole_weights: WholeWeights
    state: dict
    """Saved with every checkpoint: step, epoch, position in the epoch, micro-batches, data seen, evaluations."""
    total_steps: int
    steps_per_epoch: int | None
    run_dir: Path
    work_dir: Path
    """Where the setup writes (a tokenizer, targets): the run directory, or a dry run's scratch directory."""
    resumed: bool
    started: float
    local_units: torch.Tensor
    """Tokens or audio seconds this process trained on in this session."""
    seen_before: float
    seconds_before: float
    """The wall time of the earlier sessions of a resumed run, up to its checkpoint."""
    window: Window
    batches: Iterator[dict] | None = None
    progress: Any = None
    pusher: CheckpointPusher | None = None
    """The main process's background pusher of checkpoint exports (`hub.push_checkpoints`)."""
    batch_warmup: BatchWarmup | None = None
    """`train.batch_warmup_start`'s ramp: how many micro-batches each optimizer step accumulates."""
    preemption: Preemption | None = None
    """Notes a preemption signal while the loop runs; fit stops at the end of the step it arrives in."""

    @property
    def wall_time(self) -> float:
        """Seconds the run has taken: the earlier sessions' up to the checkpoint this one resumed from, and this one."""
        return self.seconds_before + time.time() - self.started

    @property
    def seen_key(self) -> str:
        return f"{self.module.UNIT}_seen"


def setup(cfg, resume: str | bool | None = None, scratch: bool = False) -> Run:
    """Everything a run needs, on every process: the accelerator, the objective's setup, the optimizer and schedule,
    all prepared, and the state of a checkpoint to resume from.

    With `scratch`, the setup writes to a scratch directory that every process shares instead of the output
    directory (a dry run), and an output directory that holds an earlier run's checkpoints is no error."""
    started = time.time()
    run_dir = Path(cfg.train.output_dir)
    check_output_dir(run_dir, "train.output_dir")
    checkpoint = resume_from(resume, run_dir)
    if checkpoint is not None:
        check_resumable(to_dict(cfg), checkpoint)
    if checkpoint is None and not scratch and has_checkpoints(run_dir):
        raise UsageError(
            f"train.output_dir: {run_dir} holds checkpoints of an earlier run; pass --resume to continue it "
            "or choose another output directory"
        )
    t = cfg.train
    if cfg.data.streaming and t.max_steps is None:  # before the setup writes a tokenizer or targets
        raise UsageError("train.max_steps: a streamed corpus has no known length; set train.max_steps")
    if t.optimizer == "stable_adamw" and importlib.util.find_spec("optimi") is None:
        raise UsageError("train.optimizer: stable_adamw needs torch-optimi, which is not installed; "
                         "pip install 'hfssl[optimi]'")  # fmt: skip
    check_ramps(cfg)
    accelerator = make_accelerator(t, run_dir, track=not scratch)  # a dry run reports to no tracker
    if t.batch_warmup_start is not None and accelerator.distributed_type == DistributedType.DEEPSPEED:
        raise UsageError(
            "train.batch_warmup_start: DeepSpeed accumulates a fixed number of micro-batches per step; use DDP or FSDP"
        )
    if accelerator.is_main_process and not scratch:
        remove_partial(run_dir)  # a run killed while checkpointing leaves step-N.tmp, which is no checkpoint
    work_dir = run_dir
    if scratch:
        work_dir = Path(
            broadcast_object_list([mkdtemp(prefix="hfssl-dry-run-") if accelerator.is_main_process else ""])[0]
        )
    set_seed(t.seed)
    module = objectives.module(cfg)
    made = module.setup(cfg, accelerator, work_dir, resuming=checkpoint is not None)

    objective = torch.compile(made.objective) if t.compile else made.objective
    optimizer = make_optimizer(t, objective)
    check_fsdp_units(accelerator, objective)
    if made.prepare_train_loader:
        # In one call with the model: DeepSpeed takes its micro-batch size from the loader.
        objective, optimizer, train_loader = accelerator.prepare(objective, optimizer, made.train_loader)
    else:
        objective, optimizer = accelerator.prepare(objective, optimizer)
        train_loader = made.train_loader
    model_config = made.model.config
    whole_weights = WholeWeights(accelerator, objective, lambda: module.rebuild(cfg, model_config))
    steps_per_epoch = None if made.streaming else max(1, math.ceil(len(train_loader) / t.grad_accum))
    total_steps = t.max_steps or math.ceil(t.epochs * steps_per_epoch)
    warmup = t.warmup_steps if t.warmup_steps is not None else round(t.warmup_ratio * total_steps)
    scheduler = make_schedule(t, optimizer, warmup, total_steps)
    scheduler = accelerator.prepare(scheduler)
    batch_warmup = None
    if t.batch_warmup_start is not None:
        units = made.micro_batch_units * accelerator.num_processes
        batch_warmup = BatchWarmup(t.batch_warmup_start, t.grad_accum, t.batch_warmup_tokens, units)
    masking = getattr(cfg, "masking", None)
    if getattr(masking, "mask_rate_schedule", None):
        made.collator.rate_schedule = MaskRateSchedule(
            masking.mask_rate_schedule,
            masking.mask_rate_milestones,
            masking.mask_rate_shape,
            total_steps,
            batch_warmup or t.grad_accum,
        )

    seen_key = f"{module.UNIT}_seen"
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "micro_batches": 0, seen_key: 0, "evals": []}
    state["num_processes"] = accelerator.num_processes
    if t.time_budget is not None:
        state["planned_steps"] = total_steps  # kept by every checkpoint: a resumed run follows the same plan
    if checkpoint is not None:
        state = restore(checkpoint, accelerator, made, train_loader, t)

    units = torch.zeros((), device=accelerator.device, dtype=torch.float64)
    run = Run(
        cfg=cfg,
        accelerator=accelerator,
        module=module,
        setup=made,
        objective=objective,
        raw=accelerator.unwrap_model(objective),
        optimizer=optimizer,
        scheduler=scheduler,
        train_loader=train_loader,
        whole_weights=whole_weights,
        state=state,
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        run_dir=run_dir,
        work_dir=work_dir,
        resumed=checkpoint is not None,
        started=started,
        local_units=units,
        seen_before=state[seen_key],
        seconds_before=state.get("wall_time_s", 0.0),
        window=Window(units=torch.zeros_like(units)),
        batch_warmup=batch_warmup,
    )
    run.batches = batches(run)
    if cfg.hub.push_checkpoints and not scratch and accelerator.is_main_process:
        run.pusher = CheckpointPusher(cfg.hub)
    objective.train()
    return run


def check_ramps(cfg) -> None:
    """Refuse, before anything is written, a masking-rate schedule this run cannot follow: one over a loaded corpus
    whose batches DataLoader workers mask. (Batch-size warmup's settings are checked where they are read, in
    `TrainArgs`.)"""
    t, masking = cfg.train, getattr(cfg, "masking", None)
    if getattr(masking, "mask_rate_schedule", None):
        # The schedule reads a batch's step off its place among the process's batches: a stream says where each
        # batch stands; of a loaded corpus only the main process's collator knows it (a worker counts its own).
        if t.num_workers and not cfg.data.streaming:
            raise UsageError(
                f"masking.mask_rate_schedule: train.num_workers {t.num_workers}: a DataLoader worker does not know "
                "which step its batch trains in; set train.num_workers 0"
            )


def restore(checkpoint: Path, accelerator: Accelerator, made: Setup, train_loader, t) -> dict:
    """Load a checkpoint into the prepared objective, optimizer, schedule, random states and data position; returns
    the loop's state saved with it."""
    state = read_state(checkpoint)
    # The data position and the random states are per process: another count would repeat or skip data.
    if state.get("num_processes", accelerator.num_processes) != accelerator.num_processes:
        raise UsageError(
            f"--resume: {checkpoint} was written by {state['num_processes']} processes and this run has "
            f"{accelerator.num_processes}; resume with {state['num_processes']}"
        )
    rng = checkpoint / f"random_states_{accelerator.process_index}.pkl"
    if not zipfile.is_zipfile(rng):  # accelerate would go on without it, and the run would not continue exactly
        raise UsageError(
            f"--resume: {rng}: the saved random state is missing or damaged; resume from another checkpoint"
        )
    try:
        accelerator.load_state(str(checkpoint))
    except UNREADABLE as err:
        damaged = damaged_file(checkpoint)
        if damaged is not None:
            raise UsageError(
                f"--resume: {damaged[0]}: not readable, the checkpoint is damaged ({damaged[1]}); resume from an "
                "earlier one (--resume CHECKPOINT) or start a new run"
            ) from None
        raise UsageError(
            f"--resume: {checkpoint} does not load into this run ({first_line(err)}); resume with the settings it was "
            "written with (its run's config.yaml), or start a new run"
        ) from None
    if made.streaming:  # where each of this process's parts of the stream stood, and its masking streams
        train_loader.load_state_dict(state["streams"][accelerator.process_index])
    elif t.num_workers:
        logger.warning(
            "train.num_workers %d: the run resumes at the right batch, but DataLoader workers mask it anew, so it "
            "will not match an uninterrupted run exactly (it does with train.num_workers 0)",
            t.num_workers,
        )
    # The collator's stream position is the number of batches trained on (it runs a batch ahead of training).
    made.collator.load_state_dict({"seed": t.seed, "calls": state["micro_batches"]})
    logger.info("resumed from %s at step %d", checkpoint, state["step"])
    return state


def batches(run: Run) -> Iterator[dict]:
    """The training batches, epoch after epoch, from where the state says training stands; the state's epoch and
    position follow."""
    state, loader = run.state, run.train_loader
    while True:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(state["epoch"])
        epoch = loader
        if state["batch_in_epoch"] and not run.setup.streaming:  # a stream resumes from its saved position instead
            epoch = run.accelerator.skip_first_batches(loader, state["batch_in_epoch"])
        yield from epoch
        state["epoch"] += 1
        state["batch_in_epoch"] = 0


def begin(run: Run) -> None:
    """What a real run does before its first step: record its config, start the trackers and, unless it resumes,
    evaluate the untrained model."""
    accelerator, cfg = run.accelerator, run.cfg
    if accelerator.is_main_process:
        write_text(run.run_dir / "config.yaml", dump(cfg))
        with atomic_dir(run.run_dir / "model_config") as tmp:
            run.setup.model.config.save_pretrained(tmp)
    tracker_config = {f"{s}.{k}": v for s, sec in to_dict(cfg).items() for k, v in sec.items()}
    accelerator.init_trackers(
        "pretrain",  # tensorboard's folder under logs/
        config={k: v for k, v in tracker_config.items() if isinstance(v, (int, float, str, bool))},
        init_kwargs={"wandb": {"name": run.run_dir.name}, "mlflow": {"run_name": run.run_dir.name}},
    )
    if not run.resumed:
        run_evaluation(run)
    run.window.start = time.time()  # the first log window's rate counts training only


def fit(run: Run, stop: int) -> None:
    """Train until the optimizer has taken `stop` steps, logging every `train.log_every`."""
    accelerator, objective, state, t = run.accelerator, run.objective, run.state, run.cfg.train
    while state["step"] < stop:
        if run.batch_warmup is not None and accelerator.sync_gradients:  # this micro-batch opens a step
            # Accelerate divides the loss by, and counts micro-batches up to, this step's number of micro-batches.
            accelerator.gradient_accumulation_steps = run.batch_warmup.micro_batches(state["step"])
            accelerator.step = 0
        batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in next(run.batches).items()}
        run.raw.before_forward(state["step"])
        with accelerator.accumulate(objective):
            out = objective(**batch)
            accelerator.backward(out.loss)
            grad_norm = None
            if accelerator.sync_gradients and t.max_grad_norm is not None:
                grad_norm = accelerator.clip_grad_norm_(objective.parameters(), t.max_grad_norm)
            run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)
        state["batch_in_epoch"] += 1
        state["micro_batches"] += 1
        window = run.window
        for name, value in {"loss": out.loss, **out.logs}.items():
            window.sums[name] = window.sums.get(name, 0.0) + value.detach().float()
        window.batches += 1
        units = run.setup.count(batch)
        window.units += units
        run.local_units += units
        if not accelerator.sync_gradients:
            continue
        if not accelerator.optimizer_step_was_skipped:  # fp16 skips a step whose gradients overflowed
            run.scheduler.step()
        state["step"] += 1
        run.progress.update(1)
        run.raw.after_optimizer_step(state["step"])
        if state["step"] % t.log_every == 0 or state["step"] == run.total_steps:
            log(run, grad_norm)
        if run.preemption is not None and run.preemption.requested(accelerator):
            return


def log(run: Run, grad_norm) -> None:
    """The log window's means across processes, to the trackers and the progress bar; stops a run whose loss is
    not finite or whose objective reports a failure."""
    accelerator, window, step = run.accelerator, run.window, run.state["step"]
    names = sorted(window.sums)
    means = accelerator.reduce(torch.stack([window.sums[n] for n in names]) / window.batches, "mean").tolist()
    logs = dict(zip(names, means, strict=True))
    train_loss = run.state["train_loss"] = logs["loss"]
    if not math.isfinite(train_loss):
        run.progress.close()  # so that the reason is the last line the user sees
        raise TrainingStopped(
            f"step {step}: the training loss is {train_loss}; {last_good(run.run_dir)}; lower train.lr, keep "
            f"train.max_grad_norm set, or try train.mixed_precision bf16 or no (fp16 overflows)"
        )
    per_s = accelerator.reduce(window.units, "sum").item() / max(time.time() - window.start, 1e-9)
    lr = run.scheduler.get_last_lr()[0]
    record = {f"train/{k}": v for k, v in logs.items()}
    record.update({"train/lr": lr, f"train/{run.module.UNIT}_per_s": per_s})
    if grad_norm is not None:
        record["train/grad_norm"] = float(grad_norm)
    accelerator.log(record, step=step)
    run.progress.set_postfix(loss=f"{train_loss:.3f}", lr=f"{lr:.2e}", rate=f"{per_s:,.0f}")
    problem = run.raw.health(logs, step)
    if problem is not None:
        run.progress.close()
        raise TrainingStopped(problem)
    window.sums.clear()
    window.batches = 0
    window.units.zero_()
    window.start = time.time()


@torch.no_grad()
def validate(
    objective: torch.nn.Module,
    accelerator: Accelerator,
    dataset,
    batches: list[list[int]],
    collator,
    max_batches: int | None,
) -> dict:
    """The pretraining validation loop: the objective's evaluation metrics from per-example sums, added up across
    processes.

    Args:
        objective: the prepared objective (its unwrapped module has `stat_names` and `summarise`).
        dataset, batches, collator: the validation set, its batches (dataset indices, in order; each process
            evaluates every `num_processes`-th one) and the evaluation collator.
        max_batches: evaluate the first this many batches (None: all).

    The evaluation collator is reseeded first, so every evaluation masks the same positions. Where every process
    holds all the weights, the unwrapped model runs, so a process with fewer batches than others never waits on a
    collective inside forward. Where each holds a shard (FSDP, ZeRO-3), forward gathers the weights, a collective
    all must join: each process runs the wrapped model equally often, repeating a batch whose sums it drops."""
    raw = accelerator.unwrap_model(objective)
    sharded = shards_weights(accelerator)
    model = objective if sharded else raw
    model.eval()
    collator.reset()
    batches = batches[:max_batches] if max_batches is not None else batches
    mine = batches[accelerator.process_index :: accelerator.num_processes]
    rounds = -(-len(batches) // accelerator.num_processes) if sharded else len(mine)
    padded = mine + batches[:1] * (rounds - len(mine))
    loader = DataLoader(dataset, batch_sampler=padded, collate_fn=collator)
    totals = torch.zeros(len(raw.stat_names), dtype=torch.float64, device=accelerator.device)
    for i, batch in enumerate(loader):
        out = model(**{k: v.to(accelerator.device) for k, v in batch.items()})
        if i < len(mine):
            totals += torch.stack([out.stats[name].sum() for name in raw.stat_names])
    # Every process joins the reduction, including one that had no batch to evaluate.
    totals = accelerator.reduce(totals, "sum")
    model.train()
    return raw.summarise(dict(zip(raw.stat_names, totals.tolist(), strict=True)))


def run_evaluation(run: Run) -> None:
    """Evaluate on the validation batches (at most `train.eval_batches`) and record it in the state."""
    s, step = run.setup, run.state["step"]
    metrics = validate(
        run.objective, run.accelerator, s.eval_set, s.eval_batches, s.eval_collator, run.cfg.train.eval_batches
    )
    run.state["evals"].append({"step": step, **metrics})
    run.accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=step)
    logger.info("step %d: eval %s", step, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))


def log_probe(run: Run) -> None:
    """Probe the frozen features (the objective's probe: a classifier's accuracy, an embedding's similarity scores)
    and record its scores in the state."""
    accelerator, step = run.accelerator, run.state["step"]
    whole = run.whole_weights()
    if accelerator.is_main_process:
        scores = {k: float(v) for k, v in run.setup.probe(whole).items() if isinstance(v, (int, float))}
        run.state.setdefault("probes", []).append({"step": step, **scores})
        accelerator.log({f"probe/{k}": v for k, v in scores.items()}, step=step)
        logger.info("step %d: probe %s", step, ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    accelerator.wait_for_everyone()


def save(run: Run) -> None:
    """A checkpoint of the run as it stands: weights, optimizer, schedule, random states, data position."""
    accelerator, state = run.accelerator, run.state
    check_finite(run, "checkpoint")
    state[run.seen_key] = run.seen_before + accelerator.reduce(run.local_units, "sum").item()
    state["wall_time_s"] = run.wall_time
    if run.setup.streaming:
        state["streams"] = gather_object([run.train_loader.state_dict()])
    save_checkpoint(accelerator, run.run_dir, state, run.cfg.train.keep_last)
    if run.cfg.hub.push_checkpoints:
        push_checkpoint(run)


def push_checkpoint(run: Run) -> None:
    """Export the model as it stands at this checkpoint and hand the export to the background pusher: the export is
    written here (a few seconds at most), the upload happens while training goes on."""
    whole = run.whole_weights()
    if run.pusher is None:
        return
    step = run.state["step"]
    folder = Path(mkdtemp(prefix=f"hfssl-checkpoint-{step}-"))
    run.module.export(run.cfg, whole, run.work_dir, folder / "export", state_metrics(run.state, run.module.UNIT))
    run.pusher.submit(folder / "export", step, cleanup=folder)


def chores(run: Run) -> list[tuple[int, Callable[[Run], None]]]:
    """What the loop does between training steps, each every so many steps and at the last one, in this order."""
    t = run.cfg.train
    every = [(t.eval_every, run_evaluation), (t.save_every, save)]
    if run.setup.probe is not None:
        every.insert(1, (t.probe_every, log_probe))
    return every


def next_stop(run: Run, due: list[tuple[int, Callable[[Run], None]]]) -> int:
    """The next step at which a chore is due."""
    step = run.state["step"]
    return min([run.total_steps] + [(step // every + 1) * every for every, _ in due])


def finish(run: Run) -> dict:
    """The final metrics (also written to metrics.json) and the export of the trained model into final/."""
    accelerator, state = run.accelerator, run.state
    final_eval = state["evals"][-1]
    metrics = {
        "steps": state["step"],
        run.seen_key: state[run.seen_key],
        # the last log window's, in this session or (a finished run resumed) an earlier one; None: never logged
        "train_loss": state.get("train_loss"),
        **{f"eval_{k}": v for k, v in final_eval.items() if k != "step"},
        "initial_eval_loss": state["evals"][0]["loss"] if state["evals"][0]["step"] == 0 else None,
        "evals": state["evals"],
        "probes": state.get("probes", []),
        "wall_time_s": run.wall_time,
        "num_processes": accelerator.num_processes,
        "device": str(accelerator.device),
    }
    check_finite(run, "export")
    whole = run.whole_weights()
    if accelerator.is_main_process:
        final = run.run_dir / "final"
        run.module.export(run.cfg, whole, run.work_dir, final, metrics)
        if run.pusher is not None:
            run.pusher.close()  # every checkpoint's upload done before the final export is pushed or the run ends
            metrics["hub_revisions"] = list_checkpoint_revisions(run.cfg.hub, run.pusher.pushed)
            add_revisions_to_card(final, run.cfg.hub.repo_id, metrics["hub_revisions"])
        write_json(run.run_dir / "metrics.json", metrics)
    # Last: ending the run also ends the process group, which the barrier before it still needs.
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


def pretrain(cfg, resume: str | bool | None = None) -> dict:
    """Pretrain as `cfg` says, with the objective its `objective.name` names; returns the final metrics (also
    written to metrics.json) after exporting the model to `train.output_dir`/final. `resume`: True to continue from
    the output directory's latest checkpoint, a directory to continue from its latest, "auto" to continue where
    the output directory has a checkpoint and start where it has none. A run with `train.time_budget` is planned
    first, by `hfssl.budget.plan_run` (as `hfssl.api.pretrain` and the command line do)."""
    if cfg.train.time_budget is not None and not getattr(cfg.train, "planned", False):
        raise UsageError("train.time_budget: the run has no plan yet; hfssl.budget.plan_run(cfg, resume) makes it")
    run = setup(cfg, resume)
    begin(run)
    run.progress = tqdm(
        total=run.total_steps, initial=run.state["step"], disable=not run.accelerator.is_local_main_process,
        desc="pretrain",
    )  # fmt: skip
    due = chores(run)
    # closing: whatever stops the run, its reason is the last line the user sees, not the bar
    with Preemption() as run.preemption, closing(run.progress):
        while run.state["step"] < run.total_steps:
            fit(run, next_stop(run, due))
            step = run.state["step"]
            done = [chore for every, chore in due if step % every == 0 or step == run.total_steps]
            for chore in done:
                chore(run)
            if step < run.total_steps and run.preemption.requested(run.accelerator):
                if save not in done:  # a checkpoint of this very step, which --resume continues exactly
                    save(run)
                leave(run)
    return finish(run)
