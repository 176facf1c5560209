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

    from hfssl.objectives import load_pretrain
    from hfssl.pretrain import pretrain

    values = TINY_PRETRAIN | {
        "train.max_steps": "20", "train.probe_every": "10", "train.probe_examples": "200",
        "data.synthetic_documents": "600", "train.output_dir": str(tmp_path / "run"),
    }  # fmt: skip
    metrics = pretrain(load_pretrain("text/mlm-tiny", values))
    assert [p["step"] for p in metrics["probes"]] == [10, 20]
    assert all(0.0 <= p["accuracy"] <= 1.0 for p in metrics["probes"])
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["probes"] == metrics["probes"]


def probe_result(model, out, *options):
    main(["probe", "text/probe-tiny", "--model.name_or_path", str(model), "--data.synthetic_examples", "400",
          "--probe.output", str(out), *options])  # fmt: skip
    return json.loads(out.read_text())


def test_a_probe_from_scratch_reads_a_random_encoder_of_the_same_architecture(mlm_export, tmp_path, monkeypatch):
    from transformers import AutoModel

    from hfssl.downstream import probe

    loaded, load_backbone = [], probe.load_backbone

    def keep(*args, **kwargs):
        loaded.append(load_backbone(*args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr(probe, "load_backbone", keep)
    pretrained = probe_result(mlm_export, tmp_path / "pretrained.json")
    scratch = probe_result(mlm_export, tmp_path / "scratch.json", "--model.from_scratch", "true")
    assert not pretrained["from_scratch"] and scratch["from_scratch"]
    assert (scratch["accuracy"], scratch["layer_weights"]) != (pretrained["accuracy"], pretrained["layer_weights"])
    export = AutoModel.from_pretrained(mlm_export)
    pretrained_model, random_model = loaded
    assert type(random_model) is type(export)
    shapes = {name: value.shape for name, value in export.state_dict().items()}
    assert {name: value.shape for name, value in random_model.state_dict().items()} == shapes
    weights = [name for name in shapes if name.endswith(".weight") and "norm" not in name.lower()]
    assert weights and not any(torch.equal(random_model.state_dict()[n], export.state_dict()[n]) for n in weights)
    assert all(torch.equal(pretrained_model.state_dict()[n], export.state_dict()[n]) for n in shapes)


def test_cls_pooling_reads_the_first_position_of_every_layer():
    from transformers import BertConfig, BertModel

    from hfssl.downstream.probe import pooled_features

    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    model = BertModel(config).eval()
    batch = {"input_ids": torch.randint(5, 50, (3, 7)), "attention_mask": torch.ones(3, 7, dtype=torch.long)}
    batch["attention_mask"][0, 4:] = 0
    hidden = torch.stack(model(**batch, output_hidden_states=True).hidden_states, dim=1)
    cls = pooled_features(model, [batch], "cpu", pooling="cls")
    mean = pooled_features(model, [batch], "cpu")
    assert cls.shape == mean.shape == (3, 3, 32)
    torch.testing.assert_close(cls, hidden[:, :, 0])
    torch.testing.assert_close(mean[0], hidden[0, :, :4].mean(dim=1))


def test_the_probe_command_applies_its_pooling(mlm_export, tmp_path):
    mean = probe_result(mlm_export, tmp_path / "mean.json")
    cls = probe_result(mlm_export, tmp_path / "cls.json", "--model.pooling", "cls")
    assert (mean["pooling"], cls["pooling"]) == ("mean", "cls")
    assert (cls["accuracy"], cls["layer_weights"]) != (mean["accuracy"], mean["layer_weights"])
