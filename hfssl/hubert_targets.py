"""HuBERT targets: a k-means cluster label for every encoder frame of every clip, cached on disk.

Iteration 1 clusters MFCCs (13 coefficients, deltas and delta-deltas); iteration 2+ clusters a hidden layer of the
previous iteration's model. Features are computed on whole clips at the encoder's frame rate, so clip i of n samples
gets exactly `frame_lengths(n, encoder_config)` labels and a frame-aligned crop of the clip takes the same slice of
its labels. k-means is fitted once, on a seeded sample of training frames, and the same centroids label the training
and the validation clips: refitting on validation audio would give it a different label space (fairseq#4312).

The cache is a directory: `train/` and `validation/` (datasets saved with `save_to_disk`, one `labels` sequence per
clip in the clips' order), `kmeans.safetensors` (centroids, mean, std) and `targets.json` (the settings, and a
fingerprint of each split's audio). `load_targets` refuses a cache built for other audio or settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import datasets
import numpy as np
import pyarrow as pa
import torch
from datasets.table import InMemoryTable
from tqdm.auto import tqdm

from hfssl.config import SpeechPretrainConfig, arg, check
from hfssl.data.audio import AudioClips, load_audio
from hfssl.data.mfcc import MfccFeatures
from hfssl.errors import UsageError, first_line
from hfssl.io import atomic_dir, check_local, write_json
from hfssl.kmeans import fit_kmeans
from hfssl.models import load_config
from hfssl.models.speech import (
    feature_extractor,
    frame_lengths,
    is_speech_encoder,
    min_clip_samples,
    samples_per_frame,
    scratch_config,
)

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation")
TARGETS_JSON = "targets.json"
KMEANS_FILE = "kmeans.safetensors"
_FORMAT = 1  # of the cache directory; bump it when its layout changes

Features = Callable[[np.ndarray], torch.Tensor]
"""A clip (1-D float32 samples) -> its (frames, dim) features at the encoder's frame rate (or off by a frame)."""


# --------------------------------------------------------------------------- features


class HiddenFeatures:
    """`hidden_states[layer]` of a speech encoder on the whole clip, normalised as its feature extractor does. The
    encoder's layers after `layer` are dropped from `model`."""

    def __init__(self, model: torch.nn.Module, layer: int, extractor, device: torch.device | str):
        self.model, self.layer, self.extractor, self.device = model.eval().to(device), layer, extractor, device
        layers = getattr(getattr(model, "encoder", None), "layers", None)
        if isinstance(layers, torch.nn.ModuleList) and layer + 1 < len(layers):
            # hidden_states[layer] is the input of layer `layer`: the layers after it only cost time.
            model.encoder.layers = layers[: layer + 1]

    @torch.inference_mode()
    def __call__(self, clip: np.ndarray) -> torch.Tensor:
        # One clip at a time: no padding, so encoders with group norm in the conv stack (which sees padding) are
        # exact too.
        inputs = self.extractor(np.asarray(clip), sampling_rate=self.extractor.sampling_rate, return_tensors="pt")
        values = inputs[self.model.main_input_name]  # input_values, or input_features for a filterbank encoder
        out = self.model(values.to(self.device), output_hidden_states=True)
        return out.hidden_states[self.layer][0].float().cpu()


