"""HuBERT targets: k-means, MFCC frames at the encoder's rate, the cache `hfssl hubert-targets` builds and pretraining
reads, and one clear line for each bad input. Tiny: a few dozen synthetic clips, 2-layer encoders of width 32."""

import contextlib
import copy
import dataclasses
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from transformers import AutoModel

from hfssl.__main__ import main
from hfssl.config import AudioDataArgs, SpeechModelArgs
from hfssl.data.audio import AudioClips, load_audio
from hfssl.data.mfcc import MfccFeatures
from hfssl.data.synthetic_audio import synthetic_utterances
from hfssl.errors import UsageError
from hfssl.hubert_targets import (
    KMEANS_FILE,
    TARGETS_JSON,
    HiddenFeatures,
    encoder_config,
    fit_length,
    fit_plan,
    load_targets,
    prepare_targets,
)
from hfssl.kmeans import KMeans, fit_kmeans
from hfssl.models.speech import feature_extractor, frame_lengths, min_clip_samples
from hfssl.objectives import load_pretrain, masked_speech
from hfssl.objectives.hubert import HubertArgs

RECIPE = {
    "model": {"arch": "hubert", "size": "tiny", "hidden_size": 32, "conv_dim": 32, "num_heads": 2, "num_layers": 2},
    "data": {"train": "synthetic", "synthetic_utterances": 20, "max_seconds": 2.0, "batch_seconds": 8.0},
    "masking": {"mask_prob": 0.5, "mask_length": 4},
    "objective": {"name": "hubert"},
    "targets": {"clusters": 16},
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy CPU waking them costs several times the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hubert_targets")
    (root / "recipe.yaml").write_text(yaml.safe_dump(RECIPE))
    return root


def settings(workdir: Path, **overrides) -> dict[str, str]:
    """Command-line overrides: the module's scan cache, a run directory, and `section__key=value` pairs."""
    values = {"data.cache_dir": str(workdir / "cache"), "train.output_dir": str(workdir / "run")}
    return values | {key.replace("__", "."): str(value) for key, value in overrides.items()}


def cli(workdir: Path, *extra: str, **overrides):
    argv = ["hubert-targets", str(workdir / "recipe.yaml"), *extra]
    for key, value in settings(workdir, **overrides).items():
        argv += [f"--{key}", value]
    main(argv)


def setup(workdir: Path, **overrides):
    """The config, clips and encoder config `hfssl hubert-targets` builds from the same overrides."""
    cfg = load_pretrain(workdir / "recipe.yaml", settings(workdir, **overrides))
    config = encoder_config(cfg)
    train, validation = load_audio(
        cfg.data, seed=cfg.train.seed, min_samples=min_clip_samples(config, cfg.masking.mask_length)
    )
    return cfg, train, validation, config


def one_error_line(capsys, exit_info) -> str:
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("hfssl: error: ")
    return lines[0]


def nothing_written(folder: Path) -> bool:
    return not folder.exists() and not list(folder.parent.glob(f".{folder.name}.*"))


# --------------------------------------------------------------------------- k-means


def blobs(seed: int = 0, per_blob: int = 500):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, 5)) * 20
    truth = np.repeat(np.arange(6), per_blob)
    return (centres[truth] + rng.normal(size=(len(truth), 5))).astype(np.float32), truth


def test_kmeans_recovers_separated_blobs():
    frames, truth = blobs()
    kmeans = fit_kmeans(frames, 6, seed=0, batch_frames=256)
    labels = kmeans.assign(frames).numpy()
    for blob in range(6):
        assert len(set(labels[truth == blob])) == 1  # each blob is one cluster ...
    assert len(set(labels)) == 6  # ... of its own
    assert kmeans.inertia < 5 * 0.01  # noise of std 1 around centres of std 20, standardised
    assert kmeans.mean.numpy() == pytest.approx(frames.mean(0), abs=1e-3)


def test_kmeans_is_deterministic_for_a_seed_and_thread_count():
    frames = np.random.default_rng(1).normal(size=(3000, 13)).astype(np.float32)
    threads = torch.get_num_threads()
    runs = {}
    try:
        for seed, count in ((0, 1), (0, 2), (0, 1), (1, 2)):
            torch.set_num_threads(count)
            kmeans = fit_kmeans(frames, 10, seed=seed, batch_frames=500, max_iter=5)
            runs.setdefault(seed, []).append((kmeans.centroids, kmeans.assign(frames)))
    finally:
        torch.set_num_threads(threads)
    (c0, l0), *others = runs[0]
    for centroids, labels in others:
        assert torch.equal(centroids, c0) and torch.equal(labels, l0)
    assert not torch.equal(runs[1][0][1], l0)


