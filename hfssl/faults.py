"""What the loop does about the faults a long run meets besides a kill (which atomic writes and `--resume` cover).

- Preemption: a scheduler asks a run to leave within a grace period, with SIGTERM (Kubernetes, spot instances, SLURM
  at the time limit, torchrun passing its own on) or SIGUSR1 (SLURM's `--signal`). The handler only takes note; the
  loop asks at each optimizer step's end, where every process agrees, then saves a checkpoint and leaves with
  `Preempted` (exit status `PREEMPTED`).
- Weights or a loss that stop being finite: checked before every checkpoint and export, which are never written
  from them.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable
from pathlib import Path

import torch
from accelerate import Accelerator

from hfssl.checkpoint import checkpoints
from hfssl.errors import Preempted, TrainingStopped

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preemption:
    """While inside `with`, a preemption signal is noted instead of ending the process; the handlers before it come
    back after it (so a signal during the final export ends the process as before: the export is atomic)."""

    def __init__(self):
        self.received: str | None = None
        """The name of the first preemption signal this process received."""
        self._previous: dict = {}

    def __enter__(self) -> Preemption:
        if threading.current_thread() is threading.main_thread():  # Python takes signals in the main thread only
            self._previous = {sig: signal.signal(sig, self._note) for sig in SIGNALS}
            for sig in SIGNALS:
                # Restart the system calls the signal interrupts: a collective's socket read in gloo fails on EINTR.
                signal.siginterrupt(sig, False)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _note(self, signum, frame) -> None:
        self.received = self.received or signal.Signals(signum).name

    def requested(self, accelerator: Accelerator) -> bool:
        """Whether any process has received a preemption signal, asked at a step boundary: the processes may have
        received it steps apart, so all take the same answer (an all-reduce, where there are several) and stop at
        the same step, where a save's collectives find every process."""
        if accelerator.num_processes == 1:
            return self.received is not None
        flag = torch.tensor(float(self.received is not None), device=accelerator.device)
        return accelerator.reduce(flag, "sum").item() > 0


def last_good(run_dir: Path) -> str:
    """Where a stopped run can be resumed from, for the line that stops it."""
    found = checkpoints(run_dir)
    return f"the last good checkpoint is {found[-1]}" if found else "no checkpoint was saved"


def any_not_finite(accelerator: Accelerator, tensors: Iterable[torch.Tensor]) -> bool:
    """Whether any process holds a non-finite value in `tensors` (its weights, its shard of them under FSDP, its
    losses); every process takes the same answer."""
    # Under FSDP2 a parameter is a DTensor: each process checks its own shard, and the reduce below joins them.
    local = (t.to_local() if hasattr(t, "to_local") else t for t in tensors)
    flags = [t.detach().isfinite().all() for t in local]
    bad = torch.stack(flags).logical_not().sum().float() if flags else torch.zeros((), device=accelerator.device)
    return accelerator.reduce(bad, "sum").item() > 0


def check_finite(run, what: str) -> None:
    """Stop the run (`run`: the loop's `Run`) before `what` is written from weights that are not finite, or after a
    step whose loss was not (the log window's: a loss between log lines would otherwise reach a checkpoint unseen)."""
    if any_not_finite(run.accelerator, [*run.objective.parameters(), *run.window.sums.values()]):
        run.progress.close()
        raise TrainingStopped(
            f"step {run.state['step']}: the loss or the weights are not finite, so no {what} was written; "
            f"{last_good(run.run_dir)}; lower train.lr or keep train.max_grad_norm set"
        )


def leave(run) -> None:
    """After a preemption signal and the checkpoint of the step the loop stopped at (`run`: the loop's `Run`): the
    trackers' last lines, then `Preempted`."""
    run.progress.close()
    run.accelerator.wait_for_everyone()
    run.accelerator.end_training()
    received = run.preemption.received or "a preemption signal (on another process)"
    raise Preempted(
        f"step {run.state['step']}: {received} received; saved {checkpoints(run.run_dir)[-1]}; the same command with "
        "--resume continues the run"
    )
