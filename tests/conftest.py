"""Every test runs offline, on data and models it builds itself."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if "PYTEST_XDIST_WORKER" in os.environ:
    # pytest-xdist runs two workers on the two cores: one torch thread each (and in the commands they start), where
    # two each would fight over the cores.
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


import pytest  # noqa: E402

TINY_PRETRAIN = {
    "model.num_layers": "2",
    "model.hidden_size": "64",
    "model.num_heads": "2",
    "data.synthetic_documents": "2000",
    "data.seq_len": "64",
    "tokenizer.vocab_size": "1000",
    "train.batch_size": "16",
    "train.max_steps": "60",
    "train.eval_every": "60",
    "train.save_every": "60",
    "train.lr": "3e-3",
}


@pytest.fixture(scope="session")
def mlm_export(tmp_path_factory):
    """A tiny masked-LM pretrained and exported by hfssl, shared by the downstream tests."""
    from hfssl.objectives import load_pretrain
    from hfssl.pretrain import pretrain

    out = tmp_path_factory.mktemp("pretrained") / "mlm"
    cfg = load_pretrain("text/mlm-tiny", TINY_PRETRAIN | {"train.output_dir": str(out)})
    pretrain(cfg)
    return out / "final"


TINY_SPEECH = {
    "model.num_layers": "2",
    "model.hidden_size": "32",
    "model.num_heads": "2",
    "model.conv_dim": "32",
    "data.synthetic_utterances": "40",
    "data.max_seconds": "1.0",
    "data.batch_seconds": "4.0",
    "objective.num_negatives": "10",
    "objective.codevectors_per_group": "8",
    "train.max_steps": "2",
    "train.eval_every": "2",
    "train.save_every": "2",
    "train.eval_batches": "2",
    "train.probe_every": "",
}


def pretrain_speech(out, arch: str = "wav2vec2"):
    """A speech encoder pretrained for two steps and exported by hfssl: the export's shape, not its quality."""
    from hfssl.objectives import load_pretrain
    from hfssl.pretrain import pretrain

    changes = TINY_SPEECH | {"model.arch": arch, "train.output_dir": str(out)}
    pretrain(load_pretrain("speech/wav2vec2-tiny", changes))
    return out / "final"


def finetune_tiny(model, out, recipe: str, **changes):
    """A classifier fine-tuned by hfssl for one short epoch; returns the run directory."""
    from hfssl import config as config_lib
    from hfssl.config import FinetuneConfig
    from hfssl.downstream.finetune import finetune

    values = {
        "model.name_or_path": str(model),
        "training.output_dir": str(out),
        "training.num_train_epochs": "1",
        "training.per_device_train_batch_size": "16",
        # the epoch alone, and selection on however few validation examples (tests of the few-label floor set these)
        "finetune.min_steps": "0",
        "finetune.min_validation": "0",
        **changes,
    }
    finetune(config_lib.load(FinetuneConfig, recipe, values))
    return out


@pytest.fixture(scope="session")
def speech_export(tmp_path_factory):
    """A tiny wav2vec2 encoder exported by hfssl."""
    return pretrain_speech(tmp_path_factory.mktemp("pretrained") / "w2v")


@pytest.fixture(scope="session")
def text_classifier(mlm_export, tmp_path_factory):
    """The run directory of a topic classifier fine-tuned from `mlm_export`."""
    out = tmp_path_factory.mktemp("finetuned") / "topics"
    return finetune_tiny(mlm_export, out, "text/classify-tiny", **{"data.synthetic_examples": "160"})


@pytest.fixture(scope="session")
def audio_classifier(speech_export, tmp_path_factory):
    """The run directory of a keyword classifier fine-tuned from `speech_export`."""
    out = tmp_path_factory.mktemp("finetuned") / "keywords"
    changes = {"data.synthetic_examples": "100", "data.max_seconds": "1.0"}
    return finetune_tiny(speech_export, out, "speech/keywords-tiny", **changes)


# The slowest files first, so that neither xdist worker is left with a long one at the end while the other idles.
SLOWEST_FIRST = [
    "objectives/test_wav2vec2.py",
    "test_readme.py",
    "test_pretrain.py",
    "objectives/test_masked_speech.py",
    "objectives/test_data2vec.py",
    "test_distributed.py",
    "test_kill.py",
    "objectives/test_rtd.py",
    "objectives/test_simcse.py",
    "objectives/test_clm.py",
    "test_budget.py",
    "downstream/test_self_training.py",
    "test_api.py",
]


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        path = item.nodeid.split("::")[0].removeprefix("tests/")
        return SLOWEST_FIRST.index(path) if path in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)  # stable: each file keeps its own order
