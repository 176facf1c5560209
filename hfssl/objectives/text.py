"""What every text objective shares: the corpus, the tokenizer (trained on it unless given), packed blocks, the
loaders, the frozen-feature probe, and the export folder with its card."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from huggingface_hub import ModelCard
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, PreTrainedModel

from hfssl.cards import TEMPLATES, compute_rows, count, fmt, model_name, pretrain_card_data, training_rows
from hfssl.config import MaskingArgs, PretrainConfig
from hfssl.data.buckets import LengthGroupedSampler, padding_shares
from hfssl.data.stream import stream_loader
from hfssl.data.text import estimate_tokens, load_corpus, pack, tokenize_corpus
from hfssl.downstream.probe import load_probe_data, probe, training_scores
from hfssl.errors import UsageError, first_line
from hfssl.io import atomic_dir, check_local
from hfssl.models.text import takes_document_masks
from hfssl.objectives.base import ObjectiveOutput, Setup
from hfssl.tokenizer import train_on_corpus

logger = logging.getLogger(__name__)

TOKENIZER_DIR = "tokenizer"
"""Where a text run keeps its tokenizer, in the run directory."""


def load_tokenizer(name_or_path: str, field: str):
    check_local(name_or_path, field)
    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as err:
        raise UsageError(f"{field}: could not load a tokenizer from {name_or_path!r} ({first_line(err)})") from None


def prepare_tokenizer(
    cfg: PretrainConfig,
    corpus,
    run_dir: Path,
    accelerator: Accelerator,
    resuming: bool,
    adapt: Callable[[Any, str], None] | None = None,
):
    """Load or train the tokenizer on the main process, save it into the run, and load that copy everywhere.

    `adapt(tokenizer, source)`, before anything is saved, raises UsageError for a tokenizer the objective cannot
    use, or adapts it in place to what the objective's export needs.
    """
    saved = run_dir / TOKENIZER_DIR
    if accelerator.is_main_process and not (resuming and saved.is_dir()):
        if cfg.tokenizer.path:
            tokenizer = load_tokenizer(cfg.tokenizer.path, "tokenizer.path")
        elif cfg.model.name_or_path:
            tokenizer = load_tokenizer(cfg.model.name_or_path, "model.name_or_path")
        else:
            tokenizer = train_on_corpus(corpus, cfg.tokenizer, model_max_length=cfg.model.max_position_embeddings)
        source = cfg.tokenizer.path or cfg.model.name_or_path or "the tokenizer"
        if adapt is not None:
            adapt(tokenizer, source)
        if tokenizer.pad_token_id is None:
            raise UsageError(f"{source}: the tokenizer has no padding token")
        with atomic_dir(saved) as tmp:
            tokenizer.save_pretrained(tmp)
    accelerator.wait_for_everyone()
    return AutoTokenizer.from_pretrained(saved)


def run_tokenizer(run_dir: Path):
    """The tokenizer a text run saved in its run directory (or a dry run in its scratch directory)."""
    return AutoTokenizer.from_pretrained(run_dir / TOKENIZER_DIR)


@dataclass
class TextData:
    tokenizer: Any
    train_corpus: Any
    train_set: Any
    """Packed blocks (a map-style dataset), or a stream of them."""
    eval_set: Any

    @property
    def streaming(self) -> bool:
        return isinstance(self.train_set, torch.utils.data.IterableDataset)


def load_text(
    cfg: PretrainConfig,
    accelerator: Accelerator,
    work_dir: Path,
    resuming: bool,
    adapt: Callable[[Any, str], None] | None = None,
) -> TextData:
    """The corpus, its tokenizer (see `prepare_tokenizer`) and the tokenized, packed training and validation sets."""
    t = cfg.train
    with accelerator.main_process_first():
        train_corpus, eval_corpus = load_corpus(cfg.data, seed=t.seed)
    tokenizer = prepare_tokenizer(cfg, train_corpus, work_dir, accelerator, resuming=resuming, adapt=adapt)
    with accelerator.main_process_first():
        train_set = pack(tokenize_corpus(train_corpus, tokenizer, cfg.data), tokenizer, cfg.data)
        eval_set = pack(tokenize_corpus(eval_corpus, tokenizer, cfg.data), tokenizer, cfg.data)
    return TextData(tokenizer, train_corpus, train_set, eval_set)


def text_setup(
    cfg: PretrainConfig,
    accelerator: Accelerator,
    data: TextData,
    objective: torch.nn.Module,
    make_collator: Callable[[int], Any],
    own_probe: Callable[[torch.nn.Module], dict] | None = None,
    groups_by_length: bool = True,
) -> Setup:
    """The loop's `Setup` for a text objective: loaders over `data` with the collators `make_collator(seed)` makes,
    validation batches in order, the probe `train.probe_every` asks for (`own_probe`, else a frozen-feature
    classifier on `train.probe_data`), and the data's size for --dry-run. Without `groups_by_length` the objective
    keeps batches random whatever `data.group_by_length` says."""
    t = cfg.train
    grouped = groups_by_length and cfg.data.group_by_length and cfg.data.packing == "none"
    collator = make_collator(t.seed)
    eval_collator = make_collator(t.seed + 1)
    train_set, eval_set, streaming = data.train_set, data.eval_set, data.streaming
    if streaming:
        if grouped:
            logger.info("data.group_by_length: a streamed corpus is batched in the order it is read, not by length")
        # Each process and worker packs its own part of the stream; batches carry their position for checkpoints.
        train_loader = stream_loader(partial(train_set.batches, t.batch_size), collator, accelerator, t.num_workers)
    else:
        sampler = None
        if grouped:
            # A sampler, not a batch sampler: Accelerate cuts and shards its batches as it does a shuffled order's.
            lengths = train_set.lengths()
            sampler = LengthGroupedSampler(lengths, t.batch_size, t.seed)
            grouped_share, random_share = padding_shares(lengths, t.batch_size, t.seed)
            logger.info(
                "data.group_by_length: padding is %.1f%% of the batches' positions (%.1f%% in random batches)",
                100 * grouped_share,
                100 * random_share,
            )
        train_loader = DataLoader(
            train_set,
            batch_size=t.batch_size,
            shuffle=not grouped,
            sampler=sampler,
            collate_fn=collator,
            num_workers=t.num_workers,
            pin_memory=torch.cuda.is_available(),
            # Its own generator: starting an epoch's iterator must not draw from the global RNG, which a resumed run
            # restores (dropout comes from it).
            generator=torch.Generator().manual_seed(t.seed),
        )
    eval_size = t.eval_batch_size or t.batch_size
    eval_batches = [list(range(i, min(i + eval_size, len(eval_set)))) for i in range(0, len(eval_set), eval_size)]
    probe_splits = load_probe_data(t) if t.probe_every and own_probe is None else None

    def probe_features(raw: torch.nn.Module) -> dict:
        return training_scores(
            probe(raw.model.base_model, data.tokenizer, probe_splits, batch_size=eval_size, device=accelerator.device)
        )

    def data_size() -> tuple[float | None, str]:
        if streaming:
            return estimate_tokens(data.train_corpus, data.tokenizer, cfg.data)
        return train_set.num_tokens, f"counted in the {len(train_set):,} training sequences"

    return Setup(
        objective=objective,
        train_loader=train_loader,
        collator=collator,
        eval_set=eval_set,
        eval_batches=eval_batches,
        eval_collator=eval_collator,
        count=lambda batch: batch["attention_mask"].sum(),
        batch_description=f"{t.batch_size} sequences of {cfg.data.seq_len} tokens",
        micro_batch_units=t.batch_size * cfg.data.seq_len,
        probe=(own_probe if t.probe_every else None) or (probe_features if probe_splits is not None else None),
        data_size=data_size,
        streaming=streaming,
        prepare_train_loader=not streaming,
    )


def token_output(logits: torch.Tensor, targets: torch.Tensor, predicted: torch.Tensor) -> ObjectiveOutput:
    """The loss (fp32 cross-entropy, a mean over the predicted tokens) and per-example sums of a token-predicting
    objective: `logits` and `targets` at the positions where bool (batch, length) `predicted` is set."""
    token_loss = F.cross_entropy(logits.float(), targets, reduction="none")
    loss = token_loss.mean() if targets.numel() else logits.sum() * 0.0
    correct = logits.detach().argmax(-1) == targets
    return ObjectiveOutput(loss, token_stats(token_loss, correct, predicted.nonzero()[:, 0], predicted.shape[0]))


def token_stats(token_loss: torch.Tensor, correct: torch.Tensor, rows: torch.Tensor, batch: int) -> dict:
    """Per-example sums of predicted tokens' losses, correct predictions and counts; `rows` is each token's example."""
    sums = torch.zeros(3, batch, dtype=torch.float64, device=token_loss.device)
    sums[0].index_add_(0, rows, token_loss.detach().double())
    sums[1].index_add_(0, rows, correct.double())
    sums[2].index_add_(0, rows, torch.ones_like(token_loss, dtype=torch.float64))
    return {"loss": sums[0], "correct": sums[1], "count": sums[2]}


def token_metrics(totals: dict[str, float]) -> dict[str, float]:
    """Loss per predicted token, its perplexity, and the share of tokens predicted right, from `token_stats` sums."""
    loss = totals["loss"] / max(totals["count"], 1.0)
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 50.0)),
        "accuracy": totals["correct"] / max(totals["count"], 1.0),
    }


def describe_data(cfg: PretrainConfig, metrics: dict, model: PreTrainedModel) -> str:
    """The model card's account of the training text."""
    d = cfg.data
    source = "the synthetic English-like corpus embedded in hfssl" if d.train == "synthetic" else f"`{d.train}`"
    packing = "separator" if d.packing == "documents" and not takes_document_masks(model) else d.packing
    layout = {
        "documents": "packed into blocks in which each token attends only to its own document",
        "separator": "packed into blocks",
        "none": "one line per sequence",
    }[packing]
    return (
        f"Trained on {source}, {layout} of {d.seq_len} tokens; {int(metrics.get('tokens_seen', 0)):,} tokens seen "
        f"over {metrics.get('steps', 0):,} optimizer steps."
    )


