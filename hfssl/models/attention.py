"""Block-sparse document attention: a packed block's queries, a tile of them at a time, against only the keys that
their documents (and a sliding layer's window) can reach.

Document packing masks each token to its own document. Dense attention still computes every score of the block and
masks the other documents' away: a 40-token document in a 1,024-token block needs under 5% of them. Here the block
is cut into tiles of `TILE` queries; each tile attends to a window of keys from the start of its first token's
document to the end of its last one's, widened to the widest such reach in the batch so that every window has one
shape and one `scaled_dot_product_attention` call takes them all. ModernBERT's sliding layers (each token sees 64
either side) never reach further than their window, whatever the documents, so they are sparse at any length.

FlexAttention does the same with block masks, but on a CPU torch 2.14 runs its forward only (no backward), and on
GPUs it needs a compiled kernel per mask shape; this path is plain sdpa on gathered windows, exact (tests compare
logits and gradients with the dense document masks), on every device, eagerly (`train.compile` keeps the dense masks:
the windows' sizes change from batch to batch, and each would compile anew).

The attention implementation registered here as `BLOCK_SPARSE` is sdpa whenever a forward carries no
`document_tiles` (a plain batch, a fine-tune, an export reloaded elsewhere: the name is never saved in a config).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

BLOCK_SPARSE = "hfssl_block_sparse"
"""The attention implementation name models are switched to when document packing may tile (`use_block_sparse`)."""
TILE = 64
"""Queries per tile. A training step of ModernBERT mini at seq 1024 on a 2-core CPU, 60-token documents: 4,607
tokens/s with 128, 4,988 with 64, 4,804 with 32 (3,664 dense): smaller tiles narrow the windows, but below 64 the
per-tile matmuls are too small to run at speed."""
WORTHWHILE = 0.5
"""Tile a layer type only when its windows hold at most this share of the dense block's keys. A window of a tile plus
reach on both sides costs gathering keys and values per tile, and smaller matmuls; at half the scores the tiled step
was already faster (bench/README, issue 27)."""


@dataclass
class DocumentTiles:
    """Where each query tile of a packed batch may look, for every layer type of the model: built once per batch
    from its document ids and shared by all layers.

    `plan` decides per layer type; `windows[kind]` is `(before, after)`: how many keys before a tile's first query and
    after its last one the widest document (or the sliding window) in the batch reaches. A kind not in `windows`
    runs dense (its sdpa mask is in the model's attention mask as usual).
    """

    document_ids: torch.Tensor
    """(batch, length) long: each token's document, -1 on padding so that no real token sees it."""
    causal: bool
    windows: dict[str, tuple[int, int]]
    """Layer type -> keys reached (before, after) the tile; only the types that run tiled."""
    sliding_window: int | None = None
    """Keys either side a sliding layer sees (ModernBERT's `config.sliding_window`); None without sliding layers."""
    _masks: dict = field(default_factory=dict, repr=False)

    @classmethod
    def plan(
        cls, config, document_ids, attention_mask, causal: bool = False, force: bool = False
    ) -> DocumentTiles | None:
        """The tiles for `config`'s model on this batch, or None when every layer type is cheaper dense.

        Args:
            config: the model's config (its layer types, sliding window, causality).
            document_ids: (batch, length) from the collator's `document_layout`.
            attention_mask: (batch, length), 0 on padding.
            causal: the model is a decoder (each token sees only the keys before it).
            force: tile every layer type whatever its cost (tests, benchmarks).
        """
        real = attention_mask.bool()
        documents = torch.where(real, document_ids, -1)
        length = documents.shape[1]
        reach_before, reach_after = _document_reach(documents)
        if causal:
            reach_after = 0
        layer_types = set(getattr(config, "layer_types", None) or ("full_attention",))
        sliding = getattr(config, "sliding_window", None) if "sliding_attention" in layer_types else None
        windows = {}
        for kind in layer_types:
            before, after = reach_before, reach_after
            if kind == "sliding_attention":
                before, after = min(before, sliding), min(after, 0 if causal else sliding)
            keys = TILE + before + after
            if force or keys <= WORTHWHILE * length:
                windows[kind] = (before, after)
        if not windows:
            return None
        return cls(documents, causal, windows, sliding)

    def mask(self, kind: str, dtype: torch.dtype) -> torch.Tensor:
        """Additive (batch x tiles, 1, TILE, window) mask of `kind`'s tiles: 0 where a query may see a key."""
        if (kind, dtype) not in self._masks:
            self._masks[kind, dtype] = self._build_mask(kind, dtype)
        return self._masks[kind, dtype]

    def _build_mask(self, kind: str, dtype: torch.dtype) -> torch.Tensor:
        before, after = self.windows[kind]
        # Filler queries past the block's end are -2, keys outside it -3: neither equals a document id or -1.
        documents = _pad_to_tiles(self.document_ids, value=-2)
        batch, length = documents.shape
        keys = TILE + before + after
        key_documents = F.pad(documents, (before, after), value=-3).unfold(1, keys, TILE)
        query_documents = documents.view(batch, -1, TILE)
        allowed = (query_documents[..., :, None] == key_documents[..., None, :]) & (key_documents[..., None, :] >= 0)
        query = torch.arange(TILE, device=documents.device)[:, None] + before
        key = torch.arange(keys, device=documents.device)[None, :]
        if kind == "sliding_attention":
            near = key > query - self.sliding_window if self.causal else (query - key).abs() <= self.sliding_window
            allowed = allowed & near
        if self.causal:
            allowed = allowed & (key <= query)
        # Every query sees itself, so that no padding query's row is empty (as document_masks does).
        allowed = allowed | (query == key)
        additive = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
        return additive.masked_fill_(~allowed, torch.finfo(dtype).min).flatten(0, 1).unsqueeze(1)


def _segment_starts(segments: torch.Tensor) -> torch.Tensor:
    """(batch, length) bool: where a run of equal ids begins in each row (every row's first token included)."""
    starts = torch.ones_like(segments, dtype=torch.bool)
    starts[:, 1:] = segments[:, 1:] != segments[:, :-1]
    return starts


def _document_reach(documents: torch.Tensor) -> tuple[int, int]:
    """How far before a tile's first query its document starts, and after its last query its document ends, at most
    over the batch's tiles (one host sync per batch)."""
    length = documents.shape[1]
    index = torch.arange(length, device=documents.device)
    starts = _segment_starts(documents)
    ends = torch.ones_like(starts)
    ends[:, :-1] = starts[:, 1:]
    first = torch.where(starts, index, 0).cummax(1).values
    last = torch.where(ends, index, length - 1).flip(1).cummin(1).values.flip(1)
    tile_start = index // TILE * TILE
    before = (tile_start - first).clamp(min=0).amax()
    after = (last - (tile_start + TILE - 1)).clamp(min=0).amax()
    reach = torch.stack([before, after]).tolist()
    return reach[0], reach[1]


def _pad_to_tiles(x: torch.Tensor, value: int | float = 0, dim: int = 1) -> torch.Tensor:
    """`x` padded along `dim` to a whole number of tiles."""
    missing = -x.shape[dim] % TILE
    if not missing:
        return x
    pad = [0, 0] * (x.ndim - 1 - dim) + [0, missing]
    return F.pad(x, pad, value=value)


def _windows(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """(batch, heads, length, dim) keys or values -> (batch x tiles, heads, window, dim), each tile's window."""
    batch, heads, _, dim = x.shape
    keys = TILE + before + after
    x = F.pad(_pad_to_tiles(x, dim=2), (0, 0, before, after)).unfold(2, keys, TILE)
    return x.permute(0, 2, 1, 4, 3).reshape(-1, heads, keys, dim)


def block_sparse_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    sliding_window: int | None = None,
    document_tiles: DocumentTiles | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' attention interface: (batch, length, heads, dim) outputs, as sdpa_attention_forward returns them.
    Tiled when the batch's `document_tiles` tile this layer's type (a sliding layer is one that passes a
    `sliding_window`), else sdpa with the model's mask."""
    kind = "full_attention" if sliding_window is None else "sliding_attention"
    if document_tiles is None or kind not in document_tiles.windows:
        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            sliding_window=sliding_window,
            **kwargs,
        )
    before, after = document_tiles.windows[kind]
    batch, heads, length, dim = query.shape
    if key.shape[1] != heads:  # grouped-query attention: each key head serves several query heads
        key = key.repeat_interleave(heads // key.shape[1], dim=1)
        value = value.repeat_interleave(heads // value.shape[1], dim=1)
    tiles = _pad_to_tiles(query, dim=2)
    tiles = tiles.view(batch, heads, -1, TILE, dim).transpose(1, 2).reshape(-1, heads, TILE, dim)
    output = F.scaled_dot_product_attention(
        tiles,
        _windows(key, before, after),
        _windows(value, before, after),
        attn_mask=document_tiles.mask(kind, query.dtype),
        dropout_p=dropout,
        scale=scaling,
    )
    output = output.view(batch, -1, heads, TILE, dim).permute(0, 1, 3, 2, 4).reshape(batch, -1, heads, dim)
    return output[:, :length], None


AttentionInterface.register(BLOCK_SPARSE, block_sparse_attention)
# Plain batches (no documents) get sdpa's own masks.
AttentionMaskInterface.register(BLOCK_SPARSE, sdpa_mask)


def varlen_inputs(document_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict:
    """flash-attention's padding-free inputs for a packed batch: its rows laid end to end as one sequence of segments,
    each document one segment and each row's padding another (so that no real token sees it).

    Returns:
        `cu_seq_lens_q`/`_k` (int32, segments + 1: where each segment starts in the flattened batch, then its total)
        and `max_length_q`/`_k` (the longest segment), the keyword arguments transformers' flash-attention forward
        takes instead of a mask.
    """
    starts = _segment_starts(torch.where(attention_mask.bool(), document_ids, -1)).flatten()
    total = starts.new_tensor([starts.numel()], dtype=torch.long)
    boundaries = torch.cat([starts.nonzero().flatten(), total]).to(torch.int32)
    longest = int(boundaries.diff().max())
    return {"cu_seq_lens_q": boundaries, "cu_seq_lens_k": boundaries, "max_length_q": longest, "max_length_k": longest}


def flash_available() -> bool:
    """Whether a packed batch can go padding-free: flash-attention 2 installed and a CUDA device to run it."""
    from transformers.utils import is_flash_attn_2_available

    return torch.cuda.is_available() and is_flash_attn_2_available()


def use_block_sparse(*models) -> None:
    """Run `models`' attention through `block_sparse_attention` (sdpa wherever a batch carries no tiles)."""
    for model in models:
        if model.config._attn_implementation != BLOCK_SPARSE:
            model.set_attn_implementation(BLOCK_SPARSE)
