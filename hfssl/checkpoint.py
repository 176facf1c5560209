"""The run directory's checkpoint format: `checkpoints/step-N/` holds `accelerator.save_state`'s files and the loop's
state (`trainer_state.json`); saved into a temporary directory and renamed into place once complete."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections import defaultdict
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import merge_fsdp_weights
from safetensors import SafetensorError
from safetensors.torch import load_file

from hfssl.errors import UsageError, first_line
from hfssl.io import disk_full, follow_umask, no_space, pause_in_writes, write_json

STATE_FILE = "trainer_state.json"
LOOP_STATE = ("step", "epoch", "batch_in_epoch", "micro_batches", "evals")
"""What the loop's state must hold for a run to continue from it."""
FIXED_ON_RESUME = ("model", "tokenizer", "data.seq_len", "data.sampling_rate", "objective.name")
"""The settings a resumed run shares with the run that wrote its checkpoint: the model and what shapes its inputs
(sections, or single keys). The rest may change: more steps, other chores."""
MAY_CHANGE = {"model.dropout", "model.layerdrop"}


TMP_SUFFIX = ".tmp"
"""A checkpoint being written: `step-N.tmp`, renamed to `step-N` once complete."""


def _step(path: Path) -> int | None:
    """N of a complete checkpoint directory `step-N` (its state file written last), else None."""
    number = path.name.removeprefix("step-")
    if path.name.startswith("step-") and number.isdigit() and (path / STATE_FILE).is_file():
        return int(number)
    return None


def checkpoints(where: Path) -> list[Path]:
    """The complete checkpoints in `where`/checkpoints and in `where` itself, oldest first; a `step-N.tmp` that a
    killed run left, complete or not, is no checkpoint."""
    found = [p for folder in (where / "checkpoints", where) if folder.is_dir() for p in folder.glob("step-*")]
    return sorted((p for p in found if _step(p) is not None), key=_step)


AUTO = "auto"
"""`--resume auto`: the run directory's latest checkpoint if it has one, else a fresh start, so that a restart that
cannot change the command (torchrun's `--max-restarts`, a requeued job) continues the run."""


def find_checkpoint(resume: str | bool, run_dir: Path) -> Path:
    """The latest complete checkpoint in `resume` (True or 'auto': the run directory), or UsageError."""
    where = run_dir if resume is True or resume == AUTO else Path(resume)
    if (where / STATE_FILE).is_file() and not where.name.endswith(TMP_SUFFIX):
        return where
    found = checkpoints(where)
    if not found:
        raise UsageError(f"{where}: holds no checkpoint (expected checkpoints/step-*/{STATE_FILE})")
    return found[-1]


def resume_from(resume: str | bool | None, run_dir: Path) -> Path | None:
    """The checkpoint a run continues from: None without `--resume`, or with `--resume auto` where `run_dir` holds no
    checkpoint yet."""
    if not resume or (resume == AUTO and not has_checkpoints(run_dir)):
        return None
    checkpoint = find_checkpoint(resume, run_dir)
    read_state(checkpoint, LOOP_STATE)  # before anything is set up: a state the loop cannot continue from fails now
    return checkpoint


def has_checkpoints(run_dir: Path) -> bool:
    """Whether `run_dir` holds complete checkpoints of an earlier run."""
    return bool(checkpoints(Path(run_dir)))


def remove_partial(run_dir: Path) -> None:
    """Remove the `step-N.tmp` directories a run killed while checkpointing left in `run_dir`/checkpoints."""
    for partial in (Path(run_dir) / "checkpoints").glob(f"step-*{TMP_SUFFIX}"):
        shutil.rmtree(partial, ignore_errors=True)


# What a damaged checkpoint file raises when read: a truncated or corrupt safetensors file, pickle or JSON.
UNREADABLE = (SafetensorError, RuntimeError, OSError, ValueError, KeyError, EOFError, pickle.UnpicklingError)


def damaged_file(checkpoint: Path) -> tuple[Path, str] | None:
    """The first file of a checkpoint that cannot be read, and why: its weights (safetensors headers and data), its
    optimizer, schedule and sampler states (torch pickles, read with `weights_only`). None when every file reads,
    so that a checkpoint which does not load is the run's settings' fault, not the file's."""
    for path in sorted(Path(checkpoint).iterdir()):
        try:
            if path.suffix == ".safetensors":
                load_file(str(path))
            elif path.suffix in (".bin", ".pt"):
                torch.load(path, map_location="cpu", weights_only=True)
        except UNREADABLE as err:
            return path, first_line(err)
    return None


def read_state(checkpoint: Path, needed: tuple[str, ...] = ("step",)) -> dict:
    """The loop's state saved with a checkpoint: step, data position, evaluations, amount of data seen; UsageError
    unless it holds the keys `needed`."""
    try:
        state = json.loads((checkpoint / STATE_FILE).read_text())
    except (OSError, ValueError) as err:
        raise UsageError(f"{checkpoint / STATE_FILE}: not a readable checkpoint state ({first_line(err)})") from None
    missing = [key for key in needed if key not in state] if isinstance(state, dict) else list(needed)
    if missing:
        raise UsageError(
            f"{checkpoint / STATE_FILE}: not a checkpoint state (it has no {missing[0]!r}); use another checkpoint"
        )
    return state


