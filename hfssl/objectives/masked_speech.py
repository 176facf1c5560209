"""Masked prediction for speech over `hfssl.heads.MaskedSpeechForPreTraining`, three objectives that differ only in
their per-frame targets:

- `hubert`: k-means clusters of MFCCs or of a previous model's layer, fitted once (`hfssl.hubert_targets`);
- `best-rq`: the codes a frozen random-projection quantizer gives stacked log-mel frames, computed in the collator;
- `reconstruction`: the stacked, normalised log-mel frames themselves (L1 regression).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from transformers import AutoModel, AutoModelForPreTraining

from hfssl.cards import fmt
from hfssl.collators.audio import MelTargets
from hfssl.config import ObjectiveArgs, SpeechModelArgs, SpeechPretrainConfig, TargetArgs
from hfssl.errors import UsageError, first_line
from hfssl.heads import MaskedSpeechConfig, MaskedSpeechForPreTraining, random_quantizer
from hfssl.hubert_targets import prepare_targets
from hfssl.models import load_config
from hfssl.models.speech import check_arch, feature_mask_fields, resume_spec_augment, scratch_config
from hfssl.objectives.audio import FrameLabelled, audio_setup, describe_masking, export_encoder
from hfssl.objectives.base import ObjectiveOutput, Setup

SCHEMA = SpeechPretrainConfig
UNIT = "audio_seconds"
RUN_FILES = ()


@dataclass(frozen=True)
class Kind:
    target: str
    """`MaskedSpeechConfig.target`: what the head predicts."""
    describe: str
    """The card's account of the targets, formatted with the objective and target settings as `o` and `t`."""
    regression_loss: str = "l1"
    """features: the loss of the regression head (`MaskedSpeechConfig.regression_loss`)."""
    teacher: bool = False
    """features: the targets are a teacher encoder's hidden states, as wide as the encoder (data2vec)."""


KINDS = {
    "hubert": Kind(
        "clusters",
        "HuBERT masked prediction: {masking}; at every masked frame the encoder predicts the frame's k-means cluster "
        "({t.clusters} clusters over {source}, fitted once on the training audio), scored by cosine similarity "
        "against one learned embedding per cluster (temperature {o.logits_temperature}), with cross-entropy",
    ),
    "best-rq": Kind(
        "codes",
        "BEST-RQ masked prediction: {masking}; at every masked frame the encoder predicts the code a frozen "
        "random-projection quantizer gives the frame's stacked, normalised log-mel features ({o.mel_bins} bins; "
        "projection to {o.codebook_dim} dimensions, nearest of {o.codebook_size} l2-normalised random codes, seed "
        "{o.codebook_seed}), with a linear softmax layer and cross-entropy",
    ),
    "reconstruction": Kind(
        "features",
        "Masked acoustic reconstruction: {masking}; a linear layer regresses each masked frame's stacked, normalised "
        "log-mel features ({o.mel_bins} bins) from the encoder output, with an L1 loss",
    ),
    "data2vec": Kind(
        "features",
        "data2vec teacher-student prediction: {masking}; the student sees the masked clip ({o.mask_copies} "
        "differently masked copies per clip) and regresses, at every masked frame, the average of the top "
        "{o.top_k_layers} layers of a teacher that hears the whole clip, each layer instance-normalised over the "
        "clip's frames; the teacher is an exponential moving average of the student (decay {o.ema_decay} rising "
        "linearly to {o.ema_end_decay} over {o.ema_anneal_steps} steps); squared-error loss through a linear layer",
        regression_loss="l2",
        teacher=True,
    ),
}