def target_features(cfg: SpeechPretrainConfig, encoder_config, device: torch.device | str | None = None) -> Features:
    """The features `cfg.targets` asks for, checked against the encoder before any audio is read.

    Raises:
        UsageError: `features: hidden` without `targets.model`, a model that cannot be loaded or is no speech
            encoder, a layer it does not have, or a frame rate or sampling rate other than the encoder's.
    """
    t = cfg.targets
    rate, hop = cfg.data.sampling_rate, samples_per_frame(encoder_config)
    if t.features == "mfcc":
        return MfccFeatures(rate, hop)
    _check_model_set(cfg)
    check_local(t.model, "targets.model", "a speech encoder pretrained or exported there, or a Hub name")
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

    try:
        config = AutoConfig.from_pretrained(t.model, trust_remote_code=False)
    except Exception as err:  # OSError (missing, offline), ValueError/KeyError (not a model, unknown type)
        raise UsageError(f"targets.model: could not load {t.model!r} ({first_line(err)})") from None
    if not is_speech_encoder(config) or not hasattr(config, "num_hidden_layers"):
        raise UsageError(
            f"targets.model: {t.model!r} is a {config.model_type} model, not a speech encoder with a convolutional "
            "or filterbank front end"
        )
    theirs = samples_per_frame(config)
    if theirs != hop:
        raise UsageError(
            f"targets.model: {t.model!r} makes a frame every {theirs} samples and the encoder every {hop}; the "
            "targets must be at the encoder's frame rate"
        )
    try:
        extractor = AutoFeatureExtractor.from_pretrained(t.model, trust_remote_code=False)
    except Exception:  # an export without preprocessor_config.json: hfssl's own, which every hfssl export has
        extractor = feature_extractor(cfg.data, config)
    their_rate = getattr(extractor, "sampling_rate", rate)
    if their_rate != rate:
        raise UsageError(
            f"targets.model: {t.model!r} takes {their_rate} Hz audio but data.sampling_rate is {rate}; the targets "
            "must come from audio at the encoder's rate"
        )
    layers = config.num_hidden_layers
    if t.layer > layers:
        raise UsageError(
            f"targets.layer: {t.layer} is beyond the {layers} layers of {t.model!r} (0 is the projected conv "
            f"features, {layers} the last layer)"
        )
    try:
        model = AutoModel.from_pretrained(t.model, config=config, trust_remote_code=False)
    except Exception as err:
        raise UsageError(f"targets.model: could not load {t.model!r} ({first_line(err)})") from None
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return HiddenFeatures(model, t.layer, extractor, device)


def _check_model_set(cfg: SpeechPretrainConfig) -> None:
    if cfg.targets.features == "hidden" and not cfg.targets.model:
        raise UsageError(
            "targets.model: iteration 2+ (features: hidden) needs the previous iteration's model; set targets.model "
            "to its export"
        )


def fit_length(features: torch.Tensor, frames: int) -> torch.Tensor:
    """Trim `features` to `frames` rows, or pad them by repeating the last row (a window or kernel that differs from
    the encoder's receptive field can be a frame off at the end)."""
    if len(features) >= frames:
        return features[:frames]
    if len(features) == 0:
        raise ValueError(f"no feature frames to pad to {frames}")
    return torch.cat([features, features[-1:].expand(frames - len(features), -1)])


def label_lengths(clips: AudioClips, encoder_config) -> np.ndarray:
    """Labels per clip: the encoder's frames of the whole (uncropped) clip."""
    return frame_lengths(torch.as_tensor(clips.full_lengths), encoder_config).numpy()


def _clip_features(
    clips: AudioClips, indices: np.ndarray, features: Features, lengths: np.ndarray, desc: str, num_workers: int = 0
) -> Iterator[tuple[int, torch.Tensor]]:
    """(index, features fitted to its label count) of the given clips, in order; DataLoader workers decode."""
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(clips, indices.tolist()), batch_size=None, num_workers=num_workers
    )
    for index, item in tqdm(zip(indices, loader, strict=True), total=len(indices), desc=desc, unit="clip"):
        frames = int(lengths[index])
        if frames == 0:
            yield int(index), torch.zeros(0, 1)
            continue
        yield int(index), fit_length(features(np.asarray(item["input_values"], dtype=np.float32)), frames)


# --------------------------------------------------------------------------- fingerprints and settings


