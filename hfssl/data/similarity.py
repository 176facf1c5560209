"""Embedding evaluation sets: semantic similarity (sentence pairs with graded scores, reported as the Spearman
correlation of the embeddings' cosine similarities with the scores) and retrieval (queries, a pool of candidates,
each query's relevant ones, reported as recall@k).

The embedded sets come from hfssl's generator (`graded_pairs`), at seeds far from the pretraining corpus's, so they
run offline; real sets are named by Hub id (STS-B: `sentence-transformers/stsb`, `mteb/stsbenchmark-sts`, GLUE's
`nyu-mll/glue` with config stsb) or a local file or copy with the same columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hfssl.data.pairs import check_texts, load_table
from hfssl.data.synthetic import graded_pairs
from hfssl.errors import UsageError

SYNTHETIC_SEED = 20_000  # far from the pretraining corpus's and the labelled tasks' seeds
SCORE_COLUMNS = ("score", "label")
"""The graded score's column, by the names STS-B's copies use (the first a table has)."""


@dataclass
class SimilaritySet:
    name: str
    sentences1: list[str]
    sentences2: list[str]
    scores: list[float]


@dataclass
class RetrievalSet:
    name: str
    queries: dict[str, str]
    corpus: dict[str, str]
    relevant: dict[str, set[str]] = field(default_factory=dict)
    """query id -> the ids of its relevant candidates."""


def embedded_similarity(pairs: int = 1000, seed: int = SYNTHETIC_SEED) -> SimilaritySet:
    """`graded_pairs` as a similarity set: scores 0 (other topic) to 4 (4% of the writer's choices redrawn)."""
    rows = graded_pairs(pairs, seed)
    return SimilaritySet(
        "embedded-sts", [r["sentence1"] for r in rows], [r["sentence2"] for r in rows], [r["score"] for r in rows]
    )


def embedded_retrieval(queries: int = 200, distractors: int = 800, seed: int = SYNTHETIC_SEED + 1) -> RetrievalSet:
    """Each query's one relevant candidate is its closest rewrite (score 4 of `graded_pairs`); the rest of the pool
    is passages of every topic, so the relevant one must be told from others on the query's topic."""
    rows = graded_pairs(6 * (queries + distractors), seed)
    close = [r for r in rows if r["score"] == 4.0][:queries]
    others = [r["sentence2"] for r in rows if r["score"] <= 1.0][:distractors]
    return RetrievalSet(
        "embedded-retrieval",
        queries={f"q{i}": r["sentence1"] for i, r in enumerate(close)},
        corpus={f"d{i}": r["sentence2"] for i, r in enumerate(close)} | {f"x{i}": t for i, t in enumerate(others)},
        relevant={f"q{i}": {f"d{i}"} for i in range(len(close))},
    )


def load_similarity(
    source: str, key: str, hub_config: str | None = None, split: str = "test", cache_dir: str | None = None
) -> SimilaritySet:
    """A semantic-similarity set with columns sentence1, sentence2 and a score (`score`, or `label` as in GLUE), from
    a local file, a local copy of its Hub repository (a folder: `split` of it) or the Hub."""
    columns = ("sentence1", "sentence2")
    table = load_table(source, key, columns, SCORE_COLUMNS, hub_config, split, cache_dir, repo_copy=True)
    score = next((c for c in SCORE_COLUMNS if c in table.column_names), None)
    if score is None:
        raise UsageError(f"{key}: {source} has no score column ({' or '.join(SCORE_COLUMNS)})")
    check_texts(table, key, source, ["sentence1", "sentence2"])
    scores = table[score]
    if any(not isinstance(s, (int, float)) or s < 0 for s in scores):
        raise UsageError(f"{key}: {source}: column {score!r} must hold non-negative similarity scores")
    return SimilaritySet(source, table["sentence1"], table["sentence2"], [float(s) for s in scores])
