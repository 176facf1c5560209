"""`hfssl evaluate`: a suite run end to end on a tiny export (table, results files, card entries, the classic
baseline's rows beside the tasks'), the GLUE suite's loading on local copies shaped like the Hub's repository, and bad
suites and tasks."""

import csv
import json
import shutil
import statistics

import datasets
import pytest
from huggingface_hub import ModelCard

from hfssl.__main__ import main
from hfssl.config import EvaluateConfig, LabelledDataArgs
from hfssl.data.labelled import load_labelled
from hfssl.downstream.baselines import TITLES
from hfssl.downstream.suites import SECTION_END, SECTION_START, load_suite

TINY = ["--data.synthetic_examples", "200", "--data.max_length", "32", "--training.num_train_epochs", "1",
        "--training.per_device_train_batch_size", "16", "--suite.seeds", "[0, 1]",
        "--finetune.min_steps", "0"]  # fmt: skip


@pytest.fixture(scope="module")
def evaluated(mlm_export, tmp_path_factory):
    model = tmp_path_factory.mktemp("model") / "mlm"
    shutil.copytree(mlm_export, model)
    out = model.parent / "suite"
    main(["evaluate", "text/evaluate-tiny", "--model.name_or_path", str(model), "--suite.output_dir", str(out), *TINY])
    return model, out


def model_rows(entries: list[dict]) -> list[dict]:
    """The model's own rows or summary entries, without the classic baseline's."""
    return [e for e in entries if e["method"] not in TITLES]


def test_every_task_and_seed_is_a_row_and_the_table_averages_them(evaluated):
    _, out = evaluated
    result = json.loads((out / "results.json").read_text())
    rows = {(r["row"], r["seed"]) for r in model_rows(result["rows"])}
    assert rows == {(t, s) for t in ("topics", "same-topic", "word-order", "topics-probe") for s in (0, 1)}
    by_row = {e["row"]: e for e in result["summary"]}
    for name, entry in by_row.items():
        values = [r["value"] for r in result["rows"] if r["row"] == name]
        assert entry["mean"] == pytest.approx(statistics.fmean(values)) and entry["seeds"] == 2
        assert entry["split"] == "test"
    assert by_row["word-order"]["metric"] == "matthews_correlation" and by_row["topics-probe"]["method"] == "probe"
    # the suite's average is the model's own: the baseline rows stay out of it
    assert result["average"] == pytest.approx(statistics.fmean(e["mean"] for e in model_rows(result["summary"])))
    assert len(model_rows(list(csv.DictReader((out / "results.csv").open())))) == 8
    assert "| **average** |" in (out / "results.md").read_text()


def test_classification_tasks_get_the_tfidf_baseline_per_seed_out_of_the_average(evaluated):
    model, out = evaluated
    result = json.loads((out / "results.json").read_text())
    baseline = [r for r in result["rows"] if r["method"] in TITLES]
    # topics-probe scores the topics' data: it shares the topics' baseline row
    assert {(r["task"], r["row"], r["seed"]) for r in baseline} == {
        (t, f"{t} (TF-IDF + LR)", s) for t in ("topics", "same-topic", "word-order") for s in (0, 1)
    }
    assert all(r["method"] == "tfidf" and r["split"] == "test" for r in baseline)
    own = {(r["task"], r["seed"]): r for r in model_rows(result["rows"])}
    for row in baseline:
        assert row["metric"] == own[(row["task"], row["seed"])]["metric"] and 0.0 <= row["accuracy"] <= 1.0
    topics = [r["accuracy"] for r in baseline if r["task"] == "topics"]
    assert min(topics) > 0.5  # 8 topics: chance is 0.125
    summary = result["summary"]
    everything = statistics.fmean(e["mean"] for e in summary)
    assert result["average"] != pytest.approx(everything)  # the baseline rows would move it
    assert len(list(csv.DictReader((out / "results.csv").open()))) == 8 + len(baseline)
    table = (out / "results.md").read_text()
    assert "| topics (TF-IDF + LR) | tfidf | accuracy | test |" in table
    card = ModelCard.load(model / "README.md")
    assert "Rows marked TF-IDF + LR are the classic pipeline" in card.text
    assert not [r for r in card.data.eval_results if "TF-IDF" in r.task_name]
    assert len(card.data.eval_results) == len(model_rows(summary))


