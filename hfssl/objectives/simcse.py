"""Contrastive sentence embeddings (`objective.name: simcse`), as in SimCSE: an encoder (an hfssl export, a local
checkpoint or a Hub name, else a new one of `model.arch`) learns to embed texts so that two views of the same text
lie closer, by cosine, than any other text of the batch. Unsupervised, the two views are the same text encoded twice
with dropout on, or two random crops of it (`objective.views: crops`, as Contriever's positives); supervised, they
are an anchor and its positive from a file of pairs, with an optional hard negative each. With several processes the
candidates are gathered from all of them, so the batch of negatives grows with the process count. The export is a
sentence-transformers folder (the encoder and its pooling)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import datasets
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from huggingface_hub import ModelCard
from transformers import AutoModel, PreTrainedModel

from hfssl.cards import fmt
from hfssl.collators.pairs import ContrastiveCollator, CropCollator
from hfssl.config import ObjectiveSection, PretrainConfig, TrainArgs, arg, check
from hfssl.data.pairs import load_pairs, tokenize_pairs
from hfssl.data.similarity import embedded_retrieval, embedded_similarity, load_similarity
from hfssl.data.text import DocumentChunks, special_ids
from hfssl.distributed import gather_with_grad
from hfssl.downstream import embeddings
from hfssl.errors import UsageError
from hfssl.models import load_config
from hfssl.models.text import DECODERS, build_model, check_positions, dropout_fields, is_causal
from hfssl.objectives.base import ObjectiveOutput, Setup
from hfssl.objectives.text import (
    TOKENIZER_DIR,
    TextCard,
    TextData,
    check_no_masking,
    load_text,
    load_tokenizer,
    prepare_tokenizer,
    run_tokenizer,
    text_setup,
)
from hfssl.objectives.text import (
    render_card as text_card,
)

logger = logging.getLogger(__name__)


@dataclass
class SimCSEArgs(ObjectiveSection):
    """The contrastive loss's temperature, the pooling that makes the sentence embedding, and supervised pairs."""

    name: Literal["simcse"] = arg(
        "simcse",
        "simcse: contrastive sentence embeddings (two views of a text, or a pair from objective.pairs, pulled "
        "together against the rest of the batch), continuing from model.name_or_path or from scratch",
    )
    temperature: float = arg(
        0.05, "the softmax temperature of the cosine similarities (SimCSE: 0.05; lower is sharper)"
    )
    pooling: Literal["mean", "cls", "last"] = arg(
        "mean",
        "the sentence embedding: the mean of the last layer's token states, the first (CLS) token's, or the "
        "last token's (for a causal model, the only one that has read the whole text)",
    )
    token_weights: Literal["none", "idf"] = arg(
        "none",
        "with pooling mean: idf makes the export weigh each token's state by its inverse document frequency over the "
        "training texts (ln((1 + n) / (1 + df)) + 1, as TF-IDF; sentence-transformers' WordWeights), so the words "
        "that tell texts apart outweigh the ones every text has; the contrastive loss still pools a plain mean "
        "(weighting it too scored lower); none: a plain mean",
    )
    views: Literal["dropout", "crops"] = arg(
        "dropout",
        "unsupervised positives: dropout, the same text encoded twice with dropout on (SimCSE); crops, two "
        "independent random spans of the same text (Contriever), which need no dropout",
    )
    crop_min: float = arg(0.1, "with views crops: the smallest share of a text's tokens a crop keeps")
    crop_max: float = arg(0.5, "with views crops: the largest share of a text's tokens a crop keeps")
    embed_len: int | None = arg(
        None,
        "the tokens of a text the export embeds (its sentence-transformers max_seq_length; the probes read as "
        "many), at most data.seq_len (empty: data.seq_len); fewer suit queries that a document's opening answers",
    )
    pairs: str | None = arg(
        None,
        "supervised pairs, a .jsonl/.json/.csv/.parquet file or a Hub dataset (data.hub_config and "
        "data.hub_split choose its part) with columns anchor, positive and optionally negative (a hard negative); "
        "empty: unsupervised, two views (objective.views) of each text of the data section's corpus",
    )
    pairs_validation: str | None = arg(
        None,
        "validation pairs in the same form (empty: data.hub_validation_split of a Hub dataset, else "
        "data.validation_fraction of the pairs held out)",
    )

    def __post_init__(self):
        check(self.temperature > 0, "objective.temperature", f"must be positive, got {self.temperature}")
        check(
            self.embed_len is None or self.embed_len >= 2,
            "objective.embed_len",
            f"must be at least 2 (a token and the separator), got {self.embed_len}",
        )
        check(
            self.token_weights == "none" or self.pooling == "mean",
            "objective.token_weights",
            f"{self.token_weights} weighs the tokens of a mean; pooling {self.pooling} reads one token's state, so set "
            "pooling mean or token_weights none",
        )
        check(0 < self.crop_min <= 1, "objective.crop_min", f"must be in (0, 1], got {self.crop_min}")
        check(
            self.crop_min <= self.crop_max <= 1,
            "objective.crop_max",
            f"must be in [objective.crop_min, 1] = [{self.crop_min}, 1], got {self.crop_max}",
        )
        if self.views != "crops":
            for f in dataclasses.fields(self):
                if f.name.startswith("crop_"):
                    check(
                        getattr(self, f.name) == f.default,
                        f"objective.{f.name}",
                        f"only crops have lengths; set objective.views crops (it is {self.views})",
                    )


