"""HuBERT, BEST-RQ and masked reconstruction through the real CLI on tiny models and the embedded speech: the loss
falls, the pretraining checkpoint reloads through the Auto classes, the export is a stock encoder that
`AutoModelForAudioClassification` loads without hfssl, a resumed run matches an uninterrupted one, and settings that
cannot work fail with one line."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_loads_as_audio_classifier, assert_pipeline_answers, hfssl, one_line_error, stop_after
from huggingface_hub import ModelCard
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoConfig, AutoModelForPreTraining

from hfssl.collators.audio import AudioMaskCollator, MelTargets
from hfssl.config import AudioDataArgs
from hfssl.heads import MaskedSpeechConfig, MaskedSpeechForPreTraining, random_quantizer
from hfssl.models.speech import feature_extractor, frame_lengths

RECIPES = {
    "hubert": "speech/hubert-tiny",
    "best-rq": "speech/best-rq-tiny",
    "reconstruction": "speech/recon-tiny",
    "best-rq-w2v-bert": "speech/best-rq-w2v-bert-tiny",  # the log-mel front end
}
BACKBONE = {
    "hubert": "HubertModel",
    "best-rq": "HubertModel",
    "reconstruction": "HubertModel",
    "best-rq-w2v-bert": "Wav2Vec2BertModel",
}
OBJECTIVE = {"best-rq-w2v-bert": "best-rq"}  # the objective a recipe of another name trains
TARGETS = {"hubert": "clusters", "best-rq": "codes", "reconstruction": "features"}  # what each head predicts
TINY = ["--model.num_layers", "2", "--model.hidden_size", "32", "--model.num_heads", "2", "--model.conv_dim", "32",
        "--data.synthetic_utterances", "60", "--data.max_seconds", "2.0", "--data.batch_seconds", "8.0",
        "--train.log_every", "5", "--train.eval_batches", "4", "--train.probe_every", ""]  # fmt: skip
OWN = {  # each objective's own settings, smaller (another objective refuses them)
    "hubert": ["--objective.label_dim", "32", "--targets.clusters", "12", "--targets.fit_frames", "3000"],
    "best-rq": ["--objective.codebook_size", "64"],
    "reconstruction": [],
}


def tiny(recipe: str, own: bool = True) -> list[str]:
    """TINY and (`own`) `recipe`'s objective's own settings, for its encoder: a filterbank encoder has no conv front
    end to size."""
    own = OWN[OBJECTIVE.get(recipe, recipe)] if own else []
    if BACKBONE[recipe] != "Wav2Vec2BertModel":
        return TINY + own
    at = TINY.index("--model.conv_dim")
    return TINY[:at] + TINY[at + 2 :] + own


def tiny_encoder(arch: str = "hubert"):
    return AutoConfig.for_model(
        arch, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
        feat_extract_norm="layer", do_stable_layer_norm=True, num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )  # fmt: skip


@pytest.fixture(scope="module", params=sorted(RECIPES))
def trained(request, tmp_path_factory) -> tuple[str, Path]:
    objective = request.param
    out = tmp_path_factory.mktemp(objective) / "run"
    hfssl(
        "pretrain", RECIPES[objective], *tiny(objective), "--train.max_steps", "40", "--train.lr", "2e-3",
        "--train.eval_every", "40", "--train.save_every", "20", "--train.output_dir", out,
    )  # fmt: skip
    return objective, out


def test_loss_falls_and_accuracies_are_logged(trained):
    objective, out = trained
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 40
    # Measured at 40 steps: reconstruction's L1 0.787 -> 0.749; the classifiers' cross-entropies fall further.
    assert metrics["eval_loss"] < 0.98 * metrics["initial_eval_loss"]
    if objective != "reconstruction":
        # Starts near chance (ln of the classes); 40 steps move the loss, not yet the top-1 accuracy.
        classes = {"hubert": 12, "best-rq": 64, "best-rq-w2v-bert": 64}[objective]
        assert metrics["initial_eval_loss"] > 0.8 * np.log(classes)
        assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and 0.0 <= metrics["eval_unmasked_accuracy"] <= 1.0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((out / "logs").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    logged = set(events.Tags()["scalars"])
    wanted = {"masked_loss", "unmasked_loss", "mask_fraction", "grad_norm"}
    if objective != "reconstruction":
        wanted |= {"masked_accuracy", "unmasked_accuracy"}
    assert {f"train/{name}" for name in wanted} <= logged


def test_checkpoint_reloads_through_auto_classes(trained):
    objective, out = trained
    config = AutoConfig.from_pretrained(out / "model_config")
    assert isinstance(config, MaskedSpeechConfig) and config.target == TARGETS[OBJECTIVE.get(objective, objective)]
    model = AutoModelForPreTraining.from_config(config)
    assert isinstance(model, MaskedSpeechForPreTraining)
    model.save_pretrained(out / "head")
    again = AutoModelForPreTraining.from_pretrained(out / "head")
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_export_loads_into_audio_classification_without_hfssl(trained):
    objective, out = trained
    final = out / "final"
    assert json.loads((final / "config.json").read_text())["architectures"] == [BACKBONE[objective]]
    card = ModelCard.load(final / "README.md")
    model_type = json.loads((final / "config.json").read_text())["model_type"]
    assert {"hfssl", "audio", model_type} <= set(card.data.tags)
    described = {"hubert": "HuBERT", "best-rq": "BEST-RQ", "reconstruction": "reconstruction"}
    assert described[OBJECTIVE.get(objective, objective)] in card.text
    assert_loads_as_audio_classifier(final)


def test_export_command_reproduces_final(trained, tmp_path):
    _, out = trained
    hfssl("export", out / "checkpoints" / "step-0000040", tmp_path / "exported")
    from safetensors.torch import load_file

    a = load_file(str(out / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "exported" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("objective", ["best-rq", "hubert", "best-rq-w2v-bert"])
def test_resume_matches_uninterrupted(objective, tmp_path):
    args = [*tiny(objective), "--train.max_steps", "12", "--train.eval_every", "12", "--train.save_every", "6"]
    run = tmp_path / "run"
    hfssl("pretrain", RECIPES[objective], *args, "--train.keep_last", "5", "--train.output_dir", run)
    full = stop_after(run, 6)
    done = hfssl("pretrain", RECIPES[objective], *args, "--train.output_dir", run, "--resume")
    assert "step-0000006" in done.stderr
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["steps"] == full["steps"] == 12
    assert resumed["train_loss"] == pytest.approx(full["train_loss"], abs=1e-5)
    assert resumed["eval_loss"] == pytest.approx(full["eval_loss"], abs=1e-5)


def test_finetune_from_a_masked_prediction_export(trained, tmp_path):
    objective, out = trained
    if objective not in ("best-rq", "best-rq-w2v-bert"):
        pytest.skip("one objective per front end is enough: the exports are the same stock classes")
    done = hfssl(
        "finetune", "speech/keywords-tiny", "--model.name_or_path", out / "final", "--data.synthetic_examples",
        "100", "--data.max_seconds", "1.0", "--training.num_train_epochs", "1", "--training.output_dir",
        tmp_path / "kw", "--finetune.min_steps", "0",
    )  # fmt: skip
    assert "accuracy" in done.stdout
    final = tmp_path / "kw" / "final"
    assert (final / "model.safetensors").is_file()
    metrics = json.loads((tmp_path / "kw" / "metrics.json").read_text())
    # 80 training clips of at most 1 s, one epoch: the seconds heard are counted in samples, whatever the mask marks
    assert 40 < metrics["audio_seconds_seen"] <= 80
    assert_pipeline_answers(final)


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize("objective", ["hubert", "best-rq", "reconstruction"])
def test_a_head_config_saved_with_its_objective_name_rebuilds_that_head(objective, tmp_path):
    """Runs saved before the head config said `target` named the objective; `hfssl export` still rebuilds them."""
    from hfssl.objectives import load_pretrain, masked_speech

    MaskedSpeechConfig(backbone_config=tiny_encoder().to_dict(), objective=objective).save_pretrained(tmp_path)
    saved = AutoConfig.from_pretrained(tmp_path)
    cfg = load_pretrain(RECIPES[objective])
    rebuilt = masked_speech.rebuild(cfg, saved)
    assert rebuilt.model.config.target == TARGETS[objective]
    assert not hasattr(rebuilt.model.config, "objective")


def test_head_scores_only_frames_inside_clips():
    config = MaskedSpeechConfig(backbone_config=tiny_encoder().to_dict(), target="codes", num_classes=10)
    model = MaskedSpeechForPreTraining(config).eval()
    audio = torch.randn(2, 16000)
    attention = torch.ones(2, 16000, dtype=torch.long)
    attention[1, 8000:] = 0
    frames = int(frame_lengths(16000, config.backbone_config))
    mask = torch.zeros(2, frames, dtype=torch.bool)
    mask[:, 10:40] = True  # runs past the second clip's 24 frames
    labels = torch.randint(0, 10, (2, frames))
    labels[0, 12] = -100
    out = model(audio, attention, mask, labels)
    assert out.valid.sum(1).tolist() == [frames - 1, int(frame_lengths(8000, config.backbone_config))]
    assert not (out.masked & ~out.valid).any() and out.masked[1].sum() == 24 - 10
    assert (out.frame_losses[~out.valid] == 0).all() and (out.frame_losses[out.valid] > 0).all()
    # Masked frames weigh 1, unmasked 0 by default: the loss is the masked frames' mean.
    assert out.loss.item() == pytest.approx(out.frame_losses[out.masked].mean().item(), rel=1e-5)
    config.unmasked_weight = 0.5
    weighted = MaskedSpeechForPreTraining(config).eval()
    weighted.load_state_dict(model.state_dict())
    out = weighted(audio, attention, mask, labels)
    unmasked = out.valid & ~out.masked
    expected = out.frame_losses[out.masked].mean() + 0.5 * out.frame_losses[unmasked].mean()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_hubert_head_fits_a_fixed_batch():
    torch.manual_seed(0)
    encoder = tiny_encoder().to_dict()
    config = MaskedSpeechConfig(backbone_config=encoder, target="clusters", num_classes=8, label_dim=16)
    model = MaskedSpeechForPreTraining(config)
    audio = torch.randn(2, 16000)
    frames = int(frame_lengths(16000, config.backbone_config))
    mask = torch.zeros(2, frames, dtype=torch.bool)
    mask[:, ::3] = True
    labels = torch.randint(0, 8, (2, frames))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        out = model(audio, mask_time_indices=mask, labels=labels)
        first = first if first is not None else out.loss.item()
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert out.loss.item() < 0.5 * first
    assert out.frame_correct[out.masked].float().mean() > 0.5


def test_random_quantizer_is_frozen_by_its_seed():
    a, b = random_quantizer(160, 64, 16, seed=3), random_quantizer(160, 64, 16, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[1], random_quantizer(160, 64, 16, seed=4)[1])
    assert torch.allclose(a[1].norm(dim=-1), torch.ones(64))


@pytest.mark.parametrize("samples", [400, 719, 720, 8000, 15999, 16000, 16321, 31234])
def test_mel_targets_follow_the_encoder_frames(samples):
    encoder = tiny_encoder()
    rng = np.random.default_rng(samples)
    clips = [rng.standard_normal(samples).astype(np.float32), rng.standard_normal(32000).astype(np.float32)]
    frames = int(frame_lengths(32000, encoder))
    mel = MelTargets(encoder, 16000, mel_bins=40)
    features, valid = mel.features(clips, frames)
    assert mel.stack == 2 and features.shape == (2, frames, 80)
    assert valid[0].sum() == frame_lengths(samples, encoder) and valid[1].all()
    assert (features[0, ~valid[0]] == 0).all()
    inside = features[0, valid[0]]
    if len(inside) > 2:
        assert inside.mean().abs() < 1e-4  # normalised per clip and bin
    codes = MelTargets(encoder, 16000, 40, random_quantizer(80, 32, 8, 0))(clips, frames)
    assert codes.dtype == torch.long and (codes[0, ~valid[0]] == -100).all()
    assert ((codes[valid] >= 0) & (codes[valid] < 32)).all()


def test_mel_frames_are_those_of_the_encoder_frame():
    """A burst that begins on encoder frame 20's first sample: the stacked mel frames of frame t start at sample
    t * 320, like the encoder's receptive field."""
    encoder = tiny_encoder()
    clip = np.zeros(16000, dtype=np.float32)
    clip[20 * 320 :] = np.random.default_rng(0).standard_normal(16000 - 20 * 320)
    features, _ = MelTargets(encoder, 16000, 40).features([clip], int(frame_lengths(16000, encoder)))
    # Frames 0-18 (mel windows ending by sample 6320) hear silence; frame 19's second window hears the burst.
    assert torch.allclose(features[0, :19], features[0, :1].expand(19, -1), atol=1e-4)
    assert ((features[0, 19:] - features[0, 0]).abs().mean(-1) > 0.5).all()