def test_the_card_gets_the_table_and_model_index_entries_once(evaluated):
    model, out = evaluated
    card = ModelCard.load(model / "README.md")
    assert card.text.count(SECTION_START) == 1 and card.text.count(SECTION_END) == 1
    assert (out / "results.md").read_text().strip() in card.text
    entries = {(r.task_name, r.dataset_type, r.metric_type): r.metric_value for r in card.data.eval_results}
    summary = {e["row"]: e for e in json.loads((out / "results.json").read_text())["summary"]}
    assert entries[("word-order", "hfssl/word_order", "matthews_correlation")] == round(
        summary["word-order"]["mean"], 4
    )
    assert ("same-topic", "hfssl/same_topic", "accuracy") in entries

    # a second run replaces its entries and its section rather than adding to them
    from hfssl.downstream.suites import add_to_card

    result = json.loads((out / "results.json").read_text())
    tasks = load_suite("embedded")
    add_to_card(model, "embedded", result["summary"], result["average"], tasks, EvaluateConfig())
    again = ModelCard.load(model / "README.md")
    assert len(again.data.eval_results) == len(card.data.eval_results)
    assert again.text.count(SECTION_START) == 1


def test_the_embedded_tasks_are_balanced_and_their_splits_disjoint():
    for task, labels in (("same_topic", {"same", "different"}), ("word_order", {"acceptable", "unacceptable"})):
        splits = load_labelled(LabelledDataArgs(synthetic_examples=400, synthetic_task=task))
        assert set(splits.label_names) == labels
        counts = [splits.train["label"].count(i) for i in range(2)]
        assert min(counts) > 0.35 * sum(counts)
    pairs = load_labelled(LabelledDataArgs(synthetic_examples=400, synthetic_task="same_topic"))
    assert pairs.train.column_names == ["text", "text_pair", "label"]


# --------------------------------------------------------------------------- GLUE on a local copy

GLUE = {  # config: (columns, label names, extra validation splits)
    "cola": (["sentence"], ["unacceptable", "acceptable"], []),
    "sst2": (["sentence"], ["negative", "positive"], []),
    "mrpc": (["sentence1", "sentence2"], ["not_equivalent", "equivalent"], []),
    "qqp": (["question1", "question2"], ["not_duplicate", "duplicate"], []),
    "stsb": (["sentence1", "sentence2"], None, []),  # similarity scores in [0, 5]
    "mnli": (["premise", "hypothesis"], ["entailment", "neutral", "contradiction"], ["matched", "mismatched"]),
    "qnli": (["question", "sentence"], ["entailment", "not_entailment"], []),
    "rte": (["sentence1", "sentence2"], ["entailment", "not_entailment"], []),
    "wnli": (["sentence1", "sentence2"], ["not_entailment", "entailment"], []),
}


@pytest.fixture(scope="module")
def glue_copy(tmp_path_factory):
    """A folder laid out as `hf download nyu-mll/glue --repo-type dataset` leaves it: parquet per config and split,
    and a README whose metadata declares the configurations; test labels hidden (-1), as on the Hub."""
    root = tmp_path_factory.mktemp("glue")
    configs = []
    for name, (columns, names, extra) in GLUE.items():
        splits = ["train", *(f"validation_{e}" for e in extra), *(f"test_{e}" for e in extra)] if extra else [
            "train", "validation", "test"]  # fmt: skip
        files = []
        for split in splits:
            n = 40 if split == "train" else 12
            rows = {c: [f"{name} {split} {c} {i}" for i in range(n)] for c in columns}
            if names is None:
                rows["label"] = [-1.0 if split.startswith("test") else (i * 0.37) % 5 for i in range(n)]
                label = datasets.Value("float32")
            else:
                rows["label"] = [-1 if split.startswith("test") else i % len(names) for i in range(n)]
                label = datasets.ClassLabel(names=names)
            rows["idx"] = list(range(n))
            features = datasets.Features(
                {**{c: datasets.Value("string") for c in columns}, "label": label, "idx": datasets.Value("int32")}
            )
            path = root / name / f"{split}-00000-of-00001.parquet"
            path.parent.mkdir(exist_ok=True)
            datasets.Dataset.from_dict(rows, features=features).to_parquet(str(path))
            files.append(f"  - split: {split}\n    path: {name}/{split}-*")
        configs.append(f"- config_name: {name}\n  data_files:\n" + "\n".join(files))
    (root / "README.md").write_text("---\nconfigs:\n" + "\n".join(configs) + "\n---\n# GLUE (a local stand-in)\n")
    return root


