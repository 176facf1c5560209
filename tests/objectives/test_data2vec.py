"""data2vec teacher-student pretraining through the real CLI on the log-mel tiny encoder: the loss falls, the export
is a stock `Wav2Vec2BertModel` that classifies without hfssl, a run SIGKILLed after a checkpoint continues to exactly
the same weights (the teacher's included); and the EMA, the targets and bad settings, unit by unit."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_loads_as_audio_classifier, env, hfssl, one_line_error
from safetensors.torch import load_file

from hfssl.collators.audio import AudioMaskCollator
from hfssl.config import AudioDataArgs, SpeechModelArgs
from hfssl.models.speech import feature_extractor
from hfssl.objectives import masked_speech
from hfssl.objectives.data2vec import Data2VecArgs, TeacherStudent, instance_norm

RECIPE = "speech/data2vec-w2v-bert-tiny"
TINY = ["--model.num_layers", "2", "--model.hidden_size", "32", "--model.num_heads", "2",
        "--data.synthetic_utterances", "60", "--data.max_seconds", "2.0", "--data.batch_seconds", "8.0",
        "--objective.mask_copies", "2", "--objective.ema_anneal_steps", "20", "--train.log_every", "5",
        "--train.eval_batches", "4", "--train.probe_every", ""]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data2vec") / "run"
    hfssl(
        "pretrain", RECIPE, *TINY, "--train.max_steps", "40", "--train.lr", "2e-3", "--train.eval_every", "40",
        "--train.save_every", "20", "--train.output_dir", out,
    )  # fmt: skip
    return out


def test_loss_falls_and_the_export_classifies_without_hfssl(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["steps"] == 40
    assert metrics["eval_loss"] < 0.9 * metrics["initial_eval_loss"]
    assert metrics["eval_target_std"] > 0.1  # instance-normalised targets: a collapsed teacher would give ~0
    final = trained / "final"
    assert json.loads((final / "config.json").read_text())["architectures"] == ["Wav2Vec2BertModel"]
    assert "data2vec teacher-student" in (final / "README.md").read_text()
    assert_loads_as_audio_classifier(final)


def test_checkpoints_carry_the_teacher(trained):
    weights = load_file(str(trained / "checkpoints" / "step-0000040" / "model.safetensors"))
    teacher = {k for k in weights if k.startswith("teacher.")}
    student = {k for k in weights if k.startswith("model.backbone.")}
    assert teacher and {k.removeprefix("teacher.") for k in teacher} == {
        k.removeprefix("model.backbone.") for k in student
    }
    # after 40 EMA updates the teacher trails the student: equal weights would mean it is not a separate model
    assert any(not torch.equal(weights[k], weights["model.backbone." + k.removeprefix("teacher.")]) for k in teacher)


def test_export_command_reproduces_final(trained, tmp_path):
    hfssl("export", trained / "checkpoints" / "step-0000040", tmp_path / "exported")
    a = load_file(str(trained / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "exported" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_killed_after_a_checkpoint_continues_to_the_same_weights(trained, tmp_path):
    args = [*TINY, "--train.max_steps", "40", "--train.lr", "2e-3", "--train.eval_every", "40",
            "--train.save_every", "20"]  # fmt: skip
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "hfssl", "pretrain", RECIPE, *args, "--train.output_dir", str(run)],
        env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not (run / "checkpoints" / "step-0000020").is_dir():
            assert process.poll() is None and time.monotonic() < deadline, "the run never reached step 20"
            time.sleep(0.02)
        time.sleep(0.05)  # among the steps after the checkpoint
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL and not (run / "metrics.json").exists()
    hfssl("pretrain", RECIPE, *args, "--train.output_dir", run, "--resume")
    for name in ("final/model.safetensors", "checkpoints/step-0000040/model.safetensors"):
        a, b = load_file(str(trained / name)), load_file(str(run / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    full, resumed = (json.loads((r / "metrics.json").read_text()) for r in (trained, run))
    assert resumed["eval_loss"] == full["eval_loss"] and resumed["train_loss"] == full["train_loss"]


# --------------------------------------------------------------------------- units


def tiny_objective(top_k: int = 2, decay: float = 0.9, end_decay: float = 0.99, anneal: int = 10) -> TeacherStudent:
    model = masked_speech.build_model(
        SpeechModelArgs(arch="wav2vec2-bert", hidden_size=32, num_heads=2, num_layers=2, dropout=0.0),
        Data2VecArgs(), 0.5, None, 16000,
    )  # fmt: skip
    return TeacherStudent(model, decay, end_decay, anneal, top_k)


def test_teacher_is_the_moving_average_of_the_student():
    objective = tiny_objective()
    with torch.no_grad():
        for p in objective.model.backbone.parameters():
            p.add_(torch.randn_like(p))
    before = [p.clone() for p in objective.teacher.parameters()]
    objective.after_optimizer_step(5)
    decay = 0.9 + (0.99 - 0.9) * 5 / 10
    pairs = zip(objective.teacher.parameters(), objective.model.backbone.parameters(), strict=True)
    for old, (new, student) in zip(before, pairs, strict=True):
        torch.testing.assert_close(new, decay * old + (1 - decay) * student)
    assert objective.decay_at(10) == objective.decay_at(1000) == 0.99 and objective.decay_at(0) == 0.9
    objective.train()
    assert objective.model.training and not objective.teacher.training
    assert not any(p.requires_grad for p in objective.teacher.parameters())


def test_targets_are_normalised_over_each_clips_frames_only():
    hidden = torch.randn(2, 6, 4) * 3 + 5
    valid = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    out = instance_norm(hidden, valid)
    torch.testing.assert_close(out[1, :4].mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1, :4].var(0, unbiased=False), torch.ones(4), atol=1e-3, rtol=0)
    assert torch.equal(out[1, 4:], torch.zeros(2, 4))
    # padding does not change a clip's targets
    torch.testing.assert_close(instance_norm(hidden[1:, :4], valid[1:, :4])[0], out[1, :4])


def test_mask_copies_share_one_teacher_pass():
    objective = tiny_objective()
    encoder = objective.model.config.backbone_config
    collator = AudioMaskCollator(
        feature_extractor(AudioDataArgs(), encoder), encoder, 0.5, 4, 1, num_negatives=0, mask_copies=3, seed=0
    )
    clips = [np.random.default_rng(i).standard_normal(n).astype(np.float32) for i, n in enumerate((16000, 9000))]
    batch = collator([{"input_values": clip} for clip in clips])
    assert batch["input_features"].shape[0] == 2 and batch["mask_time_indices"].shape[0] == 6
    masks = batch["mask_time_indices"].view(3, 2, -1)
    assert not torch.equal(masks[0], masks[1])  # the copies are masked differently
    calls = []
    objective.teacher.register_forward_hook(lambda *_: calls.append(1))
    out = objective(**batch)
    assert len(calls) == 1 and out.stats["loss"].shape == (2,) and torch.isfinite(out.loss)
    out.loss.backward()
    assert objective.model.head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (["--objective.ema_decay", "1.0"], "objective.ema_decay"),
        (["--objective.ema_end_decay", "0"], "objective.ema_end_decay"),
        (["--objective.top_k_layers", "3"], "objective.top_k_layers"),  # the tiny encoder has 2
        (["--objective.mask_copies", "0"], "objective.mask_copies"),
    ],
)
def test_bad_teacher_settings_are_one_line(change, key, tmp_path):
    done = hfssl("pretrain", RECIPE, *TINY, *change, "--train.output_dir", tmp_path / "r", check=False)
    assert key in one_line_error(done)
    assert not (tmp_path / "r").exists()
