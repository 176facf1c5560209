"""Speech encoders for self-supervised pretraining: size presets built from config, the feature extractor that
goes with them, the wav2vec 2.0 contrastive objective over `Wav2Vec2ForPreTraining`, and the masked-prediction
objectives (HuBERT, BEST-RQ, log-mel reconstruction) over `hfssl.heads.MaskedSpeechForPreTraining`."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from transformers import AutoConfig, AutoModel, AutoModelForPreTraining, PreTrainedModel, Wav2Vec2FeatureExtractor

from hfssl.collators.audio import AudioMaskCollator, MelTargets, frame_lengths
from hfssl.config import AudioDataArgs, ObjectiveArgs, SpeechModelArgs, SpeechPretrainConfig, TargetArgs
from hfssl.data.audio import DurationBatches, DurationBatchSampler, estimate_seconds, load_audio
from hfssl.data.stream import stream_loader
from hfssl.errors import UsageError, first_line
from hfssl.export import FINETUNE_MASK_TIME_PROB, export_speech
from hfssl.heads import MaskedSpeechConfig, MaskedSpeechForPreTraining, random_quantizer
from hfssl.probe import probe

logger = logging.getLogger(__name__)

# (layers, hidden, heads, conv channels, codevector size, positional-conv kernel). The conv encoder keeps
# wav2vec 2.0's layout (kernels 10,3,3,3,3,2,2; strides 5,2,2,2,2,2,2: one frame per 20 ms at 16 kHz) and only
# narrows, because its frame rate is what the masks, the targets and the downstream heads all assume.
SIZES = {
    "tiny": (2, 64, 2, 64, 64, 32),
    "small": (4, 256, 4, 256, 128, 64),
    "base": (12, 768, 12, 512, 256, 128),
}
MODEL_TYPES = {
    "wav2vec2": "wav2vec2",
    "wav2vec2-conformer": "wav2vec2-conformer",
    "hubert": "hubert",
    "wavlm": "wavlm",
    "data2vec-audio": "data2vec-audio",
}
CONTRASTIVE_ARCHS = ("wav2vec2", "wav2vec2-conformer")


def scratch_config(model: SpeechModelArgs, objective: ObjectiveArgs, masking_prob: float):
    """The encoder's transformers config for `model.arch` at `model.size`, with the preset's fields overridden where
    set; for the contrastive objective it is also the `*ForPreTraining` config (quantizer included)."""
    if objective.name == "contrastive" and model.arch not in CONTRASTIVE_ARCHS:
        raise UsageError(
            f"model.arch: {model.arch} has no quantizer for the contrastive objective; use wav2vec2 or "
            "wav2vec2-conformer, or objective.name hubert, best-rq or reconstruction"
        )
    layers, hidden, heads, conv, codevector, pos_kernel = SIZES[model.size]
    layers = model.num_layers or layers
    hidden = model.hidden_size or hidden
    heads = model.num_heads or heads
    conv = model.conv_dim or conv
    if hidden % heads:
        raise UsageError(f"model.hidden_size: {hidden} is not divisible by model.num_heads {heads}")
    codevector = objective.codevector_dim or codevector
    if codevector % objective.codevector_groups:
        raise UsageError(
            f"objective.codevector_dim: {codevector} is not divisible by objective.codevector_groups "
            f"{objective.codevector_groups}"
        )
    extra = {}
    if model.arch == "wav2vec2-conformer":
        extra = {"position_embeddings_type": "rotary", "conv_depthwise_kernel_size": 15 if hidden < 256 else 31}
    if model.arch == "data2vec-audio":
        # data2vec-audio's positional encoder is a stack of small convolutions (its defaults: 5 of width 19).
        pos_kernel = 5
    if objective.name == "contrastive":
        extra.update(
            num_codevector_groups=objective.codevector_groups,
            num_codevectors_per_group=objective.codevectors_per_group,
            codevector_dim=codevector,
            proj_codevector_dim=codevector,
            num_negatives=objective.num_negatives,
            contrastive_logits_temperature=objective.logits_temperature,
            diversity_loss_weight=objective.diversity_weight,
        )
    else:
        extra.update(mask_feature_prob=objective.feature_mask_prob, mask_feature_length=min(10, max(1, conv // 8)))
    return AutoConfig.for_model(
        MODEL_TYPES[model.arch],
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=model.intermediate_size or hidden * 4,
        conv_dim=(conv,) * 7,
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        # Layer norm in the conv encoder (the wav2vec2-large-lv60 layout) makes padded batches exact with an
        # attention mask; the base model's group norm sees the padding.
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=pos_kernel,
        num_conv_pos_embedding_groups=min(16, hidden // 4),
        hidden_dropout=model.dropout,
        attention_dropout=model.dropout,
        activation_dropout=0.0,
        feat_proj_dropout=model.dropout,
        final_dropout=0.0,
        layerdrop=model.layerdrop,
        apply_spec_augment=True,
        mask_time_prob=masking_prob,
        **extra,
    )


def head_config(encoder, objective: ObjectiveArgs, targets: TargetArgs, sampling_rate: int) -> MaskedSpeechConfig:
    """The masked-prediction head's config around `encoder`'s config."""
    mel = MelTargets(encoder, sampling_rate, objective.mel_bins)
    if objective.name == "best-rq" and objective.codebook_dim > mel.dim:
        raise UsageError(
            f"objective.codebook_dim: {objective.codebook_dim} is more than the {mel.dim} log-mel values per frame it "
            f"projects ({mel.stack} frames of objective.mel_bins {objective.mel_bins}); use a smaller codebook_dim"
        )
    return MaskedSpeechConfig(
        backbone_config=encoder.to_dict(),
        objective=objective.name,
        num_classes=targets.clusters if objective.name == "hubert" else objective.codebook_size,
        label_dim=objective.label_dim,
        logits_temperature=objective.logits_temperature,
        target_dim=mel.dim,
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
) -> PreTrainedModel:
    """The model pretraining trains: `*ForPreTraining` (contrastive) or `MaskedSpeechForPreTraining` around a stock
    encoder (the other objectives), from the preset, or from `model.name_or_path` (continued pretraining: an hfssl
    export, a stock encoder, or a pretraining checkpoint of the same kind)."""
    targets = targets or TargetArgs()
    if not model.name_or_path:
        config = scratch_config(model, objective, masking_prob)
        if objective.name == "contrastive":
            return AutoModelForPreTraining.from_config(config)
        return MaskedSpeechForPreTraining(head_config(config, objective, targets, sampling_rate))
    try:
        config = AutoConfig.from_pretrained(model.name_or_path, trust_remote_code=model.trust_remote_code)
    except (OSError, ValueError) as err:
        raise UsageError(f"model.name_or_path: could not load {model.name_or_path!r} ({first_line(err)})") from None
    if objective.name != "contrastive":
        return _continue_masked(model, objective, targets, sampling_rate, config)
    if config.model_type != MODEL_TYPES[model.arch]:
        raise UsageError(
            f"model.name_or_path: {model.name_or_path!r} is a {config.model_type} model, not model.arch {model.arch!r}"
        )
    # A checkpoint exported for fine-tuning carries its SpecAugment setting; pretraining masks through the
    # collator but needs the masked-frame embedding to exist.
    config.apply_spec_augment = True
    config.mask_time_prob = max(config.mask_time_prob, FINETUNE_MASK_TIME_PROB)
    try:
        # Continuing from a bare encoder leaves the quantizer and projections new; transformers logs which.
        return AutoModelForPreTraining.from_pretrained(
            model.name_or_path, config=config, trust_remote_code=model.trust_remote_code
        )
    except (OSError, ValueError) as err:
        raise UsageError(f"model.name_or_path: could not load {model.name_or_path!r} ({first_line(err)})") from None


def _continue_masked(model, objective, targets, sampling_rate, config) -> MaskedSpeechForPreTraining:
    """Continued masked-prediction pretraining from a head checkpoint, or from a bare encoder with a new head."""
    encoder = config.backbone_config if isinstance(config, MaskedSpeechConfig) else config
    if encoder.model_type.replace("_", "-") != MODEL_TYPES[model.arch]:
        raise UsageError(
            f"model.name_or_path: {model.name_or_path!r} is a {encoder.model_type} model, not model.arch {model.arch!r}"
        )
    encoder.apply_spec_augment = True
    encoder.mask_time_prob = max(encoder.mask_time_prob, FINETUNE_MASK_TIME_PROB)
    wanted = head_config(encoder, objective, targets, sampling_rate)
    try:
        if isinstance(config, MaskedSpeechConfig):
            if config.objective != objective.name or config.num_classes != wanted.num_classes:
                raise UsageError(
                    f"model.name_or_path: {model.name_or_path!r} is a {config.objective} head with "
                    f"{config.num_classes} classes; this run trains {objective.name} with {wanted.num_classes}"
                )
            return MaskedSpeechForPreTraining.from_pretrained(model.name_or_path)
        head = MaskedSpeechForPreTraining(wanted)
        backbone = AutoModel.from_pretrained(
            model.name_or_path, config=encoder, trust_remote_code=model.trust_remote_code
        )
        head.backbone.load_state_dict(backbone.state_dict())
        return head
    except (OSError, ValueError) as err:
        raise UsageError(f"model.name_or_path: could not load {model.name_or_path!r} ({first_line(err)})") from None


def feature_extractor(data: AudioDataArgs) -> Wav2Vec2FeatureExtractor:
    """What turns a waveform into model input: zero mean and unit variance per clip, padding with zeros, and the
    attention mask the layer-norm conv encoder needs."""
    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=data.sampling_rate,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )


def samples_per_frame(config) -> int:
    return math.prod(config.conv_stride)


def min_clip_samples(config, mask_length: int) -> int:
    """The shortest clip (in samples) whose feature frames can hold one masked span and a distractor for it."""
    frames = mask_length + 1
    samples = 0
    # Invert the conv stack layer by layer: n frames out of a layer need (n - 1) * stride + kernel inputs.
    for kernel, stride in reversed(list(zip(config.conv_kernel, config.conv_stride, strict=True))):
        samples = (frames - 1) * stride + kernel
        frames = samples
    return samples


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor
    stats: dict[str, torch.Tensor]
    """Per-example sums for evaluation: contrastive loss, correct picks, masked frames (and the batch's codevector
    perplexity, once per example)."""
    logs: dict[str, torch.Tensor] = field(default_factory=dict)
    """Scalars the training loop averages over its log window."""


class Contrastive(torch.nn.Module):
    """wav2vec 2.0: at every masked frame, pick the true quantized latent among distractors drawn from other masked
    frames of the clip, plus a diversity loss that keeps the codebooks in use.

    `Wav2Vec2ForPreTraining` runs the encoder and the quantizer; the loss is computed here, in fp32, for the masked
    frames only (transformers builds logits for every frame), and normalised per masked frame so that its scale does
    not depend on the batch's duration. The Gumbel-softmax temperature decays with the optimizer step (`set_step`).
    """

    stat_names = ("loss", "correct", "count", "examples", "codevector_perplexity")

    def __init__(self, model: PreTrainedModel, objective: ObjectiveArgs):
        super().__init__()
        self.model = model
        self.args = objective
        self.num_codevectors = model.config.num_codevector_groups * model.config.num_codevectors_per_group
        self._collapsed_windows = 0

    def gumbel_temperature(self, step: int) -> float:
        a = self.args
        return max(a.gumbel_max * a.gumbel_decay**step, a.gumbel_min)

    def set_step(self, step: int) -> None:
        self.model.set_gumbel_temperature(self.gumbel_temperature(step))

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
        """Evaluation metrics from the gathered sums of `stats`."""
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


class MaskedPrediction(torch.nn.Module):
    """HuBERT, BEST-RQ or masked reconstruction through `MaskedSpeechForPreTraining`: the loop's view of it
    (per-example evaluation sums and logged scalars for masked and unmasked frames)."""

    stat_names = ("loss", "correct", "count", "unmasked_loss", "unmasked_correct", "unmasked_count", "examples")

    def __init__(self, model: MaskedSpeechForPreTraining):
        super().__init__()
        self.model = model
        self.classifies = model.config.objective != "reconstruction"

    def set_step(self, step: int) -> None:
        pass

    def forward(self, input_values, attention_mask, mask_time_indices, labels) -> ObjectiveOutput:
        out = self.model(
            input_values, attention_mask=attention_mask, mask_time_indices=mask_time_indices, labels=labels
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


class FrameLabelled(torch.utils.data.Dataset):
    """Clips with their per-frame labels (HuBERT's cluster ids) as `labels`; `lengths` as the clips'."""

    def __init__(self, clips, labels: list):
        self.clips, self.labels = clips, labels
        self.lengths = clips.lengths

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        return {**self.clips[index], "labels": self.labels[int(index)]}


def speech_setup(cfg: SpeechPretrainConfig, accelerator, run_dir: Path):
    """Speech pretraining: scanned audio, duration-bucketed batches, span masks, and per objective the distractors
    (contrastive), the cluster targets (hubert) or the log-mel targets (best-rq, reconstruction)."""
    from hfssl.pretrain import Setup, load_probe_data

    t, d, name = cfg.train, cfg.data, cfg.objective.name
    model = build_model(cfg.model, cfg.objective, cfg.masking.mask_prob, cfg.targets, d.sampling_rate)
    encoder = model.config if name == "contrastive" else model.config.backbone_config
    extractor = feature_extractor(d)
    if name == "hubert" and d.streaming:
        raise UsageError("data.streaming: HuBERT's cluster targets are cached per clip and need a fixed clip list")
    min_samples = min_clip_samples(encoder, cfg.masking.mask_length)
    with accelerator.main_process_first():
        train_set, eval_set = load_audio(d, seed=t.seed, min_samples=min_samples)
    train_clips = train_set
    if name == "hubert":
        from hfssl.hubert_targets import prepare_targets

        train_labels, eval_labels = prepare_targets(cfg, train_set, eval_set, encoder, accelerator, run_dir)
        train_set, eval_set = FrameLabelled(train_set, train_labels), FrameLabelled(eval_set, eval_labels)
    targets = None
    if name in ("best-rq", "reconstruction"):
        targets = MelTargets(encoder, d.sampling_rate, cfg.objective.mel_bins)
        if name == "best-rq":
            o = cfg.objective
            targets.quantizer = random_quantizer(targets.dim, o.codebook_size, o.codebook_dim, o.codebook_seed)
    max_samples = round(d.max_seconds * d.sampling_rate)
    budget = round(d.batch_seconds * d.sampling_rate)

    def collator(seed: int) -> AudioMaskCollator:
        return AudioMaskCollator(
            feature_extractor=extractor,
            config=encoder,
            mask_prob=cfg.masking.mask_prob,
            mask_length=cfg.masking.mask_length,
            min_masks=cfg.masking.min_masks,
            num_negatives=cfg.objective.num_negatives if name == "contrastive" else 0,
            max_samples=max_samples,
            seed=seed,
            targets=targets,
        )

    train_collator, eval_collator = collator(t.seed), collator(t.seed + 1)
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

    def run_probe(raw: torch.nn.Module) -> dict:
        return probe(
            raw.model.base_model,
            extractor,
            probe_splits,
            batch_size=32,
            device=accelerator.device,
            max_seconds=d.max_seconds,
        )

    def export(raw: torch.nn.Module, out_dir: Path, metrics: dict) -> None:
        export_speech(raw.model, extractor, out_dir, cfg, metrics)

    def data_size() -> tuple[float | None, str]:
        if streaming:
            return estimate_seconds(train_clips, d)
        cropped = train_clips.lengths.sum() / d.sampling_rate / 3600
        return (
            float(train_clips.full_lengths.sum()) / d.sampling_rate,
            f"scanned durations of {len(train_clips):,} clips; {cropped:,.2f} h within data.max_seconds crops",
        )

    return Setup(
        objective=Contrastive(model, cfg.objective) if name == "contrastive" else MaskedPrediction(model),
        model=model,
        train_loader=train_loader,
        collator=train_collator,
        eval_set=eval_set,
        eval_batches=eval_batches,
        eval_collator=eval_collator,
        export=export,
        unit="audio_seconds",
        count=lambda batch: batch["attention_mask"].sum() / d.sampling_rate,
        probe=run_probe if probe_splits is not None else None,
        data_size=data_size,
        streaming=streaming,
        prepare_train_loader=not streaming,
    )
