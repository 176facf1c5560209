"""Replaced-token detection (`objective.name: rtd`), the objective of ELECTRA: a small masked-LM generator fills the
masked positions with tokens it samples, and the encoder being trained (the discriminator) labels every token of
the result original or replaced, so it learns from every token instead of the masked few.

transformers has the models (`ElectraForPreTraining`, any `AutoModelForMaskedLM`, any encoder) but no way to train
them this way. Here the generator is the discriminator's own masked-LM architecture, as wide and a fraction as deep
(DeBERTa-v3's shape: ELECTRA's narrower generators are post-norm BERTs, which at the high learning rates of short
budgets barely learn), whose token embeddings are the discriminator's (ELECTRA) or the base of them (DeBERTa-v3's
gradient-disentangled sharing). The discriminator is any encoder: an ELECTRA discriminator keeps its own
`ElectraForPreTraining` head; BERT, RoBERTa and ModernBERT get a small head here, which the export leaves out.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from huggingface_hub import ModelCard
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers.activations import ACT2FN

from hfssl.cards import fmt
from hfssl.config import ObjectiveSection, PretrainConfig, arg, check
from hfssl.models import load_config
from hfssl.models.text import build_model, check_kind, check_positions, document_packing, model_inputs
from hfssl.objectives.base import ObjectiveOutput, Setup
from hfssl.objectives.mlm import STRATEGIES, MaskedLM, make_collator, mask_rate_row, needs_mask_token
from hfssl.objectives.text import (
    TOKENIZER_DIR,
    TextCard,
    load_text,
    run_tokenizer,
    text_setup,
    token_metrics,
    token_output,
    write_export,
)
from hfssl.objectives.text import (
    render_card as text_card,
)


@dataclass
class RTDArgs(ObjectiveSection):
    """Replaced-token detection's generator, its weight and how the two share embeddings."""

    name: Literal["rtd"] = arg(
        "rtd",
        "rtd: replaced-token detection as in ELECTRA (a small generator fills the masked tokens, the encoder tells "
        "every token original or replaced)",
    )
    generator_size: float = arg(
        0.5,
        "the generator's depth as a fraction of the discriminator's (at least one layer), at the same width so "
        "they share token embeddings; DeBERTa-v3 used half",
    )
    rtd_weight: float = arg(50.0, "weight of the discriminator's loss beside the generator's (ELECTRA: 50)")
    embedding_sharing: Literal["shared", "gdes"] = arg(
        "shared",
        "shared: generator and discriminator train one token-embedding table (ELECTRA); gdes: the "
        "discriminator adds its own correction to the generator's embeddings and its gradient stops there "
        "(DeBERTa-v3's gradient-disentangled sharing)",
    )
    export_generator: bool = arg(
        False, "also export the generator, a fill-mask model, into the export's generator/ folder"
    )

    def __post_init__(self):
        check(
            0.0 < self.generator_size <= 1.0,
            "objective.generator_size",
            f"must be in (0, 1]: the generator may not be larger than the discriminator, got {self.generator_size}",
        )
        check(self.rtd_weight > 0, "objective.rtd_weight", f"must be positive, got {self.rtd_weight}")


@dataclass
class RTDConfig(PretrainConfig):
    objective: RTDArgs = field(default_factory=RTDArgs)


SCHEMA = RTDConfig
UNIT = "tokens"
RUN_FILES = (TOKENIZER_DIR,)

# Encoders whose plain model builds a pooler the classifier of `AutoModelForSequenceClassification` would reuse;
# replaced-token detection never trains it, so the discriminator is built without one (as masked-LM models are).
_POOLED = ("bert", "roberta", "xlm-roberta")


class DetectionHead(torch.nn.Module):
    """One logit per token, original (< 0) or replaced (> 0): dense, the encoder's activation, dense. The shape of
    ELECTRA's discriminator head, for encoders that have none."""

    def __init__(self, config: PreTrainedConfig):
        super().__init__()
        self.dense = torch.nn.Linear(config.hidden_size, config.hidden_size)
        act = getattr(config, "hidden_act", None) or getattr(config, "hidden_activation", None) or "gelu"
        self.act = ACT2FN[act]
        self.out = torch.nn.Linear(config.hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.dense(hidden))).squeeze(-1)


