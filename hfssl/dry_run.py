"""`hfssl pretrain RECIPE --dry-run`: what a run will read, how long it will take and what it will write, from the
real setup and a few timed optimizer steps of the real loop."""

from __future__ import annotations

import math
import pickle
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import broadcast_object_list
from tqdm.auto import tqdm

from hfssl.checkpoint import has_checkpoints, save_checkpoint
from hfssl.distributed import shards_weights, synced_clock
from hfssl.pretrain import Run, fit, setup, validate

DRY_RUN_WARMUP, DRY_RUN_TIMED = 3, 5


def tensor_bytes(tensors) -> int:
    """Bytes of the distinct tensors among `tensors` (tied weights once, as safetensors stores them)."""
    sizes = {t.data_ptr(): t.numel() * t.element_size() for t in tensors if torch.is_tensor(t)}
    return sum(sizes.values())


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def times(total_steps: int, every: int | None) -> int:
    """How many times an action due every `every` steps and at the last step happens in `total_steps`."""
    if not every:
        return 0
    return total_steps // every + (total_steps % every != 0)


def dry_run(cfg) -> dict:
    """`hfssl pretrain --dry-run`: `measure` the run, then end the accelerator's run (and process group)."""
    return measure(cfg, end=True)


def measure(cfg, end: bool = False, min_seconds: float = 0.0) -> dict:
    """Set the run up in a scratch directory, fit to the warm-up, start the clock, fit the timed steps (more, until
    they take `min_seconds`), and report (`report`); nothing is written to the output directory. Without `end` the
    process group stays up for a run to follow (a time budget's plan)."""
    began = time.perf_counter()
    run = setup(cfg, scratch=True)
    setup_seconds = time.perf_counter() - began
    accelerator = run.accelerator
    # The first steps pay for compilation and allocation: a few are timed after a warm-up.
    warmup = min(DRY_RUN_WARMUP, run.total_steps - 1)
    stop = min(run.total_steps, warmup + DRY_RUN_TIMED)
    run.progress = tqdm(total=stop, disable=not accelerator.is_local_main_process, desc="pretrain")
    fit(run, warmup)
    timed_from, micro_from = synced_clock(accelerator), run.state["micro_batches"]
    fit(run, stop)
    while stop < run.total_steps and broadcast_object_list([synced_clock(accelerator) - timed_from < min_seconds])[0]:
        stop = min(run.total_steps, stop + DRY_RUN_TIMED)  # every process times as many steps as the first
        fit(run, stop)
    # Timed per micro-batch, then scaled to a full step: a batch-size warmup's first steps are smaller than the rest.
    micro_seconds = (synced_clock(accelerator) - timed_from) / (run.state["micro_batches"] - micro_from)
    full = run.cfg.train.grad_accum
    timing = {
        "warmup_steps": warmup,
        "timed_steps": stop - warmup,
        "step_seconds": micro_seconds * full,
        "units_per_step": accelerator.reduce(run.local_units, "sum").item() / run.state["micro_batches"] * full,
        "full_steps": planned_micro_batches(run) / full,
    }
    run.progress.close()
    start = synced_clock(accelerator)
    save_checkpoint(accelerator, run.work_dir, run.state, keep_last=1)
    timing["checkpoint_seconds"] = synced_clock(accelerator) - start
    result = report(run, timing) | {"setup_seconds": setup_seconds}
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(run.work_dir, ignore_errors=True)
    if end:
        accelerator.end_training()
    return result


def planned_micro_batches(run: Run) -> int:
    """The micro-batches the whole run will take: `grad_accum` a step, fewer in a batch-size warmup."""
    if run.batch_warmup is None:
        return run.total_steps * run.cfg.train.grad_accum
    return sum(run.batch_warmup.micro_batches(k) for k in range(run.total_steps))


