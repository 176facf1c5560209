"""Contrastive sentence embeddings through the real CLI, continuing from a tiny masked-LM export: the contrastive
loss falls and retrieval of a text's close rewrite rises above the starting encoder's; the export loads in
sentence-transformers in a process without hfssl and embeds as hfssl does; a resumed run ends with the same weights;
two processes gather each other's negatives and train as one batch would; supervised pairs train; crops of a text are
spans of it within their bounds, drawn the same again from the same place in the stream, and a crops run's loss falls
and resumes exactly; the generated similarity sets are what they say."""

import json
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import assert_resumes_exactly, env, hfssl
from huggingface_hub import ModelCard

from hfssl.collators.pairs import CropCollator
from hfssl.config import TrainArgs
from hfssl.data.similarity import embedded_retrieval, embedded_similarity, load_similarity
from hfssl.data.synthetic import graded_pairs
from hfssl.distributed import gather_with_grad
from hfssl.downstream import embeddings
from hfssl.errors import UsageError
from hfssl.objectives import load_pretrain
from hfssl.objectives.simcse import check_config, probe_sets

pytest.importorskip("sentence_transformers")

RECIPE = "text/simcse-tiny"
TINY = [
    "--data.synthetic_documents", "1000", "--data.seq_len", "32", "--train.batch_size", "16", "--train.log_every", "5",
    "--train.eval_batches", "4", "--train.probe_every", "20", "--train.probe_examples", "300", "--train.lr", "1e-4",
]  # fmt: skip
STEPS = ["--train.max_steps", "40", "--train.eval_every", "20", "--train.save_every", "20"]
TEXTS = ["The storm passed in the night.", "A cook sliced two onions in the kitchen.", "Anna bought a ticket."]


@pytest.fixture(scope="module")
def trained(mlm_export, tmp_path_factory):
    out = tmp_path_factory.mktemp("simcse") / "run"
    start = ["--model.name_or_path", mlm_export]
    hfssl("pretrain", RECIPE, *start, *TINY, *STEPS, "--train.keep_last", "5", "--train.output_dir", out)
    return out


def test_loss_falls_and_retrieval_rises_above_the_start(trained, mlm_export):
    """From the tiny 60-step masked LM, 40 steps of SimCSE find a text's close rewrite more often (recall@1, 0.32 ->
    0.40 here); their Spearman on the graded pairs stays within noise of the start's (0.54 -> 0.52), so it is only
    bounded. bench/README.md has the shipped recipe's numbers."""
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["eval_loss"] < metrics["initial_eval_loss"]
    start = embeddings.score(
        embeddings.build(mlm_export, "mean", 32), *probe_sets(TrainArgs(probe_examples=300)), batch_size=16
    )
    last = metrics["probes"][-1]
    assert [p["step"] for p in metrics["probes"]] == [20, 40]
    assert last["recall@1"] > start["recall@1"], (last, start)
    assert last["recall@1"] <= last["recall@10"] <= 1.0 and -1.0 <= last["spearman"] <= 1.0