class MaskedPrediction(torch.nn.Module):
    """HuBERT, BEST-RQ or masked reconstruction through `MaskedSpeechForPreTraining`: the loop's view of it
    (per-example evaluation sums and logged scalars for masked and unmasked frames)."""

    stat_names = ("loss", "correct", "count", "unmasked_loss", "unmasked_correct", "unmasked_count", "examples")

    def __init__(self, model: MaskedSpeechForPreTraining):
        super().__init__()
        self.model = model
        self.classifies = model.config.target != "features"

    def before_forward(self, step: int) -> None:
        """Nothing in masked prediction depends on the step."""

    def after_optimizer_step(self, step: int) -> None:
        """The targets are fixed: nothing changes between steps but the weights."""

    def forward(
        self, attention_mask, mask_time_indices, labels, input_values=None, input_features=None
    ) -> ObjectiveOutput:
        out = self.model(
            input_values,
            attention_mask=attention_mask,
            mask_time_indices=mask_time_indices,
            labels=labels,
            input_features=input_features,
        )
        masked, unmasked = out.masked, out.valid & ~out.masked
        losses, correct = out.frame_losses.double(), out.frame_correct.double()
        stats = {
            "loss": (losses * masked).sum(1),
            "correct": (correct * masked).sum(1),
            "count": masked.sum(1).double(),
            "unmasked_loss": (losses * unmasked).sum(1),
            "unmasked_correct": (correct * unmasked).sum(1),
            "unmasked_count": unmasked.sum(1).double(),
            "examples": torch.ones(len(masked), dtype=torch.float64, device=masked.device),
        }
        n, u = masked.sum().clamp(min=1), unmasked.sum().clamp(min=1)
        logs = {
            "masked_loss": stats["loss"].sum() / n,
            "unmasked_loss": stats["unmasked_loss"].sum() / u,
            "mask_fraction": masked.sum() / out.valid.sum().clamp(min=1),
        }
        if self.classifies:
            logs["masked_accuracy"] = stats["correct"].sum() / n
            logs["unmasked_accuracy"] = stats["unmasked_correct"].sum() / u
        return ObjectiveOutput(loss=out.loss, stats=stats, logs={k: v.detach().float() for k, v in logs.items()})

    def summarise(self, totals: dict[str, float]) -> dict[str, float]:
        count, unmasked = max(totals["count"], 1.0), max(totals["unmasked_count"], 1.0)
        metrics = {"loss": totals["loss"] / count, "unmasked_loss": totals["unmasked_loss"] / unmasked}
        if self.classifies:
            metrics["accuracy"] = totals["correct"] / count
            metrics["unmasked_accuracy"] = totals["unmasked_correct"] / unmasked
        return metrics

    def health(self, logs: dict[str, float], step: int) -> str | None:
        return None


def uses_clusters(cfg: SpeechPretrainConfig) -> bool:
    """Whether the recipe trains on HuBERT's cluster targets (which `hfssl hubert-targets` builds ahead)."""
    kind = KINDS.get(cfg.objective.name)
    return kind is not None and kind.target == "clusters"


def encoder_config(model: SpeechModelArgs, objective: ObjectiveArgs, masking_prob: float):
    """The encoder's config from the preset, with SpecAugment's channel masks at `objective.feature_mask_prob`."""
    config = scratch_config(model, masking_prob)
    config.update(feature_mask_fields(config, objective.feature_mask_prob))
    return config


def upgrade(config: MaskedSpeechConfig) -> MaskedSpeechConfig:
    """A head config saved before `target` existed names its objective instead: give it that objective's target."""
    saved = getattr(config, "objective", None)
    if saved in KINDS:
        config.target = KINDS[saved].target
        del config.objective
    return config


def head_config(encoder, objective: ObjectiveArgs, targets: TargetArgs, sampling_rate: int) -> MaskedSpeechConfig:
    """The masked-prediction head's config around `encoder`'s config."""
    kind = KINDS[objective.name]
    mel = None if kind.teacher else MelTargets(encoder, sampling_rate, objective.mel_bins)
    if kind.target == "codes" and objective.codebook_dim > mel.dim:
        raise UsageError(
            f"objective.codebook_dim: {objective.codebook_dim} is more than the {mel.dim} log-mel values per frame it "
            f"projects ({mel.stack} frames of objective.mel_bins {objective.mel_bins}); use a smaller codebook_dim"
        )
    return MaskedSpeechConfig(
        backbone_config=encoder.to_dict(),
        target=kind.target,
        num_classes=targets.clusters if kind.target == "clusters" else objective.codebook_size,
        label_dim=objective.label_dim,
        logits_temperature=objective.logits_temperature,
        target_dim=encoder.hidden_size if kind.teacher else mel.dim,
        regression_loss=kind.regression_loss,
        unmasked_weight=objective.unmasked_weight,
        mel_bins=objective.mel_bins,
        codebook_dim=objective.codebook_dim,
        codebook_seed=objective.codebook_seed,
    )


