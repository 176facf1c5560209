"""Export: a plain transformers checkpoint (safetensors), its tokenizer and a model card, written atomically."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import torch
from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForMaskedLM, AutoModelForPreTraining, AutoTokenizer, PreTrainedModel

from hfssl import config as config_lib
from hfssl.config import PretrainConfig, SpeechPretrainConfig
from hfssl.errors import UsageError
from hfssl.io import atomic_dir

logger = logging.getLogger(__name__)

# transformers' own SpecAugment default: what an exported speech encoder applies while being fine-tuned.
FINETUNE_MASK_TIME_PROB = 0.05

OBJECTIVES = {
    "token": "Masked language modelling: {rate:.0%} of tokens are chosen at random and predicted",
    "whole_word": "Whole-word masked language modelling: words are chosen at random until {rate:.0%} of tokens are "
    "covered, and every token of a chosen word is predicted",
    "span": "Span masking as in SpanBERT: spans of whole words (geometric lengths, p={span_p}, at most {max_span} "
    "words) cover {rate:.0%} of tokens, and every token of a span is predicted",
}


def describe_objective(cfg: PretrainConfig) -> str:
    m = cfg.masking
    keep = 1.0 - m.replace_prob - m.random_prob
    text = OBJECTIVES[m.strategy].format(rate=m.mask_rate, span_p=m.span_p, max_span=m.max_span)
    return (
        f"{text}; of those, {m.replace_prob:.0%} are replaced by the mask token, {m.random_prob:.0%} by a random "
        f"token and {keep:.0%} left as they are. The loss is cross-entropy over the predicted tokens only."
    )


def describe_data(cfg: PretrainConfig, metrics: dict) -> str:
    d = cfg.data
    source = "the synthetic English-like corpus embedded in hfssl" if d.train == "synthetic" else f"`{d.train}`"
    layout = "packed into blocks" if d.packing else "one line per sequence"
    return (
        f"Trained on {source}, {layout} of {d.seq_len} tokens; {int(metrics.get('tokens_seen', 0)):,} tokens seen "
        f"over {metrics.get('steps', 0):,} optimizer steps."
    )


def training_rows(t, metrics: dict) -> dict:
    """The model-card rows every pretraining objective shares: optimizer, schedule, steps and seed."""
    return {
        "optimizer": f"AdamW (betas {t.adam_beta1}, {t.adam_beta2}; eps {t.adam_eps}; weight decay {t.weight_decay})",
        "peak learning rate": t.lr,
        "schedule": f"{t.schedule}, warmup {t.warmup_steps if t.warmup_steps is not None else t.warmup_ratio}",
        "steps": metrics.get("steps"),
        "seed": t.seed,
    }


def describe_hardware(device: str | None, processes: int = 1) -> str:
    """A torch device string as the card's hardware, e.g. "2 x NVIDIA H100 80GB HBM3" ("not recorded": none given)."""
    if not device:
        return "not recorded"
    name = device
    if device.startswith("cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name(torch.device(device))
    elif device == "cpu":
        name = f"CPU ({os.cpu_count()} cores)"
    return f"{processes} x {name}"


def compute_rows(metrics: dict, seen: tuple[str, str]) -> dict:
    """The model card's compute table: hardware, wall time and how much data went through the model."""
    wall = metrics.get("wall_time_s")
    if wall is None:
        wall_time = "not recorded"
    else:
        wall_time = f"{wall:,.1f} s" + (f" ({wall / 3600:.1f} h)" if wall >= 3600 else "")
    return {
        "hardware": describe_hardware(metrics.get("device"), metrics.get("num_processes", 1)),
        "wall time": wall_time,
        seen[0]: seen[1],
    }


def hub_model_id(name_or_path: str | None) -> str | None:
    """`name_or_path` when it names a model on the Hub, else None. The Hub takes only ids as `base_model`, so a local
    path is named in the card's text instead (transformers' Trainer leaves local paths out the same way)."""
    return name_or_path if name_or_path and _is_hub_id(name_or_path) else None


def hub_dataset_ids(*sources: str | None) -> list[str]:
    """The sources that name Hub datasets (not 'synthetic', not local files), for the card's `datasets`."""
    ids = []
    for source in sources:
        if source and source != "synthetic" and Path(source).suffix.lower() not in LOCAL_SUFFIXES:
            if _is_hub_id(source) and source not in ids:
                ids.append(source)
    return ids


def base_model(export, name_or_path: str | None) -> str | None:
    """The card's `base_model`: the recipe's `export.base_model`, else the starting checkpoint if it is a Hub id."""
    return export.base_model or hub_model_id(name_or_path)


# Files a data source can name; a name ending so is a local file, even when it does not exist here (any more).
LOCAL_SUFFIXES = {".txt", ".json", ".jsonl", ".csv", ".tsv", ".parquet", ".arrow", ".wav", ".flac", ".mp3", ".ogg"}


def _is_hub_id(name: str) -> bool:
    if name.startswith((".", "/", "~")) or any(c in name for c in "*?[") or Path(name).expanduser().exists():
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def count(n: float) -> str:
    """12345678 -> "12.3M": parameter counts that stay readable for tiny models too."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.1f}{suffix}"
    return str(int(n))


def render_card(model: PreTrainedModel, tokenizer, cfg: PretrainConfig, metrics: dict, name: str) -> ModelCard:
    t = cfg.train
    card_data = ModelCardData(
        language=cfg.export.language or None,
        license=cfg.export.license,
        library_name="transformers",
        pipeline_tag="fill-mask",
        tags=["hfssl", "masked-language-modeling", model.config.model_type, *cfg.export.tags],
        datasets=cfg.export.datasets or hub_dataset_ids(cfg.data.train, cfg.data.validation) or None,
        base_model=base_model(cfg.export, cfg.model.name_or_path),
    )
    hyperparameters = {
        "objective": cfg.masking.strategy,
        "mask rate": cfg.masking.mask_rate,
        "sequence length": cfg.data.seq_len,
        "batch size (per device x accumulation x processes)": (
            f"{t.batch_size} x {t.grad_accum} x {metrics.get('num_processes', 1)}"
        ),
        **training_rows(t, metrics),
        "tokenizer": f"{type(tokenizer).__name__}, {len(tokenizer):,} tokens",
    }
    compute = compute_rows(metrics, ("tokens seen", f"{int(metrics.get('tokens_seen', 0)):,}"))
    results = {
        "loss": _fmt(metrics.get("eval_loss")),
        "perplexity": _fmt(metrics.get("eval_perplexity")),
        "masked-token accuracy": _fmt(metrics.get("eval_accuracy")),
    }
    template = Path(__file__).parent / "model_cards" / "mlm.md"
    return ModelCard.from_template(
        card_data,
        template_path=str(template),
        model_name=name,
        arch=model.config.model_type,
        parameters=count(model.num_parameters()),
        layers=model.config.num_hidden_layers,
        hidden=model.config.hidden_size,
        load_path=name,
        example=f"The weather today is {tokenizer.mask_token}.",
        objective=describe_objective(cfg),
        data=describe_data(cfg, metrics),
        hyperparameters=hyperparameters,
        compute=compute,
        results=results,
    )


def describe_speech_objective(cfg: SpeechPretrainConfig) -> str:
    m, o, t = cfg.masking, cfg.objective, cfg.targets
    masking = (
        f"spans of {m.mask_length} feature frames are masked, each frame starting one with probability "
        f"{m.mask_prob} (at least {m.min_masks} spans per clip)"
    )
    unmasked = f"; unmasked frames weigh {o.unmasked_weight}" if o.unmasked_weight else ""
    if o.name == "hubert":
        source = "13 MFCCs with deltas" if t.features == "mfcc" else f"layer {t.layer} of `{t.model}`"
        return (
            f"HuBERT masked prediction: {masking}; at every masked frame the encoder predicts the frame's k-means "
            f"cluster ({t.clusters} clusters over {source}, fitted once on the training audio), scored by cosine "
            f"similarity against one learned embedding per cluster (temperature {o.logits_temperature}), with "
            f"cross-entropy{unmasked}."
        )
    if o.name == "best-rq":
        return (
            f"BEST-RQ masked prediction: {masking}; at every masked frame the encoder predicts the code a frozen "
            f"random-projection quantizer gives the frame's stacked, normalised log-mel features ({o.mel_bins} bins; "
            f"projection to {o.codebook_dim} dimensions, nearest of {o.codebook_size} l2-normalised random codes, "
            f"seed {o.codebook_seed}), with a linear softmax layer and cross-entropy{unmasked}."
        )
    if o.name == "reconstruction":
        return (
            f"Masked acoustic reconstruction: {masking}; a linear layer regresses each masked frame's stacked, "
            f"normalised log-mel features ({o.mel_bins} bins) from the encoder output, with an L1 loss{unmasked}."
            + (f" Feature channels are masked too (probability {o.feature_mask_prob})." if o.feature_mask_prob else "")
        )
    return (
        f"wav2vec 2.0 masked contrastive learning: spans of {m.mask_length} feature frames are masked, each frame "
        f"starting one with probability {m.mask_prob} (at least {m.min_masks} spans per clip); at every masked frame "
        f"the encoder picks the true quantized latent among {o.num_negatives} distractors drawn from other masked "
        f"frames of the clip (cosine similarity, temperature {o.logits_temperature}). The quantizer has "
        f"{o.codevector_groups} codebooks of {o.codevectors_per_group} entries, sampled with Gumbel-softmax whose "
        f"temperature decays from {o.gumbel_max} by {o.gumbel_decay} per step to {o.gumbel_min}; a diversity loss "
        f"(weight {o.diversity_weight}) keeps the codebooks in use."
    )


def describe_audio_data(cfg: SpeechPretrainConfig, metrics: dict) -> str:
    d = cfg.data
    source = "the synthetic speech-like corpus embedded in hfssl" if d.train == "synthetic" else f"`{d.train}`"
    hours = metrics.get("audio_seconds_seen", 0.0) / 3600
    return (
        f"Trained on {source}, resampled to {d.sampling_rate} Hz mono, clips cropped at random to at most "
        f"{d.max_seconds:g} s and batched by duration ({d.batch_seconds:g} s of audio per device per batch); "
        f"{hours:,.2f} hours of audio seen over {metrics.get('steps', 0):,} optimizer steps."
    )


def render_speech_card(model: PreTrainedModel, cfg: SpeechPretrainConfig, metrics: dict, name: str) -> ModelCard:
    t = cfg.train
    card_data = ModelCardData(
        language=cfg.export.language or None,
        license=cfg.export.license,
        library_name="transformers",
        pipeline_tag="feature-extraction",
        tags=[
            "hfssl",
            "audio",
            "speech",
            "self-supervised-learning",
            model.base_model.config.model_type,
            *cfg.export.tags,
        ],  # fmt: skip
        datasets=cfg.export.datasets or hub_dataset_ids(cfg.data.train, cfg.data.validation) or None,
        base_model=base_model(cfg.export, cfg.model.name_or_path),
    )
    hyperparameters = {
        "objective": cfg.objective.name,
        "mask probability, span": f"{cfg.masking.mask_prob}, {cfg.masking.mask_length} frames",
        "audio per batch (per device x accumulation x processes)": (
            f"{cfg.data.batch_seconds:g} s x {t.grad_accum} x {metrics.get('num_processes', 1)}"
        ),
        **training_rows(t, metrics),
    }
    compute = compute_rows(metrics, ("audio seen", f"{metrics.get('audio_seconds_seen', 0.0) / 3600:,.3f} h"))
    results = {
        "contrastive loss": _fmt(metrics.get("eval_loss")),
        "contrastive accuracy (true latent ranked first)": _fmt(metrics.get("eval_accuracy")),
        "codevector perplexity": _fmt(metrics.get("eval_codevector_perplexity")),
    }
    if cfg.objective.name != "contrastive":
        what = "L1 loss" if cfg.objective.name == "reconstruction" else "cross-entropy"
        results = {f"masked-frame {what}": _fmt(metrics.get("eval_loss"))}
        if cfg.objective.name != "reconstruction":
            results["masked-frame accuracy"] = _fmt(metrics.get("eval_accuracy"))
            results["unmasked-frame accuracy"] = _fmt(metrics.get("eval_unmasked_accuracy"))
    config = model.base_model.config
    return ModelCard.from_template(
        card_data,
        template_path=str(Path(__file__).parent / "model_cards" / "speech.md"),
        model_name=name,
        arch=config.model_type,
        parameters=count(model.base_model.num_parameters()),
        layers=config.num_hidden_layers,
        hidden=config.hidden_size,
        frame_ms=round(1000 * math.prod(config.conv_stride) / cfg.data.sampling_rate),
        sampling_rate=cfg.data.sampling_rate,
        load_path=name,
        objective=describe_speech_objective(cfg),
        data=describe_audio_data(cfg, metrics),
        hyperparameters=hyperparameters,
        compute=compute,
        results=results,
    )


def export_speech(model: PreTrainedModel, extractor, out_dir: Path, cfg: SpeechPretrainConfig, metrics: dict) -> Path:
    """Write the encoder of a `*ForPreTraining` or `MaskedSpeechForPreTraining` model as its stock base class (e.g.
    `Wav2Vec2Model`, `HubertModel`), with the feature extractor and a model card, replacing `out_dir` atomically.
    The quantizer, projections and heads stay behind: `AutoModelForAudioClassification` then finds every weight it
    needs and nothing else."""
    out_dir = Path(out_dir)
    name = cfg.export.model_name or Path(cfg.train.output_dir).resolve().name
    encoder = model.base_model
    # Pretraining masked through the collator at its own rate; fine-tuning gets transformers' gentle SpecAugment.
    encoder.config.mask_time_prob = FINETUNE_MASK_TIME_PROB
    encoder.config.architectures = [type(encoder).__name__]
    with atomic_dir(out_dir) as tmp:
        encoder.save_pretrained(tmp)
        extractor.save_pretrained(tmp)
        render_speech_card(model, cfg, metrics, name).save(tmp / "README.md")
    logger.info("exported %s", out_dir)
    return out_dir


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def export_model(model: PreTrainedModel, tokenizer, out_dir: Path, cfg: PretrainConfig, metrics: dict) -> Path:
    """Write `model` (safetensors), `tokenizer` and a model card to `out_dir`, replacing it atomically."""
    out_dir = Path(out_dir)
    name = cfg.export.model_name or Path(cfg.train.output_dir).resolve().name
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        render_card(model, tokenizer, cfg, metrics, name).save(tmp / "README.md")
    logger.info("exported %s", out_dir)
    return out_dir


def build_objective(cfg: PretrainConfig | SpeechPretrainConfig, config) -> tuple[torch.nn.Module, PreTrainedModel]:
    """The run's objective and model, freshly initialised from the model's transformers config."""
    if isinstance(cfg, SpeechPretrainConfig):
        from hfssl.speech import Contrastive, MaskedPrediction

        model = AutoModelForPreTraining.from_config(config)
        contrastive = cfg.objective.name == "contrastive"
        return (Contrastive(model, cfg.objective) if contrastive else MaskedPrediction(model)), model
    from hfssl.model import MaskedLM

    model = AutoModelForMaskedLM.from_config(config)
    return MaskedLM(model), model


def load_weights(objective: torch.nn.Module, model: PreTrainedModel, weights: dict, source: str) -> None:
    """Load a state dict of `objective` into it; tied copies may be absent, anything else missing is an error."""
    missing, unexpected = objective.load_state_dict(weights, strict=False)
    tied = {f"model.{k}" for k in getattr(model, "_tied_weights_keys", None) or {}}
    if unexpected or set(missing) - tied:
        raise UsageError(f"{source}: weights do not match the run's model (missing {missing}, unexpected {unexpected})")
    model.tie_weights()


def checkpoint_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The objective's full state dict from an `accelerator.save_state` directory: one safetensors file (one
    process, DDP, ZeRO-1/2), FSDP's whole-model file, or FSDP's sharded checkpoint, merged here by accelerate."""
    if (checkpoint / "model.safetensors").is_file():
        return load_file(str(checkpoint / "model.safetensors"))
    if (checkpoint / "pytorch_model_fsdp_0").is_dir():  # fsdp_state_dict_type SHARDED_STATE_DICT
        from tempfile import TemporaryDirectory

        from accelerate.utils import merge_fsdp_weights

        with TemporaryDirectory(prefix="hfssl-merge-") as tmp:
            merge_fsdp_weights(str(checkpoint / "pytorch_model_fsdp_0"), tmp, safe_serialization=True)
            return load_file(str(Path(tmp) / "model.safetensors"))
    whole = sorted(checkpoint.glob("pytorch_model_fsdp*.bin"))  # fsdp_state_dict_type FULL_STATE_DICT
    if whole:
        return torch.load(whole[0], map_location="cpu", weights_only=True)
    if (checkpoint / "pytorch_model").is_dir():
        raise UsageError(
            f"{checkpoint}: a DeepSpeed checkpoint, which hfssl does not read; turn it into {checkpoint}/"
            "model.safetensors with the zero_to_fp32.py script DeepSpeed saved beside it (--safe_serialization), "
            "or use the run's final/ export"
        )
    raise UsageError(f"{checkpoint}: holds no model weights (model.safetensors or an FSDP checkpoint)")


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """`hfssl export`: turn a training checkpoint (or a run directory's latest) into a loadable model."""
    from hfssl.pretrain import STATE_FILE, find_checkpoint

    checkpoint = find_checkpoint(str(checkpoint), Path(checkpoint))
    run_dir = checkpoint.parent.parent
    for needed in ("config.yaml", "model_config"):
        if not (run_dir / needed).exists():
            raise UsageError(f"{checkpoint}: the run directory {run_dir} lacks {needed}; is this an hfssl checkpoint?")
    cfg = config_lib.load(
        config_lib.pretrain_schema(config_lib.read_recipe(run_dir / "config.yaml")), run_dir / "config.yaml"
    )
    import hfssl.heads  # noqa: F401  (registers the masked-prediction heads' config with AutoConfig)

    speech = isinstance(cfg, SpeechPretrainConfig)
    if not speech and not (run_dir / "tokenizer").exists():
        raise UsageError(f"{checkpoint}: the run directory {run_dir} lacks tokenizer; is this an hfssl checkpoint?")
    objective, model = build_objective(cfg, AutoConfig.from_pretrained(run_dir / "model_config"))
    load_weights(objective, model, checkpoint_weights(checkpoint), str(checkpoint))
    state = json.loads((checkpoint / STATE_FILE).read_text())
    final = state["evals"][-1] if state.get("evals") else {}
    metrics = {"steps": state["step"], **{f"eval_{k}": v for k, v in final.items() if k != "step"}}
    if speech:
        metrics["audio_seconds_seen"] = state.get("audio_seconds_seen", 0.0)
        from hfssl.speech import feature_extractor

        return export_speech(model, feature_extractor(cfg.data), Path(out_dir), cfg, metrics)
    metrics["tokens_seen"] = state.get("tokens_seen", 0)
    return export_model(model, AutoTokenizer.from_pretrained(run_dir / "tokenizer"), Path(out_dir), cfg, metrics)
