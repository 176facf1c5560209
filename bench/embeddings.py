"""Sentence embeddings on hfssl's generated similarity and retrieval sets: the masked-LM export mean-pooled, the same
after unsupervised SimCSE, a random encoder of the same architecture, and TF-IDF, side by side.

    HF_HUB_OFFLINE=1 python bench/embeddings.py --mlm runs/mlm-tiny/final          # trains simcse-tiny from it
    HF_HUB_OFFLINE=1 python bench/embeddings.py --mlm runs/mlm-tiny/final --simcse runs/simcse-tiny/final
    HF_HUB_OFFLINE=1 python bench/embeddings.py --quick                            # smoke test, ~2 minutes

Rows, each scored by `hfssl.downstream.embeddings.score` (sentence-transformers' evaluators) on the same sets as the
suite `embeddings` of `hfssl evaluate`: Spearman correlation of cosine similarities with the graded scores of 1,000
generated pairs (0: another topic ... 4: a close rewrite), and recall@1/@10 of each of 200 queries' close rewrite
among 1,000 passages.
- masked LM: `--mlm` (an `hfssl pretrain recipes/text/mlm-tiny.yaml` export), its last layer mean-pooled;
- SimCSE: `--simcse`, else `recipes/text/simcse-tiny.yaml` trained here from `--mlm` (`--steps` overrides its
  max_steps; `--set KEY=VALUE` any other setting);
- random init: `--mlm`'s architecture with random weights (seed 0), mean-pooled;
- TF-IDF: scikit-learn's TF-IDF of word unigrams and bigrams (sublinear term frequency), fitted on the sets' own
  texts, cosine similarity: the classic baseline for similarity and search.
`--quick` pretrains its own tiny masked LM for 200 steps first.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

from hfssl.data.similarity import embedded_retrieval, embedded_similarity
from hfssl.downstream import embeddings
from hfssl.objectives import load_pretrain
from hfssl.pretrain import pretrain

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes" / "text"


def mean_pooled(path: Path, max_len: int, scratch: bool = False):
    """`path`'s encoder as sentence-transformers wraps a plain text model (mean pooling); `scratch`: random weights."""
    with tempfile.TemporaryDirectory(prefix="bench-embeddings-") as folder:
        if scratch:
            torch.manual_seed(0)
            AutoModel.from_config(AutoModel.from_pretrained(path).config).save_pretrained(folder)
        else:
            AutoModel.from_pretrained(path).save_pretrained(folder)
        AutoTokenizer.from_pretrained(path).save_pretrained(folder)
        return embeddings.build(Path(folder), "mean", max_len, device="cpu")


def tfidf_scores(similarity, retrieval) -> dict[str, float]:
    """The evaluators' metrics computed on TF-IDF vectors, by the same formulas (Spearman of cosines; rank of the
    relevant candidate)."""
    from scipy.stats import spearmanr
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [*similarity.sentences1, *similarity.sentences2, *retrieval.queries.values(), *retrieval.corpus.values()]
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(texts)

    def encode(sentences) -> torch.Tensor:
        vectors = torch.tensor(vectorizer.transform(list(sentences)).toarray(), dtype=torch.float32)
        return torch.nn.functional.normalize(vectors, dim=-1)

    a, b = encode(similarity.sentences1), encode(similarity.sentences2)
    scores = {"spearman": float(spearmanr((a * b).sum(-1).numpy(), similarity.scores).statistic)}
    ids = list(retrieval.corpus)
    corpus, queries = encode(retrieval.corpus.values()), encode(retrieval.queries.values())
    ranked = (queries @ corpus.T).topk(10, dim=-1).indices
    for k in embeddings.RECALL_AT:
        hits = [
            bool({ids[i] for i in row[:k].tolist()} & retrieval.relevant[q])
            for q, row in zip(retrieval.queries, ranked, strict=True)
        ]
        scores[f"recall@{k}"] = sum(hits) / len(hits)
    return scores


def train_simcse(mlm: Path, work: Path, steps: int | None, settings: list[tuple[str, str]]) -> Path:
    overrides = {"model.name_or_path": str(mlm), "train.output_dir": str(work / "simcse"), **dict(settings)}
    if steps:
        overrides["train.max_steps"] = str(steps)
    pretrain(load_pretrain(RECIPES / "simcse-tiny.yaml", overrides))
    return work / "simcse" / "final"


def quick_mlm(work: Path) -> Path:
    overrides = {"train.output_dir": str(work / "mlm"), "train.max_steps": "200", "train.eval_every": "200",
                 "train.save_every": "200", "data.synthetic_documents": "4000"}  # fmt: skip
    pretrain(load_pretrain(RECIPES / "mlm-tiny.yaml", overrides))
    return work / "mlm" / "final"


def table(rows: dict[str, dict[str, float]]) -> str:
    lines = ["| encoder | Spearman | recall@1 | recall@10 |", "|---|---|---|---|"]
    for name, s in rows.items():
        lines.append(f"| {name} | {s['spearman']:.3f} | {s['recall@1']:.3f} | {s['recall@10']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mlm", type=Path, help="a masked-LM export (default: runs/mlm-tiny/final)")
    parser.add_argument("--simcse", type=Path, help="a SimCSE export (default: train simcse-tiny from --mlm here)")
    parser.add_argument("--steps", type=int, help="SimCSE steps when it trains here (default: the recipe's)")
    parser.add_argument("--set", action="append", default=[], type=lambda s: tuple(s.split("=", 1)),
                        help="KEY=VALUE: another setting of the SimCSE recipe, e.g. train.lr=1e-5")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="a tiny masked LM and 30 SimCSE steps")
    parser.add_argument("--work-dir", type=Path, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--out", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-embeddings-") as scratch:
        work = args.work_dir or Path(scratch)
        mlm = quick_mlm(work) if args.quick else args.mlm or ROOT / "runs" / "mlm-tiny" / "final"
        simcse = args.simcse or train_simcse(mlm, work, 30 if args.quick else args.steps, args.set)
        max_len = load_pretrain(RECIPES / "simcse-tiny.yaml").data.seq_len
        similarity, retrieval = embedded_similarity(), embedded_retrieval()
        rows = {
            "masked LM, mean-pooled": embeddings.score(mean_pooled(mlm, max_len), similarity, retrieval),
            "after unsupervised SimCSE": embeddings.score(embeddings.load(simcse), similarity, retrieval),
            "random init, mean-pooled": embeddings.score(mean_pooled(mlm, max_len, True), similarity, retrieval),
            "TF-IDF (word 1-2 grams)": tfidf_scores(similarity, retrieval),
        }
    print(table(rows))
    result = {"mlm": str(mlm), "simcse": str(simcse), "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
