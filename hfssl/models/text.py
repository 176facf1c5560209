"""Text models: size presets built from config, and checkpoints loaded for continued pretraining, through the
`Auto*` class an objective asks for."""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedModel, PreTrainedTokenizerBase

from hfssl.config import ModelArgs
from hfssl.errors import UsageError, first_line
from hfssl.models import load_config

# (layers, hidden, heads); feed-forward width follows the architecture's convention.
SIZES = {"tiny": (2, 128, 2), "mini": (4, 256, 4), "small": (4, 512, 8), "base": (12, 768, 12)}
ENCODERS = ("modernbert", "bert", "roberta", "electra")
"""Bidirectional architectures built from scratch (masked objectives and replaced-token detection)."""
DECODERS = ("llama", "modernbert-decoder", "gpt2")
"""Causal architectures built from scratch (next-word prediction)."""


def _special_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    ids = {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id,
        "eos_token_id": tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id,
    }
    return {k: v for k, v in ids.items() if v is not None}


def preset_shape(args: ModelArgs) -> tuple[int, int, int]:
    """(layers, hidden, heads) of the preset with the recipe's overrides; checked, so a run fails before any work."""
    layers, hidden, heads = SIZES[args.size]
    layers = args.num_layers or layers
    hidden = args.hidden_size or hidden
    heads = args.num_heads or heads
    if hidden % heads:
        raise UsageError(f"model.hidden_size: {hidden} is not divisible by model.num_heads {heads}")
    return layers, hidden, heads


# Where each architecture's config keeps its dropout probabilities (classifier heads' aside).
DROPOUT_FIELDS = (
    "hidden_dropout_prob", "attention_probs_dropout_prob", "embedding_dropout", "mlp_dropout", "attention_dropout",
    "resid_pdrop", "embd_pdrop", "attn_pdrop",
)  # fmt: skip


def dropout_fields(config, dropout: float) -> dict[str, float]:
    """`config`'s dropout fields, each set to `dropout`."""
    return {name: dropout for name in DROPOUT_FIELDS if hasattr(config, name)}


def scratch_config(args: ModelArgs, tokenizer: PreTrainedTokenizerBase):
    """A transformers config for `args.arch` at `args.size`, with the preset's fields overridden where set."""
    config = _preset_config(args, tokenizer)
    for name, value in dropout_fields(config, args.dropout or 0.0).items():
        setattr(config, name, value)
    return config


