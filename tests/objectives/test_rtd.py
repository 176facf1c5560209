"""Replaced-token detection through the real CLI on tiny encoders: the sampling is exact and never puts a special
token in, the embeddings are shared the way the recipe says, the loss falls, a resumed run ends with the same weights,
the export loads as a stock encoder and classifier without hfssl (and `hfssl finetune` and `probe` take it), two
processes train as one, and bad settings are one line."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import assert_resumes_exactly, env, hfssl, one_line_error, torchrun_hfssl
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel

from hfssl.collators.text import document_layout
from hfssl.objectives.rtd import DisentangledEmbedding, ReplacedTokenDetection, RTDArgs, generator_config

RECIPE = "text/electra-tiny"
TINY = [
    "--model.num_layers", "2", "--model.hidden_size", "64", "--model.num_heads", "2",
    "--data.synthetic_documents", "1500", "--data.seq_len", "64", "--tokenizer.vocab_size", "800",
    "--train.batch_size", "16", "--train.log_every", "2", "--train.eval_batches", "8", "--train.probe_every", "",
]  # fmt: skip
STEPS = ["--train.max_steps", "40", "--train.eval_every", "20", "--train.save_every", "20"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The recipe's ModernBERT discriminator, ELECTRA's shared embeddings."""
    out = tmp_path_factory.mktemp("rtd") / "run"
    hfssl("pretrain", RECIPE, *TINY, *STEPS, "--train.keep_last", "5", "--train.output_dir", out)
    return out


@pytest.fixture(scope="module")
def electra(tmp_path_factory):
    """An ELECTRA discriminator with DeBERTa-v3's sharing, exporting its generator too."""
    out = tmp_path_factory.mktemp("rtd-electra") / "run"
    options = [
        "--model.arch",
        "electra",
        "--objective.embedding_sharing",
        "gdes",
        "--objective.export_generator",
        "true",
    ]
    hfssl("pretrain", RECIPE, *TINY, *STEPS, *options, "--train.output_dir", out)
    return out


def tiny_encoder(model_type="modernbert"):
    config = AutoConfig.for_model(
        model_type, vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, pad_token_id=0, bos_token_id=1, cls_token_id=1, eos_token_id=2, sep_token_id=2,
    )  # fmt: skip
    return AutoModel.from_config(config)


def test_generator_is_shallower_and_as_wide():
    config = AutoConfig.for_model(
        "bert", vocab_size=100, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024
    )
    generator = generator_config(config, RTDArgs(generator_size=0.5))
    assert generator.num_hidden_layers == 2 and config.num_hidden_layers == 4
    assert (generator.hidden_size, generator.num_attention_heads, generator.vocab_size) == (256, 4, 100)
    assert generator_config(config, RTDArgs(generator_size=0.1)).num_hidden_layers == 1


def test_sampling_follows_the_generator_and_never_picks_a_special_token():
    torch.manual_seed(0)
    sampleable = torch.ones(64, dtype=torch.bool)
    sampleable[:4] = False  # pad, cls, sep, mask
    objective = ReplacedTokenDetection(tiny_encoder(), RTDArgs(), sampleable)
    with torch.no_grad():  # a generator that puts almost all of its mass on the special ids and on token 7
        bias = objective.generator.model.get_output_embeddings().bias
        bias.fill_(-30.0)
        bias[[0, 1, 2, 3, 7]] = 30.0
    shape = (40, 50)
    n = 2000
    input_ids = torch.full(shape, 3)
    labels = torch.full(shape, 9)
    batch = dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), labels=labels)
    out = objective(**batch, sample_u=torch.rand(shape))
    replaced = out.stats["replaced"].sum().item()
    assert replaced == n  # every position got token 7, never a special one (nor the original 9)
    # With the original token as likely as token 7, about half the samples are it and count as not replaced.
    with torch.no_grad():
        bias[9] = 30.0
    halves = objective(**batch, sample_u=torch.rand(shape)).stats["replaced"].sum().item()
    assert 0.45 * n < halves < 0.55 * n
    # The same draws sample the same tokens.
    u = torch.rand(shape)
    assert torch.equal(
        objective(**batch, sample_u=u).stats["replaced"], objective(**batch, sample_u=u).stats["replaced"]
    )


def test_shared_embeddings_are_one_table():
    objective = ReplacedTokenDetection(tiny_encoder(), RTDArgs())
    table = objective.model.get_input_embeddings().weight
    assert objective.generator.model.get_input_embeddings().weight is table
    assert objective.generator.model.get_output_embeddings().weight is table
    assert sum(p is table for p in objective.parameters()) == 1


