"""What every speech objective shares: scanned audio, duration-bucketed batches, span masks, the frozen-feature
probe, and the export of the bare encoder with its feature extractor and card."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from huggingface_hub import ModelCard
from torch.utils.data import DataLoader
from transformers import PreTrainedModel

from hfssl.cards import TEMPLATES, compute_rows, count, model_name, pretrain_card_data, training_rows
from hfssl.collators.audio import AudioMaskCollator, MelTargets
from hfssl.config import SpeechPretrainConfig
from hfssl.data.audio import estimate_seconds, load_audio
from hfssl.data.durations import DurationBatches, DurationBatchSampler
from hfssl.data.stream import stream_loader
from hfssl.downstream.probe import load_probe_data, probe, training_scores
from hfssl.io import atomic_dir
from hfssl.models.speech import (
    FINETUNE_MASK_TIME_PROB,
    feature_extractor,
    min_clip_samples,
    samples_per_frame,
    uses_filterbanks,
)
from hfssl.objectives.base import Setup

logger = logging.getLogger(__name__)


class FrameLabelled(torch.utils.data.Dataset):
    """Clips with their per-frame labels (HuBERT's cluster ids) as `labels`; `lengths` as the clips'."""

    def __init__(self, clips, labels: list):
        self.clips, self.labels = clips, labels
        self.lengths = clips.lengths

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        return {**self.clips[index], "labels": self.labels[int(index)]}


def audio_setup(
    cfg: SpeechPretrainConfig,
    accelerator: Accelerator,
    objective: torch.nn.Module,
    encoder,
    num_negatives: int = 0,
    mask_copies: int = 1,
    targets: MelTargets | None = None,
    label: Callable[[object, object], tuple[object, object]] | None = None,
) -> Setup:
    """The loop's `Setup` for a speech objective over `encoder` (its config sets the frame geometry).

    Args:
        num_negatives: distractors the collator samples per masked frame (contrastive objectives).
        mask_copies: masks the collator draws per clip (teacher-student objectives).
        targets: per-frame targets the collator computes from the cropped audio (`labels`).
        label: `(train_clips, eval_clips) -> (train_set, eval_set)`, for targets computed ahead of training.
    """
    t, d = cfg.train, cfg.data
    extractor = feature_extractor(d, encoder)
    min_samples = min_clip_samples(encoder, cfg.masking.mask_length)
    with accelerator.main_process_first():
        train_clips, eval_clips = load_audio(d, seed=t.seed, min_samples=min_samples)
    train_set, eval_set = label(train_clips, eval_clips) if label is not None else (train_clips, eval_clips)
    max_samples = round(d.max_seconds * d.sampling_rate)
    budget = round(d.batch_seconds * d.sampling_rate)

    def collator(seed: int) -> AudioMaskCollator:
        return AudioMaskCollator(
            feature_extractor=extractor,
            config=encoder,
            mask_prob=cfg.masking.mask_prob,
            mask_length=cfg.masking.mask_length,
            min_masks=cfg.masking.min_masks,
            num_negatives=num_negatives,
            mask_copies=mask_copies,
            max_samples=max_samples,
            seed=seed,
            targets=targets,
        )

    train_collator, eval_collator = collator(t.seed), collator(t.seed + 1)
    # the attention mask marks samples, or filterbank frames (each standing for a frame's worth of samples)
    samples_per_position = samples_per_frame(encoder) if uses_filterbanks(encoder) else 1
    streaming = isinstance(train_set, torch.utils.data.IterableDataset)
    if streaming:
        # Each process and worker reads its own part of the stream and batches it by duration itself (Accelerate's
        # dispatching would join batches of different padded lengths); batches carry their position for checkpoints.
        batches = DurationBatches(train_set, budget, max_samples=max_samples, seed=t.seed).batches
        train_loader = stream_loader(batches, train_collator, accelerator, t.num_workers)
    else:
        train_loader = DataLoader(
            train_set,
            batch_sampler=DurationBatchSampler(train_set.lengths, budget, seed=t.seed, shuffle=True),
            collate_fn=train_collator,
            num_workers=t.num_workers,
            pin_memory=torch.cuda.is_available(),
            # Its own generator: starting an epoch's iterator must not draw from the global RNG, which a resumed
            # run restores (dropout and Gumbel noise come from it).
            generator=torch.Generator().manual_seed(t.seed),
        )
    eval_batches = list(DurationBatchSampler(eval_set.lengths, budget, seed=t.seed, shuffle=False))
    probe_splits = load_probe_data(t, task="audio", max_seconds=d.max_seconds) if t.probe_every else None

    def probe_features(raw: torch.nn.Module) -> dict:
        return training_scores(
            probe(
                raw.model.base_model,
                extractor,
                probe_splits,
                batch_size=32,
                device=accelerator.device,
                max_seconds=d.max_seconds,
            )
        )

    def data_size() -> tuple[float | None, str]:
        if streaming:
            return estimate_seconds(train_clips, d)
        cropped = train_clips.lengths.sum() / d.sampling_rate / 3600
        return (
            float(train_clips.full_lengths.sum()) / d.sampling_rate,
            f"scanned durations of {len(train_clips):,} clips; {cropped:,.2f} h within data.max_seconds crops",
        )

    return Setup(
        objective=objective,
        train_loader=train_loader,
        collator=train_collator,
        eval_set=eval_set,
        eval_batches=eval_batches,
        eval_collator=eval_collator,
        count=lambda batch: batch["attention_mask"].sum() * samples_per_position / d.sampling_rate,
        batch_description=f"{d.batch_seconds:g} s of audio (padding included)",
        micro_batch_units=d.batch_seconds,
        probe=probe_features if probe_splits is not None else None,
        data_size=data_size,
        streaming=streaming,
        prepare_train_loader=not streaming,
    )


def describe_masking(cfg: SpeechPretrainConfig) -> str:
    """How every speech objective masks, for its card."""
    m = cfg.masking
    return (
        f"spans of {m.mask_length} feature frames are masked, each frame starting one with probability "
        f"{m.mask_prob} (at least {m.min_masks} spans per clip)"
    )


def describe_data(cfg: SpeechPretrainConfig, metrics: dict) -> str:
    """The model card's account of the training audio."""
    d = cfg.data
    source = "the synthetic speech-like corpus embedded in hfssl" if d.train == "synthetic" else f"`{d.train}`"
    hours = metrics.get("audio_seconds_seen", 0.0) / 3600
    return (
        f"Trained on {source}, resampled to {d.sampling_rate} Hz mono, clips cropped at random to at most "
        f"{d.max_seconds:g} s and batched by duration ({d.batch_seconds:g} s of audio per device per batch); "
        f"{hours:,.2f} hours of audio seen over {metrics.get('steps', 0):,} optimizer steps."
    )


def render_card(
    model: PreTrainedModel, cfg: SpeechPretrainConfig, metrics: dict, objective: str, results: dict
) -> ModelCard:
    """The card of a speech export: `objective` is the objective's description, `results` its evaluation rows."""
    t = cfg.train
    name = model_name(cfg.export, t.output_dir)
    config = model.base_model.config
    tags = ["audio", "speech", "self-supervised-learning", config.model_type]
    hyperparameters = {
        "objective": cfg.objective.name,
        "mask probability, span": f"{cfg.masking.mask_prob}, {cfg.masking.mask_length} frames",
        "audio per batch (per device x accumulation x processes)": (
            f"{cfg.data.batch_seconds:g} s x {t.grad_accum} x {metrics.get('num_processes', 1)}"
        ),
        **training_rows(t, metrics),
    }
    compute = compute_rows(metrics, ("audio seen", f"{metrics.get('audio_seconds_seen', 0.0) / 3600:,.3f} h"))
    return ModelCard.from_template(
        pretrain_card_data(cfg, "feature-extraction", tags),
        template_path=str(TEMPLATES / "speech.md"),
        model_name=name,
        arch=config.model_type,
        parameters=count(model.base_model.num_parameters()),
        layers=config.num_hidden_layers,
        hidden=config.hidden_size,
        frame_ms=round(1000 * samples_per_frame(config) / cfg.data.sampling_rate),
        sampling_rate=cfg.data.sampling_rate,
        load_path=name,
        objective=objective,
        data=describe_data(cfg, metrics),
        hyperparameters=hyperparameters,
        compute=compute,
        results=results,
    )


def export_encoder(
    cfg: SpeechPretrainConfig, model: PreTrainedModel, out_dir: Path, metrics: dict, objective: str, results: dict
) -> Path:
    """Write the encoder of a pretraining model as its stock base class (e.g. `Wav2Vec2Model`, `HubertModel`), with
    the feature extractor and its card (`objective` and `results` as `render_card` takes them), replacing `out_dir`
    atomically. The quantizer, projections and heads stay behind: `AutoModelForAudioClassification` then finds every
    weight it needs and nothing else."""
    out_dir = Path(out_dir)
    card = render_card(model, cfg, metrics, objective, results)
    encoder = model.base_model
    # Pretraining masked through the collator at its own rate; fine-tuning gets transformers' gentle SpecAugment.
    encoder.config.mask_time_prob = FINETUNE_MASK_TIME_PROB
    encoder.config.architectures = [type(encoder).__name__]
    with atomic_dir(out_dir) as tmp:
        encoder.save_pretrained(tmp)
        feature_extractor(cfg.data, encoder.config).save_pretrained(tmp)
        card.save(tmp / "README.md")
    logger.info("exported %s", out_dir)
    return out_dir
