"""data2vec-style teacher-student pretraining for speech, on any stock encoder hfssl builds (wav2vec2, HuBERT, WavLM,
data2vec-audio, wav2vec2-conformer, wav2vec2-bert).

The teacher is an exponential moving average of the student encoder, updated after every optimizer step with a decay
that rises linearly from `objective.ema_decay` to `objective.ema_end_decay` over `objective.ema_anneal_steps` steps.
It hears each clip whole (no mask, no dropout); its top `objective.top_k_layers` layer outputs, each instance-normalised
over the clip's frames, averaged, are the targets. The student (`hfssl.heads.MaskedSpeechForPreTraining`, `features`
target, squared error) sees `objective.mask_copies` differently masked copies of each clip (data2vec 2.0's clones:
one teacher pass serves them all) and regresses the targets at its masked frames. The teacher is part of the
objective's state, so checkpoints carry it and a resumed run continues exactly; the export is the student's encoder
as its stock class.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import torch
from accelerate import Accelerator
from transformers import AutoModelForPreTraining

from hfssl.cards import fmt
from hfssl.config import SpeechObjectiveSection, SpeechPretrainConfig, arg, check
from hfssl.errors import UsageError
from hfssl.heads import MaskedSpeechForPreTraining
from hfssl.objectives.audio import audio_setup, export_encoder
from hfssl.objectives.base import ObjectiveOutput, Setup
from hfssl.objectives.masked_speech import Kind, build_model, upgrade
from hfssl.objectives.masked_speech import describe as describe_masking_objective


@dataclass
class Data2VecArgs(SpeechObjectiveSection):
    """The EMA teacher's decay schedule, the layers its targets average, and the masked copies per clip."""

    KIND: ClassVar[Kind] = Kind(
        "features",
        "data2vec teacher-student prediction: {masking}; the student sees the masked clip ({o.mask_copies} "
        "differently masked copies per clip) and regresses, at every masked frame, the average of the top "
        "{o.top_k_layers} layers of a teacher that hears the whole clip, each layer instance-normalised over the "
        "clip's frames; the teacher is an exponential moving average of the student (decay {o.ema_decay} rising "
        "linearly to {o.ema_end_decay} over {o.ema_anneal_steps} steps); squared-error loss through a linear layer",
        regression_loss="l2",
        teacher=True,
    )
    name: Literal["data2vec"] = arg(
        "data2vec", "data2vec: regress an EMA teacher's averaged top layers at the masked frames"
    )
    ema_decay: float = arg(0.999, "the teacher's EMA decay at step 0 (teacher = d * teacher + (1 - d) * student)")
    ema_end_decay: float = arg(0.9999, "the decay reached after ema_anneal_steps, linearly, and kept")
    ema_anneal_steps: int = arg(30000, "optimizer steps over which the decay rises to ema_end_decay")
    top_k_layers: int = arg(8, "the teacher's top layers averaged (each instance-normalised) into targets")
    mask_copies: int = arg(
        1, "differently masked copies of each clip per batch, sharing one teacher pass (data2vec 2.0: 8)"
    )

    def __post_init__(self):
        super().__post_init__()
        for name in ("ema_decay", "ema_end_decay"):
            value = getattr(self, name)
            check(0.0 < value < 1.0, f"objective.{name}", f"must be in (0, 1), got {value}")
        check(self.ema_anneal_steps >= 0, "objective.ema_anneal_steps", "must not be negative")
        check(self.top_k_layers >= 1, "objective.top_k_layers", "must be at least 1")
        check(self.mask_copies >= 1, "objective.mask_copies", "must be at least 1")


@dataclass
class Data2VecConfig(SpeechPretrainConfig):
    objective: Data2VecArgs = field(default_factory=Data2VecArgs)


SCHEMA = Data2VecConfig
UNIT = "audio_seconds"
RUN_FILES = ()