def test_collator_crops_keep_frame_labels_aligned():
    encoder = tiny_encoder()
    extractor = feature_extractor(AudioDataArgs())
    collator = AudioMaskCollator(extractor, encoder, 0.5, 4, 1, num_negatives=0, max_samples=8000, seed=0)
    rng = np.random.default_rng(0)
    lengths = [16000, 24000, 6000]
    examples = [
        {"input_values": rng.standard_normal(n).astype(np.float32), "labels": np.arange(frame_lengths(n, encoder))}
        for n in lengths
    ]
    for _ in range(5):
        batch = collator(examples)
        for row, n in enumerate(lengths):
            labels = batch["labels"][row]
            kept = labels[labels >= 0]
            assert len(kept) == frame_lengths(min(n, 8000), encoder)
            # A contiguous run of the clip's frames, starting where the (frame-aligned) crop starts.
            assert torch.equal(kept, torch.arange(kept[0], kept[0] + len(kept)))
            assert kept[-1] < frame_lengths(n, encoder)
        assert batch["labels"].shape == batch["mask_time_indices"].shape


# --------------------------------------------------------------------------- bad input


def test_contrastive_on_an_encoder_without_quantizer_is_one_line(tmp_path):
    done = hfssl(
        "pretrain", "speech/wav2vec2-tiny", *TINY[:8], "--model.arch", "hubert", "--train.output_dir", tmp_path / "r",
        check=False,
    )  # fmt: skip
    assert "model.arch" in one_line_error(done)
    assert not (tmp_path / "r" / "final").exists()


