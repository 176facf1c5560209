"""Masked prediction for speech over `hfssl.heads.MaskedSpeechForPreTraining`: the machinery of four objectives that
differ only in their per-frame targets, each declared (settings, schema, card text) in its own module:

- `hubert` (`objectives/hubert.py`): k-means clusters of MFCCs or of a previous model's layer, fitted once
  (`hfssl.hubert_targets`);
- `best-rq` (`objectives/best_rq.py`): the codes a frozen random-projection quantizer gives stacked log-mel frames,
  computed in the collator;
- `reconstruction` (`objectives/reconstruction.py`): the stacked, normalised log-mel frames themselves (L1);
- `data2vec` (`objectives/data2vec.py`): an EMA teacher's averaged top layers (its own objective class; it builds its
  student here).

An objective's settings carry its `Kind` (what the head predicts, how the card describes it), so one `setup`,
`rebuild`, `export` and `describe` serve the first three.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from accelerate import Accelerator
from transformers import AutoModel, AutoModelForPreTraining

from hfssl.cards import fmt
from hfssl.collators.audio import MelTargets
from hfssl.config import SpeechModelArgs, SpeechObjectiveSection, SpeechPretrainConfig, arg, check
from hfssl.errors import UsageError, first_line
from hfssl.heads import MaskedSpeechConfig, MaskedSpeechForPreTraining, random_quantizer
from hfssl.hubert_targets import TargetArgs, prepare_targets
from hfssl.models import load_config
from hfssl.models.speech import check_arch, feature_mask_fields, resume_spec_augment, scratch_config
from hfssl.objectives.audio import FrameLabelled, audio_setup, describe_masking, export_encoder
from hfssl.objectives.base import ObjectiveOutput, Setup

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


# The target each objective's head predicted, for head configs saved before `target` existed (they named the objective).
SAVED_TARGETS = {"hubert": "clusters", "best-rq": "codes", "reconstruction": "features", "data2vec": "features"}


@dataclass
class MaskedPredictionArgs(SpeechObjectiveSection):
    """What the masked-prediction objectives share: the weight of the unmasked frames' loss. Each subclass names its
    `Kind` (`KIND`)."""

    KIND: ClassVar[Kind]
    unmasked_weight: float = arg(0.0, "weight of the loss on unmasked frames (masked frames weigh 1)")

    def __post_init__(self):
        super().__post_init__()
        check(self.unmasked_weight >= 0, "objective.unmasked_weight", "must not be negative")


@dataclass
class LogMelArgs(MaskedPredictionArgs):
    """Objectives whose targets come from log-mel frames (BEST-RQ's codes, reconstruction's regression)."""

    mel_bins: int = arg(80, "log-mel bins per 10 ms frame (stacked to the encoder's rate)")

    def __post_init__(self):
        super().__post_init__()
        check(self.mel_bins >= 1, "objective.mel_bins", "must be positive")


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


def encoder_config(model: SpeechModelArgs, objective: SpeechObjectiveSection, masking_prob: float):
    """The encoder's config from the preset, with SpecAugment's channel masks at `objective.feature_mask_prob`."""
    config = scratch_config(model, masking_prob)
    config.update(feature_mask_fields(config, objective.feature_mask_prob))
    return config


def upgrade(config: MaskedSpeechConfig) -> MaskedSpeechConfig:
    """A head config saved before `target` existed names its objective instead: give it that objective's target."""
    saved = getattr(config, "objective", None)
    if saved in SAVED_TARGETS:
        config.target = SAVED_TARGETS[saved]
        del config.objective
    return config


def head_config(encoder, objective, targets: TargetArgs | None, sampling_rate: int) -> MaskedSpeechConfig:
    """The masked-prediction head's config around `encoder`'s config, for the objective whose settings are
    `objective` (its `KIND` says what the head predicts; HuBERT's cluster count comes from `targets`)."""
    kind = objective.KIND
    # The head's config holds every kind's fields: an objective sets those its settings have, the others keep the
    # head config's defaults.
    shared = ("label_dim", "logits_temperature", "unmasked_weight", "mel_bins", "codebook_dim", "codebook_seed")
    config = MaskedSpeechConfig(
        backbone_config=encoder.to_dict(),
        target=kind.target,
        regression_loss=kind.regression_loss,
        **{name: getattr(objective, name) for name in shared if hasattr(objective, name)},
    )
    if kind.target == "clusters":
        config.num_classes = targets.clusters
    elif kind.target == "codes":
        config.num_classes = objective.codebook_size
    if kind.teacher:
        config.target_dim = encoder.hidden_size
        return config
    mel = MelTargets(encoder, sampling_rate, config.mel_bins)
    if kind.target == "codes" and objective.codebook_dim > mel.dim:
        raise UsageError(
            f"objective.codebook_dim: {objective.codebook_dim} is more than the {mel.dim} log-mel values per frame it "
            f"projects ({mel.stack} frames of objective.mel_bins {objective.mel_bins}); use a smaller codebook_dim"
        )
    config.target_dim = mel.dim
    return config


def build_model(
    model: SpeechModelArgs,
    objective: SpeechObjectiveSection,
    masking_prob: float,
    targets: TargetArgs | None = None,
    sampling_rate: int = 16000,
) -> MaskedSpeechForPreTraining:
    """The head around a stock encoder, from the preset, or from `model.name_or_path` (continued pretraining: a
    head checkpoint of the same objective, or an hfssl export or stock encoder, which gets a new head)."""
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
            # A regression head has no classes (heads saved before recorded a codebook size there all the same).
            classes = wanted.target != "features" and config.num_classes != wanted.num_classes
            if config.target != wanted.target or classes:
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
    model = build_model(cfg.model, o, cfg.masking.mask_prob, getattr(cfg, "targets", None), d.sampling_rate)
    encoder = model.config.backbone_config
    target = o.KIND.target
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
    o, t = cfg.objective, getattr(cfg, "targets", None)
    source = None
    if t is not None:  # HuBERT's schema alone has a targets section
        source = "13 MFCCs with deltas" if t.features == "mfcc" else f"layer {t.layer} of `{t.model}`"
    text = o.KIND.describe.format(masking=describe_masking(cfg), source=source, o=o, t=t)
    unmasked = f"; unmasked frames weigh {o.unmasked_weight}" if getattr(o, "unmasked_weight", 0.0) else ""
    feature_masks = (
        f" Feature channels are masked too (probability {o.feature_mask_prob})." if o.feature_mask_prob else ""
    )
    return f"{text}{unmasked}.{feature_masks}"
