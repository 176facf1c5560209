"""The faults a long run meets besides a kill (tests/test_kill.py): weights or a loss that stop being finite, which
never reach a checkpoint or an export; a preemption signal, after which the run saves, leaves, and resumes exactly."""

from __future__ import annotations

import errno
import importlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import env, snapshot
from safetensors.torch import load_file

from hfssl.__main__ import main
from hfssl.errors import PREEMPTED

TEXT = ["text/mlm-tiny", "--model.num_layers", "1", "--model.hidden_size", "32", "--model.num_heads", "2",
        "--data.synthetic_documents", "200", "--data.seq_len", "32", "--tokenizer.vocab_size", "200",
        "--train.batch_size", "8", "--train.eval_batches", "1", "--train.probe_every", ""]  # fmt: skip
SPEECH = ["speech/wav2vec2-tiny", "--model.num_layers", "1", "--model.hidden_size", "32", "--model.num_heads", "2",
          "--model.conv_dim", "32", "--data.synthetic_utterances", "20", "--data.max_seconds", "1",
          "--data.batch_seconds", "4", "--objective.num_negatives", "10", "--objective.codevectors_per_group", "8",
          "--train.eval_batches", "1", "--train.probe_every", ""]  # fmt: skip

LOOP = importlib.import_module("hfssl.pretrain")  # the module: `from hfssl import pretrain` is the API function


def at_step(monkeypatch, step: int, action) -> None:
    """`action(optimizer)` runs inside the optimizer's `step`-th step (after its update, before the loop counts it)."""
    make = LOOP.make_optimizer

    def hooked(t, objective):
        optimizer = make(t, objective)
        taken = []

        def hook(optimizer, args, kwargs):
            taken.append(1)
            if len(taken) == step:
                action(optimizer)

        optimizer.register_step_post_hook(hook)
        return optimizer

    monkeypatch.setattr(LOOP, "make_optimizer", hooked)


@torch.no_grad()
def write_nan(optimizer) -> None:
    optimizer.param_groups[0]["params"][0].fill_(float("nan"))


def poison_at(monkeypatch, step: int) -> None:
    """The optimizer's `step`-th step writes NaN into a weight, as a diverging run would."""
    at_step(monkeypatch, step, write_nan)


def one_line(capsys, argv: list, code: int, prefix: str) -> str:
    """The one `prefix` line of a command that exits with `code`, with no traceback."""
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert stop.value.code == code, err[-2000:]
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, err[-2000:]
    return lines[0]


def stopped(capsys, argv: list) -> str:
    """The one line of a run that stopped (exit 1)."""
    return one_line(capsys, argv, 1, "hfssl: stopped")


@pytest.mark.parametrize("args", [TEXT, SPEECH], ids=["text", "speech"])
def test_weights_that_are_not_finite_are_never_saved(args, tmp_path, monkeypatch, capsys):
    # A checkpoint every step and no log line before it: the loss check alone would let step 2's weights through.
    poison_at(monkeypatch, 2)
    run = tmp_path / "run"
    steps = ["--train.max_steps", "4", "--train.save_every", "1", "--train.log_every", "10", "--train.eval_every", "10"]
    line = stopped(capsys, ["pretrain", *args, *steps, "--train.output_dir", run])
    good = run / "checkpoints" / "step-0000001"
    assert line.startswith("hfssl: stopped: step 2: ") and f"the last good checkpoint is {good}" in line
    assert [p.name for p in (run / "checkpoints").iterdir()] == [good.name]
    assert not (run / "final").exists() and not (run / "metrics.json").exists()
    assert all(w.isfinite().all() for w in load_file(str(good / "model.safetensors")).values())