def test_log_mel_frames_that_do_not_fit_the_encoder_are_one_line(tmp_path):
    # At 11025 Hz, 10 ms is 110 samples: 320-sample frames cannot be cut into 3 equal hops.
    done = hfssl(
        "pretrain", "speech/best-rq-tiny", *tiny("best-rq"), "--data.sampling_rate", "11025", "--train.output_dir",
        tmp_path / "r", check=False,
    )  # fmt: skip
    assert "data.sampling_rate" in one_line_error(done)
    assert not (tmp_path / "r" / "final").exists()


def test_codebook_wider_than_the_features_is_one_line(tmp_path):
    done = hfssl(
        "pretrain", "speech/best-rq-tiny", *tiny("best-rq"), "--objective.mel_bins", "4",
        "--objective.codebook_dim", "16",
        "--train.output_dir", tmp_path / "r", check=False,
    )  # fmt: skip
    assert "objective.codebook_dim" in one_line_error(done)


@pytest.mark.parametrize(
    "arch", ["hubert", "wavlm", "data2vec-audio", "wav2vec2", "wav2vec2-conformer", "wav2vec2-bert"]
)
def test_every_backbone_trains_a_step_and_exports_its_stock_class(arch, tmp_path):
    from transformers import AutoModel

    from hfssl.config import SpeechModelArgs
    from hfssl.objectives.best_rq import BestRQArgs
    from hfssl.objectives.masked_speech import build_model

    objective = BestRQArgs(codebook_size=16, codebook_dim=8, mel_bins=20)
    model = build_model(SpeechModelArgs(arch=arch, hidden_size=32, conv_dim=16, num_layers=1), objective, 0.5)
    assert isinstance(model, MaskedSpeechForPreTraining)
    encoder = model.config.backbone_config
    clips = [np.random.default_rng(i).standard_normal(n).astype(np.float32) for i, n in enumerate((16000, 12000))]
    collator = AudioMaskCollator(
        feature_extractor(AudioDataArgs(), encoder), encoder, 0.5, 4, 1, num_negatives=0, seed=0,
        targets=MelTargets(encoder, 16000, 20, random_quantizer(40, 16, 8, 0)),
    )  # fmt: skip
    batch = collator([{"input_values": clip} for clip in clips])
    assert ("input_features" in batch) == (arch == "wav2vec2-bert")
    out = model(**batch)
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.head.weight.grad.abs().sum() > 0
    model.backbone.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert type(loaded) is type(model.backbone)


