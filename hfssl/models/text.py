"""Text models: size presets built from config, and checkpoints loaded for continued pretraining, through the
`Auto*` class an objective asks for."""

from __future__ import annotations

import logging

import torch
from transformers import AutoConfig, PreTrainedModel, PreTrainedTokenizerBase

from hfssl.config import ModelArgs
from hfssl.errors import UsageError, first_line
from hfssl.models import load_config
from hfssl.models.attention import BLOCK_SPARSE, DocumentTiles, flash_available, use_block_sparse, varlen_inputs

logger = logging.getLogger(__name__)

# (layers, hidden, heads); feed-forward width follows the architecture's convention.
SIZES = {"tiny": (2, 128, 2), "mini": (4, 256, 4), "small": (4, 512, 8), "base": (12, 768, 12)}
ENCODERS = ("modernbert", "bert", "roberta", "electra")
"""Bidirectional architectures built from scratch (masked objectives and replaced-token detection)."""
DECODERS = ("llama", "modernbert-decoder", "gpt2")
"""Causal architectures built from scratch (next-word prediction)."""
DOCUMENT_ATTENTION = (*ENCODERS, *DECODERS, "xlm-roberta")
"""Architectures whose attention takes the per-document masks of `model_inputs` (their models build masks with
transformers' masking_utils, which passes a ready 4D mask, or ModernBERT's dict of one per layer type, through as
it is); tests/models/test_text.py checks each."""
FLASH = ("flash_attention_2", "flash_attention_3")
"""Implementations that take a packed batch padding-free, by its documents' sequence lengths (`varlen_inputs`)."""
DOCUMENT_MASK_IMPLEMENTATIONS = ("eager", "sdpa", BLOCK_SPARSE, *FLASH)
"""Attention implementations that keep each token to its document: eager and sdpa with a block-diagonal mask,
block-sparse with tiles where that is cheaper (models/attention.py), flash-attention by sequence lengths."""


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


def _first_position(config) -> int:
    """The position id of a sequence's first token: RoBERTa numbers positions from padding_idx + 1."""
    return (config.pad_token_id or 0) + 1 if config.model_type in ("roberta", "xlm-roberta") else 0


def usable_positions(config) -> int:
    """Longest sequence (specials included) the model's position embeddings can take."""
    return config.max_position_embeddings - _first_position(config)


def document_packing(cfg, model: PreTrainedModel, *others: PreTrainedModel) -> bool:
    """Whether batches for `model` (and `others` that take the same batches, e.g. ELECTRA's generator) carry document
    ids and positions: `cfg.data.packing` "documents" on a model that can take the masks; otherwise it says, in one
    log line, that it falls back to separator packing. With `cfg.model.attention` auto the models attend
    block-sparse (models/attention.py) wherever a batch's documents make that cheaper; not under `train.compile`,
    whose graphs would be rebuilt for each batch's window sizes."""
    if cfg.data.packing != "documents":
        return False
    if not takes_document_masks(model):
        config = model.config
        logger.warning(
            "data.packing: documents needs attention masked per document, which %s with %s attention cannot take; "
            "packing with separators instead (tokens attend across documents)",
            config.model_type,
            config._attn_implementation,
        )
        return False
    models = (model, *others)
    if cfg.model.attention == "flash":
        if flash_available():
            for each in models:
                each.set_attn_implementation("flash_attention_2")
            return True
        logger.warning(
            "model.attention: flash needs flash-attention 2 installed and a CUDA device (%s); "
            "block-sparse sdpa instead",
            "no CUDA device" if not torch.cuda.is_available() else "flash_attn is not installed",
        )
    if cfg.model.attention != "dense" and not cfg.train.compile:
        use_block_sparse(*models)
    return True


def takes_document_masks(model: PreTrainedModel) -> bool:
    """Whether `model`'s architecture and attention take hfssl's per-document masks."""
    config = model.config
    return config.model_type in DOCUMENT_ATTENTION and config._attn_implementation in DOCUMENT_MASK_IMPLEMENTATIONS