def report(run: Run, timing: dict) -> dict:
    """The dry run's estimate of the whole run, after its timed steps.

    Args:
        run: the run, set up in its scratch directory (`run.work_dir`, where the export is measured).
        timing: `warmup_steps`, `timed_steps`, `step_seconds` and `units_per_step` (the seconds, and tokens or audio
            seconds over all processes, of a full step, from the mean micro-batch), and `full_steps` (the run's
            micro-batches in full steps: fewer than its steps in a batch-size warmup).

    Returns:
        The report `format_report` prints; seconds, bytes and counts, plus how the data size was found.
    """
    cfg, made, accelerator = run.cfg, run.setup, run.accelerator
    t, total_steps = cfg.train, run.total_steps
    data, how = made.data_size()
    if run.steps_per_epoch is not None:
        epochs = timing["full_steps"] / run.steps_per_epoch
    else:
        epochs = timing["full_steps"] * timing["units_per_step"] / data if data else None

    def evaluate_one() -> None:
        validate(run.objective, accelerator, made.eval_set, made.eval_batches, made.eval_collator, 1)

    # One evaluation batch, timed the second time (the first pays for allocating evaluation shapes).
    evaluate_one()
    start = time.perf_counter()
    evaluate_one()
    eval_batch_seconds = time.perf_counter() - start
    per_eval = len(made.eval_batches) if t.eval_batches is None else min(t.eval_batches, len(made.eval_batches))
    eval_batches = math.ceil(per_eval / accelerator.num_processes)  # each process evaluates its share
    evals = 1 + times(total_steps, t.eval_every)
    probes = times(total_steps, t.probe_every) if made.probe is not None else 0
    probe_seconds = 0.0
    whole = run.whole_weights()  # every process joins, in case the weights are sharded
    if probes and accelerator.is_main_process:
        start = time.perf_counter()
        made.probe(whole)
        probe_seconds = time.perf_counter() - start

    model = tensor_bytes(whole.state_dict().values()) if whole is not None else 0  # main process, as export_bytes
    moments = tensor_bytes(v for state in run.optimizer.state_dict()["state"].values() for v in state.values())
    if shards_weights(accelerator):  # each process holds, and saves, its shard of the optimizer's moments
        moments = int(accelerator.reduce(torch.tensor(moments, device=accelerator.device), "sum").item())
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    other = len(pickle.dumps(run.scheduler.state_dict())) + accelerator.num_processes * len(pickle.dumps(rng))
    checkpoint = model + moments + other
    kept = min(t.keep_last, times(total_steps, t.save_every))
    export_bytes = setup_bytes = 0
    export_seconds = 0.0
    if accelerator.is_main_process:
        setup_bytes = folder_bytes(run.work_dir)  # the tokenizer, or HuBERT's targets when they are built in the run
        sketch = {"steps": total_steps, "num_processes": accelerator.num_processes}
        start = time.perf_counter()
        run.module.export(cfg, whole, run.work_dir, run.work_dir / "final", sketch)
        export_seconds = time.perf_counter() - start
        export_bytes = folder_bytes(run.work_dir / "final")
    parameters, embeddings = count_parameters(run.raw, made.model)

    train_seconds = timing["full_steps"] * timing["step_seconds"]
    eval_seconds = evals * eval_batches * eval_batch_seconds
    return {
        "unit": run.module.UNIT,
        "data": data,
        "data_how": how,
        "steps": total_steps,
        "epochs": epochs,
        "per_step": per_step(made.batch_description, t.grad_accum, accelerator.num_processes),
        "units_per_step": timing["units_per_step"],
        "warmup_steps": timing["warmup_steps"],
        "timed_steps": timing["timed_steps"],
        "step_seconds": timing["step_seconds"],
        "checkpoint_seconds": timing.get("checkpoint_seconds", 0.0),
        "device": str(accelerator.device),
        "num_processes": accelerator.num_processes,
        "eval_batch_seconds": eval_batch_seconds,
        "eval_batches": eval_batches,
        "evals": evals,
        "probe_seconds": probe_seconds,
        "probes": probes,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "total_seconds": train_seconds + eval_seconds + probes * probe_seconds,
        "model_bytes": model,
        "optimizer_bytes": moments,
        "other_bytes": other,
        "checkpoint_bytes": checkpoint,
        "checkpoints_kept": kept,
        "export_bytes": export_bytes,
        "export_seconds": export_seconds,
        "parameters": parameters,
        "embedding_parameters": embeddings,
        "setup_bytes": setup_bytes,
        "disk_bytes": kept * checkpoint + export_bytes + setup_bytes,
        "output_dir": t.output_dir,
        "earlier_run": has_checkpoints(Path(t.output_dir)),
    }


