"""`hfssl label-efficiency` end to end on the embedded task: table, plot, card section (and the model's card), the
classic baselines (TF-IDF + LR for text, MFCC + LR for audio) on the same subsamples, and the verdict line."""

import contextlib
import csv
import io
import json
import shutil

import pytest
import torch
from huggingface_hub import ModelCard

from hfssl.__main__ import main
from hfssl.config import LabelEfficiencyConfig, LabelledDataArgs
from hfssl.data.labelled import load_labelled
from hfssl.downstream import baselines
from hfssl.downstream.label_efficiency import SECTION_END, SECTION_START

SWEEP = [
    "--data.synthetic_examples", "400", "--data.max_length", "64",
    "--sweep.fractions", "[0.05, 1.0]", "--sweep.seeds", "[0, 1, 2]", "--finetune.min_steps", "8",
    "--training.num_train_epochs", "1", "--training.per_device_train_batch_size", "32",
    "--training.learning_rate", "1e-3",
]  # fmt: skip


@pytest.fixture(scope="module")
def sweep(mlm_export, tmp_path_factory):
    model = tmp_path_factory.mktemp("model") / "mlm"
    shutil.copytree(mlm_export, model)
    out = model.parent / "sweep"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        main(
            [
                "label-efficiency",
                "text/label-efficiency-tiny",
                "--model.name_or_path",
                str(model),
                "--sweep.output_dir",
                str(out),
                *SWEEP,
            ]
        )
    (out / "printed.txt").write_text(printed.getvalue())
    return model, out


def test_the_command_prints_the_verdict_it_writes(sweep):
    _, out = sweep
    verdict = json.loads((out / "results.json").read_text())["verdict"]
    assert verdict.startswith("Pretraining bought") and "against TF-IDF + LR" in verdict
    assert verdict in (out / "printed.txt").read_text().splitlines()


def test_table_has_every_model_fraction_and_seed(sweep):
    _, out = sweep
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {(r["model"], float(r["fraction"]), int(r["seed"])) for r in rows} == {
        (m, f, s) for m in ("pretrained", "scratch", "tfidf") for f in (0.05, 1.0) for s in (0, 1, 2)
    }
    result = json.loads((out / "results.json").read_text())
    assert len(result["summary"]) == 6 and all(e["seeds"] == 3 for e in result["summary"])
    small = [r for r in rows if float(r["fraction"]) == 0.05]
    assert all(8 <= int(r["labels"]) < 40 for r in small)  # at least one per class of 8, about 5% of ~320


def test_tfidf_rows_fit_the_same_subsamples_and_beat_chance(sweep):
    _, out = sweep
    result = json.loads((out / "results.json").read_text())
    assert result["baseline"] == "tfidf"
    labels = {(r["model"], r["fraction"], r["seed"]): r["labels"] for r in result["rows"]}
    for fraction in (0.05, 1.0):
        for seed in (0, 1, 2):
            assert labels[("tfidf", fraction, seed)] == labels[("pretrained", fraction, seed)]
            assert labels[("tfidf", fraction, seed)] == labels[("scratch", fraction, seed)]
    tfidf = [r for r in result["rows"] if r["model"] == "tfidf"]
    assert all(0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["f1"] <= 1.0 for r in tfidf)
    full = [r["accuracy"] for r in tfidf if r["fraction"] == 1.0]
    assert min(full) > 0.5  # 8 topics: chance is 0.125, and topic words separate them
    section = (out / "label_efficiency.md").read_text()
    assert "TF-IDF + LR |" in section and "TF-IDF of word 1-2 grams" in section


def test_the_verdict_line_says_what_pretraining_bought(sweep):
    model, out = sweep
    result = json.loads((out / "results.json").read_text())
    entries = {(e["model"], e["fraction"]): e for e in result["summary"]}
    line = result["verdict"]
    assert line.startswith("Pretraining bought ") and line.count("; against TF-IDF + LR: ") == 1
    over_scratch, over_tfidf = line[len("Pretraining bought ") : -1].split("; against TF-IDF + LR: ")
    for clause, other in ((over_scratch, "scratch"), (over_tfidf, "tfidf")):
        items = clause.replace(" and ", ", ").split(", ")
        assert len(items) == 2  # one per fraction, fewest labels first
        for item, fraction in zip(items, (0.05, 1.0), strict=True):
            pre, theirs = entries[("pretrained", fraction)], entries[(other, fraction)]
            difference = 100 * (pre["accuracy"] - theirs["accuracy"])
            points = float(item.split(" ")[0])
            assert points == pytest.approx(difference, abs=0.051)
            assert f" at {pre['labels']:,}" in item
            noise = abs(difference) < 100 * max(pre["accuracy_std"], theirs["accuracy_std"])
            assert ("(within noise)" in item) == noise
    assert over_scratch.split(" ")[1:4] == ["points", "over", "scratch"]
    assert line in (out / "label_efficiency.md").read_text() and line in (model / "README.md").read_text()


