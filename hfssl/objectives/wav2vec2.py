"""wav2vec 2.0 contrastive learning (`objective.name: wav2vec2`) over `Wav2Vec2ForPreTraining` and
`Wav2Vec2ConformerForPreTraining`: at every masked frame, pick the true quantized latent among distractors."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from transformers import AutoModelForPreTraining, PreTrainedModel

from hfssl.cards import fmt
from hfssl.config import SpeechModelArgs, SpeechObjectiveSection, SpeechPretrainConfig, arg, check
from hfssl.errors import UsageError, first_line
from hfssl.models import load_config
from hfssl.models.speech import (
    SIZES,
    check_arch,
    feature_mask_fields,
    frame_lengths,
    resume_spec_augment,
    scratch_config,
)
from hfssl.objectives.audio import audio_setup, describe_masking, export_encoder
from hfssl.objectives.base import ObjectiveOutput, Setup

logger = logging.getLogger(__name__)


@dataclass
class Wav2Vec2Args(SpeechObjectiveSection):
    """wav2vec 2.0's distractors, quantizer, Gumbel-softmax schedule and the collapse watch."""

    name: Literal["wav2vec2"] = arg(
        "wav2vec2",
        "wav2vec2: wav2vec 2.0 contrastive learning (pick the true quantized frame among distractors); recipes "
        "written before call it contrastive",
    )
    num_negatives: int = arg(100, "distractors per masked frame, from other masked frames of the clip")
    logits_temperature: float = arg(0.1, "temperature of the cosine-similarity logits")
    diversity_weight: float = arg(0.1, "weight of the codebook diversity loss")
    codevector_groups: int = arg(2, "codebooks (groups) of the quantizer")
    codevectors_per_group: int = arg(320, "entries per codebook")
    codevector_dim: int | None = arg(None, "size of a quantized vector (empty: the preset's)")
    gumbel_max: float = arg(2.0, "Gumbel-softmax temperature at step 0")
    gumbel_min: float = arg(0.5, "the temperature never decays below this")
    gumbel_decay: float = arg(0.999995, "temperature factor per optimizer step")
    collapse_patience: int = arg(
        3, "log windows of collapse (contrastive loss near 0, codebook perplexity near 2) tolerated before stopping"
    )

    def __post_init__(self):
        super().__post_init__()
        check(self.num_negatives >= 1, "objective.num_negatives", "must be at least 1")
        check(self.logits_temperature > 0, "objective.logits_temperature", "must be positive")
        check(self.diversity_weight >= 0, "objective.diversity_weight", "must not be negative")
        check(self.codevector_groups >= 1, "objective.codevector_groups", "must be at least 1")
        check(self.codevectors_per_group >= 2, "objective.codevectors_per_group", "must be at least 2")
        check(self.codevector_dim is None or self.codevector_dim > 0, "objective.codevector_dim", "must be positive")
        check(0 < self.gumbel_min <= self.gumbel_max, "objective.gumbel_min", "must be positive and <= gumbel_max")
        check(0 < self.gumbel_decay <= 1, "objective.gumbel_decay", "must be in (0, 1]")
        check(self.collapse_patience >= 1, "objective.collapse_patience", "must be at least 1")


@dataclass
class Wav2Vec2Config(SpeechPretrainConfig):
    objective: Wav2Vec2Args = field(default_factory=Wav2Vec2Args)


SCHEMA = Wav2Vec2Config
UNIT = "audio_seconds"
RUN_FILES = ()
ARCHS = ("wav2vec2", "wav2vec2-conformer")
"""The encoders transformers gives a quantizer (`*ForPreTraining`)."""


