"""Sentence embeddings in the sentence-transformers format: writing an encoder and its pooling as a folder that
`SentenceTransformer(path)` loads (and `AutoModel` too), and scoring any such model on similarity and retrieval sets
with sentence-transformers' own evaluators. sentence-transformers is an optional extra (`hfssl[sentence]`)."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from huggingface_hub import ModelCard
from transformers import PreTrainedModel

from hfssl.data.similarity import RetrievalSet, SimilaritySet
from hfssl.errors import UsageError
from hfssl.io import atomic_dir

logger = logging.getLogger(__name__)

POOLING_MODES = {"mean": "mean", "cls": "cls", "last": "lasttoken"}
"""hfssl's `objective.pooling` -> sentence-transformers' `Pooling` mode."""
RECALL_AT = (1, 10)


def require_sentence_transformers(field: str):
    """The sentence_transformers package, or one line saying how to install it."""
    try:
        import sentence_transformers
    except ImportError:
        raise UsageError(
            f"{field}: sentence embeddings are written and scored with sentence-transformers, which is not "
            "installed; pip install 'hfssl[sentence]'"
        ) from None
    return sentence_transformers


def pool(
    hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """(batch, dim) embeddings from (batch, length, dim) token states of right-padded texts, as sentence-transformers'
    `Pooling` computes them for `POOLING_MODES[pooling]`; with `weights` (batch, length), each token's weight (its
    idf), the mean is weighted as sentence-transformers' `WordWeights` followed by mean `Pooling` weights it."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), attention_mask.sum(1) - 1]
    mask = attention_mask.to(hidden.dtype)
    if weights is not None:
        mask = mask * weights
    mask = mask.unsqueeze(-1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def idf(counts: torch.Tensor, texts: int) -> torch.Tensor:
    """Each token's inverse document frequency from `counts`, the texts it is in out of `texts`, smoothed as
    scikit-learn's `TfidfVectorizer` smooths it: ln((1 + n) / (1 + df)) + 1, so a token in every text weighs 1 and
    one in none the most."""
    if texts <= 0:
        raise ValueError("idf: no texts to count tokens in")
    return (torch.log((1 + texts) / (1 + counts.double())) + 1).float()


def document_counts(token_ids: Iterable[Sequence[int]], vocab_size: int) -> tuple[torch.Tensor, int]:
    """How many of the texts `token_ids` (one sequence of ids each) each token id is in, and how many texts."""
    counts = torch.zeros(vocab_size, dtype=torch.int64)
    texts = 0
    for ids in token_ids:
        counts[torch.as_tensor(sorted(set(ids)), dtype=torch.long)] += 1
        texts += 1
    return counts, texts


def word_weights(tokenizer, weights: torch.Tensor):
    """sentence-transformers' `WordWeights` module of `weights`, one per token id of `tokenizer`: it multiplies each
    token's state by its weight before mean pooling, and is saved and loaded with the rest of the model."""
    from sentence_transformers.sentence_transformer.modules import WordWeights

    vocab = tokenizer.convert_ids_to_tokens(list(range(len(weights))))
    # WordWeights looks weights up by token string; an id the tokenizer has no token for keeps the unknown weight 1
    table = {token: float(w) for token, w in zip(vocab, weights.tolist(), strict=True) if token is not None}
    return WordWeights([t if t is not None else f"[unused-{i}]" for i, t in enumerate(vocab)], table)


def build(
    encoder_dir: Path,
    pooling: str,
    max_seq_length: int,
    device: str | None = None,
    token_weights: torch.Tensor | None = None,
):
    """A `SentenceTransformer` of the transformers encoder saved in `encoder_dir` (with its tokenizer) and `pooling`,
    its mean weighted by `token_weights` (one per token id) when they are given."""
    require_sentence_transformers("objective.name")
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    transformer = Transformer(str(encoder_dir), max_seq_length=max_seq_length)
    pooler = Pooling(transformer.get_embedding_dimension(), pooling_mode=POOLING_MODES[pooling])
    weighting = [] if token_weights is None else [word_weights(transformer.tokenizer, token_weights)]
    return SentenceTransformer(modules=[transformer, *weighting, pooler], similarity_fn_name="cosine", device=device)


def load(path: Path, device: str | None = None):
    """A sentence-transformers export (`write`'s, or anyone's) as `SentenceTransformer` loads it."""
    require_sentence_transformers("model.name_or_path")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device=device)