def build_model(
    model: SpeechModelArgs,
    objective: ObjectiveArgs,
    masking_prob: float,
    targets: TargetArgs | None = None,
    sampling_rate: int = 16000,
) -> MaskedSpeechForPreTraining:
    """The head around a stock encoder, from the preset, or from `model.name_or_path` (continued pretraining: a
    head checkpoint of the same objective, or an hfssl export or stock encoder, which gets a new head)."""
    targets = targets or TargetArgs()
    if not model.name_or_path:
        return MaskedSpeechForPreTraining(
            head_config(encoder_config(model, objective, masking_prob), objective, targets, sampling_rate)
        )
    config = load_config(model)
    head = isinstance(config, MaskedSpeechConfig)
    encoder = upgrade(config).backbone_config if head else config
    check_arch(encoder, model)
    resume_spec_augment(encoder)
    if objective.feature_mask_prob:
        encoder.update(feature_mask_fields(encoder, objective.feature_mask_prob))
    wanted = head_config(encoder, objective, targets, sampling_rate)
    try:
        if head:
            if config.target != wanted.target or config.num_classes != wanted.num_classes:
                raise UsageError(
                    f"model.name_or_path: {model.name_or_path!r} is a head predicting {config.num_classes} "
                    f"{config.target}; this run trains {objective.name}, which predicts {wanted.num_classes} "
                    f"{wanted.target}"
                )
            return MaskedSpeechForPreTraining.from_pretrained(model.name_or_path, config=config)
        new = MaskedSpeechForPreTraining(wanted)
        backbone = AutoModel.from_pretrained(
            model.name_or_path, config=encoder, trust_remote_code=model.trust_remote_code
        )
        new.backbone.load_state_dict(backbone.state_dict())
        return new
    except (OSError, ValueError) as err:
        raise UsageError(f"model.name_or_path: could not load {model.name_or_path!r} ({first_line(err)})") from None


def setup(cfg: SpeechPretrainConfig, accelerator: Accelerator, work_dir: Path, resuming: bool) -> Setup:
    """Scanned audio, duration-bucketed batches and span masks; per frame, the cluster ids HuBERT's target cache
    holds (built in `work_dir` when missing) or the log-mel targets the collator computes."""
    o, d = cfg.objective, cfg.data
    model = build_model(cfg.model, o, cfg.masking.mask_prob, cfg.targets, d.sampling_rate)
    encoder = model.config.backbone_config
    target = KINDS[o.name].target
    if target == "clusters" and d.streaming:
        raise UsageError("data.streaming: HuBERT's cluster targets are cached per clip and need a fixed clip list")
    mel, label = None, None
    if target == "clusters":

        def label(train_clips, eval_clips):
            train_labels, eval_labels = prepare_targets(cfg, train_clips, eval_clips, encoder, accelerator, work_dir)
            return FrameLabelled(train_clips, train_labels), FrameLabelled(eval_clips, eval_labels)

    else:
        mel = MelTargets(encoder, d.sampling_rate, o.mel_bins)
        if target == "codes":
            mel.quantizer = random_quantizer(mel.dim, o.codebook_size, o.codebook_dim, o.codebook_seed)

    return audio_setup(cfg, accelerator, MaskedPrediction(model), encoder, targets=mel, label=label)


def rebuild(cfg: SpeechPretrainConfig, model_config) -> MaskedPrediction:
    return MaskedPrediction(AutoModelForPreTraining.from_config(upgrade(model_config)))


def export(cfg: SpeechPretrainConfig, objective: MaskedPrediction, run_dir: Path, out_dir: Path, metrics: dict) -> Path:
    if objective.classifies:
        results = {
            "masked-frame cross-entropy": fmt(metrics.get("eval_loss")),
            "masked-frame accuracy": fmt(metrics.get("eval_accuracy")),
            "unmasked-frame accuracy": fmt(metrics.get("eval_unmasked_accuracy")),
        }
    else:
        results = {"masked-frame L1 loss": fmt(metrics.get("eval_loss"))}
    return export_encoder(cfg, objective.model, out_dir, metrics, describe(cfg), results)


def describe(cfg: SpeechPretrainConfig) -> str:
    o, t = cfg.objective, cfg.targets
    source = "13 MFCCs with deltas" if t.features == "mfcc" else f"layer {t.layer} of `{t.model}`"
    text = KINDS[o.name].describe.format(masking=describe_masking(cfg), source=source, o=o, t=t)
    unmasked = f"; unmasked frames weigh {o.unmasked_weight}" if o.unmasked_weight else ""
    feature_masks = (
        f" Feature channels are masked too (probability {o.feature_mask_prob})." if o.feature_mask_prob else ""
    )
    return f"{text}{unmasked}.{feature_masks}"
