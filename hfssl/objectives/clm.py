"""Next-word prediction (`objective.name: clm`) over any `AutoModelForCausalLM`: every token is predicted from the
ones before it, and no loss is taken across a document boundary of the packed blocks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from accelerate import Accelerator
from huggingface_hub import ModelCard
from transformers import AutoModelForCausalLM, PreTrainedModel

from hfssl.collators.text import CausalLMCollator
from hfssl.config import ObjectiveSection, PretrainConfig, arg
from hfssl.models.text import build_model, check_kind, check_positions, document_packing, model_inputs
from hfssl.objectives.base import ObjectiveOutput, Setup
from hfssl.objectives.text import (
    TOKENIZER_DIR,
    TextCard,
    check_no_masking,
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
from hfssl.tokenizer import for_generation


@dataclass
class CLMArgs(ObjectiveSection):
    """Next-word prediction takes no settings of its own."""

    name: Literal["clm"] = arg("clm", "clm: next-word prediction (every token from the ones before it, a decoder)")


@dataclass
class CLMConfig(PretrainConfig):
    objective: CLMArgs = field(default_factory=CLMArgs)


SCHEMA = CLMConfig
UNIT = "tokens"
RUN_FILES = (TOKENIZER_DIR,)


class CausalLM(torch.nn.Module):
    """Next-word prediction over any `AutoModelForCausalLM`: cross-entropy, in fp32, of each labelled token given
    the ones before it (the collator leaves padding and each document's first token unlabelled)."""

    stat_names = ("loss", "correct", "count")

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, labels, document_ids=None, position_ids=None) -> ObjectiveOutput:
        inputs = model_inputs(self.model, input_ids, attention_mask, document_ids, position_ids)
        logits = self.model(**inputs).logits[:, :-1]
        targets = labels[:, 1:]
        predicted = targets != -100
        return token_output(logits[predicted], targets[predicted], predicted)

    @staticmethod
    def summarise(totals: dict[str, float]) -> dict[str, float]:
        return token_metrics(totals)

    def before_forward(self, step: int) -> None:
        """Nothing in next-word prediction depends on the step."""

    def after_optimizer_step(self, step: int) -> None:
        """Nothing changes between steps but the weights."""

    def health(self, logs: dict[str, float], step: int) -> str | None:
        """No failure of its own to watch for beyond a non-finite loss, which the loop checks."""
        return None


def setup(cfg: PretrainConfig, accelerator: Accelerator, work_dir: Path, resuming: bool) -> Setup:
    """The corpus, the tokenizer (trained on it unless given; it encodes prompts for generation), packed blocks,
    the decoder and the collator that labels every token of its own document."""
    check_kind(cfg.model, causal=True, objective="next-word prediction (clm)")
    check_no_masking(cfg.masking, "clm")
    check_positions(cfg.model, cfg.data.seq_len)
    data = load_text(cfg, accelerator, work_dir, resuming, adapt=lambda tokenizer, source: for_generation(tokenizer))
    objective = CausalLM(build_model(cfg.model, data.tokenizer, AutoModelForCausalLM))
    documents = document_packing(cfg, objective.model)
    return text_setup(
        cfg, accelerator, data, objective, lambda seed: CausalLMCollator(data.tokenizer, documents=documents)
    )


def rebuild(cfg: PretrainConfig, model_config) -> CausalLM:
    return CausalLM(AutoModelForCausalLM.from_config(model_config))


def export(cfg: PretrainConfig, objective: CausalLM, run_dir: Path, out_dir: Path, metrics: dict) -> Path:
    tokenizer = run_tokenizer(run_dir)
    return write_export(objective.model, tokenizer, render_card(objective.model, tokenizer, cfg, metrics), out_dir)


def describe(cfg: PretrainConfig) -> str:
    layout = "one line per sequence" if cfg.data.packing == "none" else "packed blocks"
    return (
        f"Next-word prediction: every token of the {layout} of {cfg.data.seq_len} tokens is predicted from the ones "
        "before it, with cross-entropy; the first token of a document is never predicted from the end of the "
        "document before it, so no loss crosses a document boundary."
    )


def render_card(model: PreTrainedModel, tokenizer, cfg: PretrainConfig, metrics: dict) -> ModelCard:
    card = TextCard(
        pipeline_tag="text-generation",
        tag="causal-lm",
        template="clm.md",
        example="The weather today is",
        objective=describe(cfg),
        rows={"objective": "next-word prediction"},
        accuracy="next-token accuracy",
    )
    return text_card(model, tokenizer, cfg, metrics, card)