class DisentangledEmbedding(torch.nn.Module):
    """DeBERTa-v3's gradient-disentangled embedding sharing: the discriminator looks tokens up in the generator's
    table plus a correction of its own (zero at the start); its gradient reaches only the correction, so the
    generator's table is trained by the masked-LM loss alone and the two objectives stop pulling it apart."""

    def __init__(self, shared: torch.nn.Embedding):
        super().__init__()
        self.shared = shared
        self.delta = torch.nn.Parameter(torch.zeros_like(shared.weight))
        self.padding_idx = shared.padding_idx

    @property
    def weight(self) -> torch.Tensor:
        return self.shared.weight.detach() + self.delta

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # Looking up both tables and adding costs rows, not the whole (vocabulary x width) sum.
        return F.embedding(input_ids, self.shared.weight.detach(), self.padding_idx) + F.embedding(
            input_ids, self.delta, self.padding_idx
        )

    def merged(self) -> torch.nn.Embedding:
        """A plain embedding holding the table the discriminator sees, for the export."""
        table = torch.nn.Embedding(*self.delta.shape, padding_idx=self.padding_idx)
        table.weight.data.copy_(self.weight.detach())
        return table


def generator_config(discriminator: PreTrainedConfig, args: RTDArgs) -> PreTrainedConfig:
    """The discriminator's own config with `args.generator_size` of its layers (at least one): as wide, so the two
    share token embeddings as they are, and shallower, so the generator stays the weaker (DeBERTa-v3's shape)."""
    config = copy.deepcopy(discriminator)
    config.num_hidden_layers = max(1, round(discriminator.num_hidden_layers * args.generator_size))
    config.architectures = None
    return config


class ReplacedTokenDetection(torch.nn.Module):
    """ELECTRA's objective over a discriminator `model` and a masked-LM `generator` built to match it.

    The batch is masked-LM's (`input_ids` with masked positions, `labels` holding the originals there) plus
    `sample_u`, a uniform draw per position from the collator's seeded stream: the generator's token at a masked
    position is the one where its cumulative softmax passes that draw (inverse-CDF sampling), so sampling is exact,
    costs one number per position, and repeats on resume. Special and padding ids are never sampled. A sampled token
    equal to the original counts as original, as in ELECTRA. Loss = generator cross-entropy over the masked tokens +
    `rtd_weight` x binary cross-entropy over every real token; no gradient flows through the sampling.
    """

    stat_names = (
        "generator_loss", "generator_correct", "masked",
        "discriminator_loss", "tokens", "replaced", "replaced_correct", "original_correct",
    )  # fmt: skip

    def __init__(
        self,
        model: PreTrainedModel,
        args: RTDArgs,
        sampleable: torch.Tensor | None = None,
    ):
        super().__init__()
        self.model = model
        self.rtd_weight = args.rtd_weight
        generator = AutoModelForMaskedLM.from_config(generator_config(model.config, args), attn_implementation="sdpa")
        if args.embedding_sharing == "gdes":
            model.set_input_embeddings(DisentangledEmbedding(generator.get_input_embeddings()))
        else:
            generator.set_input_embeddings(model.get_input_embeddings())
        generator.tie_weights()
        self.generator = MaskedLM(generator)
        self.head = None if hasattr(model, "discriminator_predictions") else DetectionHead(model.config)
        # Ids past the tokenizer (the vocabulary is rounded up) and special ones are never sampled; without the
        # tokenizer (a rebuild for export, which samples nothing) every id may be.
        never = torch.ones(generator.config.vocab_size, dtype=torch.bool)
        if sampleable is None:
            never[:] = False
        else:
            never[: len(sampleable)] = ~sampleable
        self.register_buffer("never_sampled", never, persistent=False)

    def forward(
        self, input_ids, attention_mask, labels, sample_u, document_ids=None, position_ids=None
    ) -> ObjectiveOutput:
        masked = labels != -100
        targets = labels[masked]
        logits = self.generator.predict(input_ids, attention_mask, masked, document_ids, position_ids).float()
        generated = token_output(logits, targets, masked)

        with torch.no_grad():
            cdf = logits.masked_fill(self.never_sampled, float("-inf")).softmax(-1).cumsum(-1)
            draw = (sample_u[masked] * cdf[:, -1]).unsqueeze(-1)
            sampled = torch.searchsorted(cdf, draw, right=True).squeeze(-1).clamp_(max=cdf.shape[-1] - 1)
            corrupted = input_ids.masked_scatter(masked, sampled)
            original = torch.where(masked, labels, input_ids)
            replaced = corrupted != original

        inputs = model_inputs(self.model, corrupted, attention_mask, document_ids, position_ids)
        if self.head is None:
            detection = self.model(**inputs).logits
        else:
            detection = self.head(self.model(**inputs)[0])
        real = attention_mask.bool()
        token_loss = F.binary_cross_entropy_with_logits(detection.float(), replaced.float(), reduction="none") * real
        tokens = real.sum()
        discriminator_loss = token_loss.sum() / tokens.clamp(min=1)
        loss = generated.loss + self.rtd_weight * discriminator_loss

        with torch.no_grad():
            said_replaced = (detection > 0) & real
            replaced = replaced & real
            stats = {
                "generator_loss": generated.stats["loss"],
                "generator_correct": generated.stats["correct"],
                "masked": generated.stats["count"],
                "discriminator_loss": token_loss.detach().double().sum(1),
                "tokens": real.double().sum(1),
                "replaced": replaced.double().sum(1),
                "replaced_correct": (said_replaced & replaced).double().sum(1),
                "original_correct": (~said_replaced & ~replaced & real).double().sum(1),
            }
            logs = {
                "generator_loss": generated.loss.detach(),
                "discriminator_loss": discriminator_loss.detach(),
                **{k: v.float() for k, v in window_rates(stats).items()},
            }
        return ObjectiveOutput(loss, stats, logs)

    def summarise(self, totals: dict[str, float]) -> dict[str, float]:
        generator = token_metrics(
            {"loss": totals["generator_loss"], "correct": totals["generator_correct"], "count": totals["masked"]}
        )
        discriminator_loss = totals["discriminator_loss"] / max(totals["tokens"], 1.0)
        return {
            "loss": generator["loss"] + self.rtd_weight * discriminator_loss,
            "generator_loss": generator["loss"],
            "generator_perplexity": generator["perplexity"],
            "discriminator_loss": discriminator_loss,
            **{k: float(v) for k, v in window_rates(totals).items()},
        }

    def before_forward(self, step: int) -> None:
        """Nothing in replaced-token detection depends on the step."""

    def after_optimizer_step(self, step: int) -> None:
        """The generator trains with the discriminator, by the same optimizer step; nothing else changes."""

    def health(self, logs: dict[str, float], step: int) -> str | None:
        """No failure of its own stops a run; a generator that samples the originals back is reported in the logs
        (`replaced_fraction`) and by the eval's replaced-token accuracy."""
        return None