# --------------------------------------------------------------------------- the log-mel front end


def filterbank_encoder():
    from hfssl.config import SpeechModelArgs
    from hfssl.models.speech import scratch_config

    return scratch_config(SpeechModelArgs(arch="wav2vec2-bert", hidden_size=32, num_heads=2, num_layers=1), 0.5)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(400, 24000), min_size=1, max_size=3))
def test_filterbank_frames_are_the_feature_extractor_frames(lengths):
    encoder = filterbank_encoder()
    extractor = feature_extractor(AudioDataArgs(), encoder)
    clips = [np.random.default_rng(n).standard_normal(n).astype(np.float32) for n in lengths]
    batch = extractor(clips, sampling_rate=16000, padding=True, return_attention_mask=True, return_tensors="pt")
    assert batch["attention_mask"].sum(1).tolist() == frame_lengths(torch.tensor(lengths), encoder).tolist()
    # the extractor pads its 10 ms frames to an even count: one all-padding frame at most
    longest = max(frame_lengths(torch.tensor(lengths), encoder).tolist())
    assert longest <= batch["input_features"].shape[1] <= longest + 1


@pytest.mark.parametrize("span", [1, 4, 10])
def test_min_clip_samples_fits_a_span_of_filterbank_frames(span):
    from hfssl.models.speech import min_clip_samples

    encoder = filterbank_encoder()
    samples = min_clip_samples(encoder, span)
    assert frame_lengths(samples, encoder) == span + 1
    assert frame_lengths(samples - 1, encoder) == span


