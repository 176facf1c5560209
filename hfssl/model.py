"""Masked-LM models: size presets built from config, checkpoints loaded for continued pretraining, and the
objective wrapper that projects onto the vocabulary only where a token is predicted."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForMaskedLM, PreTrainedModel, PreTrainedTokenizerBase

from hfssl.config import ModelArgs
from hfssl.errors import UsageError

# (layers, hidden, heads); feed-forward width follows the architecture's convention.
SIZES = {"tiny": (2, 128, 2), "mini": (4, 256, 4), "small": (4, 512, 8), "base": (12, 768, 12)}

# Where each architecture keeps its encoder and the modules that turn hidden states into vocabulary logits.
# Architectures not listed still train, through their own forward and full logits.
MLM_HEADS = {
    "bert": ("cls",),
    "roberta": ("lm_head",),
    "xlm-roberta": ("lm_head",),
    "modernbert": ("head", "decoder"),
}


def _special_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    ids = {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id,
        "eos_token_id": tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id,
    }
    return {k: v for k, v in ids.items() if v is not None}


def scratch_config(args: ModelArgs, tokenizer: PreTrainedTokenizerBase):
    """A transformers config for `args.arch` at `args.size`, with the preset's fields overridden where set."""
    layers, hidden, heads = SIZES[args.size]
    layers = args.num_layers or layers
    hidden = args.hidden_size or hidden
    heads = args.num_heads or heads
    if hidden % heads:
        raise UsageError(f"model.hidden_size: {hidden} is not divisible by model.num_heads {heads}")
    # Round the vocabulary up to a multiple of 64: the projection runs faster and the tokenizer still fits.
    vocab = -(-len(tokenizer) // 64) * 64
    specials = _special_ids(tokenizer)
    if args.arch == "modernbert":
        return AutoConfig.for_model(
            "modernbert",
            vocab_size=vocab,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            # GeGLU: the projection is doubled inside, so 1.5x hidden matches a 3x plain MLP in parameters.
            intermediate_size=args.intermediate_size or hidden * 3 // 2,
            max_position_embeddings=args.max_position_embeddings,
            embedding_dropout=args.dropout,
            mlp_dropout=args.dropout,
            attention_dropout=args.dropout,
            cls_token_id=specials.get("bos_token_id"),
            sep_token_id=specials.get("eos_token_id"),
            **specials,
        )
    positions = args.max_position_embeddings
    if args.arch == "roberta":
        # RoBERTa numbers positions from padding_idx + 1.
        positions += (tokenizer.pad_token_id or 0) + 1
    return AutoConfig.for_model(
        args.arch,
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=args.intermediate_size or hidden * 4,
        max_position_embeddings=positions,
        hidden_dropout_prob=args.dropout,
        attention_probs_dropout_prob=args.dropout,
        type_vocab_size=1 if args.arch == "roberta" else 2,
        **specials,
    )


def usable_positions(config) -> int:
    """Longest sequence (specials included) the model's position embeddings can take."""
    positions = config.max_position_embeddings
    if config.model_type in ("roberta", "xlm-roberta"):
        positions -= (config.pad_token_id or 0) + 1
    return positions


def check_positions(args: ModelArgs, seq_len: int) -> None:
    """Fail before any work when sequences are longer than the model can address."""
    if args.name_or_path:
        try:
            config = AutoConfig.from_pretrained(args.name_or_path, trust_remote_code=args.trust_remote_code)
        except (OSError, ValueError) as err:
            raise UsageError(
                f"model.name_or_path: could not load {args.name_or_path!r} ({str(err).splitlines()[0]})"
            ) from None
        limit = usable_positions(config)
    else:
        limit = args.max_position_embeddings
    if seq_len > limit:
        raise UsageError(f"data.seq_len: {seq_len} exceeds the model's {limit} positions (max_position_embeddings)")


def build_model(args: ModelArgs, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """A masked-LM from the preset (from scratch) or from `args.name_or_path` (continued pretraining)."""
    if args.name_or_path:
        try:
            model = AutoModelForMaskedLM.from_pretrained(
                args.name_or_path, attn_implementation="sdpa", trust_remote_code=args.trust_remote_code
            )
        except (OSError, ValueError) as err:
            raise UsageError(
                f"model.name_or_path: could not load {args.name_or_path!r} ({str(err).splitlines()[0]})"
            ) from None
        if len(tokenizer) > model.config.vocab_size:
            raise UsageError(
                f"tokenizer: {len(tokenizer)} tokens do not fit the vocabulary of {args.name_or_path!r} "
                f"({model.config.vocab_size}); pretrain from scratch or use the checkpoint's tokenizer"
            )
    else:
        model = AutoModelForMaskedLM.from_config(scratch_config(args, tokenizer), attn_implementation="sdpa")
    return model


@dataclass
class MaskedLMOutput:
    """Loss over predicted tokens and their logits only (shape: predicted tokens x vocabulary)."""

    loss: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor
    stats: dict[str, torch.Tensor]
    """Per-example sums for evaluation: token loss, correct predictions, predicted tokens."""
    logs: dict[str, torch.Tensor] = field(default_factory=dict)
    """Scalars the training loop averages over its log window (none beyond the loss)."""


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

    def forward(self, input_ids, attention_mask, labels, **kwargs) -> MaskedLMOutput:
        predicted = labels != -100
        if self.head is None:
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits[predicted]
        else:
            hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)[0]
            logits = hidden[predicted]
            for name in self.head:
                logits = getattr(self.model, name)(logits)
        targets = labels[predicted]
        token_loss = F.cross_entropy(logits.float(), targets, reduction="none")
        loss = token_loss.mean() if targets.numel() else logits.sum() * 0.0
        rows = predicted.nonzero()[:, 0]
        sums = torch.zeros(3, labels.shape[0], dtype=torch.float64, device=labels.device)
        sums[0].index_add_(0, rows, token_loss.detach().double())
        sums[1].index_add_(0, rows, (logits.detach().argmax(-1) == targets).double())
        sums[2].index_add_(0, rows, torch.ones_like(token_loss, dtype=torch.float64))
        stats = {"loss": sums[0], "correct": sums[1], "count": sums[2]}
        return MaskedLMOutput(loss=loss, logits=logits, labels=targets, stats=stats)

    @staticmethod
    def summarise(totals: dict[str, float]) -> dict[str, float]:
        """Evaluation metrics from the gathered sums of `stats`."""
        loss = totals["loss"] / max(totals["count"], 1.0)
        return {
            "loss": loss,
            "perplexity": math.exp(min(loss, 50.0)),
            "accuracy": totals["correct"] / max(totals["count"], 1.0),
        }

    def set_step(self, step: int) -> None:
        """Nothing in masked-LM depends on the step."""

    def health(self, logs: dict[str, float], step: int) -> str | None:
        """Masked-LM has no failure of its own to watch for beyond a non-finite loss, which the loop checks."""
        return None
