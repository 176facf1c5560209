"""Document packing on every text architecture: a token attends only to its own document, at positions that restart
with it, on each attention implementation this machine has; separator packing lets documents see each other."""

import logging

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

from hfssl.collators.text import document_layout
from hfssl.config import DataArgs, ModelArgs, PretrainConfig
from hfssl.models.attention import BLOCK_SPARSE, TILE, DocumentTiles, varlen_inputs
from hfssl.models.text import DECODERS, DOCUMENT_ATTENTION, document_packing, model_inputs, scratch_config

PAD, CLS, SEP = 0, 2, 3
FIRST, SECOND = 9, 12  # the two documents' lengths, their separators included
IMPLEMENTATIONS = ("eager", "sdpa", BLOCK_SPARSE)


class Tokenizer:  # what the presets read from a tokenizer
    pad_token_id, cls_token_id, sep_token_id, bos_token_id, eos_token_id = PAD, CLS, SEP, CLS, SEP

    def __len__(self):
        return 100


def tiny(arch: str, implementation: str):
    if arch == "xlm-roberta":  # not a preset, but a checkpoint hfssl continues pretraining: RoBERTa's shape
        roberta = tiny("roberta", implementation).config.to_dict()
        config = AutoConfig.for_model(arch, **{k: v for k, v in roberta.items() if k != "model_type"})
    else:
        config = scratch_config(ModelArgs(arch=arch, num_layers=2, hidden_size=32, num_heads=2), Tokenizer())
    config.initializer_range = 0.2  # weights large enough that attending to another document shows plainly
    if arch.startswith("modernbert"):
        config.sliding_window = 4  # far shorter than a document, so that sliding layers are checked too
    auto = AutoModelForCausalLM if arch in DECODERS else AutoModelForMaskedLM
    torch.manual_seed(0)
    return auto.from_config(config, attn_implementation=implementation).eval()


def block(first: torch.Tensor, second: torch.Tensor) -> dict:
    """Row 0: [cls] first [sep] second [sep] then padding; row 1: the second document alone at the start."""
    row = torch.cat([torch.tensor([CLS]), first, torch.tensor([SEP]), second, torch.tensor([SEP, PAD, PAD])])
    alone = torch.cat([second, torch.tensor([SEP]), torch.full((len(row) - SECOND,), PAD)])
    input_ids = torch.stack([row, alone])
    attention_mask = (input_ids != PAD).long()
    return {"input_ids": input_ids, "attention_mask": attention_mask} | document_layout(input_ids, attention_mask, SEP)


def logits(model, batch: dict, documents: bool) -> torch.Tensor:
    if not documents:
        batch = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    # Block-sparse attention tiles every layer here, however short the block (auto would find dense cheaper).
    tile = True if documents and model.config._attn_implementation == BLOCK_SPARSE else None
    with torch.no_grad():
        return model(**model_inputs(model, **batch, tile=tile)).logits


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("arch", DOCUMENT_ATTENTION)
def test_a_document_sees_only_itself(arch, implementation):
    model = tiny(arch, implementation)
    generator = torch.Generator().manual_seed(0)
    first = torch.randint(5, 100, (FIRST - 2,), generator=generator)
    second = torch.randint(5, 100, (SECOND - 1,), generator=generator)
    changed = torch.randint(5, 100, (FIRST - 2,), generator=generator)
    while (changed == first).any():  # every token of the first document differs
        changed = torch.randint(5, 100, (FIRST - 2,), generator=generator)
    a, b = block(first, second), block(changed, second)
    assert a["position_ids"][0, FIRST : FIRST + SECOND].tolist() == list(range(SECOND))
    in_block = slice(FIRST, FIRST + SECOND)
    documents_a, documents_b = logits(model, a, True), logits(model, b, True)
    torch.testing.assert_close(documents_a[0, in_block], documents_b[0, in_block], rtol=0, atol=1e-5)
    # ... and it is what the document gives on its own, from position 0: nothing of the block leaks in.
    torch.testing.assert_close(documents_a[0, in_block], documents_a[1, :SECOND], rtol=1e-4, atol=1e-5)
    separator_a, separator_b = logits(model, a, False), logits(model, b, False)
    assert (separator_a[0, in_block] - separator_b[0, in_block]).abs().max() > 1e-2