def test_filterbank_collator_masks_only_frames_inside_clips():
    encoder = filterbank_encoder()
    collator = AudioMaskCollator(
        feature_extractor(AudioDataArgs(), encoder), encoder, 0.5, 4, 1, num_negatives=0, seed=0,
        targets=MelTargets(encoder, 16000, 80, random_quantizer(160, 16, 8, 0)),
    )  # fmt: skip
    lengths = [16000, 9000, 5000]
    batch = collator([{"input_values": np.ones(n, dtype=np.float32)} for n in lengths])
    frames = frame_lengths(torch.tensor(lengths), encoder)
    assert batch["attention_mask"].sum(1).tolist() == frames.tolist()
    inside = torch.arange(batch["input_features"].shape[1]) < frames[:, None]
    assert not (batch["mask_time_indices"] & ~inside).any() and batch["mask_time_indices"].any(1).all()
    assert ((batch["labels"] >= 0) == inside).all()  # one code per frame inside each clip, -100 past it


@pytest.mark.parametrize(
    ("recipe", "change", "key"),
    [
        (RECIPES["best-rq-w2v-bert"], ["--model.conv_dim", "32"], "model.conv_dim"),  # a raw-waveform setting
        (RECIPES["best-rq-w2v-bert"], ["--data.sampling_rate", "8000"], "data.sampling_rate"),  # filterbanks: 16 kHz
        ("speech/wav2vec2-tiny", ["--model.arch", "wav2vec2-bert"], "model.arch"),  # no quantizer of conv features
    ],
)
def test_raw_waveform_settings_on_a_filterbank_encoder_are_one_line(recipe, change, key, tmp_path):
    done = hfssl(
        "pretrain", recipe, *tiny("best-rq-w2v-bert", own=recipe == RECIPES["best-rq-w2v-bert"]), *change,
        "--train.output_dir", tmp_path / "r", check=False,
    )  # fmt: skip
    assert key in one_line_error(done)
    assert not (tmp_path / "r").exists()


def test_clips_shorter_than_a_span_of_filterbank_frames_are_one_line(tmp_path):
    import soundfile as sf

    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(4):  # 0.1 s: 4 frames of 20 ms, too few for a span of 4 and a distractor
        sf.write(clips / f"{i}.wav", np.random.default_rng(i).standard_normal(1600).astype(np.float32) * 0.1, 16000)
    done = hfssl(
        "pretrain", RECIPES["best-rq-w2v-bert"], *tiny("best-rq-w2v-bert"), "--data.train", clips,
        "--data.min_seconds", "0.05", "--train.output_dir", tmp_path / "r", check=False,
    )  # fmt: skip
    assert "data.train" in one_line_error(done)
    assert not (tmp_path / "r" / "final").exists()
