"""`hfssl label-efficiency` end to end on the embedded task: table, plot, card section (and the model's card)."""

import csv
import json
import shutil

import pytest
import torch
from huggingface_hub import ModelCard

from hfssl.__main__ import main
from hfssl.downstream.label_efficiency import SECTION_END, SECTION_START

SWEEP = [
    "--data.synthetic_examples", "400", "--data.max_length", "64",
    "--sweep.fractions", "[0.05, 1.0]", "--sweep.seeds", "[0, 1, 2]", "--sweep.min_steps", "8",
    "--training.num_train_epochs", "1", "--training.per_device_train_batch_size", "32",
    "--training.learning_rate", "1e-3",
]  # fmt: skip


@pytest.fixture(scope="module")
def sweep(mlm_export, tmp_path_factory):
    model = tmp_path_factory.mktemp("model") / "mlm"
    shutil.copytree(mlm_export, model)
    out = model.parent / "sweep"
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
    return model, out


def test_table_has_every_model_fraction_and_seed(sweep):
    _, out = sweep
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {(r["model"], float(r["fraction"]), int(r["seed"])) for r in rows} == {
        (m, f, s) for m in ("pretrained", "scratch") for f in (0.05, 1.0) for s in (0, 1, 2)
    }
    result = json.loads((out / "results.json").read_text())
    assert len(result["summary"]) == 4 and all(e["seeds"] == 3 for e in result["summary"])
    small = [r for r in rows if float(r["fraction"]) == 0.05]
    assert all(8 <= int(r["labels"]) < 40 for r in small)  # at least one per class of 8, about 5% of ~320


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