def test_kmeans_uses_every_cluster_the_frames_allow():
    # 5 distinct frames, 400 copies each: k-means++ must pick each once, and no cluster may end empty.
    points = np.random.default_rng(2).normal(size=(5, 3)).astype(np.float32)
    frames = np.repeat(points, 400, axis=0)
    kmeans = fit_kmeans(frames, 5, seed=0, batch_frames=100)
    assert sorted(set(kmeans.assign(frames).tolist())) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="6 clusters"):
        fit_kmeans(frames[:5], 6)


def test_kmeans_save_load(tmp_path):
    frames, _ = blobs(per_blob=50)
    kmeans = fit_kmeans(frames, 6, seed=0)
    kmeans.save(tmp_path / "k.safetensors")
    again = KMeans.load(tmp_path / "k.safetensors")
    assert torch.equal(again.assign(frames), kmeans.assign(frames))


def test_fit_plan_samples_whole_clips_then_frames():
    lengths = np.array([100, 50, 0, 80, 120, 60])
    plan = fit_plan(lengths, 200, seed=0)
    assert sum(len(frames) for frames in plan.values()) == 200
    assert all(np.all(np.diff(f) > 0) and f.min() >= 0 and f.max() < lengths[c] for c, f in plan.items())
    again = fit_plan(lengths, 200, seed=0)
    assert again.keys() == plan.keys() and all(np.array_equal(again[c], plan[c]) for c in plan)
    everything = fit_plan(lengths, 10_000, seed=0)
    assert {c: len(f) for c, f in everything.items()} == {c: n for c, n in enumerate(lengths) if n}


# --------------------------------------------------------------------------- features


def test_mfcc_frames_are_the_encoders_frames():
    config = masked_speech.encoder_config(SpeechModelArgs(hidden_size=32, conv_dim=32), HubertArgs(), 0.5)
    features = MfccFeatures(16000, 320)
    rng = np.random.default_rng(0)
    lengths = [400, 401, 719, 720, 1039, 1040, 16000, 16001, 32319, 32320, *rng.integers(400, 48000, 40)]
    for n in lengths:
        clip = rng.normal(size=int(n)).astype(np.float32)
        raw = features(clip)
        assert raw.shape == (int(frame_lengths(int(n), config)), 39), n  # no trimming needed at 16 kHz
        assert torch.isfinite(raw).all()


def test_fit_length_repeats_the_last_frame():
    features = torch.arange(6.0).reshape(3, 2)
    assert torch.equal(fit_length(features, 2), features[:2])
    assert torch.equal(fit_length(features, 4), torch.cat([features, features[-1:]]))


def test_hidden_features_skip_later_layers_exactly():
    config = masked_speech.encoder_config(SpeechModelArgs(hidden_size=32, conv_dim=32, num_layers=3), HubertArgs(), 0.5)
    torch.manual_seed(0)
    model = AutoModel.from_config(config).eval()
    clip = np.random.default_rng(0).normal(size=8000).astype(np.float32)
    extractor = feature_extractor(AudioDataArgs())
    inputs = torch.from_numpy(extractor(clip, sampling_rate=16000)["input_values"][0])[None]
    with torch.no_grad():
        full = model(inputs, output_hidden_states=True).hidden_states
    for layer in range(4):
        ours = HiddenFeatures(copy.deepcopy(model), layer, extractor, "cpu")
        assert torch.equal(ours(clip), full[layer][0]), layer


# --------------------------------------------------------------------------- the cache


@pytest.fixture(scope="module")
def corpus(workdir) -> tuple[Path, Path]:
    """Training and validation folders of synthetic utterances; the validation folder repeats a training clip."""
    train, validation = workdir / "train", workdir / "validation"
    train.mkdir()
    validation.mkdir()
    for i, row in enumerate(synthetic_utterances(24, seed=0)):
        (train / f"u{i:02d}.wav").write_bytes(row["audio"]["bytes"])
    for i, row in enumerate(synthetic_utterances(3, seed=1)):
        (validation / f"v{i}.wav").write_bytes(row["audio"]["bytes"])
    shutil.copy(train / "u05.wav", validation / "v9-copy-of-u05.wav")
    return train, validation


@pytest.fixture(scope="module")
def built(workdir, corpus) -> tuple[Path, dict, str]:
    """Iteration-1 targets built by the command: (their folder, the overrides used, what the command printed)."""
    out = workdir / "targets-mfcc"
    overrides = {"data__train": corpus[0], "data__validation": corpus[1], "targets__dir": out}
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        cli(workdir, **overrides)
    return out, overrides, stdout.getvalue()