def test_disentangled_sharing_keeps_the_discriminator_gradient_off_the_generator_table():
    objective = ReplacedTokenDetection(tiny_encoder("bert"), RTDArgs(embedding_sharing="gdes"))
    embedding = objective.model.get_input_embeddings()
    assert isinstance(embedding, DisentangledEmbedding)
    assert embedding.shared is objective.generator.model.get_input_embeddings()
    ids = torch.randint(4, 64, (2, 8))
    objective.model(input_ids=ids)[0].sum().backward()  # the discriminator alone
    assert embedding.delta.grad is not None and embedding.delta.grad.abs().sum() > 0
    assert embedding.shared.weight.grad is None
    merged = embedding.merged()
    assert torch.equal(merged.weight, embedding.shared.weight + embedding.delta)


def test_eval_loss_falls_and_the_card_says_what_was_trained(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["steps"] == 40 and metrics["tokens_seen"] > 0
    assert metrics["eval_loss"] < 0.8 * metrics["initial_eval_loss"]
    first, last = metrics["evals"][0], metrics["evals"][-1]
    assert first["step"] == 0 and last["step"] == 40
    assert last["generator_loss"] < first["generator_loss"] and last["discriminator_loss"] < first["discriminator_loss"]
    assert 0.05 < metrics["eval_replaced_fraction"] < 0.2  # 15% masked, a few sampled back as the original
    for name in ("accuracy", "replaced_accuracy", "original_accuracy", "generator_accuracy"):
        assert 0.0 <= metrics[f"eval_{name}"] <= 1.0
    card = ModelCard.load(trained / "final" / "README.md")
    assert card.data.pipeline_tag == "feature-extraction"
    assert {"hfssl", "replaced-token-detection", "modernbert"} <= set(card.data.tags)
    assert "Replaced-token detection (ELECTRA)" in card.text and f"{metrics['eval_loss']:.4f}" in card.text
    assert not (trained / "final" / "generator").exists()


def loads_without_hfssl(path, missing_prefixes):
    code = textwrap.dedent(
        f"""
        import sys
        from transformers import AutoModelForSequenceClassification, pipeline
        path = {str(path)!r}
        features = pipeline("feature-extraction", model=path)("the farmer planted corn")
        assert len(features[0]) > 3 and len(features[0][0]) == 64, (len(features[0]), len(features[0][0]))
        model, info = AutoModelForSequenceClassification.from_pretrained(path, num_labels=3, output_loading_info=True)
        assert info["missing_keys"] and all(k.startswith({missing_prefixes!r}) for k in info["missing_keys"]), info
        assert not info["mismatched_keys"], info
        assert "hfssl" not in sys.modules
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")


def test_export_is_a_stock_encoder_every_backbone_weight_loads(trained):
    # ModernBERT classifies through a head (dense + norm) and a classifier; every `model.` weight comes from the export.
    loads_without_hfssl(trained / "final", ("head.", "classifier."))


def test_electra_export_with_disentangled_sharing_and_its_generator(electra):
    final = electra / "final"
    loads_without_hfssl(final, ("classifier.",))
    config = json.loads((final / "config.json").read_text())
    assert config["architectures"] == ["ElectraForPreTraining"]
    # The exported table is the one the discriminator saw: the generator's plus its correction.
    weights = load_file(str(final / "model.safetensors"))
    generator = load_file(str(final / "generator" / "model.safetensors"))
    table = weights["electra.embeddings.word_embeddings.weight"]
    assert not torch.equal(table, generator["electra.embeddings.word_embeddings.weight"])
    code = textwrap.dedent(
        f"""
        import sys
        from transformers import pipeline
        fill = pipeline("fill-mask", model={str(final / "generator")!r})
        assert len(fill("the farmer planted [MASK]")) == 5
        assert "hfssl" not in sys.modules
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert ModelCard.load(final / "generator" / "README.md").data.pipeline_tag == "fill-mask"


def test_export_command_reproduces_final(electra, tmp_path):
    hfssl("export", electra / "checkpoints" / "step-0000040", tmp_path / "exported")
    for part in ("model.safetensors", "generator/model.safetensors"):
        a = load_file(str(electra / "final" / part))
        b = load_file(str(tmp_path / "exported" / part))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_ends_with_the_same_weights(trained, tmp_path):
    """A copy of the run stopped after its step-20 checkpoint and resumed ends with exactly the same weights: the
    generator samples the same tokens after the restart."""
    assert_resumes_exactly(trained, tmp_path / "run", 20, RECIPE, *TINY, *STEPS)


def test_finetune_and_probe_take_the_export(trained, tmp_path):
    hfssl(
        "finetune", "text/classify-tiny", "--model.name_or_path", trained / "final",
        "--training.output_dir", tmp_path / "ft", "--data.synthetic_examples", "300", "--data.max_length", "64",
        "--training.num_train_epochs", "1", "--training.per_device_train_batch_size", "16", "--finetune.min_steps", "0",
    )  # fmt: skip
    assert json.loads((tmp_path / "ft" / "metrics.json").read_text())["test"]["accuracy"] >= 0.0
    hfssl(
        "probe", "text/probe-tiny", "--model.name_or_path", trained / "final", "--data.synthetic_examples", "300",
        "--probe.output", tmp_path / "probe.json",
    )  # fmt: skip
    assert len(json.loads((tmp_path / "probe.json").read_text())["layer_weights"]) == 3


def test_two_processes_train_as_one(tmp_path):
    out = tmp_path / "run"
    steps = ["--train.max_steps", "4", "--train.eval_every", "4", "--train.save_every", "4", "--model.arch", "bert"]
    torchrun_hfssl("pretrain", RECIPE, *TINY, *steps, "--train.output_dir", out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics["steps"] == 4
    assert json.loads((out / "final" / "config.json").read_text())["architectures"] == ["BertModel"]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--objective.generator_size", "1.5"], "objective.generator_size: must be in (0, 1]: the generator may not"),
        (["--model.arch", "gpt2"], "model.arch: gpt2 is not an encoder, which replaced-token detection"),
        (
            ["--objective.name", "mlm", "--objective.rtd_weight", "20"],
            "objective.rtd_weight: only objective.name rtd takes it; this recipe trains mlm",
        ),
        (["--objective.rtd_weight", "0"], "objective.rtd_weight: must be positive"),
    ],
    ids=["generator-larger", "decoder", "rtd-settings-for-mlm", "zero-weight"],
)
def test_bad_settings_are_one_line(args, expected, tmp_path):
    done = hfssl("pretrain", RECIPE, *args, "--train.output_dir", tmp_path / "r", check=False)
    assert expected in one_line_error(done)
    assert not (tmp_path / "r").exists()


def test_a_tokenizer_without_a_mask_token_is_one_line(tmp_path):
    from transformers import AutoTokenizer

    from hfssl.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(["the farmer planted corn in the field"] * 50, vocab_size=200)
    tokenizer.save_pretrained(tmp_path / "tok")
    config = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text())
    config.pop("mask_token", None)
    (tmp_path / "tok" / "tokenizer_config.json").write_text(json.dumps(config))
    assert AutoTokenizer.from_pretrained(tmp_path / "tok").mask_token is None
    done = hfssl(
        "pretrain", RECIPE, "--tokenizer.path", tmp_path / "tok", "--train.output_dir", tmp_path / "r", check=False
    )
    assert "the tokenizer has no mask token" in one_line_error(done)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("model_type", ["modernbert", "bert"])