class Contrastive(torch.nn.Module):
    """wav2vec 2.0: at every masked frame, pick the true quantized latent among distractors drawn from other masked
    frames of the clip, plus a diversity loss that keeps the codebooks in use.

    `Wav2Vec2ForPreTraining` runs the encoder and the quantizer; the loss is computed here, in fp32, for the masked
    frames only (transformers builds logits for every frame), and normalised per masked frame so that its scale does
    not depend on the batch's duration. The Gumbel-softmax temperature decays with the optimizer step
    (`before_forward`).
    """

    stat_names = ("loss", "correct", "count", "examples", "codevector_perplexity")

    def __init__(self, model: PreTrainedModel, objective: Wav2Vec2Args):
        super().__init__()
        self.model = model
        self.args = objective
        self.num_codevectors = model.config.num_codevector_groups * model.config.num_codevectors_per_group
        self._collapsed_windows = 0

    def gumbel_temperature(self, step: int) -> float:
        a = self.args
        return max(a.gumbel_max * a.gumbel_decay**step, a.gumbel_min)

    def before_forward(self, step: int) -> None:
        self.model.set_gumbel_temperature(self.gumbel_temperature(step))

    def after_optimizer_step(self, step: int) -> None:
        """The temperature follows the step count, which `before_forward` reads."""

    def forward(self, input_values, attention_mask, mask_time_indices, sampled_negative_indices) -> ObjectiveOutput:
        out = self.model(input_values, attention_mask=attention_mask, mask_time_indices=mask_time_indices)
        masked = mask_time_indices.bool()
        batch, frames, dim = out.projected_quantized_states.shape
        rows = masked.nonzero()[:, 0]
        context = out.projected_states[masked].float()
        positives = out.projected_quantized_states[masked].float()
        negatives = out.projected_quantized_states.reshape(batch * frames, dim)[sampled_negative_indices[masked]]
        negatives = negatives.float()
        candidates = torch.cat([positives[:, None], negatives], dim=1)
        logits = (
            F.cosine_similarity(context[:, None], candidates, dim=-1) / self.model.config.contrastive_logits_temperature
        )
        # A distractor identical to the positive (a collapsing codebook) is no distractor: it cannot be told apart.
        same = (negatives == positives[:, None]).all(-1)
        logits[:, 1:] = logits[:, 1:].masked_fill(same, float("-inf"))
        target = torch.zeros(len(logits), dtype=torch.long, device=logits.device)
        frame_loss = F.cross_entropy(logits, target, reduction="none")
        contrastive = frame_loss.mean() if len(frame_loss) else logits.sum() * 0.0
        perplexity = out.codevector_perplexity.float()
        diversity = (self.num_codevectors - perplexity) / self.num_codevectors
        loss = contrastive + self.model.config.diversity_loss_weight * diversity

        sums = torch.zeros(3, batch, dtype=torch.float64, device=logits.device)
        sums[0].index_add_(0, rows, frame_loss.detach().double())
        sums[1].index_add_(0, rows, (logits.detach().argmax(-1) == 0).double())
        sums[2].index_add_(0, rows, torch.ones_like(frame_loss, dtype=torch.float64))
        ones = torch.ones(batch, dtype=torch.float64, device=logits.device)
        stats = {
            "loss": sums[0],
            "correct": sums[1],
            "count": sums[2],
            "examples": ones,
            "codevector_perplexity": ones * perplexity.detach().double(),
        }
        valid_frames = frame_lengths(attention_mask.sum(-1), self.model.config).sum()
        logs = {
            "contrastive_loss": contrastive.detach(),
            "diversity_loss": diversity.detach(),
            "codevector_perplexity": perplexity.detach(),
            "mask_fraction": masked.sum() / valid_frames.clamp(min=1),
            "gumbel_temperature": torch.tensor(self.model.quantizer.temperature, dtype=torch.float32),
        }
        return ObjectiveOutput(loss=loss, stats=stats, logs=logs)

    @staticmethod
    def summarise(totals: dict[str, float]) -> dict[str, float]:
        count = max(totals["count"], 1.0)
        return {
            "loss": totals["loss"] / count,
            "accuracy": totals["correct"] / count,
            "codevector_perplexity": totals["codevector_perplexity"] / max(totals["examples"], 1.0),
        }

    def health(self, logs: dict[str, float], step: int) -> str | None:
        """Watch for the collapse users of wav2vec 2.0 report most (transformers#14387, fairseq#1850): every frame
        quantized to the same code, so the contrastive loss falls towards 0 while the codebook perplexity sits at
        its minimum (one code per group). Warns at once; returns a reason to stop once it has lasted
        `collapse_patience` log windows."""
        groups = self.model.config.num_codevector_groups
        collapsed = logs.get("codevector_perplexity", math.inf) < 1.5 * groups and logs.get(
            "contrastive_loss", math.inf
        ) < 0.05 * math.log(self.args.num_negatives + 1)
        if not collapsed:
            self._collapsed_windows = 0
            return None
        self._collapsed_windows += 1
        message = (
            f"step {step}: the codebook has collapsed (contrastive loss {logs['contrastive_loss']:.4f}, codevector "
            f"perplexity {logs['codevector_perplexity']:.2f} of {self.num_codevectors})"
        )
        if self._collapsed_windows >= self.args.collapse_patience:
            return (
                f"{message} for {self._collapsed_windows} log windows; lower train.lr, raise "
                "objective.diversity_weight or objective.gumbel_max, or add data"
            )
        logger.warning("%s; training goes on for now", message)
        return None