def clips_fingerprint(clips: AudioClips) -> str:
    """A hash of the clips' identities (a clip given as bytes by their hash, a file by its path), in order, and of
    their full lengths in samples."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.asarray(clips.full_lengths, dtype=np.int64).tobytes())
    for batch in clips.dataset.select_columns(["audio"]).iter(batch_size=1000):
        for audio in batch["audio"]:
            data = (audio or {}).get("bytes")
            if data:
                digest.update(b"b" + hashlib.blake2b(data, digest_size=16).digest())
            else:
                digest.update(b"p" + os.fsencode((audio or {}).get("path") or "") + b"\0")
    return digest.hexdigest()


def _model_id(name: str | None) -> str | None:
    """A local model as its absolute path (the same export named from another folder is the same model)."""
    if name and os.path.exists(os.path.expanduser(name)):
        return str(Path(name).expanduser().resolve())
    return name


def _settings(cfg: SpeechPretrainConfig, encoder_config) -> dict:
    """What the labels depend on besides the audio, as targets.json records it."""
    hidden = cfg.targets.features == "hidden"
    return {
        "features": cfg.targets.features,
        "model": _model_id(cfg.targets.model) if hidden else None,
        "layer": cfg.targets.layer if hidden else None,
        "clusters": cfg.targets.clusters,
        "sampling_rate": cfg.data.sampling_rate,
        "samples_per_frame": samples_per_frame(encoder_config),
    }


_SETTING_NAMES = {
    "features": "targets.features",
    "model": "targets.model",
    "layer": "targets.layer",
    "clusters": "targets.clusters",
    "sampling_rate": "data.sampling_rate",
    "samples_per_frame": "the encoder's frame rate (samples per frame)",
}


# --------------------------------------------------------------------------- building


_STREAMING = (
    "data.streaming: HuBERT targets label a fixed list of clips, which a stream does not have; set data.streaming false"
)


def _check_clips(train_set, eval_set) -> None:
    if not isinstance(train_set, AudioClips) or not isinstance(eval_set, AudioClips):
        raise UsageError(_STREAMING)


def _check_frames(cfg: SpeechPretrainConfig, train_lengths: np.ndarray) -> None:
    t, total = cfg.targets, int(train_lengths.sum())
    if t.clusters > total:
        raise UsageError(
            f"targets.clusters: asked for {t.clusters} clusters but the training clips give only {total} frames; "
            "lower targets.clusters or add training audio"
        )
    if t.clusters > t.fit_frames:
        raise UsageError(
            f"targets.fit_frames: {t.fit_frames} frames cannot fit {t.clusters} clusters; raise targets.fit_frames "
            "or lower targets.clusters"
        )


def fit_plan(lengths: np.ndarray, fit_frames: int, seed: int) -> dict[int, np.ndarray]:
    """The training frames k-means is fitted on: clip index -> its frame indices.

    Whole clips in a seeded random order until they hold `fit_frames` frames, then a seeded sample of exactly
    `fit_frames` (or all, when the clips hold fewer) among their frames. Whole clips, because features come clip by
    clip: a few frames from every clip would cost a pass over the corpus (a forward pass of the previous model, for
    iteration 2) before the labelling pass makes another.
    """
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths, dtype=np.int64)
    order = rng.permutation(len(lengths))
    cumulative = np.cumsum(lengths[order])
    wanted = min(fit_frames, int(cumulative[-1]))
    chosen = np.sort(order[: int(np.searchsorted(cumulative, wanted)) + 1])
    offsets = np.concatenate([[0], np.cumsum(lengths[chosen])])
    total = int(offsets[-1])
    keep = np.sort(rng.choice(total, wanted, replace=False)) if total > wanted else np.arange(total)
    bounds = np.searchsorted(keep, offsets)
    return {
        int(clip): keep[bounds[j] : bounds[j + 1]] - offsets[j]
        for j, clip in enumerate(chosen)
        if bounds[j + 1] > bounds[j]
    }


def build_targets(cfg: SpeechPretrainConfig, train_set, eval_set, encoder_config, out_dir: Path) -> Path:
    """Fit k-means on training frames and label every training and validation clip; write the cache to `out_dir`
    (replacing it, atomically: on any error nothing is written).

    Args:
        cfg: `cfg.targets` says what to cluster and how; `cfg.data.sampling_rate` is the clips' rate.
        train_set, eval_set: the `AudioClips` pretraining uses (whole clips are labelled).
        encoder_config: the encoder's config: its conv stack sets the frame rate and the labels per clip.
        out_dir: the cache directory.

    Returns:
        `out_dir`.
    """
    _check_clips(train_set, eval_set)
    features = target_features(cfg, encoder_config)
    return _build(cfg, train_set, eval_set, encoder_config, Path(out_dir), features)


def _build(cfg, train_set: AudioClips, eval_set: AudioClips, encoder_config, out_dir: Path, features) -> Path:
    t = cfg.targets
    start = time.perf_counter()
    lengths = {"train": label_lengths(train_set, encoder_config), "validation": label_lengths(eval_set, encoder_config)}
    _check_frames(cfg, lengths["train"])
    num_workers = cfg.train.num_workers
    plan = fit_plan(lengths["train"], t.fit_frames, t.seed)
    indices = np.fromiter(plan, dtype=np.int64)
    sample = [
        feats[torch.from_numpy(plan[i])]
        for i, feats in _clip_features(train_set, indices, features, lengths["train"], "Features to fit", num_workers)
    ]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    kmeans = fit_kmeans(
        torch.cat(sample), t.clusters, seed=t.seed, batch_frames=t.batch_frames, max_iter=t.max_iter, device=device
    )
    del sample
    fitted = sum(map(len, plan.values()))
    logger.info(
        f"k-means: {t.clusters} clusters, {fitted:,} frames, {kmeans.passes} passes, inertia {kmeans.inertia:.3f}"
    )
    dtype = np.int16 if t.clusters <= np.iinfo(np.int16).max + 1 else np.int32
    labels = {}
    for split, clips in zip(SPLITS, (train_set, eval_set), strict=True):
        every = np.arange(len(clips))
        labels[split] = [
            kmeans.assign(feats).numpy().astype(dtype) if len(feats) else np.zeros(0, dtype)
            for _, feats in _clip_features(clips, every, features, lengths[split], f"Labelling {split}", num_workers)
        ]
    info = {
        "format": _FORMAT,
        **_settings(cfg, encoder_config),
        "seed": t.seed,
        "fit_frames": fitted,
        "passes": kmeans.passes,
        "inertia": kmeans.inertia,
        "splits": {
            split: {
                "clips": len(clips),
                "frames": int(lengths[split].sum()),
                "fingerprint": clips_fingerprint(clips),
            }
            for split, clips in zip(SPLITS, (train_set, eval_set), strict=True)
        },
        "seconds": round(time.perf_counter() - start, 3),
    }
    with atomic_dir(out_dir) as tmp:
        for split in SPLITS:
            _labels_dataset(labels[split], dtype).save_to_disk(str(tmp / split))
        kmeans.save(tmp / KMEANS_FILE)
        write_json(tmp / TARGETS_JSON, info)
    return out_dir


def _labels_dataset(labels: list[np.ndarray], dtype) -> datasets.Dataset:
    offsets = np.zeros(len(labels) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in labels], out=offsets[1:])
    values = np.concatenate(labels) if labels else np.zeros(0, dtype)
    column = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values.astype(dtype, copy=False)))
    return datasets.Dataset(InMemoryTable(pa.table({"labels": column})))


# --------------------------------------------------------------------------- loading


def load_targets(
    cfg: SpeechPretrainConfig, train_set, eval_set, encoder_config, path: Path
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Read a target cache and check that it was built for these clips and settings.

    Returns:
        `(train_labels, eval_labels)`: per clip, in the clips' order, an integer array (int16 up to 32768 clusters)
        of `frame_lengths(full_length, encoder_config)` labels in `[0, targets.clusters)`.

    Raises:
        UsageError: one line naming the cache and what differs (clip count, audio, frame rate, sampling rate,
            features, model, layer, clusters), and how to rebuild it.
    """
    _check_clips(train_set, eval_set)
    _check_model_set(cfg)
    path = Path(path)
    rebuild = f"; rebuild it with `hfssl hubert-targets RECIPE --overwrite`, or delete {path}"
    try:
        info = json.loads((path / TARGETS_JSON).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"targets.dir: {path} is not a target cache (it has no {TARGETS_JSON}){rebuild}") from None
    except (OSError, ValueError) as err:
        raise UsageError(f"targets.dir: could not read {path / TARGETS_JSON} ({first_line(err)}){rebuild}") from None
    if info.get("format") != _FORMAT:
        raise UsageError(f"targets.dir: {path} was written by another version of hfssl{rebuild}")
    for key, wanted in _settings(cfg, encoder_config).items():
        if info.get(key) != wanted:
            raise UsageError(
                f"targets.dir: {path} was built with {_SETTING_NAMES[key]} {info.get(key)!r}, but this run has "
                f"{wanted!r}{rebuild}"
            )
    result = []
    for split, clips in zip(SPLITS, (train_set, eval_set), strict=True):
        cached = info["splits"][split]
        if cached["clips"] != len(clips):
            raise UsageError(
                f"targets.dir: {path} holds labels for {cached['clips']} {split} clips, but the {split} audio has "
                f"{len(clips)}{rebuild}"
            )
        if cached["fingerprint"] != clips_fingerprint(clips):
            raise UsageError(
                f"targets.dir: {path} was built for other {split} audio (the clips' files, bytes, order or lengths "
                f"differ){rebuild}"
            )
        offsets, values = _read_labels(path / split, rebuild)
        if not np.array_equal(np.diff(offsets), label_lengths(clips, encoder_config)):
            raise UsageError(
                f"targets.dir: the {split} labels in {path} do not match the encoder's frame count per clip (another "
                f"conv stack?){rebuild}"
            )
        if len(values) and (values.min() < 0 or values.max() >= cfg.targets.clusters):
            raise UsageError(f"targets.dir: the {split} labels in {path} fall outside the clusters{rebuild}")
        result.append([values[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)])
    return result[0], result[1]