def test_generator_and_discriminator_see_only_their_own_document(model_type):
    """Document packing reaches both models: changing the first document leaves the second one's hidden states in
    the generator and the discriminator as they were (and with separator packing they change)."""
    torch.manual_seed(0)
    objective = ReplacedTokenDetection(tiny_encoder(model_type), RTDArgs()).eval()
    hidden = []
    for model in (objective.generator.model.base_model, objective.model):
        model.register_forward_hook(lambda module, args, out: hidden.append(out[0][0, 8:]))

    def run(first: list[int], documents: bool) -> list[torch.Tensor]:
        input_ids = torch.tensor([[1, *first, 2, 20, 3, 22, 3, 24, 25, 26, 2]])
        labels = torch.full_like(input_ids, -100)
        labels[0, [9, 11]] = torch.tensor([21, 23])  # the masked tokens: in the second document only
        attention_mask = torch.ones_like(input_ids)
        batch = dict(
            input_ids=input_ids, attention_mask=attention_mask, labels=labels, sample_u=torch.full((1, 16), 0.5)
        )
        layout = document_layout(input_ids, attention_mask, separator=2) if documents else {}
        hidden.clear()
        with torch.no_grad():
            objective(**batch, **layout)
        assert len(hidden) == 2  # the generator's, then the discriminator's
        return list(hidden)

    for before, after in zip(run([10, 11, 12, 13, 14, 15], True), run([30, 31, 32, 33, 34, 35], True), strict=True):
        torch.testing.assert_close(before, after, rtol=0, atol=1e-5)
    for before, after in zip(run([10, 11, 12, 13, 14, 15], False), run([30, 31, 32, 33, 34, 35], False), strict=True):
        assert (before - after).abs().max() > 1e-3