def window_rates(sums: dict) -> dict:
    """Generator accuracy, the share of tokens replaced, discriminator accuracy on all tokens, on replaced ones and
    on original ones, from sums of `ReplacedTokenDetection.stat_names` (tensors or floats)."""

    def total(name):
        value = sums[name]
        return value.sum() if isinstance(value, torch.Tensor) else value

    tokens, replaced, masked = total("tokens"), total("replaced"), total("masked")
    right_replaced, right_original = total("replaced_correct"), total("original_correct")
    originals = tokens - replaced
    return {
        "generator_accuracy": total("generator_correct") / max(masked, 1),
        "replaced_fraction": replaced / max(tokens, 1),
        "accuracy": (right_replaced + right_original) / max(tokens, 1),
        "replaced_accuracy": right_replaced / max(replaced, 1),
        "original_accuracy": right_original / max(originals, 1),
    }


def sampleable_ids(tokenizer) -> torch.Tensor:
    """bool (len(tokenizer),): the ids the generator may put into text (not special tokens, not padding)."""
    ids = torch.ones(len(tokenizer), dtype=torch.bool)
    ids[list(tokenizer.all_special_ids)] = False
    return ids


def _discriminator_class(model_type: str):
    return AutoModelForPreTraining if model_type == "electra" else AutoModel


def _backbone_kwargs(model_type: str) -> dict:
    return {"add_pooling_layer": False} if model_type in _POOLED else {}


def build_discriminator(cfg: PretrainConfig, tokenizer) -> PreTrainedModel:
    """The encoder the objective trains: from the preset, or loaded from `model.name_or_path` (an ELECTRA
    discriminator keeps its detection head; any other encoder loads as its plain model)."""
    model_type = load_config(cfg.model).model_type if cfg.model.name_or_path else cfg.model.arch
    return build_model(cfg.model, tokenizer, _discriminator_class(model_type), **_backbone_kwargs(model_type))


def setup(cfg: PretrainConfig, accelerator: Accelerator, work_dir: Path, resuming: bool) -> Setup:
    """The corpus, the tokenizer (trained on it unless given; it needs a mask token), packed blocks, the
    discriminator and its generator, and the masking collators, whose batches carry the sampling draws."""
    check_kind(cfg.model, causal=False, objective="replaced-token detection (rtd)")
    check_positions(cfg.model, cfg.data.seq_len)
    data = load_text(cfg, accelerator, work_dir, resuming, adapt=needs_mask_token)
    model = build_discriminator(cfg, data.tokenizer)
    objective = ReplacedTokenDetection(model, cfg.objective, sampleable_ids(data.tokenizer))
    # The generator is the discriminator's architecture with its attention implementation: one answer for both.
    documents = document_packing(cfg, model, objective.generator.model)
    return text_setup(
        cfg,
        accelerator,
        data,
        objective,
        lambda seed: make_collator(cfg.masking, data.tokenizer, seed, sampling_noise=True, documents=documents),
    )