def test_every_glue_task_loads_from_a_local_copy_of_the_hub_repository(glue_copy):
    tasks = {t.name: t for t in load_suite("glue", data_dir=str(glue_copy))}
    assert set(tasks) == set(GLUE)
    for name, (columns, names, _) in GLUE.items():
        splits = load_labelled(tasks[name].data)
        assert splits.label_names == (names or []), name
        if names is None:
            assert tasks[name].data.regression and splits.train.features["label"].dtype == "float32"
            assert max(splits.train["label"]) > 4.5 and tasks[name].metric == "spearman"
        assert len(splits.train) == 40 and len(splits.validation) == 12, name
        expected = {"text", "text_pair", "label"} if len(columns) == 2 else {"text", "label"}
        assert set(splits.train.column_names) == expected, name
        assert splits.train[0]["text"] == f"{name} train {columns[0]} 0"
        if name == "mnli":
            assert splits.validation[0]["text"].startswith("mnli validation_matched")
            assert splits.test[0]["text"].startswith("mnli validation_mismatched")
            assert tasks[name].rows(has_test=True) == {"mnli-m": "validation", "mnli-mm": "test"}
        else:
            assert splits.test is None and tasks[name].rows(has_test=False) == {name: "validation"}


# --------------------------------------------------------------------------- bad suites


def run_error(capsys, *args) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hfssl: error: "), err
    return err[0]


def test_a_speech_export_on_glue_is_one_line(capsys, speech_export, tmp_path):
    out = tmp_path / "out"
    message = run_error(capsys, "evaluate", "text/glue", "--model.name_or_path", speech_export,
                        "--suite.output_dir", out)  # fmt: skip
    assert "is a speech encoder (wav2vec2); evaluate it on a speech suite" in message
    assert not out.exists()


def write_suite(path, text: str):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "suite, expected",
    [
        (
            "nosuch",
            "suite.name: 'nosuch' is not a suite; choose from embedded, embeddings, glue, keywords, mteb-sts, sts",
        ),
        ("- name: a\n  metric: auroc\n  data: {train: synthetic}\n", "metric 'auroc' is not one hfssl computes"),
        ("- name: a\n  method: zeroshot\n", "method 'zeroshot' is not finetune, probe, embedding or mteb"),
        ("- name: a\n  method: mteb\n  data: {train: NoSuchTask}\n", "'NoSuchTask' is not an MTEB task"),
        (
            "- name: a\n  method: embedding\n  metric: accuracy\n",
            "metric 'accuracy' is not one hfssl scores embeddings",
        ),
        (
            "- name: a\n  method: embedding\n  metric: recall@1\n  data: {train: x.jsonl}\n",
            "retrieval (recall@k) is scored on hfssl's generated set only",
        ),
        ("- name: a\n  data: {trian: x}\n", "data.trian"),
        ("- name: a\n- name: a\n", "a second task of that name"),
        ("- name: a\n  metric: pearson\n  data: {train: synthetic}\n", "its labels are classes, which metric pearson"),
        ("- name: a\n  metric: accuracy\n  data: {train: x.jsonl, regression: true}\n", "its labels are real-valued"),
        (
            "- name: a\n  method: probe\n  metric: spearman\n  data: {train: x.jsonl, regression: true}\n",
            "the probe classifies",
        ),
        ("name: a\n", "a suite is a non-empty YAML list of tasks"),
        ("SCORES", "holds real-valued scores (such as 3.8), not classes; set data.regression: true"),
    ],
)
def test_bad_suites_are_one_line(capsys, tmp_path, mlm_export, suite, expected):
    if suite == "SCORES":  # an STS-B-like task: similarity scores where a classifier needs classes
        rows = [{"text": f"a {i}", "text_pair": f"b {i}", "label": 3.8 if i % 2 else 1.0} for i in range(20)]
        data = tmp_path / "sts.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        suite = f"- name: sts\n  data: {{train: {data}, text_pair_column: text_pair}}\n"
    if suite != "nosuch":
        suite = str(write_suite(tmp_path / "suite.yaml", suite))
    out = tmp_path / "out"
    message = run_error(capsys, "evaluate", "text/evaluate-tiny", "--model.name_or_path", mlm_export,
                        "--suite.name", suite, "--suite.output_dir", out)  # fmt: skip
    assert expected in message
    assert not out.exists()


def test_an_unknown_task_of_the_suite_is_named(capsys, mlm_export, tmp_path):
    message = run_error(capsys, "evaluate", "text/evaluate-tiny", "--model.name_or_path", mlm_export,
                        "--suite.tasks", "[topics, sentiment]", "--suite.output_dir", tmp_path / "o")  # fmt: skip
    assert "suite.tasks: 'sentiment' is not a task of embedded" in message


