"""The faults a long run meets besides a kill (tests/test_kill.py): weights or a loss that stop being finite, which
never reach a checkpoint or an export."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from hfssl import pretrain
from hfssl.__main__ import main

TEXT = ["text/mlm-tiny", "--model.num_layers", "1", "--model.hidden_size", "32", "--model.num_heads", "2",
        "--data.synthetic_documents", "200", "--data.seq_len", "32", "--tokenizer.vocab_size", "200",
        "--train.batch_size", "8", "--train.eval_batches", "1", "--train.probe_every", ""]  # fmt: skip
SPEECH = ["speech/wav2vec2-tiny", "--model.num_layers", "1", "--model.hidden_size", "32", "--model.num_heads", "2",
          "--model.conv_dim", "32", "--data.synthetic_utterances", "20", "--data.max_seconds", "1",
          "--data.batch_seconds", "4", "--objective.num_negatives", "10", "--objective.codevectors_per_group", "8",
          "--train.eval_batches", "1", "--train.probe_every", ""]  # fmt: skip


def poison_at(monkeypatch, step: int) -> None:
    """The optimizer's `step`-th step writes NaN into a weight, as a diverging run would."""
    make = pretrain.make_optimizer

    def poisoned(t, objective):
        optimizer = make(t, objective)
        taken = []

        def hook(optimizer, args, kwargs):
            taken.append(1)
            if len(taken) == step:
                with torch.no_grad():
                    optimizer.param_groups[0]["params"][0].fill_(float("nan"))

        optimizer.register_step_post_hook(hook)
        return optimizer

    monkeypatch.setattr(pretrain, "make_optimizer", poisoned)


def stopped(capsys, argv: list) -> str:
    """The one line of a run that stopped (exit 1, no traceback)."""
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert stop.value.code == 1, err[-2000:]
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("hfssl: stopped")]
    assert len(lines) == 1, err[-2000:]
    return lines[0]


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