def test_a_loss_that_is_not_finite_stops_the_run(tmp_path, monkeypatch, capsys):
    poison_at(monkeypatch, 2)  # step 3's forward pass reads the poisoned weights
    run = tmp_path / "run"
    steps = ["--train.max_steps", "4", "--train.save_every", "10", "--train.log_every", "1", "--train.eval_every", "10"]
    line = stopped(capsys, ["pretrain", *TEXT, *steps, "--train.output_dir", run])
    assert line.startswith("hfssl: stopped: step 3: the training loss is nan; no checkpoint was saved")
    assert not (run / "checkpoints").exists() and not (run / "final").exists()


# Checkpoints at 3 and 6, evaluations at 4 and 8: a signal inside step 5 meets no chore.
PREEMPTIBLE = ["--train.max_steps", "8", "--train.save_every", "3", "--train.keep_last", "10", "--train.log_every",
               "2", "--train.eval_every", "4", "--model.dropout", "0.1"]  # fmt: skip


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(str(a / "final" / "model.safetensors")), load_file(str(b / "final" / "model.safetensors"))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The uninterrupted runs the preempted ones must end like, one per recipe, made once."""
    made = {}

    def run(args: list) -> Path:
        if args[0] not in made:
            out = tmp_path_factory.mktemp("preempt") / "uninterrupted"
            main(["pretrain", *args, *PREEMPTIBLE, "--train.output_dir", str(out)])
            made[args[0]] = out
        return made[args[0]]

    return run


@pytest.mark.parametrize("args, sig", [(TEXT, signal.SIGTERM), (SPEECH, signal.SIGUSR1)], ids=["text", "speech"])
def test_preempted_run_saves_leaves_and_resumes_exactly(
    args, sig, uninterrupted, tmp_path, monkeypatch, capsys, caplog
):
    expected = uninterrupted(args)
    run = tmp_path / "run"
    argv = ["pretrain", *args, *PREEMPTIBLE, "--train.output_dir", str(run)]
    handler = signal.getsignal(sig)
    with monkeypatch.context() as patched:
        at_step(patched, 5, lambda optimizer: os.kill(os.getpid(), sig))  # as a scheduler would, mid-step
        with pytest.raises(SystemExit) as stop:
            main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == PREEMPTED, err[-2000:]
    saved = run / "checkpoints" / "step-0000005"
    lines = [line for line in err.splitlines() if line.startswith("hfssl: preempted")]
    assert lines == [f"hfssl: preempted: step 5: {sig.name} received; saved {saved}; the same command with --resume "
                     "continues the run"]  # fmt: skip
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-0000003", saved.name]
    assert not (run / "final").exists()
    assert signal.getsignal(sig) == handler  # the run's handler is gone with the run

    with caplog.at_level(logging.INFO, logger="hfssl.pretrain"):
        main([*argv, "--resume"])
    assert f"resumed from {saved} at step 5" in caplog.text
    assert same_weights(run, expected)


def test_sigterm_from_outside_inside_a_checkpoint_write(uninterrupted, tmp_path):
    """The real command, signalled by another process while it writes a checkpoint: it completes that checkpoint
    and leaves without another."""
    run = tmp_path / "run"
    command = [sys.executable, "-m", "hfssl", "pretrain", *TEXT, *PREEMPTIBLE, "--train.output_dir", str(run)]
    process = subprocess.Popen(command, env=env() | {"HFSSL_SLOW_WRITES": "0.5"}, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not (run / "checkpoints" / "step-0000003.tmp").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()[-3000:]
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    err = process.communicate(timeout=180)[1]
    assert process.returncode == PREEMPTED, err[-3000:]
    assert "hfssl: preempted: step 3: SIGTERM received" in err
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-0000003"]

    done = subprocess.run([*command, "--resume"], capture_output=True, text=True, env=env(), timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert same_weights(run, uninterrupted(TEXT))


def test_resume_auto_starts_then_continues_with_the_same_command(uninterrupted, tmp_path):
    """`--resume auto` as a requeued job or a restarted group runs it: the first start finds no checkpoint and
    starts; killed after one, the same command continues from it."""
    run = tmp_path / "run"
    command = [sys.executable, "-m", "hfssl", "pretrain", *TEXT, *PREEMPTIBLE, "--train.output_dir", str(run),
               "--resume", "auto"]  # fmt: skip
    process = subprocess.Popen(command, env=env() | {"HFSSL_SLOW_WRITES": "0.5"}, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not (run / "checkpoints" / "step-0000003").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()[-3000:]
        time.sleep(0.02)
    process.kill()
    process.communicate()
    assert not (run / "final").exists(), "the run finished before the kill"

    done = subprocess.run(command, capture_output=True, text=True, env=env(), timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from " in done.stderr
    assert same_weights(run, uninterrupted(TEXT))


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def failed(capsys, argv: list) -> str:
    """The one line of a command that failed as on bad input (exit 2)."""
    return one_line(capsys, argv, 2, "hfssl: error")


def test_a_full_disk_while_checkpointing_keeps_the_last_checkpoint(uninterrupted, tmp_path, monkeypatch, capsys):
    import accelerate.checkpointing

    save = accelerate.checkpointing.save

    def fills_at_six(obj, path, *args, **kwargs):
        (no_space if "step-0000006" in str(path) else save)(obj, path, *args, **kwargs)

    run = tmp_path / "run"
    argv = ["pretrain", *TEXT, *PREEMPTIBLE, "--train.output_dir", run]
    with monkeypatch.context() as patched:
        patched.setattr(accelerate.checkpointing, "save", fills_at_six)
        line = failed(capsys, argv)
    assert line.startswith(f"hfssl: error: {run / 'checkpoints' / 'step-0000006.tmp'}: no space left on the device")
    assert f"the last complete checkpoint is {run / 'checkpoints' / 'step-0000003'}" in line
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-0000003"]

    main([str(a) for a in [*argv, "--resume"]])  # space freed: the checkpoint left continues the run exactly
    assert same_weights(run, uninterrupted(TEXT))


def test_a_full_disk_while_exporting_keeps_the_earlier_export(uninterrupted, tmp_path, monkeypatch, capsys):
    import transformers.modeling_utils

    run, out = uninterrupted(TEXT), tmp_path / "export"
    main(["export", str(run), str(out)])
    before = snapshot(out)
    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", no_space)
    line = failed(capsys, ["export", run, out, "--overwrite"])
    assert line.startswith(f"hfssl: error: {out}: no space left on the device")
    assert snapshot(out) == before and list(tmp_path.iterdir()) == [out]


def test_a_full_disk_while_saving_a_tokenizer_keeps_the_earlier_one(tmp_path, monkeypatch, capsys):
    from transformers import PreTrainedTokenizerBase

    out = tmp_path / "tokenizer"
    argv = ["tokenizer", "train", "--data.synthetic_documents", "100", "--tokenizer.vocab_size", "200", "--out", out]
    main([str(a) for a in argv])
    capsys.readouterr()
    before = snapshot(out)
    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", no_space)
    assert failed(capsys, [*argv, "--overwrite"]).startswith(f"hfssl: error: {out}: no space left on the device")
    assert snapshot(out) == before and list(tmp_path.iterdir()) == [out]


def test_a_full_disk_while_fine_tuning_removes_the_partial_checkpoint(mlm_export, tmp_path, monkeypatch, capsys):
    from transformers import Trainer

    monkeypatch.setattr(Trainer, "_save_rng_state", no_space)  # after the weights and optimizer, before the state
    out = tmp_path / "ft"
    line = failed(capsys, ["finetune", "text/classify-tiny", "--model.name_or_path", mlm_export,
                           "--data.synthetic_examples", "100", "--data.max_length", "32", "--finetune.min_steps", "0",
                           "--training.num_train_epochs", "1", "--training.output_dir", out])  # fmt: skip
    assert line.startswith(f"hfssl: error: {out}/checkpoint-")
    assert "no space left on the device" in line
    assert [p.name for p in out.glob("checkpoint-*")] == [] and not (out / "final").exists()