def count_parameters(objective: torch.nn.Module, model) -> tuple[int, int]:
    """The trained parameters (the objective's: the model and its heads, tied weights once) and, of those, the
    input embeddings' (a text model's vocabulary; none for speech)."""
    distinct = {p.data_ptr(): p.numel() for p in objective.parameters()}
    try:
        weight = getattr(model.get_input_embeddings(), "weight", None)
    except (AttributeError, NotImplementedError):  # a speech model has no input embeddings
        weight = None
    return sum(distinct.values()), (weight.numel() if isinstance(weight, torch.Tensor) else 0)


def per_step(batch: str, grad_accum: int, processes: int) -> str:
    """What one optimizer step trains on: `batch` (one micro-batch on one process) x accumulation x processes."""
    return f"{batch} x {grad_accum} accumulated x {processes} process{'es' if processes > 1 else ''}"


def amount(value: float, unit: str) -> str:
    if unit == "audio_seconds":
        return f"{value / 3600:,.2f} hours of audio ({value:,.0f} s)"
    return f"{value:,.0f} {unit}"


def size(n: float) -> str:
    for name, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {name}"
    return f"{n:,.0f} B"


def duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:,.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:,.1f} min"
    return f"{seconds:,.1f} s"


def format_report(r: dict) -> str:
    """The report as the lines `hfssl pretrain --dry-run` prints, one field per line."""
    data = "unknown" if r["data"] is None else amount(r["data"], r["unit"])
    epochs = "an unknown share of the data" if r["epochs"] is None else f"{r['epochs']:,.3g} epochs"
    probes = f" + probes {duration(r['probes'] * r['probe_seconds'])}" if r["probes"] else ""
    rows = [
        ("data", f"{data} ({r['data_how']})"),
        ("steps", f"{r['steps']:,} optimizer steps of {r['per_step']}"),
        ("covering", f"{epochs}: {amount(r['units_per_step'], r['unit'])} per step, measured"),
        (
            "time per step",
            f"{r['step_seconds']:.3f} s (mean of {r['timed_steps']} steps after {r['warmup_steps']} warm-up; "
            f"{r['num_processes']} process{'es' if r['num_processes'] > 1 else ''} on {r['device']})",
        ),
        (
            "evaluation",
            f"{r['eval_batch_seconds']:.3f} s per batch x {r['eval_batches']} batches x {r['evals']} evaluations "
            f"= {duration(r['eval_seconds'])}",
        ),
        ("probes", f"{r['probe_seconds']:.1f} s x {r['probes']}" if r["probes"] else "none"),
        (
            "total time",
            f"about {duration(r['total_seconds'])} (training {duration(r['train_seconds'])} + evaluation "
            f"{duration(r['eval_seconds'])}{probes}; setup not included)",
        ),
        (
            "checkpoint",
            f"{size(r['checkpoint_bytes'])} each (model {size(r['model_bytes'])} + optimizer "
            f"{size(r['optimizer_bytes'])} + scheduler and RNG {size(r['other_bytes'])}) x {r['checkpoints_kept']} "
            "kept (train.keep_last)",
        ),
        ("export", size(r["export_bytes"])),
        ("disk", f"about {size(r['disk_bytes'])} in {r['output_dir']} (nothing written by this dry run)"),
    ]
    if r["earlier_run"]:
        rows.append(("note", f"{r['output_dir']} holds checkpoints of an earlier run: add --resume, or choose another"))
    return "\n".join(f"{name:<14} {text}" for name, text in rows)
