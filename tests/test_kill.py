"""A tiny pretraining run SIGKILLed at 10 seeded random moments (while it sets up, inside a checkpoint write, just
after a checkpoint, inside the final export) and then continued as a user would (`--resume` when a checkpoint is
there, a plain start when none is) ends with exactly the weights and eval loss of an uninterrupted run, and leaves
no temporary file or directory behind."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from helpers import env
from safetensors.torch import load_file

ARGS = [
    "pretrain", "text/mlm-tiny", "--model.num_layers", "1", "--model.hidden_size", "32", "--model.num_heads", "2",
    "--data.synthetic_documents", "300", "--data.seq_len", "32", "--tokenizer.vocab_size", "300",
    "--train.batch_size", "8", "--train.max_steps", "12", "--train.eval_every", "6", "--train.save_every", "3",
    "--train.keep_last", "10", "--train.eval_batches", "2", "--train.log_every", "3", "--train.probe_every", "",
]  # fmt: skip
CHECKPOINT_STEPS = [3, 6, 9, 12]
SEED = 16
SLOW_WRITES = 0.5
"""Seconds every atomic write of the killed runs pauses midway: the window a kill inside a write has to land in."""
POLL = 0.02
TIMEOUT = 180
"""Seconds one run may take before the case fails as a hang (a run takes about 10 on 2 cores)."""


@dataclass(frozen=True)
class Moment:
    """Kill `delay` seconds after something matching `pattern` appears in the run directory."""

    name: str
    pattern: str
    max_delay: float
    inside: bool
    """The pattern is a write in progress, which must still be there when the kill lands."""
    delay: float = 0.0


# In the order a run reaches them. A delay stays below the window the pause leaves: SLOW_WRITES for a directory
# written by atomic_dir, twice that for a checkpoint (before and after its state file).
MENU = {
    "before-first-checkpoint": [
        Moment("inside-tokenizer", ".tokenizer.*.tmp", 0.7 * SLOW_WRITES, inside=True),
        Moment("inside-model-config", ".model_config.*.tmp", 0.7 * SLOW_WRITES, inside=True),
    ],
    "inside-checkpoint": [
        Moment(f"inside-checkpoint-{n}", f"checkpoints/step-{n:07d}.tmp", 1.6 * SLOW_WRITES, inside=True)
        for n in CHECKPOINT_STEPS
    ],
    # A few training steps come between one checkpoint and the next write: a short delay lands among them.
    "after-checkpoint": [
        Moment(f"after-checkpoint-{n}", f"checkpoints/step-{n:07d}", 0.02, inside=False) for n in CHECKPOINT_STEPS
    ],
    "inside-final": [Moment("inside-final", ".final.*.tmp", 0.7 * SLOW_WRITES, inside=True)],
}


def choose_moments(seed: int, count: int) -> list[Moment]:
    """`count` different moments, one of each kind in MENU at least, each with a random delay; the same for a seed."""
    rng = random.Random(seed)
    chosen = [rng.choice(kind) for kind in MENU.values()]
    rest = [m for kind in MENU.values() for m in kind if m not in chosen]
    chosen += rng.sample(rest, count - len(chosen))
    order = [m for kind in MENU.values() for m in kind]
    chosen.sort(key=order.index)
    return [Moment(m.name, m.pattern, m.max_delay, m.inside, round(rng.uniform(0, m.max_delay), 3)) for m in chosen]


MOMENTS = choose_moments(SEED, 6)  # one of each kind and two more: 6 CLI runs of ~15 s; the seed picks which


def run_hfssl(*args, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "hfssl", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, env=env() | (extra_env or {}), timeout=TIMEOUT)
    assert done.returncode == 0, f"{' '.join(command[2:])}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kill") / "uninterrupted"
    run_hfssl(*ARGS, "--train.output_dir", out)
    return out


def kill_at(moment: Moment, run: Path, log: Path) -> None:
    """Start the run with slow writes and SIGKILL it at `moment`; fails if the run never gets there alive."""
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "hfssl", *ARGS, "--train.output_dir", str(run)],
            env=env() | {"HFSSL_SLOW_WRITES": str(SLOW_WRITES)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + TIMEOUT
            while not list(run.glob(moment.pattern)):
                assert process.poll() is None, f"the run ended before {moment.pattern} appeared:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"no {moment.pattern} after {TIMEOUT} s:\n{log.read_text()}"
                time.sleep(POLL)
            time.sleep(moment.delay)
        finally:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL, f"the run finished before the kill:\n{log.read_text()[-3000:]}"
    assert not (run / "metrics.json").exists(), "the run finished before the kill"
    if moment.inside:
        # A kill that lands after the rename would test nothing this case is for.
        assert list(run.glob(moment.pattern)), f"the kill missed the write ({moment.pattern} was already renamed)"


@pytest.mark.parametrize("moment", MOMENTS, ids=[m.name for m in MOMENTS])
def test_killed_run_continues_to_the_same_weights(uninterrupted, tmp_path, moment):
    run = tmp_path / "run"
    kill_at(moment, run, tmp_path / "killed.log")

    # What a user sees in checkpoints/: a step-N is complete (renamed once written), a step-N.tmp is not.
    complete = [p for p in (run / "checkpoints").glob("step-*") if not p.name.endswith(".tmp")]
    if complete:
        done = run_hfssl(*ARGS, "--train.output_dir", run, "--resume")
        assert "resumed from" in done.stderr
    else:
        run_hfssl(*ARGS, "--train.output_dir", run)

    expected = load_file(str(uninterrupted / "final" / "model.safetensors"))
    weights = load_file(str(run / "final" / "model.safetensors"))
    assert weights.keys() == expected.keys()
    assert [k for k in expected if not torch.equal(weights[k], expected[k])] == []
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["eval_loss"] == json.loads((uninterrupted / "metrics.json").read_text())["eval_loss"]
    assert [str(p) for p in run.rglob("*") if p.name.endswith((".tmp", ".old"))] == []