def test_command_writes_the_cache(built, workdir):
    out, _, stdout = built
    line = stdout.strip().splitlines()[-1]
    assert line.startswith("HuBERT targets for 24 training and 4 validation clips") and "16 clusters" in line
    assert {p.name for p in out.iterdir()} == {"train", "validation", KMEANS_FILE, TARGETS_JSON}
    assert not list(out.parent.glob(f".{out.name}.*"))
    info = json.loads((out / TARGETS_JSON).read_text())
    assert info["features"] == "mfcc" and info["clusters"] == 16 and info["samples_per_frame"] == 320
    assert info["sampling_rate"] == 16000 and info["splits"]["train"]["clips"] == 24
    assert info["model"] is None and info["layer"] is None and info["inertia"] > 0


def test_cache_round_trip(built, workdir):
    out, overrides, _ = built
    cfg, train, validation, config = setup(workdir, **overrides)
    train_labels, eval_labels = load_targets(cfg, train, validation, config, out)
    for clips, labels in ((train, train_labels), (validation, eval_labels)):
        assert len(labels) == len(clips)
        expected = frame_lengths(torch.as_tensor(clips.full_lengths), config).tolist()
        assert [len(x) for x in labels] == expected
        assert all(x.dtype == np.int16 and x.min() >= 0 and x.max() < 16 for x in labels)
    assert len(set(np.concatenate(train_labels).tolist())) == 16


def test_validation_is_labelled_with_the_training_centroids(built, workdir):
    out, overrides, _ = built
    cfg, train, validation, config = setup(workdir, **overrides)
    train_labels, eval_labels = load_targets(cfg, train, validation, config, out)
    kmeans = KMeans.load(out / KMEANS_FILE)
    features = MfccFeatures(16000, 320)
    lengths = frame_lengths(torch.as_tensor(validation.full_lengths), config)
    for i in range(len(validation)):
        frames = fit_length(features(validation[i]["input_values"]), int(lengths[i]))
        assert np.array_equal(kmeans.assign(frames).numpy(), eval_labels[i])
    names = [Path(a["path"]).name for a in validation.dataset["audio"]]
    copy_index = names.index("v9-copy-of-u05.wav")
    original = [Path(a["path"]).name for a in train.dataset["audio"]].index("u05.wav")
    assert np.array_equal(eval_labels[copy_index], train_labels[original])


def test_prepare_targets_reads_an_existing_cache_and_builds_a_missing_one(built, workdir):
    from accelerate import Accelerator

    out, overrides, _ = built
    cfg, train, validation, config = setup(workdir, **overrides)
    accelerator = Accelerator(cpu=True)
    stamp = (out / TARGETS_JSON).stat().st_mtime_ns
    train_labels, _ = prepare_targets(cfg, train, validation, config, accelerator, workdir / "unused")
    assert (out / TARGETS_JSON).stat().st_mtime_ns == stamp
    fresh = dataclasses.replace(cfg, targets=dataclasses.replace(cfg.targets, dir=None))
    rebuilt, _ = prepare_targets(fresh, train, validation, config, accelerator, workdir / "run-prepared")
    assert (workdir / "run-prepared" / "targets" / TARGETS_JSON).is_file()
    assert all(np.array_equal(a, b) for a, b in zip(train_labels, rebuilt, strict=True))  # same seed, same targets


def mismatch(built, workdir, change) -> str:
    out, overrides, _ = built
    cfg, train, validation, config = setup(workdir, **overrides)
    cfg, train, validation, config = change(cfg, train, validation, config)
    with pytest.raises(UsageError) as error:
        load_targets(cfg, train, validation, config, out)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"targets.dir: {out}")
    assert message.endswith(f"rebuild it with `hfssl hubert-targets RECIPE --overwrite`, or delete {out}")
    return message


def with_targets(cfg, **changes):
    return dataclasses.replace(cfg, targets=dataclasses.replace(cfg.targets, **changes))


def test_cache_mismatch_in_clip_count(built, workdir):
    def fewer(cfg, train, validation, config):
        return cfg, train, AudioClips(validation.dataset.select(range(3)), 16000, 2.0), config

    assert "holds labels for 4 validation clips, but the validation audio has 3" in mismatch(built, workdir, fewer)


def test_cache_mismatch_in_audio(built, workdir):
    def reordered(cfg, train, validation, config):
        return cfg, AudioClips(train.dataset.select(range(len(train))[::-1]), 16000, 2.0), validation, config

    assert "other train audio" in mismatch(built, workdir, reordered)


def test_cache_mismatch_in_frame_rate(built, workdir):
    def faster(cfg, train, validation, config):
        config = copy.deepcopy(config)
        config.conv_stride = (5, 2, 2, 2, 2, 2, 1)
        return cfg, train, validation, config

    message = mismatch(built, workdir, faster)
    assert "frame rate" in message and "320" in message and "160" in message


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"clusters": 32}, "targets.clusters 16"),
        ({"features": "hidden", "model": "some/model", "layer": 3}, "targets.features 'mfcc'"),
    ],
)
def test_cache_mismatch_in_settings(built, workdir, changes, named):
    assert named in mismatch(built, workdir, lambda cfg, *rest: (with_targets(cfg, **changes), *rest))


