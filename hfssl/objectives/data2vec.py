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
from pathlib import Path

import torch
from accelerate import Accelerator
from transformers import AutoModelForPreTraining

from hfssl.cards import fmt
from hfssl.config import SpeechPretrainConfig
from hfssl.errors import UsageError
from hfssl.heads import MaskedSpeechForPreTraining
from hfssl.objectives.audio import audio_setup, export_encoder
from hfssl.objectives.base import ObjectiveOutput, Setup
from hfssl.objectives.masked_speech import build_model, upgrade
from hfssl.objectives.masked_speech import describe as describe_masking_objective

SCHEMA = SpeechPretrainConfig
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
    model = build_model(cfg.model, cfg.objective, cfg.masking.mask_prob, cfg.targets, cfg.data.sampling_rate)
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
