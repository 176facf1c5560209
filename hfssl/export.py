"""Export: a plain transformers checkpoint (safetensors), its tokenizer and a model card, written atomically."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer, PreTrainedModel

from hfssl import config as config_lib
from hfssl.config import PretrainConfig
from hfssl.errors import UsageError
from hfssl.io import atomic_dir

logger = logging.getLogger(__name__)

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
        f"Trained on {source}, {layout} of {d.seq_len} tokens; {metrics.get('tokens_seen', 0):,} tokens seen over "
        f"{metrics.get('steps', 0):,} optimizer steps."
    )


def render_card(model: PreTrainedModel, tokenizer, cfg: PretrainConfig, metrics: dict, name: str) -> ModelCard:
    t = cfg.train
    card_data = ModelCardData(
        language=cfg.export.language or None,
        license=cfg.export.license,
        library_name="transformers",
        pipeline_tag="fill-mask",
        tags=["hfssl", "masked-language-modeling", model.config.model_type, *cfg.export.tags],
        datasets=cfg.export.datasets or None,
        base_model=cfg.model.name_or_path or None,
    )
    hyperparameters = {
        "objective": cfg.masking.strategy,
        "mask rate": cfg.masking.mask_rate,
        "sequence length": cfg.data.seq_len,
        "batch size (per device x accumulation x processes)": (
            f"{t.batch_size} x {t.grad_accum} x {metrics.get('num_processes', 1)}"
        ),
        "optimizer": f"AdamW (betas {t.adam_beta1}, {t.adam_beta2}; eps {t.adam_eps}; weight decay {t.weight_decay})",
        "peak learning rate": t.lr,
        "schedule": f"{t.schedule}, warmup {t.warmup_steps if t.warmup_steps is not None else t.warmup_ratio}",
        "steps": metrics.get("steps"),
        "tokenizer": f"{type(tokenizer).__name__}, {len(tokenizer):,} tokens",
        "seed": t.seed,
        "hardware": metrics.get("device", "unknown"),
        "wall time (s)": round(metrics.get("wall_time_s", 0.0), 1),
    }
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
        parameters=f"{model.num_parameters() / 1e6:.1f}M",
        layers=model.config.num_hidden_layers,
        hidden=model.config.hidden_size,
        load_path=name,
        example=f"The weather today is {tokenizer.mask_token}.",
        objective=describe_objective(cfg),
        data=describe_data(cfg, metrics),
        hyperparameters=hyperparameters,
        results=results,
    )


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


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """`hfssl export`: turn a training checkpoint (or a run directory's latest) into a loadable model."""
    from hfssl.model import MaskedLM
    from hfssl.pretrain import STATE_FILE, find_checkpoint

    checkpoint = find_checkpoint(str(checkpoint), Path(checkpoint))
    run_dir = checkpoint.parent.parent
    for needed in ("config.yaml", "tokenizer", "model_config"):
        if not (run_dir / needed).exists():
            raise UsageError(f"{checkpoint}: the run directory {run_dir} lacks {needed}; is this an hfssl checkpoint?")
    cfg = config_lib.load(PretrainConfig, run_dir / "config.yaml")
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "tokenizer")
    model = AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(run_dir / "model_config"))
    objective = MaskedLM(model)
    weights = load_file(str(checkpoint / "model.safetensors"))
    missing, unexpected = objective.load_state_dict(weights, strict=False)
    tied = {f"model.{k}" for k in getattr(model, "_tied_weights_keys", None) or {}}
    if unexpected or set(missing) - tied:
        raise UsageError(
            f"{checkpoint}: weights do not match the run's model (missing {missing}, unexpected {unexpected})"
        )
    model.tie_weights()
    state = json.loads((checkpoint / STATE_FILE).read_text())
    final = state["evals"][-1] if state.get("evals") else {}
    metrics = {
        "steps": state["step"],
        "tokens_seen": state.get("tokens_seen", 0),
        "eval_loss": final.get("loss"),
        "eval_perplexity": final.get("perplexity"),
        "eval_accuracy": final.get("accuracy"),
    }
    return export_model(model, tokenizer, Path(out_dir), cfg, metrics)
