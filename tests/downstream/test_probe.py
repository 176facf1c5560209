"""Linear probes: the classifier on known features, layer choice, and `hfssl probe` on an hfssl export."""

import json

import pytest
import torch

from hfssl.__main__ import main
from hfssl.downstream.probe import fit_probe, parse_layer
from hfssl.errors import UsageError

CENTRES = torch.randn(3, 16, generator=torch.Generator().manual_seed(0)) * 3


def gaussian_layers(n: int, informative: int, seed: int, layers: int = 4):
    """Features where only layer `informative` carries the class (a shifted mean); the rest are noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, layers, CENTRES.shape[1], generator=g)
    x[:, informative] += CENTRES[y]
    return x, y


def test_probe_separates_classes_and_finds_the_layer():
    train_x, train_y = gaussian_layers(300, informative=2, seed=1)
    test_x, test_y = gaussian_layers(300, informative=2, seed=2)
    weighted = fit_probe(train_x, train_y, test_x, test_y, num_classes=3)
    assert weighted["accuracy"] > 0.95
    assert max(range(4), key=lambda i: weighted["layer_weights"][i]) == 2
    assert sum(weighted["layer_weights"]) == pytest.approx(1.0, abs=1e-3)
    assert fit_probe(train_x, train_y, test_x, test_y, num_classes=3, layer=2)["accuracy"] > 0.95
    assert fit_probe(train_x, train_y, test_x, test_y, num_classes=3, layer=0)["accuracy"] < 0.6


def test_layer_names():
    assert parse_layer("weighted", 4) is None
    assert parse_layer("last", 4) == 4
    assert parse_layer("0", 4) == 0 and parse_layer("-1", 4) == 4
    for bad in ("7", "top"):
        with pytest.raises(UsageError, match="probe.layer"):
            parse_layer(bad, 4)


def test_probe_command_on_an_export(mlm_export, tmp_path):
    out = tmp_path / "probe.json"
    main(
        [
            "probe",
            "text/probe-tiny",
            "--model.name_or_path",
            str(mlm_export),
            "--data.synthetic_examples",
            "400",
            "--probe.output",
            str(out),
        ]
    )
    result = json.loads(out.read_text())
    assert result["layer"] == "weighted" and len(result["layer_weights"]) == 3  # embeddings + 2 layers
    assert 1 / 8 < result["accuracy"] <= 1.0  # 8 topics: better than chance
    assert result["train_examples"] + result["eval_examples"] < 400


def test_probe_every_logs_accuracy_during_pretraining(tmp_path):
    from conftest import TINY_PRETRAIN

    from hfssl import config as config_lib
    from hfssl.config import PretrainConfig
    from hfssl.pretrain import pretrain

    values = TINY_PRETRAIN | {
        "train.max_steps": "20", "train.probe_every": "10", "train.probe_examples": "200",
        "data.synthetic_documents": "600", "train.output_dir": str(tmp_path / "run"),
    }  # fmt: skip
    metrics = pretrain(config_lib.load(PretrainConfig, "text/mlm-tiny", values))
    assert [p["step"] for p in metrics["probes"]] == [10, 20]
    assert all(0.0 <= p["accuracy"] <= 1.0 for p in metrics["probes"])
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["probes"] == metrics["probes"]
