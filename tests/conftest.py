"""Every test runs offline, on data and models it builds itself."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
    from hfssl import config as config_lib
    from hfssl.config import PretrainConfig
    from hfssl.pretrain import pretrain

    out = tmp_path_factory.mktemp("pretrained") / "mlm"
    cfg = config_lib.load(PretrainConfig, "text/mlm-tiny", TINY_PRETRAIN | {"train.output_dir": str(out)})
    pretrain(cfg)
    return out / "final"