def rebuild(cfg: PretrainConfig, model_config) -> ReplacedTokenDetection:
    """The discriminator from its saved config, and the generator the recipe sizes against it."""
    model_type = model_config.model_type
    model = _discriminator_class(model_type).from_config(model_config, **_backbone_kwargs(model_type))
    return ReplacedTokenDetection(model, cfg.objective)


def export(cfg: PretrainConfig, objective: ReplacedTokenDetection, run_dir: Path, out_dir: Path, metrics: dict) -> Path:
    """The discriminator as its stock class (the detection head of a non-ELECTRA encoder stays behind), and with
    `objective.export_generator` the generator as a fill-mask model in generator/."""
    tokenizer = run_tokenizer(run_dir)
    model = objective.model
    table = model.get_input_embeddings()
    extras = {}
    if cfg.objective.export_generator:
        generator = objective.generator.model
        extras["generator"] = (generator, generator_card(generator, tokenizer, cfg, metrics))
    disentangled = isinstance(table, DisentangledEmbedding)
    if disentangled:
        model.set_input_embeddings(table.merged())  # the table it sees, as a plain embedding, for the stock class
    try:
        return write_export(model, tokenizer, render_card(model, tokenizer, cfg, metrics), out_dir, extras)
    finally:
        if disentangled:
            model.set_input_embeddings(table)


def describe(cfg: PretrainConfig) -> str:
    m, o = cfg.masking, cfg.objective
    sharing = (
        "share one token-embedding table, trained by both losses"
        if o.embedding_sharing == "shared"
        else "share token embeddings the DeBERTa-v3 way: the discriminator adds its own correction to the "
        "generator's table, and its gradient stops there"
    )
    masking = STRATEGIES[m.strategy].format(rate=m.mask_rate, span_p=m.span_p, max_span=m.max_span)
    return (
        f"Replaced-token detection (ELECTRA). {masking} by a masked-LM generator as wide as this model and "
        f"{o.generator_size:g} as deep; each is replaced by a token sampled from the generator's prediction, and "
        "this model labels every token original or replaced. Loss: the generator's cross-entropy + "
        f"{o.rtd_weight:g} x this model's binary cross-entropy over all tokens. Generator and discriminator "
        f"{sharing}."
    )


def render_card(model: PreTrainedModel, tokenizer, cfg: PretrainConfig, metrics: dict) -> ModelCard:
    o, m = cfg.objective, cfg.masking
    card = TextCard(
        pipeline_tag="feature-extraction",
        tag="replaced-token-detection",
        template="rtd.md",
        example="The weather today is fine.",
        objective=describe(cfg),
        rows={
            "objective": f"replaced-token detection ({m.strategy} masking)",
            "mask rate": mask_rate_row(m),
            "generator size": o.generator_size,
            "discriminator loss weight": o.rtd_weight,
            "embedding sharing": o.embedding_sharing,
        },
        accuracy="detection accuracy",
        results={
            "loss (generator + weight x discriminator)": fmt(metrics.get("eval_loss")),
            "discriminator loss": fmt(metrics.get("eval_discriminator_loss")),
            "detection accuracy, all tokens": fmt(metrics.get("eval_accuracy")),
            "detection accuracy, replaced tokens": fmt(metrics.get("eval_replaced_accuracy")),
            "detection accuracy, original tokens": fmt(metrics.get("eval_original_accuracy")),
            "share of tokens replaced": fmt(metrics.get("eval_replaced_fraction")),
            "generator masked-token accuracy": fmt(metrics.get("eval_generator_accuracy")),
        },
    )
    return text_card(model, tokenizer, cfg, metrics, card)


def generator_card(generator: PreTrainedModel, tokenizer, cfg: PretrainConfig, metrics: dict) -> ModelCard:
    """The card of the exported generator: a masked LM, as small as it was built to be."""
    card = TextCard(
        pipeline_tag="fill-mask",
        tag="masked-language-modeling",
        template="mlm.md",
        example=f"The weather today is {tokenizer.mask_token}.",
        objective=(
            "The generator of a replaced-token detection run, trained with masked language modelling beside the "
            f"discriminator it fed. {describe(cfg)}"
        ),
        rows={"objective": "masked LM (RTD generator)", "mask rate": mask_rate_row(cfg.masking)},
        accuracy="masked-token accuracy",
        results={
            "loss": fmt(metrics.get("eval_generator_loss")),
            "perplexity": fmt(metrics.get("eval_generator_perplexity")),
            "masked-token accuracy": fmt(metrics.get("eval_generator_accuracy")),
        },
    )
    return text_card(generator, tokenizer, cfg, metrics, card)