def test_the_embeddings_suite_scores_any_text_export_once(mlm_export, tmp_path):
    """Embeddings are scored as they are: one row per task whatever the seeds, the retrieval rows from one ranked
    pool, and model-index entries of the similarity and retrieval kinds."""
    pytest.importorskip("sentence_transformers")
    model = tmp_path / "mlm"
    shutil.copytree(mlm_export, model)
    out = tmp_path / "suite"
    main(["evaluate", "text/evaluate-tiny", "--model.name_or_path", str(model), "--suite.name", "embeddings",
          "--suite.output_dir", str(out), *TINY])  # fmt: skip
    result = json.loads((out / "results.json").read_text())
    scores = {r["row"]: r["value"] for r in result["rows"]}
    assert list(scores) == ["similarity", "retrieval@1", "retrieval@10"] and len(result["rows"]) == 3
    assert -1.0 <= scores["similarity"] <= 1.0 and 0.0 <= scores["retrieval@1"] <= scores["retrieval@10"] <= 1.0
    entries = {
        (r.task_type, r.metric_type): r.metric_value for r in ModelCard.load(model / "README.md").data.eval_results
    }
    assert entries == {("sentence-similarity", "spearman"): round(scores["similarity"], 4),
                       ("text-retrieval", "recall@1"): round(scores["retrieval@1"], 4),
                       ("text-retrieval", "recall@10"): round(scores["retrieval@10"], 4)}  # fmt: skip


def test_an_sts_suite_reads_a_local_copy_of_stsb(mlm_export, tmp_path):
    pytest.importorskip("sentence_transformers")
    copy = tmp_path / "stsb"
    (copy / "data").mkdir(parents=True)
    for split in ("validation", "test"):
        rows = {"sentence1": [f"the cook sliced onion {i}" for i in range(12)],
                "sentence2": [f"the cook sliced {'onion' if i % 2 else 'wheat'} {i}" for i in range(12)],
                "score": [float(i % 2) for i in range(12)]}  # fmt: skip
        datasets.Dataset.from_dict(rows).to_parquet(copy / "data" / f"{split}-00000-of-00001.parquet")
    tasks = load_suite("sts", str(copy))
    assert [(t.name, t.data.train, t.data.split) for t in tasks] == [
        ("stsb", str(copy), "test"), ("stsb-validation", str(copy), "validation"),
    ]  # fmt: skip
    out = tmp_path / "suite"
    main(["evaluate", "text/evaluate-tiny", "--model.name_or_path", str(mlm_export), "--suite.name", "sts",
          "--suite.data_dir", str(copy), "--suite.update_card", "false", "--suite.output_dir", str(out),
          *TINY])  # fmt: skip
    summary = {e["row"]: e for e in json.loads((out / "results.json").read_text())["summary"]}
    assert summary["stsb"]["split"] == "test" and summary["stsb-validation"]["split"] == "validation"


def test_an_mteb_suite_reads_local_copies_of_its_tasks(mlm_export, tmp_path):
    """MTEB's STSBenchmark run by the mteb package on a local copy shaped like mteb/stsbenchmark-sts (sentence1,
    sentence2, score 0-5 per split), found under suite.data_dir by the dataset's name."""
    pytest.importorskip("mteb")
    copy = tmp_path / "copies" / "stsbenchmark-sts" / "data"
    copy.mkdir(parents=True)
    rows = {"sentence1": [f"the cook sliced onion {i}" for i in range(16)],
            "sentence2": [f"the cook sliced {'onion' if i % 2 else 'wheat'} {i}" for i in range(16)],
            "score": [5.0 * (i % 2) for i in range(16)]}  # fmt: skip
    for split in ("train", "validation", "test"):
        datasets.Dataset.from_dict(rows).to_parquet(copy / f"{split}-00000-of-00001.parquet")
    out = tmp_path / "suite"
    main(["evaluate", "text/evaluate-tiny", "--model.name_or_path", str(mlm_export), "--suite.name", "mteb-sts",
          "--suite.tasks", "[STSBenchmark]", "--suite.data_dir", str(tmp_path / "copies"), "--suite.update_card",
          "false", "--suite.output_dir", str(out), *TINY])  # fmt: skip
    (row,) = json.loads((out / "results.json").read_text())["rows"]
    assert row["method"] == "mteb" and row["metric"] == "main_score" and -1.0 <= row["value"] <= 1.0


def test_an_audio_task_gets_the_mfcc_baseline_on_each_split_its_rows_report(speech_export):
    from hfssl.config import ClassifierModelArgs
    from hfssl.downstream.suites import Task, _baseline_rows

    data = LabelledDataArgs(task="audio", synthetic_examples=100, max_seconds=1.0)
    cfg = EvaluateConfig(model=ClassifierModelArgs(name_or_path=str(speech_export)))
    task = Task("keywords", data, "probe", scores={"keywords-val": "validation", "keywords-test": "test"})
    rows = _baseline_rows(cfg, task, seed=1)
    assert [(r["row"], r["split"], r["method"], r["seed"]) for r in rows] == [
        ("keywords-val (MFCC + LR)", "validation", "mfcc", 1), ("keywords-test (MFCC + LR)", "test", "mfcc", 1),
    ]  # fmt: skip
    assert all(0.0 <= r["value"] == r["accuracy"] <= 1.0 for r in rows)