def model_inputs(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    document_ids: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    tile: bool | None = None,
) -> dict:
    """Keyword arguments of `model`'s forward for a batch; with `document_ids` (document packing), each token
    attends only to its own document, at its `position_ids` within it.

    A model switched to block-sparse attention (`document_packing`) gets `document_tiles` for the layer types its
    windows make cheaper and dense masks (`document_masks`) for the rest; `tile` True tiles every layer type, False
    none (tests and benchmarks compare the two). A flash-attention model gets no mask but the batch's sequence
    lengths (`varlen_inputs`): padding-free."""
    if document_ids is None:
        return {"input_ids": input_ids, "attention_mask": attention_mask}
    config = model.config
    inputs = {"input_ids": input_ids, "position_ids": position_ids + _first_position(config)}
    layer_types = set(getattr(config, "layer_types", None) or ())
    if config._attn_implementation in FLASH:
        # Padding-free: the model attends within the segments the sequence lengths give, with no mask at all.
        masks = {kind: None for kind in layer_types} if layer_types else None
        return inputs | {"attention_mask": masks} | varlen_inputs(document_ids, attention_mask)
    tiles = None
    if tile is not False and config._attn_implementation == BLOCK_SPARSE:
        tiles = DocumentTiles.plan(config, document_ids, attention_mask, is_causal(config), force=bool(tile))
    if tiles is None:
        return inputs | {"attention_mask": document_masks(config, document_ids, attention_mask, model.dtype)}
    dense = layer_types - set(tiles.windows)
    masks = document_masks(config, document_ids, attention_mask, model.dtype, kinds=dense) if dense else {}
    # A layer type that runs tiled needs no mask; a model with one layer type takes none at all.
    mask = {kind: masks.get(kind) for kind in layer_types} if layer_types else None
    return inputs | {"attention_mask": mask, "document_tiles": tiles}


def document_masks(
    config, document_ids: torch.Tensor, attention_mask: torch.Tensor, dtype: torch.dtype, kinds: set[str] | None = None
):
    """The 4D (batch, 1, query, key) masks `config`'s model would build from `attention_mask`, bidirectional or
    causal, sliding in its sliding layers, narrowed to pairs of tokens in the same document.

    Built here by broadcasting, not by transformers' mask functions (vmapped per element, ~30x slower on a CPU batch
    and most of what document packing cost). tests/models/test_text.py checks them against a document run alone
    through the model's own masks. Every token may attend to itself, so that no padding query's row is empty
    (a softmax over nothing); no real token ever sees padding.

    `kinds` narrows a dict by layer type to those types (the others run block-sparse).

    Returns:
        Additive masks of `dtype` (0 where a token attends, the dtype's minimum where not), which eager and sdpa
        attention both take: on a CPU, sdpa's forward and backward ran 1.4x faster with this than with a bool mask
        (which it converts on every call). A dict by layer type where the config names its layers' types
        (ModernBERT), which its model takes as it is; else the one mask.
    """
    length = document_ids.shape[1]
    index = torch.arange(length, device=document_ids.device)
    query, key = index[:, None], index[None, :]
    same = document_ids[:, None, :, None] == document_ids[:, None, None, :]
    allowed = same & attention_mask.bool()[:, None, None, :]
    causal = is_causal(config)
    if causal:
        allowed = allowed & (key <= query)
    layer_types = set(getattr(config, "layer_types", None) or ())
    if kinds is not None:
        layer_types &= kinds
    masks = {"full_attention": allowed} if "full_attention" in layer_types or not layer_types else {}
    if "sliding_attention" in layer_types:
        # transformers' windows: a causal layer sees the last `sliding_window` keys, a bidirectional one every key
        # within `sliding_window` either side.
        window = config.sliding_window
        near = key > query - window if causal else (query - key).abs() <= window
        masks["sliding_attention"] = allowed & near
    blocked = {kind: ~(mask | (query == key)) for kind, mask in masks.items()}
    minimum = torch.finfo(dtype).min
    additive = {
        kind: torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, minimum)
        for kind, mask in blocked.items()
    }
    return {kind: additive[kind] for kind in layer_types} if layer_types else additive["full_attention"]


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