def _preset_config(args: ModelArgs, tokenizer: PreTrainedTokenizerBase):
    layers, hidden, heads = preset_shape(args)
    # Round the vocabulary up to a multiple of 64: the projection runs faster and the tokenizer still fits.
    vocab = -(-len(tokenizer) // 64) * 64
    specials = _special_ids(tokenizer)
    if args.arch in ("modernbert", "modernbert-decoder"):
        return _modernbert_config(args, layers, hidden, heads, vocab, specials)
    if args.arch in DECODERS:
        return _decoder_config(args, layers, hidden, heads, vocab, specials)
    positions = args.max_position_embeddings
    extra = {}
    if args.arch == "roberta":
        # RoBERTa numbers positions from padding_idx + 1.
        positions += (tokenizer.pad_token_id or 0) + 1
    if args.arch == "electra":
        # ELECTRA sizes its embeddings apart from its hidden layers; the presets keep them equal.
        extra["embedding_size"] = hidden
    return AutoConfig.for_model(
        args.arch,
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=args.intermediate_size or hidden * 4,
        max_position_embeddings=positions,
        type_vocab_size=1 if args.arch == "roberta" else 2,
        **specials,
        **extra,
    )


def _modernbert_config(args: ModelArgs, layers: int, hidden: int, heads: int, vocab: int, specials: dict):
    """ModernBERT's encoder or its decoder: the same fields."""
    return AutoConfig.for_model(
        args.arch,
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        # GeGLU: the projection is doubled inside, so 1.5x hidden matches a 3x plain MLP in parameters.
        intermediate_size=args.intermediate_size or hidden * 3 // 2,
        max_position_embeddings=args.max_position_embeddings,
        cls_token_id=specials.get("bos_token_id"),
        sep_token_id=specials.get("eos_token_id"),
        **specials,
    )


def _decoder_config(args: ModelArgs, layers: int, hidden: int, heads: int, vocab: int, specials: dict):
    """GPT-2's or Llama's config."""
    if args.arch == "gpt2":
        return AutoConfig.for_model(
            "gpt2",
            vocab_size=vocab,
            n_embd=hidden,
            n_layer=layers,
            n_head=heads,
            n_inner=args.intermediate_size or hidden * 4,
            n_positions=args.max_position_embeddings,
            **specials,
        )
    return AutoConfig.for_model(
        "llama",
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        # SwiGLU: its three projections at 8/3 x hidden match a 4x plain MLP in parameters; rounded to 64.
        intermediate_size=args.intermediate_size or -(-hidden * 8 // 3 // 64) * 64,
        max_position_embeddings=args.max_position_embeddings,
        tie_word_embeddings=True,
        **specials,
    )


def is_causal(config) -> bool:
    """Whether a checkpoint's config is a causal (decoder-only) language model."""
    if config.model_type in DECODERS:
        return True
    return any(name.endswith("ForCausalLM") for name in getattr(config, "architectures", None) or ())


def usable_positions(config) -> int:
    """Longest sequence (specials included) the model's position embeddings can take."""
    positions = config.max_position_embeddings
    if config.model_type in ("roberta", "xlm-roberta"):
        positions -= (config.pad_token_id or 0) + 1
    return positions


def check_positions(args: ModelArgs, seq_len: int) -> None:
    """Fail before any work when sequences are longer than the model can address (or, from scratch, the preset's
    shape is impossible)."""
    if args.name_or_path:
        limit = usable_positions(load_config(args))
    else:
        preset_shape(args)
        limit = args.max_position_embeddings
    if seq_len > limit:
        raise UsageError(f"data.seq_len: {seq_len} exceeds the model's {limit} positions (max_position_embeddings)")


def check_kind(args: ModelArgs, causal: bool, objective: str) -> None:
    """An objective trains either encoders or decoders: refuse the other kind, from scratch or from a checkpoint."""
    wanted, other = ("a causal decoder", DECODERS) if causal else ("an encoder", ENCODERS)
    if args.name_or_path:
        config = load_config(args)
        if is_causal(config) != causal:
            raise UsageError(
                f"model.name_or_path: {args.name_or_path!r} is a {config.model_type} model; {objective} trains {wanted}"
            )
    elif args.arch not in other:
        raise UsageError(
            f"model.arch: {args.arch} is not {wanted}, which {objective} trains; use one of {', '.join(other)}"
        )


def build_model(args: ModelArgs, tokenizer: PreTrainedTokenizerBase, auto_class, **kwargs) -> PreTrainedModel:
    """An `auto_class` model (e.g. `AutoModelForMaskedLM`) from the preset (from scratch) or from `args.name_or_path`
    (continued pretraining); `kwargs` go to the model's constructor (e.g. `add_pooling_layer`)."""
    if not args.name_or_path:
        return auto_class.from_config(scratch_config(args, tokenizer), attn_implementation="sdpa", **kwargs)
    try:
        if args.dropout is not None:
            kwargs |= dropout_fields(load_config(args), args.dropout)
        model = auto_class.from_pretrained(
            args.name_or_path, attn_implementation="sdpa", trust_remote_code=args.trust_remote_code, **kwargs
        )
    except (OSError, ValueError) as err:
        raise UsageError(f"model.name_or_path: could not load {args.name_or_path!r} ({first_line(err)})") from None
    if len(tokenizer) > model.config.vocab_size:
        raise UsageError(
            f"tokenizer: {len(tokenizer)} tokens do not fit the vocabulary of {args.name_or_path!r} "
            f"({model.config.vocab_size}); pretrain from scratch or use the checkpoint's tokenizer"
        )
    return model