def packed(lengths: list[list[int]], length: int, seed: int = 0) -> dict:
    """Rows of documents of the given lengths (separators included) packed into `length` tokens, padded after."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for documents in lengths:
        row = []
        for n in documents:
            row += torch.randint(5, 100, (n - 1,), generator=generator).tolist() + [SEP]
        rows.append((row + [PAD] * length)[:length])
    input_ids = torch.tensor(rows)
    attention_mask = (input_ids != PAD).long()
    return {"input_ids": input_ids, "attention_mask": attention_mask} | document_layout(input_ids, attention_mask, SEP)


@pytest.mark.parametrize("arch", DOCUMENT_ATTENTION)
def test_block_sparse_attention_computes_what_the_dense_masks_do(arch):
    """Tiled (every layer type) and dense document attention give the same logits and the same gradients, over
    several tiles, a block that is not a whole number of tiles, a document longer than a tile, and padding."""
    model = tiny(arch, BLOCK_SPARSE).train()
    batch = packed([[7, 30, 12, 90, 11, 50], [40, 3, 25, 60, 5]], length=TILE * 3 - 17)
    assert batch["attention_mask"][1].sum() < batch["attention_mask"].shape[1]  # row 1 ends in padding
    real = batch["attention_mask"].bool()
    outputs, grads = [], []
    for tile in (False, True):
        model.zero_grad()
        inputs = model_inputs(model, **batch, tile=tile)
        assert ("document_tiles" in inputs) == tile
        out = model(**inputs).logits
        (out[real].float().square().mean()).backward()
        outputs.append(out[real].detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)


def test_auto_tiles_only_the_layer_types_it_makes_cheaper():
    """Short documents in a long block tile every layer; documents as long as the block tile only sliding layers."""
    config = tiny("modernbert", BLOCK_SPARSE).config
    config.sliding_window = 64
    short = packed([[40] * 26, [30] * 34], length=1024)
    tiles = DocumentTiles.plan(config, short["document_ids"], short["attention_mask"])
    assert set(tiles.windows) == {"full_attention", "sliding_attention"}
    before, after = tiles.windows["full_attention"]
    assert 0 < before < 40 and 0 < after < 40  # a tile reaches back and on only as far as its documents
    assert tiles.windows["sliding_attention"] == (min(before, 64), min(after, 64))
    long = packed([[1024], [600, 424]], length=1024)
    tiles = DocumentTiles.plan(config, long["document_ids"], long["attention_mask"])
    assert set(tiles.windows) == {"sliding_attention"} and tiles.windows["sliding_attention"] == (64, 64)
    short_block = packed([[40, 40, 48]], length=128)
    assert DocumentTiles.plan(config, short_block["document_ids"], short_block["attention_mask"]) is None


def packing_config(packing: str, **train) -> PretrainConfig:
    cfg = PretrainConfig(data=DataArgs(packing=packing))
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg


def test_an_architecture_without_the_masks_falls_back_to_separators(caplog):
    model = tiny("bert", "sdpa")
    assert document_packing(packing_config("documents"), model)
    assert model.config._attn_implementation == BLOCK_SPARSE  # model.attention auto
    assert not document_packing(packing_config("separator"), model)
    model.config.model_type = "distilbert"  # any architecture hfssl has not checked takes no document masks
    with caplog.at_level(logging.WARNING, logger="hfssl.models.text"):
        assert not document_packing(packing_config("documents"), model)
    assert [r.getMessage() for r in caplog.records if "packing with separators instead" in r.getMessage()]


def test_dense_attention_and_compiled_runs_keep_sdpa():
    for cfg in (packing_config("documents", compile=True), packing_config("documents")):
        cfg.model.attention = "dense" if not cfg.train.compile else "auto"
        model = tiny("modernbert", "sdpa")
        assert document_packing(cfg, model)
        assert model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("arch", ["modernbert", "llama"])
def test_document_packing_compiles(arch):
    """torch.compile traces the document masks, forward and backward (aot_eager: dynamo and AOTAutograd, without the
    minutes of code generation inductor adds), and the compiled model computes what the eager one does."""
    torch._dynamo.reset()
    model = tiny(arch, "sdpa").train()
    generator = torch.Generator().manual_seed(1)
    batch = model_inputs(model, **block(torch.randint(5, 100, (FIRST - 2,), generator=generator),
                                        torch.randint(5, 100, (SECOND - 1,), generator=generator)))  # fmt: skip
    labels = torch.randint(5, 100, batch["input_ids"].shape, generator=generator)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=False)
    losses, grads = [], []
    for run in (model, compiled):
        model.zero_grad()
        loss = run(**batch, labels=labels).loss
        loss.backward()
        losses.append(loss.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)


def test_the_card_says_which_packing_the_model_trained_with():
    """A model that fell back to separators is not described as attending within documents."""
    from hfssl.config import PretrainConfig
    from hfssl.objectives.text import describe_data

    cfg, metrics = PretrainConfig(), {"tokens_seen": 10, "steps": 1}
    assert "attends only to its own document" in describe_data(cfg, metrics, tiny("bert", "sdpa"))
    tiny_dims = {"dim": 32, "n_layers": 1, "n_heads": 2, "hidden_dim": 64, "vocab_size": 100}
    other = AutoModelForMaskedLM.from_config(AutoConfig.for_model("distilbert", **tiny_dims))
    text = describe_data(cfg, metrics, other)
    assert "packed into blocks of" in text and "own document" not in text


def test_flash_attention_gets_the_documents_as_sequence_lengths():
    """The padding-free inputs: the batch's rows end to end, each document and each row's padding one segment."""
    batch = packed([[5, 3, 4], [2, 6]], length=12)  # row 0: 5 + 3 + 4 = 12 tokens; row 1: 8 tokens, 4 of padding
    varlen = varlen_inputs(batch["document_ids"], batch["attention_mask"])
    assert varlen["cu_seq_lens_q"].tolist() == [0, 5, 8, 12, 14, 20, 24]
    assert varlen["cu_seq_lens_q"].dtype == torch.int32 and varlen["cu_seq_lens_k"] is varlen["cu_seq_lens_q"]
    assert varlen["max_length_q"] == varlen["max_length_k"] == 6
    model = tiny("modernbert", "sdpa")
    model.config._attn_implementation = "flash_attention_2"  # as document_packing sets it where flash can run
    inputs = model_inputs(model, **batch)
    assert inputs["attention_mask"] == {"full_attention": None, "sliding_attention": None}
    assert inputs["cu_seq_lens_q"].tolist() == varlen["cu_seq_lens_q"].tolist()
    assert inputs["position_ids"][0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 3]


def test_flash_without_cuda_or_flash_attn_says_so_and_tiles(caplog):
    cfg = packing_config("documents")
    cfg.model.attention = "flash"
    model = tiny("modernbert", "sdpa")
    with caplog.at_level(logging.WARNING, logger="hfssl.models.text"):
        assert document_packing(cfg, model)
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("model.attention: flash needs flash-attention 2") and "block-sparse sdpa instead" in line
    assert model.config._attn_implementation == BLOCK_SPARSE
