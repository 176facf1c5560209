"""wav2vec 2.0 pretraining through the real CLI on tiny models and the embedded speech, asserting what a user would
check: the loss falls, a resumed run matches an uninterrupted one, the export loads into stock transformers classes
in a process without hfssl, and a fine-tuned keyword classifier answers through `pipeline`."""

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import (
    ROOT,
    assert_loads_as_audio_classifier,
    dry_run_report,
    env,
    folder_size,
    hfssl,
    size_in,
    stop_after,
)
from huggingface_hub import ModelCard
from transformers import Wav2Vec2ForPreTraining, Wav2Vec2Model

from hfssl.__main__ import main
from hfssl.collators.audio import sample_negatives, span_mask
from hfssl.config import SpeechModelArgs
from hfssl.models.speech import min_clip_samples
from hfssl.objectives.wav2vec2 import Contrastive, Wav2Vec2Args, model_config

# Small and fast: for what does not need the model to learn (resume, export, bad input, the guards).
TINY = [
    "--model.num_layers",
    "2",
    "--model.hidden_size",
    "32",
    "--model.num_heads",
    "2",
    "--model.conv_dim",
    "32",
    "--data.synthetic_utterances",
    "80",
    "--data.max_seconds",
    "2.0",
    "--data.batch_seconds",
    "8.0",
    "--objective.num_negatives",
    "20",
    "--objective.codevectors_per_group",
    "16",
    "--train.log_every",
    "2",
    "--train.eval_batches",
    "4",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("speech") / "w2v"
    hfssl(
        "pretrain",
        "speech/wav2vec2-tiny",
        *TINY,
        "--train.max_steps",
        "40",
        "--train.eval_every",
        "20",
        "--train.save_every",
        "20",
        "--train.output_dir",
        out,
    )
    return out


def test_run_reports_the_objective(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["steps"] == 40
    assert [e["step"] for e in metrics["evals"]] == [0, 20, 40]
    for evaluation in metrics["evals"]:
        # A 1-in-21 pick: the loss starts near ln 21 and the accuracy near 1/21.
        assert 2.0 < evaluation["loss"] < 4.0
        assert 0.0 <= evaluation["accuracy"] <= 1.0
        assert 1.0 <= evaluation["codevector_perplexity"] <= 2 * 16
    assert metrics["audio_seconds_seen"] > 40 * 2.0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((trained / "logs").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    logged = set(events.Tags()["scalars"])
    for name in (
        "contrastive_loss",
        "diversity_loss",
        "codevector_perplexity",
        "mask_fraction",
        "gumbel_temperature",
        "grad_norm",
    ):
        assert f"train/{name}" in logged, name
    temperatures = [e.value for e in events.Scalars("train/gumbel_temperature")]
    assert temperatures[0] > temperatures[-1]
    fractions = [e.value for e in events.Scalars("train/mask_fraction")]
    assert all(0.2 < f < 0.9 for f in fractions)


def test_tiny_recipe_loss_falls(tmp_path):
    """The shipped tiny recipe, shortened: its held-out contrastive loss leaves chance (measured: 3.07 -> 2.77 after
    200 steps of a 400-step run)."""
    out = tmp_path / "run"
    hfssl(
        "pretrain",
        "speech/wav2vec2-tiny",
        "--train.max_steps",
        "250",
        "--train.eval_every",
        "250",
        "--train.save_every",
        "250",
        "--train.eval_batches",
        "10",
        "--train.probe_every",
        "",
        "--train.output_dir",
        out,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["initial_eval_loss"] > 2.9  # chance: ln 21 = 3.04
    assert metrics["eval_loss"] < metrics["initial_eval_loss"] - 0.1
    assert metrics["eval_accuracy"] > 1.5 / 21


def test_export_is_a_stock_wav2vec2_model(trained):
    final = trained / "final"
    config = json.loads((final / "config.json").read_text())
    assert config["architectures"] == ["Wav2Vec2Model"]
    assert (final / "preprocessor_config.json").is_file()
    assert (final / "model.safetensors").is_file() and not list(final.glob("*.bin"))
    card = ModelCard.load(final / "README.md")
    assert card.data.library_name == "transformers"
    assert {"hfssl", "wav2vec2", "audio"} <= set(card.data.tags)
    metrics = json.loads((trained / "metrics.json").read_text())
    assert f"{metrics['eval_loss']:.4f}" in card.text
    assert "hours of audio seen" in card.text


def test_export_loads_into_audio_classification_without_hfssl(trained):
    assert_loads_as_audio_classifier(trained / "final")


def test_export_command_reproduces_final(trained, tmp_path):
    hfssl("export", trained / "checkpoints" / "step-0000040", tmp_path / "exported")
    from safetensors.torch import load_file

    a = load_file(str(trained / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "exported" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a)
    assert (tmp_path / "exported" / "preprocessor_config.json").is_file()


def test_resume_matches_uninterrupted(tmp_path):
    """A run resumed from its step-10 checkpoint ends exactly where the uninterrupted run did: same batches, masks,
    distractors, Gumbel noise and temperature."""
    args = [*TINY, "--train.max_steps", "20", "--train.eval_every", "20", "--train.save_every", "10"]
    run = tmp_path / "run"
    hfssl("pretrain", "speech/wav2vec2-tiny", *args, "--train.keep_last", "5", "--train.output_dir", run)
    full = stop_after(run, 10)
    done = hfssl("pretrain", "speech/wav2vec2-tiny", *args, "--train.output_dir", run, "--resume")
    assert "resumed from" in done.stderr and "step-0000010" in done.stderr
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["steps"] == full["steps"] == 20
    assert resumed["train_loss"] == pytest.approx(full["train_loss"], abs=1e-5)
    assert resumed["eval_loss"] == pytest.approx(full["eval_loss"], abs=1e-5)
    assert resumed["audio_seconds_seen"] == pytest.approx(full["audio_seconds_seen"])


def test_keyword_finetune_and_pipeline(trained, tmp_path):
    out = tmp_path / "keywords"
    done = hfssl(
        "finetune",
        "speech/keywords-tiny",
        "--model.name_or_path",
        trained / "final",
        "--data.synthetic_examples",
        "200",
        "--data.max_seconds",
        "1.5",
        "--training.num_train_epochs",
        "2",
        "--training.per_device_train_batch_size",
        "16",
        "--training.output_dir",
        out,
        "--finetune.min_steps",
        "0",
    )
    assert "accuracy" in done.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["labels"]) == 10
    card = ModelCard.load(out / "final" / "README.md")
    assert card.data.pipeline_tag == "audio-classification"
    assert card.data.eval_results[0].task_type == "audio-classification"
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from transformers import pipeline
        classify = pipeline("audio-classification", model={str(out / "final")!r})
        wave = np.sin(2 * np.pi * 220 * np.arange(8000) / 16000).astype(np.float32)
        answers = classify({{"raw": wave, "sampling_rate": 16000}}, top_k=3)
        assert len(answers) == 3 and all(a["label"] for a in answers)
        assert abs(sum(a["score"] for a in classify({{"raw": wave, "sampling_rate": 16000}}, top_k=10)) - 1) < 1e-3
        assert "hfssl" not in sys.modules
        print("ok", answers[0]["label"])
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok")
    assert done.stdout.split()[1] in metrics["labels"]


def test_nonfinite_loss_stops_with_one_line(tmp_path):
    done = hfssl(
        "pretrain",
        "speech/wav2vec2-tiny",
        *TINY,
        "--train.max_steps",
        "30",
        "--train.lr",
        "1e30",
        "--train.warmup_steps",
        "0",
        "--train.max_grad_norm",
        "",
        "--train.output_dir",
        tmp_path / "run",
        check=False,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("hfssl: stopped: step ") and "train.lr" in last
    assert "Traceback" not in done.stderr


def test_collapse_warns_then_stops(caplog):
    objective = Wav2Vec2Args(num_negatives=10, codevectors_per_group=8, collapse_patience=2)
    config = model_config(SpeechModelArgs(hidden_size=32, conv_dim=32, num_layers=1), objective, 0.65)
    watch = Contrastive(Wav2Vec2ForPreTraining(config), objective)
    healthy = {"contrastive_loss": 1.5, "codevector_perplexity": 9.0}
    collapsed = {"contrastive_loss": 0.01, "codevector_perplexity": 2.05}
    assert watch.health(healthy, 10) is None
    assert watch.health(collapsed, 20) is None
    assert "collapsed" in caplog.text
    assert watch.health(healthy, 30) is None  # recovered: the count starts again
    assert watch.health(collapsed, 40) is None
    reason = watch.health(collapsed, 50)
    assert reason is not None and "step 50" in reason and "objective.diversity_weight" in reason


def test_gumbel_temperature_schedule():
    objective = Wav2Vec2Args(gumbel_max=2.0, gumbel_min=0.5, gumbel_decay=0.99)
    config = model_config(SpeechModelArgs(hidden_size=32, conv_dim=32, num_layers=1), objective, 0.65)
    watch = Contrastive(Wav2Vec2ForPreTraining(config), objective)
    assert watch.gumbel_temperature(0) == 2.0
    assert watch.gumbel_temperature(50) == pytest.approx(2.0 * 0.99**50)
    assert watch.gumbel_temperature(10_000) == 0.5
    watch.before_forward(50)
    assert watch.model.quantizer.temperature == pytest.approx(2.0 * 0.99**50)


def test_objective_fits_a_fixed_batch():
    """The loss, its fp32 path and the straight-through quantizer carry gradients that can be followed: on one
    fixed batch the contrastive loss leaves ln(K + 1) within a few dozen steps."""
    from hfssl.collators.audio import AudioMaskCollator
    from hfssl.config import AudioDataArgs
    from hfssl.models.speech import feature_extractor

    torch.manual_seed(0)
    objective = Wav2Vec2Args(num_negatives=10, codevectors_per_group=16)
    model = Wav2Vec2ForPreTraining(
        model_config(SpeechModelArgs(hidden_size=32, conv_dim=32, num_layers=2), objective, 0.65)
    )
    collate = AudioMaskCollator(
        feature_extractor(AudioDataArgs()), model.config, mask_length=4, num_negatives=10, seed=0
    )
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    clips = [
        np.sin(2 * np.pi * rng.uniform(100, 400) * t * (1 + t)) + 0.1 * rng.standard_normal(8000) for _ in range(4)
    ]
    batch = collate([{"input_values": c.astype(np.float32)} for c in clips])
    watch = Contrastive(model, objective)
    optimizer = torch.optim.AdamW(watch.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        out = watch(**batch)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(out.logs["contrastive_loss"].item())
    assert losses[0] == pytest.approx(math.log(11), abs=0.5)
    assert min(losses[-5:]) < losses[0] - 1.0


def test_feature_masks_apply_to_the_contrastive_objective_too():
    """`objective.feature_mask_prob` reaches the quantizer's model: in training, channels of the projected features
    are zeroed (its card says so); at 0 the config keeps transformers' default of none."""
    from hfssl.objectives import load_pretrain, wav2vec2

    small = SpeechModelArgs(hidden_size=32, conv_dim=32, num_layers=1)
    assert model_config(small, Wav2Vec2Args(), 0.65).mask_feature_prob == 0.0
    config = model_config(small, Wav2Vec2Args(feature_mask_prob=0.5), 0.65)
    assert config.mask_feature_prob == 0.5 and config.mask_feature_length == 4
    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(config).train()
    hidden = torch.ones(2, 20, config.hidden_size)
    masked = model.wav2vec2._mask_hidden_states(hidden, mask_time_indices=torch.zeros(2, 20, dtype=torch.bool))
    zeroed = (masked == 0).all(dim=1)  # whole channels, over every frame
    assert zeroed.any() and not zeroed.all()
    cfg = load_pretrain("speech/wav2vec2-tiny", {"objective.feature_mask_prob": "0.2"})
    assert "Feature channels are masked too (probability 0.2)" in wav2vec2.describe(cfg)


def test_loss_matches_transformers_contrastive_loss():
    """hfssl's fp32 masked-frame loss is transformers' summed loss divided by the masked frames."""
    objective = Wav2Vec2Args(num_negatives=10, codevectors_per_group=8)
    config = model_config(SpeechModelArgs(hidden_size=32, conv_dim=32, num_layers=1), objective, 0.65)
    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(config).eval()
    inputs = torch.randn(2, 16000)
    attention = torch.ones(2, 16000, dtype=torch.long)
    frames = model._get_feat_extract_output_lengths(16000)
    generator = torch.Generator().manual_seed(0)
    mask = span_mask(torch.tensor([frames, frames]), int(frames), 0.5, 5, 2, generator)
    negatives = sample_negatives(mask, 10, generator)
    ours = Contrastive(model, objective).eval()(inputs, attention, mask, negatives)
    with torch.no_grad():
        theirs = model(inputs, attention_mask=attention, mask_time_indices=mask, sampled_negative_indices=negatives)
    assert ours.loss.item() == pytest.approx(theirs.loss.item() / mask.sum().item(), rel=1e-4)
    assert ours.stats["count"].sum().item() == mask.sum().item()


def test_min_clip_samples_fits_a_span():
    config = model_config(SpeechModelArgs(), Wav2Vec2Args(), 0.65)
    lengths = Wav2Vec2Model(config)._get_feat_extract_output_lengths
    samples = min_clip_samples(config, 10)
    assert lengths(samples) == 11
    assert lengths(samples - 1) == 10


def test_too_short_clips_are_skipped_with_a_count(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        sf.write(clips / f"long-{i}.wav", rng.standard_normal(16000 * 2).astype(np.float32) * 0.1, 16000)
    # 0.15 s is 7 frames at 50 Hz: too short for one masked span of 10 and a distractor.
    sf.write(clips / "short.wav", rng.standard_normal(2400).astype(np.float32) * 0.1, 16000)
    done = hfssl(
        "pretrain",
        "speech/wav2vec2-tiny",
        *TINY,
        "--data.train",
        clips,
        "--data.min_seconds",
        "0.1",
        "--masking.mask_length",
        "10",
        "--train.max_steps",
        "2",
        "--train.output_dir",
        tmp_path / "run",
    )
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["steps"] == 2
    assert "skipped 1 of 13 clips" in done.stderr and "short.wav" in done.stderr


def test_directory_without_audio_is_one_line(tmp_path, capsys):
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "notes.txt").write_text("no audio here")
    with pytest.raises(SystemExit) as exit_info:
        main(
            ["pretrain", "speech/wav2vec2-tiny", "--data.train", str(empty), "--train.output_dir", str(tmp_path / "r")]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hfssl: error: data.train") and "nothing" in err[0]
    assert not (tmp_path / "r").exists()


def test_text_option_on_a_speech_recipe_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", "speech/wav2vec2-tiny", "--data.seq_len", "64", "--train.output_dir", str(tmp_path / "r")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "hfssl: error: data.seq_len: only objective.name mlm, rtd, clm or simcse takes it; this recipe trains wav2vec2"
    ]


@pytest.mark.parametrize("arch", ["wav2vec2", "wav2vec2-conformer"])
def test_every_architecture_trains_a_step(arch):
    from hfssl.collators.audio import AudioMaskCollator
    from hfssl.config import AudioDataArgs
    from hfssl.models.speech import feature_extractor
    from hfssl.objectives.wav2vec2 import build_model

    objective = Wav2Vec2Args(num_negatives=8, codevectors_per_group=8)
    model = build_model(SpeechModelArgs(arch=arch, hidden_size=32, conv_dim=32, num_layers=1), objective, 0.65)
    collate = AudioMaskCollator(feature_extractor(AudioDataArgs()), model.config, mask_length=4, num_negatives=8)
    rng = np.random.default_rng(0)
    batch = collate([{"input_values": rng.standard_normal(n).astype(np.float32)} for n in (16000, 9000)])
    watch = Contrastive(model, objective)
    out = watch(**batch)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert model.config.model_type == arch
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert sum(g is not None and bool(g.abs().sum() > 0) for g in grads) > len(grads) // 2


def test_dry_run_reports_the_run_and_writes_nothing(trained, tmp_path):
    """A dry run of the fixture's run: the scanned training audio, its steps and a footprint within 2x of the real
    run's; nothing is written."""

    from hfssl.data.audio import load_audio
    from hfssl.objectives import load_pretrain

    out = tmp_path / "run"
    args = [*TINY, "--train.max_steps", "40", "--train.eval_every", "20", "--train.save_every", "20"]
    done = hfssl("pretrain", "speech/wav2vec2-tiny", *args, "--train.output_dir", out, "--dry-run")
    assert not out.exists()
    report = dry_run_report(done.stdout)
    overrides = {key.removeprefix("--"): value for key, value in zip(TINY[::2], TINY[1::2], strict=True)}
    cfg = load_pretrain(ROOT / "recipes" / "speech" / "wav2vec2-tiny.yaml", overrides)
    encoder = model_config(cfg.model, cfg.objective, cfg.masking.mask_prob)
    clips, _ = load_audio(cfg.data, seed=cfg.train.seed, min_samples=min_clip_samples(encoder, cfg.masking.mask_length))
    seconds = clips.full_lengths.sum() / cfg.data.sampling_rate
    assert f"hours of audio ({seconds:,.0f} s) (scanned durations of {len(clips):,} clips" in report["data"]
    assert report["steps"].startswith("40 optimizer steps of 8 s of audio (padding included) x 1 accumulated")
    assert 0 < float(report["time per step"].split()[0]) < 60
    assert 0.5 < size_in(report["checkpoint"]) / folder_size(trained / "checkpoints" / "step-0000040") < 2
    assert 0.5 < size_in(report["export"]) / folder_size(trained / "final") < 2


def test_streamed_run_resumes_exactly(tmp_path):
    """Streamed audio read by 2 DataLoader workers, resumed at step 3 of 6 (the second worker's batch due first),
    ends where the uninterrupted run did."""
    args = [
        *TINY, "--data.streaming", "true", "--data.validation_clips", "8", "--train.num_workers", "2",
        "--train.max_steps", "6", "--train.eval_every", "3", "--train.save_every", "3", "--train.log_every", "3",
    ]  # fmt: skip
    run = tmp_path / "run"
    hfssl("pretrain", "speech/wav2vec2-tiny", *args, "--train.keep_last", "5", "--train.output_dir", run)
    full = stop_after(run, 3)
    done = hfssl("pretrain", "speech/wav2vec2-tiny", *args, "--train.output_dir", run, "--resume")
    assert "resumed from" in done.stderr and "step-0000003" in done.stderr
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["steps"] == full["steps"] == 6
    assert resumed["train_loss"] == pytest.approx(full["train_loss"], abs=1e-5)
    assert resumed["eval_loss"] == pytest.approx(full["eval_loss"], abs=1e-5)
    assert resumed["audio_seconds_seen"] == pytest.approx(full["audio_seconds_seen"])