def test_the_tfidf_baseline_fits_its_vocabulary_on_the_subsample_alone(monkeypatch):
    from hfssl.downstream import label_efficiency

    fitted = []
    pipeline = baselines.tfidf_pipeline
    monkeypatch.setattr(baselines, "tfidf_pipeline", lambda seed: fitted.append(pipeline(seed)) or fitted[-1])
    data = LabelledDataArgs(synthetic_examples=200)
    full = load_labelled(data, seed=0)
    baseline = baselines.for_task(data, len(full.label_names))
    cfg = LabelEfficiencyConfig(data=data)
    cfg.sweep.fractions, cfg.sweep.seeds = [0.1], [3]
    (row,) = label_efficiency._baseline_rows(cfg, baseline, full)
    (model,) = fitted
    chosen = full.train.select(label_efficiency._indices(full.train, 0.1, 3).tolist())
    assert row["labels"] == len(chosen) < len(full.train)
    analyse = model[0].build_analyzer()  # the vectorizer's own words and bigrams of a text
    terms = {term for text in chosen["text"] for term in analyse(text)}
    assert set(model[0].vocabulary_) == terms  # the subsample's terms, all of them and no others
    unseen = {term for text in full.test["text"] for term in analyse(text)} - terms
    assert unseen and not unseen & set(model[0].vocabulary_)


def test_a_text_pair_is_one_text_to_the_baseline():
    import datasets

    pairs = datasets.Dataset.from_dict({"text": ["the cook", "a boat"], "text_pair": ["sliced onion", "sails"]})
    assert list(baselines.texts(pairs)) == ["the cook [SEP] sliced onion", "a boat [SEP] sails"]
    assert list(baselines.texts(pairs.remove_columns("text_pair"))) == ["the cook", "a boat"]


def test_regression_has_no_classic_baseline():
    from hfssl.errors import UsageError

    with pytest.raises(UsageError, match="data.regression"):
        baselines.for_task(LabelledDataArgs(train="x.jsonl", regression=True), 0)


def test_plot_is_a_png(sweep):
    _, out = sweep
    assert (out / "label_efficiency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_section_lands_in_the_models_card_once(sweep, mlm_export, tmp_path):
    model, out = sweep
    card = (model / "README.md").read_text()
    assert card.count(SECTION_START) == 1 and card.count(SECTION_END) == 1
    assert "## Label efficiency" in card and "label_efficiency.png" in card
    assert (model / "label_efficiency.png").is_file()
    assert card.index("## Label efficiency") < card.index("## Limitations")
    ModelCard.load(model / "README.md")  # metadata still parses
    section = (out / "label_efficiency.md").read_text()
    assert section.strip() in card
    # no run looked at validation labels, and the card says so
    assert "Model selection: none; each run trains a fixed step budget" in section
    assert json.loads((out / "results.json").read_text())["selection"].startswith("none: ")


def test_bad_fraction_is_one_line(capsys, mlm_export, tmp_path):
    with pytest.raises(SystemExit):
        main(
            [
                "label-efficiency",
                "text/label-efficiency-tiny",
                "--model.name_or_path",
                str(mlm_export),
                "--sweep.fractions",
                "[0.1, 0]",
                "--sweep.output_dir",
                str(tmp_path / "out"),
            ]
        )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sweep.fractions[1]: must be in (0, 1]" in err[0]
    assert not (tmp_path / "out").exists()


def test_an_audio_sweep_has_the_mfcc_baseline_on_the_same_subsamples(speech_export, tmp_path):
    out = tmp_path / "sweep"
    main(
        [
            "label-efficiency", "speech/label-efficiency-keywords-tiny", "--model.name_or_path", str(speech_export),
            "--sweep.method", "probe", "--sweep.output_dir", str(out), "--sweep.update_card", "false",
            "--data.synthetic_examples", "200", "--data.max_seconds", "1.0",
            "--sweep.fractions", "[0.25, 1.0]", "--sweep.seeds", "[0, 1]",
        ]
    )  # fmt: skip
    rows = json.loads((out / "results.json").read_text())["rows"]
    labels = {(r["model"], r["fraction"], r["seed"]): r["labels"] for r in rows}
    assert {m for m, _, _ in labels} == {"pretrained", "scratch", "mfcc"}
    for (_, fraction, seed), n in labels.items():
        assert n == labels[("pretrained", fraction, seed)]  # the same subsample sizes as the probes'
    full = [r["accuracy"] for r in rows if r["model"] == "mfcc" and r["fraction"] == 1.0]
    assert min(full) > 0.25  # 10 keywords: chance is 0.1; MFCC statistics separate them well
    section = (out / "label_efficiency.md").read_text()
    assert "MFCC + LR |" in section and "MFCC statistics" in section
    assert "TF-IDF" not in section and "; against MFCC + LR: " in section


def test_mfcc_statistics_describe_the_clip():
    import numpy as np

    from hfssl.data.mfcc import MfccFeatures
    from hfssl.downstream.baselines import mfcc_statistics

    features = MfccFeatures(16000, 160)
    t = np.arange(16000) / 16000
    tone = mfcc_statistics(features, np.sin(2 * np.pi * 440 * t).astype(np.float32))
    noise = mfcc_statistics(features, np.random.default_rng(0).standard_normal(16000).astype(np.float32))
    assert tone.shape == noise.shape == (78,)
    assert not np.allclose(tone.numpy(), noise.numpy(), atol=1.0)
    # shorter than a window: one padded frame, its deviations 0, not an error
    short = mfcc_statistics(features, np.zeros(100, dtype=np.float32))
    assert short.shape == (78,) and torch.equal(short[39:], torch.zeros(39))