def write(
    model: PreTrainedModel,
    tokenizer,
    pooling: str,
    max_seq_length: int,
    card: ModelCard,
    out_dir: Path,
    token_weights: torch.Tensor | None = None,
) -> Path:
    """Write `model` (a transformers encoder without head), `tokenizer` and `pooling` (weighted by `token_weights`,
    if given) as a sentence-transformers folder with `card` as its README, replacing `out_dir` atomically. The
    weights and tokenizer sit at the top, so `AutoModel.from_pretrained(out_dir)` loads the encoder too."""
    with tempfile.TemporaryDirectory(prefix="hfssl-encoder-") as encoder_dir:
        model.save_pretrained(encoder_dir)
        tokenizer.save_pretrained(encoder_dir)
        sentence_model = build(Path(encoder_dir), pooling, max_seq_length, "cpu", token_weights)
        with atomic_dir(Path(out_dir)) as tmp:
            sentence_model.save(str(tmp), create_model_card=False)
            card.save(tmp / "README.md")
    logger.info("exported %s", out_dir)
    return Path(out_dir)


def score(
    model, similarity: SimilaritySet | None, retrieval: RetrievalSet | None, batch_size: int = 64
) -> dict[str, float]:
    """Spearman correlation of cosine similarities with the graded scores (`similarity`), and recall@1 and @10 of
    the relevant candidates (`retrieval`), with sentence-transformers' evaluators."""
    scores = {}
    # The evaluators log every metric they compute at INFO; hfssl logs the ones it reports.
    quiet = logging.getLogger("sentence_transformers")
    level, quiet.level = quiet.level, max(quiet.level, logging.WARNING)
    try:
        _evaluate(model, similarity, retrieval, batch_size, scores)
    finally:
        quiet.setLevel(level)
    return scores


def _evaluate(model, similarity, retrieval, batch_size: int, scores: dict) -> None:
    from sentence_transformers.sentence_transformer.evaluation import (
        EmbeddingSimilarityEvaluator,
        InformationRetrievalEvaluator,
    )

    if similarity is not None:
        evaluator = EmbeddingSimilarityEvaluator(
            similarity.sentences1,
            similarity.sentences2,
            similarity.scores,
            batch_size=batch_size,
            main_similarity="cosine",
            similarity_fn_names=["cosine"],
            name="sts",
            write_csv=False,
        )
        scores["spearman"] = float(evaluator(model)["sts_spearman_cosine"])
    if retrieval is not None:
        evaluator = InformationRetrievalEvaluator(
            retrieval.queries,
            retrieval.corpus,
            retrieval.relevant,
            accuracy_at_k=list(RECALL_AT),
            precision_recall_at_k=list(RECALL_AT),
            mrr_at_k=[10],
            ndcg_at_k=[10],
            map_at_k=[10],
            batch_size=batch_size,
            name="ir",
            write_csv=False,
        )
        found = evaluator(model)
        scores |= {f"recall@{k}": float(found[f"ir_cosine_recall@{k}"]) for k in RECALL_AT}


def score_live(
    model: PreTrainedModel,
    tokenizer,
    pooling: str,
    max_seq_length: int,
    similarity: SimilaritySet | None,
    retrieval: RetrievalSet | None,
    batch_size: int,
    device: torch.device,
    token_weights: torch.Tensor | None = None,
) -> dict[str, float]:
    """`score` for a model being trained: it is written to a scratch folder and loaded as sentence-transformers
    loads an export, so the numbers logged in training are those of the export."""
    with tempfile.TemporaryDirectory(prefix="hfssl-embeddings-") as folder:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        sentence_model = build(Path(folder), pooling, max_seq_length, str(device), token_weights)
        return score(sentence_model, similarity, retrieval, batch_size)