def instance_norm(hidden: torch.Tensor, valid: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """(B, T, H) normalised to zero mean and unit variance per clip and channel over the clip's `valid` frames (B, T);
    zero outside them."""
    weights = valid[:, :, None].to(hidden.dtype)
    count = weights.sum(1, keepdim=True).clamp(min=1)
    mean = (hidden * weights).sum(1, keepdim=True) / count
    var = ((hidden - mean).square() * weights).sum(1, keepdim=True) / count
    return (hidden - mean) / (var + eps).sqrt() * weights


class TeacherStudent(torch.nn.Module):
    """The student (`model`, what the run exports) and its EMA teacher (`teacher`, a copy of its encoder)."""

    stat_names = ("loss", "count", "examples", "target_std")

    def __init__(
        self, model: MaskedSpeechForPreTraining, decay: float, end_decay: float, anneal_steps: int, top_k: int
    ):
        super().__init__()
        layers = model.config.backbone_config.num_hidden_layers
        if top_k > layers:
            raise UsageError(f"objective.top_k_layers: {top_k} is more than the encoder's {layers} layers")
        self.model = model
        self.teacher = copy.deepcopy(model.backbone).requires_grad_(False).eval()
        self.decay, self.end_decay, self.anneal_steps, self.top_k = decay, end_decay, anneal_steps, top_k

    def train(self, mode: bool = True) -> TeacherStudent:
        super().train(mode)
        self.teacher.eval()  # the teacher never drops out or masks
        return self

    def decay_at(self, step: int) -> float:
        """The EMA decay for the update after optimizer step `step` (1-based)."""
        if step >= self.anneal_steps:
            return self.end_decay
        return self.decay + (self.end_decay - self.decay) * step / self.anneal_steps

    def before_forward(self, step: int) -> None:
        """Nothing depends on the step before the forward pass."""

    @torch.no_grad()
    def after_optimizer_step(self, step: int) -> None:
        """teacher <- d * teacher + (1 - d) * student, parameters and buffers alike."""
        decay = self.decay_at(step)
        student = dict(self.model.backbone.named_parameters())
        for name, parameter in self.teacher.named_parameters():
            parameter.lerp_(student[name].detach(), 1.0 - decay)
        for (_, mine), (_, theirs) in zip(
            self.teacher.named_buffers(), self.model.backbone.named_buffers(), strict=True
        ):
            mine.copy_(theirs)

    @torch.no_grad()
    def targets(self, inputs: torch.Tensor, attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's averaged, instance-normalised top layers (B, T, H) and the frames inside each clip."""
        out = self.teacher(inputs, attention_mask=attention_mask, output_hidden_states=True)
        layers = out.hidden_states[-self.top_k :]
        valid = self.model.valid_frames(attention_mask, layers[0].shape[:2], layers[0].device)
        average = torch.stack([instance_norm(layer.float(), valid) for layer in layers]).mean(0)
        return average, valid

    def forward(self, attention_mask, mask_time_indices, input_values=None, input_features=None) -> ObjectiveOutput:
        inputs = input_values if input_values is not None else input_features
        copies = mask_time_indices.shape[0] // inputs.shape[0]
        target, _ = self.targets(inputs, attention_mask)

        def repeat(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.repeat(copies, *([1] * (x.dim() - 1)))

        raw, features = (repeat(input_values), None) if input_values is not None else (None, repeat(input_features))
        out = self.model(
            raw,
            attention_mask=repeat(attention_mask),
            mask_time_indices=mask_time_indices,
            labels=repeat(target),
            input_features=features,
        )
        masked = out.masked
        batch = inputs.shape[0]
        # per clip, summed over its copies, so that the stats have one row per example
        losses = (out.frame_losses.double() * masked).sum(1).view(copies, batch).sum(0)
        count = masked.sum(1).double().view(copies, batch).sum(0)
        spread = target.float().std(dim=-1).mean(-1).double()  # near 0 would mean the teacher collapsed
        stats = {
            "loss": losses,
            "count": count,
            "examples": torch.ones(batch, dtype=torch.float64, device=masked.device),
            "target_std": spread,
        }
        logs = {
            "masked_loss": losses.sum() / count.sum().clamp(min=1),
            "mask_fraction": masked.sum() / out.valid.sum().clamp(min=1),
            "target_std": spread.mean(),
        }
        return ObjectiveOutput(loss=out.loss, stats=stats, logs={k: v.detach().float() for k, v in logs.items()})

    def summarise(self, totals: dict[str, float]) -> dict[str, float]:
        examples = max(totals["examples"], 1.0)
        return {"loss": totals["loss"] / max(totals["count"], 1.0), "target_std": totals["target_std"] / examples}

    def health(self, logs: dict[str, float], step: int) -> str | None:
        return None


def _objective(cfg: SpeechPretrainConfig, model: MaskedSpeechForPreTraining) -> TeacherStudent:
    o = cfg.objective
    return TeacherStudent(model, o.ema_decay, o.ema_end_decay, o.ema_anneal_steps, o.top_k_layers)


def setup(cfg: SpeechPretrainConfig, accelerator: Accelerator, work_dir: Path, resuming: bool) -> Setup:
    """Scanned audio, duration-bucketed batches with `objective.mask_copies` span masks per clip, the student and its
    teacher."""
    model = build_model(cfg.model, cfg.objective, cfg.masking.mask_prob, sampling_rate=cfg.data.sampling_rate)
    objective = _objective(cfg, model)
    return audio_setup(cfg, accelerator, objective, model.config.backbone_config, mask_copies=cfg.objective.mask_copies)


def rebuild(cfg: SpeechPretrainConfig, model_config) -> TeacherStudent:
    return _objective(cfg, AutoModelForPreTraining.from_config(upgrade(model_config)))


def export(cfg: SpeechPretrainConfig, objective: TeacherStudent, run_dir: Path, out_dir: Path, metrics: dict) -> Path:
    results = {
        "masked-frame squared error": fmt(metrics.get("eval_loss")),
        "spread of the teacher's targets (mean standard deviation per frame)": fmt(metrics.get("eval_target_std")),
    }
    return export_encoder(cfg, objective.model, out_dir, metrics, describe(cfg), results)


def describe(cfg: SpeechPretrainConfig) -> str:
    return describe_masking_objective(cfg)
