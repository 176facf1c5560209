"""Masked language modelling (`objective.name: mlm`): token, whole-word or span masking over any
`AutoModelForMaskedLM`, with the vocabulary projection run only where a token is predicted."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from accelerate import Accelerator
from huggingface_hub import ModelCard
from transformers import AutoModelForMaskedLM, PreTrainedModel

from hfssl.collators.text import MLMCollator, SpanMaskCollator, WholeWordMaskCollator
from hfssl.config import MaskingArgs, ObjectiveSection, PretrainConfig, arg
from hfssl.errors import UsageError
from hfssl.models.text import build_model, check_kind, check_positions, document_packing, model_inputs
from hfssl.objectives.base import ObjectiveOutput, Setup
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
class MLMArgs(ObjectiveSection):
    """Masked language modelling takes no settings of its own: the masking section says what is hidden."""

    name: Literal["mlm"] = arg(
        "mlm", "mlm: masked language modelling (predict the tokens the masking section hides, an encoder)"
    )


@dataclass
class MLMConfig(PretrainConfig):
    objective: MLMArgs = field(default_factory=MLMArgs)


SCHEMA = MLMConfig
UNIT = "tokens"
RUN_FILES = (TOKENIZER_DIR,)

# Where each architecture keeps the modules that turn hidden states into vocabulary logits. Architectures not listed
# still train, through their own forward and full logits.
MLM_HEADS = {
    "bert": ("cls",),
    "roberta": ("lm_head",),
    "xlm-roberta": ("lm_head",),
    "modernbert": ("head", "decoder"),
    "electra": ("generator_predictions", "generator_lm_head"),
}

STRATEGIES = {
    "token": "Masked language modelling: {rate:.0%} of tokens are chosen at random and predicted",
    "whole_word": "Whole-word masked language modelling: words are chosen at random until {rate:.0%} of tokens are "
    "covered, and every token of a chosen word is predicted",
    "span": "Span masking as in SpanBERT: spans of whole words (geometric lengths, p={span_p}, at most {max_span} "
    "words) cover {rate:.0%} of tokens, and every token of a span is predicted",
}


class MaskedLM(torch.nn.Module):
    """Masked-LM objective over any `AutoModelForMaskedLM`.

    Where the architecture's head is known, the encoder runs on the whole batch and the head only on the
    predicted positions: at 15-30% masking that skips most of the vocabulary projection, which dominates the
    compute of small models. The loss is computed in fp32.
    """

    stat_names = ("loss", "correct", "count")

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model
        self.head = MLM_HEADS.get(model.config.model_type)

    def forward(self, input_ids, attention_mask, labels, document_ids=None, position_ids=None) -> ObjectiveOutput:
        predicted = labels != -100
        logits = self.predict(input_ids, attention_mask, predicted, document_ids, position_ids)
        return token_output(logits, labels[predicted], predicted)

    def predict(self, input_ids, attention_mask, predicted, document_ids=None, position_ids=None) -> torch.Tensor:
        """Vocabulary logits at the positions where bool (batch, length) `predicted` is set, in their order; with
        `document_ids` and `position_ids` (document packing), each token sees only its own document."""
        inputs = model_inputs(self.model, input_ids, attention_mask, document_ids, position_ids)
        if self.head is None:
            return self.model(**inputs).logits[predicted]
        logits = self.model.base_model(**inputs)[0][predicted]
        for name in self.head:
            logits = getattr(self.model, name)(logits)
        return logits

    @staticmethod
    def summarise(totals: dict[str, float]) -> dict[str, float]:
        return token_metrics(totals)

    def before_forward(self, step: int) -> None:
        """Nothing in masked-LM depends on the step."""

    def after_optimizer_step(self, step: int) -> None:
        """Nothing in masked-LM changes between steps but the weights."""

    def health(self, logs: dict[str, float], step: int) -> str | None:
        """Masked-LM has no failure of its own to watch for beyond a non-finite loss, which the loop checks."""
        return None


def make_collator(masking: MaskingArgs, tokenizer, seed: int, sampling_noise: bool = False, documents: bool = False):
    """The masking section's collator; with `sampling_noise`, its batches carry `sample_u` too (see `MaskingCollator`),
    with `documents`, `document_ids` and `position_ids` (document packing)."""
    common = dict(
        tokenizer=tokenizer,
        mask_rate=masking.mask_rate,
        replace_prob=masking.replace_prob,
        random_prob=masking.random_prob,
        seed=seed,
        sampling_noise=sampling_noise,
        documents=documents,
    )
    if masking.strategy == "whole_word":
        return WholeWordMaskCollator(**common)
    if masking.strategy == "span":
        return SpanMaskCollator(**common, span_p=masking.span_p, max_span=masking.max_span)
    return MLMCollator(**common)


def needs_mask_token(tokenizer, source: str) -> None:
    if tokenizer.mask_token_id is None:
        raise UsageError(f"{source}: the tokenizer has no mask token, which masked-LM pretraining needs")


def setup(cfg: PretrainConfig, accelerator: Accelerator, work_dir: Path, resuming: bool) -> Setup:
    """The corpus, the tokenizer (trained on it unless given), packed blocks, the model and the masking collators."""
    check_kind(cfg.model, causal=False, objective="masked-LM pretraining")
    check_positions(cfg.model, cfg.data.seq_len)
    data = load_text(cfg, accelerator, work_dir, resuming, adapt=needs_mask_token)
    objective = MaskedLM(build_model(cfg.model, data.tokenizer, AutoModelForMaskedLM))
    documents = document_packing(cfg, objective.model)
    return text_setup(
        cfg,
        accelerator,
        data,
        objective,
        lambda seed: make_collator(cfg.masking, data.tokenizer, seed, documents=documents),
    )


def rebuild(cfg: PretrainConfig, model_config) -> MaskedLM:
    return MaskedLM(AutoModelForMaskedLM.from_config(model_config))


def export(cfg: PretrainConfig, objective: MaskedLM, run_dir: Path, out_dir: Path, metrics: dict) -> Path:
    tokenizer = run_tokenizer(run_dir)
    return write_export(objective.model, tokenizer, render_card(objective.model, tokenizer, cfg, metrics), out_dir)


def mask_rate_row(m: MaskingArgs) -> str | float:
    """The card's mask rate: the rate, or the schedule's rates and where each takes over."""
    if not m.mask_rate_schedule:
        return m.mask_rate
    later = [f"{r:g} from {f:.0%}" for r, f in zip(m.mask_rate_schedule[1:], m.mask_rate_milestones, strict=True)]
    joined = " to " if m.mask_rate_shape == "linear" else ", then "
    return f"{m.mask_rate_schedule[0]:g}{joined}{joined.join(later)} of the steps; evaluated at {m.mask_rate:g}"


def describe(cfg: PretrainConfig) -> str:
    m = cfg.masking
    keep = 1.0 - m.replace_prob - m.random_prob
    text = STRATEGIES[m.strategy].format(rate=m.mask_rate, span_p=m.span_p, max_span=m.max_span)
    return (
        f"{text}; of those, {m.replace_prob:.0%} are replaced by the mask token, {m.random_prob:.0%} by a random "
        f"token and {keep:.0%} left as they are. The loss is cross-entropy over the predicted tokens only."
    )


def render_card(model: PreTrainedModel, tokenizer, cfg: PretrainConfig, metrics: dict) -> ModelCard:
    m = cfg.masking
    card = TextCard(
        pipeline_tag="fill-mask",
        tag="masked-language-modeling",
        template="mlm.md",
        example=f"The weather today is {tokenizer.mask_token}.",
        objective=describe(cfg),
        rows={"objective": m.strategy, "mask rate": mask_rate_row(m)},
        accuracy="masked-token accuracy",
    )
    return text_card(model, tokenizer, cfg, metrics, card)