def _read_labels(folder: Path, rebuild: str) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, values) of the `labels` column: clip i's labels are `values[offsets[i]:offsets[i + 1]]`."""
    try:
        column = datasets.load_from_disk(str(folder)).data.column("labels").combine_chunks()
    except Exception as err:  # missing or damaged files
        raise UsageError(f"targets.dir: could not read {folder} ({first_line(err)}){rebuild}") from None
    # a copy: Arrow's buffers are read-only, and torch warns when it wraps a read-only array
    return column.offsets.to_numpy(), column.values.to_numpy().copy()


@dataclass
class TargetArgs:
    """HuBERT's `targets` section: what is clustered, into how many classes, and where the labels are cached."""

    dir: str | None = arg(
        None,
        "hubert: the target cache (built by `hfssl hubert-targets`, or by pretrain when missing); empty: "
        "<train.output_dir>/targets",
    )
    features: Literal["mfcc", "hidden"] = arg(
        "mfcc",
        "what is clustered: mfcc (iteration 1: 13 MFCCs + deltas + delta-deltas) or hidden (iteration 2+: "
        "a layer of the previous model)",
    )
    model: str | None = arg(None, "hidden: the previous iteration's export (local directory or Hub name)")
    layer: int = arg(6, "hidden: the hidden layer clustered (0 is the projected conv features)")
    clusters: int = arg(100, "k-means clusters: the classes predicted (HuBERT: 100 from MFCCs, then 500)")
    fit_frames: int = arg(1_000_000, "frames sampled (seeded) from the training clips to fit k-means on")
    batch_frames: int = arg(10_000, "frames per mini-batch k-means update")
    max_iter: int = arg(100, "mini-batch k-means passes over the fitting frames at most")
    seed: int = arg(0, "seed of the frame sample, the initial centroids and the mini-batches")

    def __post_init__(self):
        check(self.clusters >= 2, "targets.clusters", "must be at least 2")
        check(self.layer >= 0, "targets.layer", "must not be negative")
        check(self.fit_frames >= 1, "targets.fit_frames", "must be positive")
        check(self.batch_frames >= 1, "targets.batch_frames", "must be positive")
        check(self.max_iter >= 1, "targets.max_iter", "must be at least 1")