def _check_arch(model: SpeechModelArgs) -> None:
    if model.arch not in ARCHS:
        raise UsageError(
            f"model.arch: {model.arch} has no quantizer for wav2vec 2.0's contrastive objective; use "
            f"{' or '.join(ARCHS)}, or objective.name hubert, best-rq or reconstruction"
        )


def model_config(model: SpeechModelArgs, objective: Wav2Vec2Args, masking_prob: float):
    """The `*ForPreTraining` config for `model.arch` at `model.size`: the encoder's, with the quantizer's fields."""
    _check_arch(model)
    codevector = objective.codevector_dim or SIZES[model.size].codevector
    if codevector % objective.codevector_groups:
        raise UsageError(
            f"objective.codevector_dim: {codevector} is not divisible by objective.codevector_groups "
            f"{objective.codevector_groups}"
        )
    config = scratch_config(
        model,
        masking_prob,
        num_codevector_groups=objective.codevector_groups,
        num_codevectors_per_group=objective.codevectors_per_group,
        codevector_dim=codevector,
        proj_codevector_dim=codevector,
        num_negatives=objective.num_negatives,
        contrastive_logits_temperature=objective.logits_temperature,
        diversity_loss_weight=objective.diversity_weight,
    )
    if objective.feature_mask_prob:
        config.update(feature_mask_fields(config, objective.feature_mask_prob))
    return config


def build_model(model: SpeechModelArgs, objective: Wav2Vec2Args, masking_prob: float) -> PreTrainedModel:
    """`*ForPreTraining` from the preset, or from `model.name_or_path` (continued pretraining: an hfssl export, a
    stock encoder, or a pretraining checkpoint; a bare encoder gets a new quantizer and projections)."""
    if not model.name_or_path:
        return AutoModelForPreTraining.from_config(model_config(model, objective, masking_prob))
    _check_arch(model)
    config = load_config(model)
    check_arch(config, model)
    resume_spec_augment(config)
    if objective.feature_mask_prob:
        config.update(feature_mask_fields(config, objective.feature_mask_prob))
    try:
        # Continuing from a bare encoder leaves the quantizer and projections new; transformers logs which.
        return AutoModelForPreTraining.from_pretrained(
            model.name_or_path, config=config, trust_remote_code=model.trust_remote_code
        )
    except (OSError, ValueError) as err:
        raise UsageError(f"model.name_or_path: could not load {model.name_or_path!r} ({first_line(err)})") from None


def setup(cfg: SpeechPretrainConfig, accelerator: Accelerator, work_dir: Path, resuming: bool) -> Setup:
    """Scanned audio, duration-bucketed batches, span masks and the distractors for each masked frame."""
    model = build_model(cfg.model, cfg.objective, cfg.masking.mask_prob)
    objective = Contrastive(model, cfg.objective)
    return audio_setup(cfg, accelerator, objective, model.config, num_negatives=cfg.objective.num_negatives)


def rebuild(cfg: SpeechPretrainConfig, model_config) -> Contrastive:
    return Contrastive(AutoModelForPreTraining.from_config(model_config), cfg.objective)


def export(cfg: SpeechPretrainConfig, objective: Contrastive, run_dir: Path, out_dir: Path, metrics: dict) -> Path:
    results = {
        "contrastive loss": fmt(metrics.get("eval_loss")),
        "contrastive accuracy (true latent ranked first)": fmt(metrics.get("eval_accuracy")),
        "codevector perplexity": fmt(metrics.get("eval_codevector_perplexity")),
    }
    return export_encoder(cfg, objective.model, out_dir, metrics, describe(cfg), results)


def describe(cfg: SpeechPretrainConfig) -> str:
    o = cfg.objective
    text = (
        f"wav2vec 2.0 masked contrastive learning: {describe_masking(cfg)}; at every masked frame the encoder picks "
        f"the true quantized latent among {o.num_negatives} distractors drawn from other masked frames of the clip "
        f"(cosine similarity, temperature {o.logits_temperature}). The quantizer has {o.codevector_groups} codebooks "
        f"of {o.codevectors_per_group} entries, sampled with Gumbel-softmax whose temperature decays from "
        f"{o.gumbel_max} by {o.gumbel_decay} per step to {o.gumbel_min}; a diversity loss (weight "
        f"{o.diversity_weight}) keeps the codebooks in use."
    )
    if o.feature_mask_prob:
        text += f" Feature channels are masked too (probability {o.feature_mask_prob})."
    return text