@dataclass
class SimCSEConfig(PretrainConfig):
    objective: SimCSEArgs = field(default_factory=SimCSEArgs)


SCHEMA = SimCSEConfig
UNIT = "tokens"
RUN_FILES = (TOKENIZER_DIR,)

PAIR_IDS = ("anchor_ids", "positive_ids", "negative_ids")
"""The token id columns of tokenized pairs."""
VIEWS = {"dropout": "dropout views", "crops": "random crops"}
"""How the card names each `objective.views`."""

# `AutoModel` gives these encoders a pooler (a dense layer over the CLS token) that contrastive training never uses;
# left out, no weight goes without a gradient (which DDP would refuse).
WITHOUT_POOLER = ("bert", "roberta", "xlm-roberta")


class SimCSE(torch.nn.Module):
    """The contrastive objective over any transformers encoder (`AutoModel`): InfoNCE over cosine similarities at a
    temperature, each anchor's positive among every candidate of the batch; the loss is computed in fp32."""

    stat_names = ("loss", "correct", "count")

    def __init__(
        self, model: PreTrainedModel, pooling: str, temperature: float, token_weights: torch.Tensor | None = None
    ):
        super().__init__()
        self.model = model
        self.pooling, self.temperature = pooling, temperature
        # The export's idf weights (objective.token_weights), which training leaves out: the loss pools a plain mean.
        # A buffer, so checkpoints and the export (which rebuilds the objective from one) carry them.
        self.token_weights: torch.Tensor | None
        self.register_buffer("token_weights", token_weights)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(batch, hidden) embeddings of right-padded texts, pooled as the export's sentence-transformers model
        pools them (but for its token weights)."""
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return embeddings.pool(hidden, attention_mask, self.pooling)

    def forward(
        self,
        input_ids,
        attention_mask,
        positive_input_ids=None,
        positive_attention_mask=None,
        negative_input_ids=None,
        negative_attention_mask=None,
    ) -> ObjectiveOutput:
        if positive_input_ids is None:
            anchors, positives = self.dropout_views(input_ids, attention_mask)
        else:
            anchors = self.embed(input_ids, attention_mask)
            positives = self.embed(positive_input_ids, positive_attention_mask)
        candidates, offset = self.everyone(positives)
        if negative_input_ids is not None:
            candidates = torch.cat(
                [candidates, self.everyone(self.embed(negative_input_ids, negative_attention_mask))[0]]
            )
        return contrastive_output(anchors, candidates, offset, self.temperature)

    def dropout_views(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Two embeddings of each text, from one pass over the batch twice: each copy draws its own dropout masks.
        Evaluation, which runs with dropout off, draws them from a fixed seed, so every evaluation scores the same
        masks and its loss compares across steps."""
        both = input_ids.repeat(2, 1), attention_mask.repeat(2, 1)
        if self.training:
            return self.embed(*both).chunk(2)
        with torch.random.fork_rng(devices=[input_ids.device] if input_ids.is_cuda else []):
            torch.manual_seed(0)
            self.model.train()
            try:
                return self.embed(*both).chunk(2)
            finally:
                self.model.eval()

    def everyone(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Every process's rows in training, and where this process's start; in evaluation this process's alone,
        since each process evaluates batches of its own."""
        return gather_with_grad(x) if self.training else (x, 0)

    @staticmethod
    def summarise(totals: dict[str, float]) -> dict[str, float]:
        count = max(totals["count"], 1.0)
        return {"loss": totals["loss"] / count, "accuracy": totals["correct"] / count}

    def before_forward(self, step: int) -> None:
        """Nothing in the contrastive objective depends on the step."""

    def after_optimizer_step(self, step: int) -> None:
        """Nothing in the contrastive objective changes between steps but the weights."""

    def health(self, logs: dict[str, float], step: int) -> str | None:
        """A non-finite loss, which the loop checks, is the only failure watched for."""
        return None


def contrastive_output(
    anchors: torch.Tensor, candidates: torch.Tensor, offset: int, temperature: float
) -> ObjectiveOutput:
    """InfoNCE of `anchors` (batch, dim) against `candidates` (n, dim), anchor i's positive being candidate
    `offset + i`: the loss is the mean cross-entropy; per-anchor stats are its loss and whether its positive was the
    most similar candidate."""
    a, c = F.normalize(anchors.float(), dim=-1), F.normalize(candidates.float(), dim=-1)
    cosines = a @ c.T
    targets = torch.arange(a.shape[0], device=a.device) + offset
    losses = F.cross_entropy(cosines / temperature, targets, reduction="none")
    with torch.no_grad():
        positive = cosines.gather(1, targets[:, None]).squeeze(1)
        others = (cosines.sum(1) - positive) / max(c.shape[0] - 1, 1)
        stats = {
            "loss": losses.double(),
            "correct": (cosines.argmax(-1) == targets).double(),
            "count": torch.ones_like(losses, dtype=torch.float64),
        }
        logs = {"positive_cosine": positive.mean(), "negative_cosine": others.mean()}
    return ObjectiveOutput(losses.mean(), {k: v.detach() for k, v in stats.items()}, logs)


def check_config(cfg: PretrainConfig) -> None:
    """What the recipe alone shows to be wrong, before anything is loaded."""
    if cfg.data.packing != "none" and not cfg.objective.pairs:
        raise UsageError(
            "data.packing: simcse embeds one text per sequence; set data.packing none (a text longer than "
            "data.seq_len is cut into several)"
        )
    if cfg.objective.views == "crops" and cfg.objective.pairs:
        raise UsageError(
            "objective.views: crops cuts both views out of each text of the data section's corpus, and "
            "objective.pairs brings its own; leave views at dropout for supervised pairs"
        )
    if embed_len(cfg) > cfg.data.seq_len:
        raise UsageError(
            f"objective.embed_len: {cfg.objective.embed_len} is more than the {cfg.data.seq_len} tokens training "
            "reads (data.seq_len); the export would embed positions it never trained on"
        )
    if cfg.train.batch_size < 2:
        raise UsageError(
            "train.batch_size: contrastive learning needs at least 2 texts per batch, each the others' negative; "
            f"got {cfg.train.batch_size}"
        )


def check_model(cfg: PretrainConfig) -> None:
    """Before anything is written: the pooled token must have seen the text (no CLS pooling of a causal model, whose
    first token has read only itself, nor of a tokenizer that starts texts with no CLS or BOS token), and
    unsupervised dropout views need dropout."""
    m, o = cfg.model, cfg.objective
    config = load_config(m) if m.name_or_path else None
    if o.pooling == "cls":
        causal = is_causal(config) if config is not None else m.arch in DECODERS
        if causal:
            raise UsageError(
                "objective.pooling: cls pools the first token, which in a causal model has read nothing but itself; "
                "use last or mean"
            )
        source = cfg.tokenizer.path or m.name_or_path
        if source:
            tokenizer = load_tokenizer(source, "tokenizer.path" if cfg.tokenizer.path else "model.name_or_path")
            first = tokenizer("a")["input_ids"][:1]
            if not first or first[0] not in {tokenizer.cls_token_id, tokenizer.bos_token_id} - {None}:
                raise UsageError(
                    f"objective.pooling: cls pools the first token, and {source}'s tokenizer starts texts with no "
                    "CLS or BOS token; use mean"
                )
    if not o.pairs and o.views == "dropout":
        if m.dropout is not None or config is None:
            dropout = m.dropout or 0.0
        else:
            dropout = max((getattr(config, name) or 0.0 for name in dropout_fields(config, 0.0)), default=0.0)
        if dropout <= 0:
            raise UsageError(
                "model.dropout: unsupervised SimCSE's two views of a text differ only by dropout, and the model has "
                "none; set model.dropout (SimCSE used 0.1) or objective.views crops"
            )


def pooler_kwargs(model_type: str) -> dict:
    return {"add_pooling_layer": False} if model_type in WITHOUT_POOLER else {}


def load_pairs_data(cfg: PretrainConfig, accelerator: Accelerator, work_dir: Path, resuming: bool) -> TextData:
    """Supervised pairs: the training file, its validation file or a held-out share, the tokenizer (trained on the
    pairs' texts unless given), each text tokenized as the export's tokenizer will."""
    o, d = cfg.objective, cfg.data
    with accelerator.main_process_first():
        train = load_pairs(o.pairs, "objective.pairs", d.hub_config, d.hub_split, d.cache_dir)
        if o.pairs_validation or d.hub_validation_split:
            source = o.pairs_validation or o.pairs
            key = "objective.pairs_validation" if o.pairs_validation else "data.hub_validation_split"
            validation = load_pairs(source, key, d.hub_config, d.hub_validation_split or d.hub_split, d.cache_dir)
        elif len(train) < 4:
            raise UsageError(
                f"objective.pairs: {o.pairs} has {len(train)} pairs, too few to hold some out for validation; "
                "give more or set objective.pairs_validation"
            )
        else:
            split = train.train_test_split(test_size=d.validation_fraction, seed=cfg.train.seed)
            train, validation = split["train"], split["test"]
    texts = datasets.Dataset.from_dict({"text": [*train["anchor"], *train["positive"]]})
    tokenizer = prepare_tokenizer(cfg, texts, work_dir, accelerator, resuming=resuming)
    with accelerator.main_process_first():
        train_set = tokenize_pairs(train, tokenizer, d.seq_len)
        eval_set = tokenize_pairs(validation, tokenizer, d.seq_len)
    return TextData(tokenizer, None, train_set, eval_set)


def probe_sets(t: TrainArgs):
    """The similarity (and, embedded, retrieval) sets scored every `train.probe_every` steps: hfssl's generated ones,
    or a similarity set's validation split (a test split stays unseen until the final evaluation)."""
    if t.probe_data == "synthetic":
        queries = max(t.probe_examples // 5, 10)
        return embedded_similarity(t.probe_examples), embedded_retrieval(queries, 4 * queries)
    return load_similarity(t.probe_data, "train.probe_data", split="validation"), None


def setup(cfg: PretrainConfig, accelerator: Accelerator, work_dir: Path, resuming: bool) -> Setup:
    """The texts (or pairs), the tokenizer, the encoder from `model.name_or_path` (or a preset) without head, the
    collators, and the similarity probe."""
    o, t = cfg.objective, cfg.train
    embeddings.require_sentence_transformers("objective.name")
    check_config(cfg)
    check_no_masking(cfg.masking, "simcse")
    check_model(cfg)
    check_positions(cfg.model, cfg.data.seq_len)
    sets = probe_sets(t) if t.probe_every else None  # a bad probe set fails before the tokenizer is written
    data = (
        load_pairs_data(cfg, accelerator, work_dir, resuming)
        if o.pairs
        else load_text(cfg, accelerator, work_dir, resuming)
    )
    model_type = load_config(cfg.model).model_type if cfg.model.name_or_path else cfg.model.arch
    model = build_model(cfg.model, data.tokenizer, AutoModel, **pooler_kwargs(model_type))
    weights = training_idf(data, model.config.vocab_size) if o.token_weights == "idf" else None
    objective = SimCSE(model, o.pooling, o.temperature, weights)
    eval_size = t.eval_batch_size or t.batch_size

    def score_embeddings(raw: torch.nn.Module) -> dict[str, float]:
        return embeddings.score_live(
            raw.model, data.tokenizer, o.pooling, embed_len(cfg), *sets, eval_size, accelerator.device,
            raw.token_weights,
        )  # fmt: skip

    # Batches stay random mixes of lengths: they are each other's negatives, and how contrastive training fares
    # when every negative shares its anchor's length is untested here.
    collator = partial(make_collator, o, data.tokenizer)
    setup = text_setup(cfg, accelerator, data, objective, collator, score_embeddings, groups_by_length=False)
    if o.views == "crops":
        return dataclasses.replace(
            setup, count=count_views, batch_description=f"{setup.batch_description}, cropped twice"
        )
    if not o.pairs:
        return setup
    columns = ("anchor", "positive", "negative")

    def data_size() -> tuple[float | None, str]:
        lengths = sum(
            sum(len(ids) for ids in data.train_set[f"{c}_ids"])
            for c in columns
            if f"{c}_ids" in data.train_set.column_names
        )
        return lengths, f"counted in the {len(data.train_set):,} training pairs"

    return dataclasses.replace(
        setup,
        count=count_views,
        batch_description=f"{t.batch_size} pairs of texts of up to {cfg.data.seq_len} tokens",
        data_size=data_size,
    )


def training_idf(data: TextData, vocab_size: int) -> torch.Tensor:
    """Each token id's idf over the training texts as tokenized: the corpus's documents (however many items a long
    one is cut into), or every anchor, positive and negative of the pairs. Every process counts the same set, so all
    of them hold the same weights."""
    if data.streaming:
        raise UsageError(
            "objective.token_weights: idf counts the texts each token is in over the whole training set, which "
            "data.streaming reads only as it trains; set data.streaming false or token_weights none"
        )
    if isinstance(data.train_set, DocumentChunks):
        counts, texts = data.train_set.document_frequencies(vocab_size)
        counts = torch.from_numpy(counts)
    else:
        columns = [c for c in PAIR_IDS if c in data.train_set.column_names]

        def pair_texts():
            for batch in data.train_set.select_columns(columns).iter(batch_size=1000):
                for column in columns:
                    yield from (ids for ids in batch[column] if ids is not None)

        counts, texts = embeddings.document_counts(pair_texts(), vocab_size)
    logger.info("token weights: idf over %s training texts", f"{texts:,}")
    return embeddings.idf(counts, texts)


def make_collator(o: SimCSEArgs, tokenizer, seed: int) -> ContrastiveCollator | CropCollator:
    """Texts padded as they are (dropout views, pairs), or cut into two crops each, from a stream seeded by `seed`."""
    if o.views == "crops":
        prefix, _ = special_ids(tokenizer)
        return CropCollator(tokenizer.pad_token_id, prefix, o.crop_min, o.crop_max, seed=seed)
    return ContrastiveCollator(tokenizer.pad_token_id)


def count_views(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The tokens the encoder reads in a batch: every view's (anchor, positive, hard negative)."""
    return sum(v.sum() for k, v in batch.items() if k.endswith("attention_mask"))


def rebuild(cfg: PretrainConfig, model_config) -> SimCSE:
    model = AutoModel.from_config(model_config, **pooler_kwargs(model_config.model_type))
    # placeholder weights, which the checkpoint's own replace
    weights = torch.ones(model_config.vocab_size) if cfg.objective.token_weights == "idf" else None
    return SimCSE(model, cfg.objective.pooling, cfg.objective.temperature, weights)


def export(cfg: PretrainConfig, objective: SimCSE, run_dir: Path, out_dir: Path, metrics: dict) -> Path:
    tokenizer = run_tokenizer(run_dir)
    card = render_card(objective.model, tokenizer, cfg, metrics)
    return embeddings.write(
        objective.model, tokenizer, cfg.objective.pooling, embed_len(cfg), card, out_dir, objective.token_weights
    )


def embed_len(cfg: PretrainConfig) -> int:
    """The tokens of a text the export reads."""
    return cfg.objective.embed_len or cfg.data.seq_len


def describe(cfg: PretrainConfig) -> str:
    o = cfg.objective
    pooled = {"mean": "mean-pooled", "cls": "CLS-token", "last": "last-token"}[o.pooling]
    if o.token_weights == "idf":
        pooled = f"idf-weighted {pooled}"
    if o.pairs:
        views = (
            f"Supervised SimCSE on pairs from `{o.pairs}`: each anchor's {pooled} embedding must pick out its "
            "positive among every positive of the batch and every hard negative (the file's negative column, where "
            "it has one)"
        )
    elif o.views == "crops":
        views = (
            f"Unsupervised contrastive learning on crops, as Contriever: two independent random spans of each text "
            f"(each {o.crop_min:.0%} to {o.crop_max:.0%} of its tokens), and each crop's {pooled} embedding must "
            "pick out the other crop of its text among the second crops of every text of the batch"
        )
    else:
        dropout = "the checkpoint's own" if cfg.model.dropout is None else f"p = {cfg.model.dropout}"
        views = (
            f"Unsupervised SimCSE: each text is encoded twice with dropout on ({dropout}), and each {pooled} "
            "embedding must pick out the other view of its text among the second views of every text of the batch"
        )
    return (
        f"{views}, by cosine similarity at temperature {o.temperature}: cross-entropy over the batch, whose "
        "candidates are gathered from every process."
    )


def render_card(model: PreTrainedModel, tokenizer, cfg: PretrainConfig, metrics: dict) -> ModelCard:
    o = cfg.objective
    probes = metrics.get("probes") or [{}]
    results = {
        "contrastive loss": metrics.get("eval_loss"),
        "pair found first in its batch": metrics.get("eval_accuracy"),
        "similarity, Spearman (last probe)": probes[-1].get("spearman"),
        "retrieval recall@1 (last probe)": probes[-1].get("recall@1"),
        "retrieval recall@10 (last probe)": probes[-1].get("recall@10"),
    }
    card = TextCard(
        pipeline_tag="sentence-similarity",
        tag="sentence-transformers",
        template="simcse.md",
        example='["The storm passed in the night.", "The night storm is over.", "She bought two tickets."]',
        objective=describe(cfg),
        rows={
            "objective": "supervised pairs" if o.pairs else f"unsupervised ({VIEWS[o.views]})",
            "pooling": o.pooling,
            "token weights": "idf of the training texts" if o.token_weights == "idf" else "none",
            "tokens embedded per text": embed_len(cfg),
            "temperature": o.temperature,
            "dropout": "the checkpoint's own" if cfg.model.dropout is None else cfg.model.dropout,
        },
        accuracy="pair found first in its batch",
        results={k: fmt(v) for k, v in results.items()},
        library_name="sentence-transformers",
    )
    return text_card(model, tokenizer, cfg, metrics, card)