def check_resumable(settings: dict[str, Any], checkpoint: Path) -> None:
    """Refuse to continue `checkpoint` with settings (`to_dict` of the config) that change the model or its inputs
    (`FIXED_ON_RESUME`): the weights might even load, and the run's config.yaml and card would then describe
    another model. A checkpoint without its run's config.yaml is left to its loading to judge."""
    saved_file = checkpoint.parent.parent / "config.yaml"
    try:
        saved = yaml.safe_load(saved_file.read_text())
    except (OSError, yaml.YAMLError):
        return
    for fixed in FIXED_ON_RESUME:
        section, _, key = fixed.partition(".")
        now, then = settings.get(section) or {}, (saved or {}).get(section) or {}
        for name in [key] if key else list(now):
            if name in now and name in then and now[name] != then[name] and f"{section}.{name}" not in MAY_CHANGE:
                raise UsageError(
                    f"--resume: {section}.{name} is {now[name]!r} here and {then[name]!r} in the run the checkpoint "
                    f"continues ({saved_file}); resume with its settings, or start a new run"
                )


def save_checkpoint(accelerator: Accelerator, run_dir: Path, state: dict, keep_last: int) -> Path:
    """`accelerator.save_state` into a temporary directory, renamed into place once complete; the last K kept. A
    full disk removes the temporary directory and is `DiskFull`: the earlier checkpoints stay as they were."""
    final = run_dir / "checkpoints" / f"step-{state['step']:07d}"
    tmp = final.with_name(final.name + TMP_SUFFIX)
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            pause_in_writes()
            write_json(tmp / STATE_FILE, state)
            follow_umask(tmp)
            pause_in_writes()
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if disk_full(err):
            found = checkpoints(run_dir)
            kept = f"the last complete checkpoint is {found[-1]}" if found else "no earlier checkpoint was saved"
            raise no_space(tmp, kept) from None
        raise
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def checkpoint_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The objective's full state dict from an `accelerator.save_state` directory: one safetensors file (one
    process, DDP, ZeRO-1/2), FSDP's whole-model file, or FSDP's sharded checkpoint, merged here by accelerate."""
    if (checkpoint / "model.safetensors").is_file():
        try:
            return load_file(str(checkpoint / "model.safetensors"))
        except UNREADABLE as err:
            raise UsageError(f"{checkpoint / 'model.safetensors'}: not readable weights ({first_line(err)})") from None
    if (checkpoint / "pytorch_model_fsdp_0").is_dir():  # fsdp_state_dict_type SHARDED_STATE_DICT
        with TemporaryDirectory(prefix="hfssl-merge-") as tmp:
            merge_fsdp_weights(str(checkpoint / "pytorch_model_fsdp_0"), tmp, safe_serialization=True)
            return load_file(str(Path(tmp) / "model.safetensors"))
    whole = sorted(checkpoint.glob("pytorch_model_fsdp*.bin"))  # fsdp_state_dict_type FULL_STATE_DICT
    if whole:
        return torch.load(whole[0], map_location="cpu", weights_only=True)
    if (checkpoint / "pytorch_model").is_dir():
        raise UsageError(
            f"{checkpoint}: a DeepSpeed checkpoint, which hfssl does not read; turn it into {checkpoint}/"
            "model.safetensors with the zero_to_fp32.py script DeepSpeed saved beside it (--safe_serialization), "
            "or use the run's final/ export"
        )
    raise UsageError(f"{checkpoint}: holds no model weights (model.safetensors or an FSDP checkpoint)")


def load_weights(objective: torch.nn.Module, weights: dict, source: str) -> None:
    """Load a state dict of `objective` into it. A tensor the objective holds under several names (tied input and
    output embeddings, a table two models share) is saved under one of them: the others may be absent, anything else
    missing is an error."""
    missing, unexpected = objective.load_state_dict(weights, strict=False)
    names = defaultdict(set)
    for name, tensor in objective.state_dict(keep_vars=True).items():
        if tensor.numel():
            names[tensor.data_ptr()].add(name)
    loaded_elsewhere = {name for group in names.values() if group & weights.keys() for name in group}
    if unexpected or set(missing) - loaded_elsewhere:
        raise UsageError(f"{source}: weights do not match the run's model (missing {missing}, unexpected {unexpected})")
    objective.model.tie_weights()


def state_metrics(state: dict, unit: str) -> dict:
    """What a checkpoint's export card reports from the run's state at that checkpoint: its step, the data seen
    (`unit`: tokens or audio seconds) and the latest evaluation."""
    final = state["evals"][-1] if state.get("evals") else {}
    metrics = {"steps": state["step"], **{f"eval_{k}": v for k, v in final.items() if k != "step"}}
    metrics[f"{unit}_seen"] = state.get(f"{unit}_seen", 0)
    return metrics
