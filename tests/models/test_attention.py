"""Block-sparse document attention in a real run: a long block of short documents tiles, and the loss is the one the
dense masks give, for a masked LM, ELECTRA (generator and discriminator) and a causal LM."""

import pytest

from hfssl import api
from hfssl.models.attention import DocumentTiles

TINY = {
    "model.num_layers": 2, "model.hidden_size": 64, "model.num_heads": 2, "data.synthetic_documents": 600,
    "data.seq_len": 512, "tokenizer.vocab_size": 600, "train.batch_size": 2, "train.max_steps": 3,
    "train.eval_every": 3, "train.save_every": 3, "train.eval_batches": 2, "train.probe_every": "",
    "train.log_every": 1,
}  # fmt: skip


@pytest.mark.parametrize("recipe", ["text/mlm-tiny", "text/electra-tiny", "text/clm-tiny"])
def test_a_long_block_of_short_documents_trains_tiled_to_the_dense_loss(recipe, tmp_path, monkeypatch):
    plans = []
    plan = DocumentTiles.plan.__func__

    def spy(cls, *args, **kwargs):
        tiles = plan(cls, *args, **kwargs)
        plans.append(set(tiles.windows) if tiles else set())
        return tiles

    monkeypatch.setattr(DocumentTiles, "plan", classmethod(spy))
    losses = {}
    for attention in ("auto", "dense"):
        plans.clear()
        settings = TINY | {"model.attention": attention, "train.output_dir": str(tmp_path / attention)}
        losses[attention] = api.pretrain(recipe, settings).metrics["eval_loss"]
        if attention == "auto":
            # Sliding layers tile in every batch; full ones where no document of the batch is long (the synthetic
            # documents are mostly far shorter than the 512-token block).
            layer_types = {"sliding_attention", "full_attention"} if recipe != "text/clm-tiny" else {"full_attention"}
            assert any(kinds == layer_types for kinds in plans)
            assert all("sliding_attention" in kinds for kinds in plans) or recipe == "text/clm-tiny"
        else:
            assert not plans  # dense never plans tiles
    assert losses["auto"] == pytest.approx(losses["dense"], rel=1e-4)