def test_export_loads_in_sentence_transformers_without_hfssl(trained):
    final = trained / "final"
    card = ModelCard.load(final / "README.md")
    assert card.data.library_name == "sentence-transformers" and card.data.pipeline_tag == "sentence-similarity"
    assert "Unsupervised SimCSE" in card.text
    assert embeddings.load(final).max_seq_length == 32  # data.seq_len, without objective.embed_len
    code = textwrap.dedent(f"""
        import json, sys
        from sentence_transformers import SentenceTransformer
        from transformers import AutoModel
        model = SentenceTransformer({str(final)!r})
        AutoModel.from_pretrained({str(final)!r})
        vectors = model.encode({TEXTS!r}, convert_to_tensor=True)
        assert not any(name.startswith("hfssl") for name in sys.modules)
        print(json.dumps(vectors.tolist()))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), cwd=trained)
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = torch.tensor(json.loads(done.stdout.strip().splitlines()[-1]))

    from transformers import AutoModel, AutoTokenizer

    from hfssl.objectives.simcse import SimCSE

    tokenizer = AutoTokenizer.from_pretrained(final)
    objective = SimCSE(AutoModel.from_pretrained(final), "mean", 0.05).eval()
    batch = tokenizer(TEXTS, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        ours = objective.embed(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-4)


def test_resume_ends_with_the_same_weights(trained, mlm_export, tmp_path):
    assert_resumes_exactly(trained, tmp_path / "run", 20, RECIPE, "--model.name_or_path", mlm_export, *TINY, *STEPS)


def test_two_processes_gather_negatives_and_train_as_one_batch(tmp_path):
    script = Path(__file__).parents[1] / "simcse_gather.py"
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
         str(tmp_path / "out.json")],
        capture_output=True, text=True, env=env(), timeout=300, check=True,
    )  # fmt: skip
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["processes"] == 2
    assert result["two_processes"] == pytest.approx(result["one_process"], rel=1e-5)
    assert result["largest_gradient_difference"] < 1e-4 * result["largest_gradient"]


def test_one_process_gathers_only_itself():
    x = torch.randn(3, 4)
    gathered, offset = gather_with_grad(x)
    assert gathered is x and offset == 0


def test_supervised_pairs_with_hard_negatives_train_and_export(mlm_export, tmp_path):
    rows = [
        {"anchor": p["sentence1"], "positive": p["sentence2"], "negative": q["sentence2"]}
        for p, q in zip(graded_pairs(80, 1), graded_pairs(80, 2), strict=True)
    ]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    done = hfssl("pretrain", RECIPE, "--model.name_or_path", mlm_export, "--objective.pairs", pairs,
                 "--model.dropout", "0", *TINY, "--train.max_steps", "4", "--train.eval_every", "4",
                 "--train.probe_every", "", "--train.output_dir", out, "--objective.token_weights", "idf")  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["eval_loss"] > 0
    # idf over the pairs' texts: every anchor, positive and negative is one
    from sentence_transformers.sentence_transformer.modules import WordWeights

    [weighting] = [m for m in embeddings.load(out / "final") if isinstance(m, WordWeights)]
    texts = int(re.search(r"idf over ([\d,]+) training texts", done.stderr)[1].replace(",", ""))
    assert texts % 3 == 0 and 70 <= texts // 3 < 80  # the training pairs, a share held out for validation
    # a token in none of them weighs the most: ln(1 + n) + 1
    assert weighting.emb_layer.weight.max().item() == pytest.approx(math.log(1 + texts) + 1, rel=1e-5)
    assert "Supervised SimCSE" in (out / "final" / "README.md").read_text()


CROPS = ["--objective.views", "crops", "--objective.crop_min", "0.2", "--objective.crop_max", "0.6", "--data.seq_len",
         "64", "--objective.embed_len", "24", "--model.dropout", "0", "--objective.token_weights", "idf"]  # fmt: skip


@pytest.fixture(scope="module")
def cropped(mlm_export, tmp_path_factory):
    out = tmp_path_factory.mktemp("simcse-crops") / "run"
    start = ["--model.name_or_path", mlm_export, *CROPS, "--train.probe_every", ""]
    hfssl("pretrain", RECIPE, *start, *TINY, *STEPS, "--train.output_dir", out)
    return out


def documents(count: int, seed: int) -> list[dict]:
    """Items as `DocumentChunks` cuts them: prefix 1, body tokens numbered from 10 by document, separator 2."""
    lengths = torch.randint(1, 60, (count,), generator=torch.Generator().manual_seed(seed))
    return [{"input_ids": [1, *range(10 + 100 * i, 10 + 100 * i + n), 2]} for i, n in enumerate(lengths.tolist())]


def crops_of(batch: dict, key: str) -> list[list[int]]:
    return [
        ids[mask.bool()].tolist()
        for ids, mask in zip(batch[f"{key}input_ids"], batch[f"{key}attention_mask"], strict=True)
    ]


def test_crops_are_spans_of_their_own_text_within_bounds():
    items = documents(200, seed=0)
    batch = CropCollator(pad_token_id=0, prefix_token_id=1, crop_min=0.2, crop_max=0.6, seed=3)(items)
    firsts, seconds = crops_of(batch, ""), crops_of(batch, "positive_")
    for item, *views in zip(items, firsts, seconds, strict=True):
        body = item["input_ids"][1:-1]
        for view in views:
            assert view[0] == 1 and view[-1] == 2
            inner = view[1:-1]
            start = inner[0] - body[0]
            assert inner == body[start : start + len(inner)]  # contiguous, and from this row's text only
            assert max(1, round(0.2 * len(body))) <= len(inner) <= max(1, round(0.6 * len(body)))
    long = [i for i, item in enumerate(items) if len(item["input_ids"]) > 20]
    assert sum(firsts[i] != seconds[i] for i in long) > 0.9 * len(long)
    # every length in the bounds is drawn, not only the ends
    shares = [(len(v) - 2) / (len(item["input_ids"]) - 2) for item, v in zip(items, firsts, strict=True)]
    assert min(shares) < 0.3 and max(shares) > 0.5


def test_crops_follow_the_seed_and_resume_at_a_batch():
    items = documents(32, seed=1)

    def stream(seed: int, state: dict | None = None) -> list[dict]:
        collator = CropCollator(0, 1, seed=seed)
        if state is not None:
            collator.load_state_dict(state)
        return [collator(items) for _ in range(3)]

    first, again, other = stream(7), stream(7), stream(8)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0]["input_ids"], other[0]["input_ids"])
    assert not torch.equal(first[0]["input_ids"], first[1]["input_ids"])
    resumed = stream(7, {"seed": 7, "calls": 1})
    assert torch.equal(resumed[0]["positive_input_ids"], first[1]["positive_input_ids"])


def test_crops_loss_falls_without_dropout_and_the_export_reads_embed_len_tokens(cropped):
    metrics = json.loads((cropped / "metrics.json").read_text())
    assert metrics["eval_loss"] < metrics["initial_eval_loss"]
    assert "Contriever" in (cropped / "final" / "README.md").read_text()
    assert embeddings.load(cropped / "final").max_seq_length == 24


def test_idf_export_weighs_each_token_by_its_training_texts(cropped):
    """The crops run's export weighs tokens by idf: its WordWeights hold the idf of the run's own training texts,
    sentence-transformers loads them in a plain process, and its embeddings are the idf-weighted mean of the
    encoder's token states."""
    from sentence_transformers.sentence_transformer.modules import WordWeights
    from transformers import AutoModel, AutoTokenizer

    from hfssl.objectives.simcse import SimCSE

    final = cropped / "final"
    model = embeddings.load(final)
    [weighting] = [m for m in model if isinstance(m, WordWeights)]
    weights = weighting.emb_layer.weight.squeeze(1).detach()
    tokenizer = AutoTokenizer.from_pretrained(final)
    special = set(tokenizer.all_special_ids)
    # a token in every training text weighs 1 (the separator), the rarest ones most; pad never occurs in a text
    assert weights[tokenizer.sep_token_id] == pytest.approx(1.0)
    assert weights.max() > 3 and weights.min() >= 1.0
    common = tokenizer(" the", add_special_tokens=False)["input_ids"][0]
    assert 1.0 < weights[common] < weights[sorted(set(range(len(weights))) - special)].median()
    assert "idf of the training texts" in (final / "README.md").read_text()

    code = textwrap.dedent(f"""
        import json
        from sentence_transformers import SentenceTransformer
        print(json.dumps(SentenceTransformer({str(final)!r}).encode({TEXTS!r}).tolist()))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), cwd=cropped)
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = torch.tensor(json.loads(done.stdout.strip().splitlines()[-1]))
    encoder = AutoModel.from_pretrained(final).eval()
    batch = tokenizer(TEXTS, padding=True, truncation=True, max_length=24, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state
        ours = embeddings.pool(hidden, batch["attention_mask"], "mean", weights[batch["input_ids"]])
        unweighted = SimCSE(encoder, "mean", 0.05, weights).embed(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-4)
    # training pools a plain mean (weighting the loss too measured lower): the weights are the export's alone
    torch.testing.assert_close(unweighted, embeddings.pool(hidden, batch["attention_mask"], "mean"))
    assert not torch.allclose(theirs, unweighted, atol=1e-3)


def test_idf_is_smoothed_as_tfidf_smooths_it_and_weighs_the_mean():
    counts, texts = embeddings.document_counts([[1, 2, 2], [2, 3], [2]], vocab_size=5)
    assert counts.tolist() == [0, 1, 3, 1, 0] and texts == 3
    torch.testing.assert_close(embeddings.idf(counts, texts), torch.log(4 / (1 + counts.double())).float() + 1)
    hidden = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    plain = embeddings.pool(hidden, mask, "mean")
    torch.testing.assert_close(embeddings.pool(hidden, mask, "mean", torch.full((2, 3), 2.5)), plain)
    only_first = embeddings.pool(hidden, mask, "mean", torch.tensor([[1.0, 0.0, 5.0], [1.0, 0.0, 0.0]]))
    torch.testing.assert_close(only_first, hidden[:, 0])  # a padded token's weight counts for nothing


def test_crops_resume_with_the_same_weights(cropped, mlm_export, tmp_path):
    start = ["--model.name_or_path", mlm_export, *CROPS, "--train.probe_every", ""]
    assert_resumes_exactly(cropped, tmp_path / "run", 20, RECIPE, *start, *TINY, *STEPS)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"objective.crop_max": "0.3"}, "objective.crop_max: only crops have lengths"),
        ({"objective.views": "crops", "objective.crop_min": "0.6", "objective.crop_max": "0.5"},
         "objective.crop_max: must be in [objective.crop_min, 1]"),
        ({"objective.views": "crops", "objective.crop_min": "0"}, "objective.crop_min: must be in (0, 1]"),
        ({"objective.views": "crops", "objective.pairs": "pairs.jsonl"}, "objective.views: crops cuts"),
        ({"data.seq_len": "32", "objective.embed_len": "64"}, "objective.embed_len: 64 is more than the 32 tokens"),
        ({"objective.embed_len": "1"}, "objective.embed_len: must be at least 2"),
        ({"objective.pooling": "cls", "objective.token_weights": "idf"}, "objective.token_weights: idf weighs"),
    ],
)  # fmt: skip
def test_bad_crop_settings_are_refused_before_anything_loads(settings, message):
    """The recipe alone shows these wrong: the schema's checks and `check_config`, which setup runs first."""
    with pytest.raises(UsageError, match=re.escape(message)):
        check_config(load_pretrain(RECIPE, settings))


def test_graded_pairs_are_reproducible_and_graded():
    pairs = graded_pairs(300, seed=5)
    assert pairs == graded_pairs(300, seed=5) and pairs != graded_pairs(300, seed=6)
    assert {p["score"] for p in pairs} == {0.0, 1.0, 2.0, 3.0, 4.0}
    assert all(p["sentence1"] != p["sentence2"] for p in pairs)

    def overlap(p):
        a, b = set(p["sentence1"].lower().split()), set(p["sentence2"].lower().split())
        return len(a & b) / len(a | b)

    by_score = {s: [overlap(p) for p in pairs if p["score"] == s] for s in (0.0, 2.0, 4.0)}
    means = [sum(v) / len(v) for v in by_score.values()]
    assert means[0] < means[1] < means[2]  # a closer rewrite shares more of its anchor's words


def test_retrieval_set_has_one_relevant_candidate_per_query():
    retrieval = embedded_retrieval(queries=20, distractors=80)
    assert len(retrieval.queries) == 20 and len(retrieval.corpus) == 100
    assert all(len(relevant) == 1 and relevant <= retrieval.corpus.keys() for relevant in retrieval.relevant.values())
    assert len(embedded_similarity(50).scores) == 50


def test_stsb_loads_from_a_local_copy_of_its_repository(tmp_path):
    """sentence-transformers/stsb's layout: a parquet file per split under data/, columns sentence1, sentence2 and a
    score in [0, 1]."""
    import datasets

    copy = tmp_path / "stsb"
    (copy / "data").mkdir(parents=True)
    for split, n in (("train", 8), ("validation", 5), ("test", 6)):
        rows = {"sentence1": [f"{split} a {i}" for i in range(n)], "sentence2": [f"{split} b {i}" for i in range(n)]}
        rows["score"] = [i / n for i in range(n)]
        datasets.Dataset.from_dict(rows).to_parquet(copy / "data" / f"{split}-00000-of-00001.parquet")
    test = load_similarity(str(copy), "data.train", split="test")
    assert len(test.scores) == 6 and test.sentences1[0] == "test a 0"
    assert len(load_similarity(str(copy), "data.train", split="validation").scores) == 5