# --------------------------------------------------------------------------- iteration 2


@pytest.fixture(scope="module")
def previous_model(workdir) -> Path:
    """A tiny encoder saved as an hfssl export looks: a stock HubertModel and its feature extractor."""

    def export(name: str, **changes) -> Path:
        config = masked_speech.encoder_config(SpeechModelArgs(hidden_size=32, conv_dim=32), HubertArgs(), 0.5)
        for key, value in changes.items():
            setattr(config, key, value)
        torch.manual_seed(0)
        folder = workdir / name
        AutoModel.from_config(config).save_pretrained(folder)
        feature_extractor(AudioDataArgs()).save_pretrained(folder)
        return folder

    export("previous-fast", conv_stride=(5, 2, 2, 2, 2, 2, 1))
    return export("previous")


def test_iteration_2_clusters_a_layer_of_the_previous_model(workdir, previous_model):
    out = workdir / "targets-hidden"
    overrides = {
        "targets__features": "hidden",
        "targets__model": previous_model,
        "targets__layer": 1,
        "targets__clusters": 8,
        "targets__dir": out,
    }
    cli(workdir, **overrides)
    cfg, train, validation, config = setup(workdir, **overrides)
    train_labels, eval_labels = load_targets(cfg, train, validation, config, out)
    model = AutoModel.from_pretrained(previous_model).eval()
    extractor = feature_extractor(cfg.data)
    kmeans = KMeans.load(out / KMEANS_FILE)
    for clips, labels in ((train, train_labels), (validation, eval_labels)):
        for i in (0, len(clips) - 1):
            inputs = extractor(clips[i]["input_values"], sampling_rate=16000, return_tensors="pt")["input_values"]
            with torch.no_grad():
                hidden = model(inputs, output_hidden_states=True).hidden_states[1][0]
            frames = int(frame_lengths(int(clips.full_lengths[i]), config))
            assert np.array_equal(kmeans.assign(fit_length(hidden, frames)).numpy(), labels[i])

    for changes, named in (({"layer": 2}, "targets.layer 1"), ({"model": str(workdir)}, "targets.model")):
        with pytest.raises(UsageError, match=named):
            load_targets(with_targets(cfg, **changes), train, validation, config, out)


# --------------------------------------------------------------------------- bad input through the command


HIDDEN = {"targets__features": "hidden"}


@pytest.mark.parametrize(
    ("overrides", "starts"),
    [
        ({"targets__clusters": 5000}, "targets.clusters: asked for 5000 clusters but the training clips give only"),
        (HIDDEN, "targets.model: iteration 2+ (features: hidden) needs the previous iteration's model"),
        (HIDDEN | {"targets__model": "MISSING"}, "targets.model: "),  # its words: test_bad_input, targets-missing-model
        (HIDDEN | {"targets__model": "PREVIOUS", "targets__layer": 5}, "targets.layer: 5 is beyond the 2 layers"),
        (HIDDEN | {"targets__model": "FAST"}, "targets.model: "),
        ({"data__streaming": "true"}, "data.streaming: "),
    ],
    ids=["too-many-clusters", "no-model", "unloadable-model", "layer-out-of-range", "frame-rate", "streaming"],
)
def test_bad_input_is_one_line(workdir, previous_model, capsys, overrides, starts):
    out = workdir / "refused"
    places = {"MISSING": workdir / "no-such-model", "PREVIOUS": previous_model, "FAST": workdir / "previous-fast"}
    with pytest.raises(SystemExit) as exit_info:
        cli(workdir, targets__dir=out, **{k: places.get(v, v) for k, v in overrides.items()})
    line = one_error_line(capsys, exit_info).removeprefix("hfssl: error: ")
    assert line.startswith(starts), line
    if overrides.get("targets__model") == "FAST":
        assert "a frame every 160 samples and the encoder every 320" in line
    assert nothing_written(out)


def test_existing_targets_are_kept_without_overwrite(built, workdir, capsys):
    out, overrides, _ = built
    stamp = (out / TARGETS_JSON).stat().st_mtime_ns
    with pytest.raises(SystemExit) as exit_info:
        cli(workdir, **overrides)
    line = one_error_line(capsys, exit_info)
    assert line.startswith(f"hfssl: error: targets.dir: {out} already exists") and "--overwrite" in line
    assert (out / TARGETS_JSON).stat().st_mtime_ns == stamp