@dataclass
class TextCard:
    """What a text objective's card says of it; `render_card` fills in the rest."""

    pipeline_tag: str
    tag: str
    """The objective's tag beside "hfssl" and the architecture."""
    template: str
    """The template's file name in model_cards/."""
    example: str
    """The pipeline input the card's example uses."""
    objective: str
    """The objective's description (its module's `describe`)."""
    rows: dict
    """The objective's own rows of the training table, before the shared ones."""
    accuracy: str
    """What the eval accuracy measures, e.g. "masked-token accuracy"."""
    results: dict[str, str] | None = None
    """The eval results table's rows, where they are not loss, perplexity and `accuracy`."""
    library_name: str = "transformers"
    """The library the export loads with, for the card's metadata."""


def render_card(model: PreTrainedModel, tokenizer, cfg: PretrainConfig, metrics: dict, text: TextCard) -> ModelCard:
    """The model card of a text objective's export: metadata, the training and compute tables, the eval results."""
    t = cfg.train
    name = model_name(cfg.export, t.output_dir)
    hyperparameters = {
        **text.rows,
        "sequence length": cfg.data.seq_len,
        "batch size (per device x accumulation x processes)": (
            f"{t.batch_size} x {t.grad_accum} x {metrics.get('num_processes', 1)}"
        ),
        **training_rows(t, metrics),
        "tokenizer": f"{type(tokenizer).__name__}, {len(tokenizer):,} tokens",
    }
    results = text.results or {
        "loss": fmt(metrics.get("eval_loss")),
        "perplexity": fmt(metrics.get("eval_perplexity")),
        text.accuracy: fmt(metrics.get("eval_accuracy")),
    }
    return ModelCard.from_template(
        pretrain_card_data(cfg, text.pipeline_tag, [text.tag, model.config.model_type], text.library_name),
        template_path=str(TEMPLATES / text.template),
        model_name=name,
        arch=model.config.model_type,
        parameters=count(model.num_parameters()),
        layers=model.config.num_hidden_layers,
        hidden=model.config.hidden_size,
        load_path=name,
        example=text.example,
        objective=text.objective,
        data=describe_data(cfg, metrics, model),
        hyperparameters=hyperparameters,
        compute=compute_rows(metrics, ("tokens seen", f"{int(metrics.get('tokens_seen', 0)):,}")),
        results=results,
    )


def write_export(
    model: PreTrainedModel,
    tokenizer,
    card: ModelCard,
    out_dir: Path,
    extras: dict[str, tuple[PreTrainedModel, ModelCard]] | None = None,
) -> Path:
    """Write `model` (safetensors), `tokenizer` and `card` to `out_dir`, and each of `extras` (a second model with its
    card, e.g. RTD's generator) with the tokenizer into the subfolder it is keyed by; all replaced atomically."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        for folder, (part, part_card) in [("", (model, card)), *(extras or {}).items()]:
            part.save_pretrained(tmp / folder)
            tokenizer.save_pretrained(tmp / folder)
            part_card.save(tmp / folder / "README.md")
    logger.info("exported %s", out_dir)
    return out_dir


def check_no_masking(masking: MaskingArgs, objective: str) -> None:
    """Next-word prediction and SimCSE hide nothing: a masking setting would be silently ignored, so it is refused."""
    default = MaskingArgs()
    for f in dataclasses.fields(MaskingArgs):
        if getattr(masking, f.name) != getattr(default, f.name):
            raise UsageError(
                f"masking.{f.name}: objective.name {objective} masks nothing; leave the masking section out"
            )