def target_dir(cfg: SpeechPretrainConfig, run_dir: Path | None = None) -> Path:
    """`targets.dir`, or `<run_dir>/targets` (run_dir defaults to `train.output_dir`)."""
    if cfg.targets.dir:
        return Path(cfg.targets.dir).expanduser()
    return Path(run_dir if run_dir is not None else cfg.train.output_dir) / "targets"


def prepare_targets(
    cfg: SpeechPretrainConfig, train_set, eval_set, encoder_config, accelerator, run_dir: Path
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The labels pretraining trains on: `targets.dir` (or `<run_dir>/targets`), built first by the main process
    when it does not exist, then read and checked by every process (see `load_targets`)."""
    _check_clips(train_set, eval_set)
    _check_model_set(cfg)
    path = target_dir(cfg, run_dir)
    with accelerator.main_process_first():
        if accelerator.is_main_process and not path.exists():
            start = time.perf_counter()
            build_targets(cfg, train_set, eval_set, encoder_config, path)
            logger.info(
                f"built HuBERT targets ({cfg.targets.features}, {cfg.targets.clusters} clusters) in {path}, where "
                f"there were none, in {time.perf_counter() - start:.1f} s"
            )
    return load_targets(cfg, train_set, eval_set, encoder_config, path)


# --------------------------------------------------------------------------- command


def encoder_config(cfg: SpeechPretrainConfig):
    """The config of the encoder pretraining will build: `model.name_or_path`'s, or the preset's."""
    if not cfg.model.name_or_path:
        return scratch_config(cfg.model, cfg.masking.mask_prob)
    config = load_config(cfg.model)
    # a pretraining checkpoint with a head keeps the encoder's config inside its own
    config = getattr(config, "backbone_config", None) or config
    if not is_speech_encoder(config):
        raise UsageError(
            f"model.name_or_path: {cfg.model.name_or_path!r} is a {config.model_type} model, not a speech encoder"
        )
    return config


def run_hubert_targets(cfg: SpeechPretrainConfig, overwrite: bool = False) -> str:
    """`hfssl hubert-targets`: build the target cache for a recipe, loading the audio as pretraining does.

    Returns:
        One summary line: clips, frames, clusters, inertia, seconds and where the cache is.
    """
    if cfg.data.streaming:
        raise UsageError(_STREAMING)
    config = encoder_config(cfg)
    out = target_dir(cfg)
    if out.exists() and not overwrite:
        raise UsageError(f"targets.dir: {out} already exists; pass --overwrite to rebuild it, or delete it")
    features = target_features(cfg, config)
    start = time.perf_counter()
    train_set, eval_set = load_audio(
        cfg.data, seed=cfg.train.seed, min_samples=min_clip_samples(config, cfg.masking.mask_length)
    )
    _build(cfg, train_set, eval_set, config, out, features)
    info = json.loads((out / TARGETS_JSON).read_text(encoding="utf-8"))
    splits = info["splits"]
    frames = splits["train"]["frames"] + splits["validation"]["frames"]
    return (
        f"HuBERT targets for {splits['train']['clips']} training and {splits['validation']['clips']} validation clips "
        f"({frames:,} frames) from {info['features']}: {info['clusters']} clusters, inertia {info['inertia']:.4f}, "
        f"{time.perf_counter() - start:.1f} s; saved to {out}"
    )
