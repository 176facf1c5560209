"""Next-word prediction through the real CLI on a tiny decoder: the loss falls, no label crosses a document, a
resumed run ends with the same weights, the export answers `pipeline("text-generation")` and loads as a classifier
without hfssl, two processes train as one, and the wrong kind of model or setting is one line."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import assert_resumes_exactly, env, hfssl, one_line_error, torchrun_hfssl
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from hfssl.collators.text import CausalLMCollator, causal_labels
from hfssl.errors import UsageError

RECIPE = "text/clm-tiny"
TINY = [
    "--model.num_layers", "2", "--model.hidden_size", "64", "--model.num_heads", "2",
    "--data.synthetic_documents", "1500", "--data.seq_len", "64", "--tokenizer.vocab_size", "800",
    "--train.batch_size", "16", "--train.log_every", "2", "--train.eval_batches", "8", "--train.probe_every", "",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("clm") / "run"
    steps = ["--train.max_steps", "40", "--train.eval_every", "20", "--train.save_every", "20"]
    hfssl("pretrain", RECIPE, *TINY, *steps, "--train.keep_last", "5", "--train.output_dir", out)
    return out


@pytest.mark.parametrize("arch", ["llama", "modernbert-decoder", "gpt2"])
def test_each_decoder_preset_is_its_architecture(arch):
    from transformers import AutoModelForCausalLM

    from hfssl.config import ModelArgs
    from hfssl.models.text import is_causal, scratch_config

    class Tokenizer:  # what the presets read from a tokenizer
        pad_token_id, cls_token_id, sep_token_id, bos_token_id, eos_token_id = 0, 2, 3, 2, 3

        def __len__(self):
            return 100

    config = scratch_config(ModelArgs(arch=arch, hidden_size=32, num_heads=2, num_layers=1), Tokenizer())
    assert config.model_type == arch and is_causal(config)
    assert config.vocab_size == 128 and config.pad_token_id == 0
    assert AutoModelForCausalLM.from_config(config).num_parameters() > 0


def test_labels_stop_at_document_boundaries():
    sep, pad = 3, 0
    input_ids = torch.tensor([[2, 10, 11, sep, 12, 13, sep, 14], [2, 15, sep, 16, 17, 0, 0, 0]])
    mask = (input_ids != pad).long()
    labels = causal_labels(input_ids, mask, sep)
    # The model predicts labels[t] from tokens before t: a document's first token is never a target, nor padding.
    assert labels.tolist() == [[2, 10, 11, sep, -100, 13, sep, -100], [2, 15, sep, -100, 17, -100, -100, -100]]


def test_collator_pads_and_labels_every_example():
    class Tokenizer:
        pad_token_id, sep_token_id, eos_token_id = 0, 3, None

    batch = CausalLMCollator(Tokenizer(), pad_to_multiple_of=4)([{"input_ids": [2, 5, 3, 6, 7]}, {"input_ids": [2, 5]}])
    assert batch["input_ids"].shape == (2, 8)
    assert batch["attention_mask"].sum(1).tolist() == [5, 2]
    assert batch["labels"][0].tolist() == [2, 5, 3, -100, 7, -100, -100, -100]
    assert (batch["labels"][1, 2:] == -100).all()


def test_collator_needs_a_separator():
    class Tokenizer:
        pad_token_id, sep_token_id, eos_token_id = 0, None, None

    with pytest.raises(UsageError, match="sep_token nor an eos_token"):
        CausalLMCollator(Tokenizer())


def test_eval_loss_falls_and_the_card_says_text_generation(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["steps"] == 40 and metrics["tokens_seen"] > 0
    assert metrics["eval_loss"] < 0.85 * metrics["initial_eval_loss"]
    assert metrics["eval_perplexity"] == pytest.approx(2.718281828 ** metrics["eval_loss"], rel=1e-6)
    card = ModelCard.load(trained / "final" / "README.md")
    assert card.data.pipeline_tag == "text-generation" and {"hfssl", "causal-lm", "llama"} <= set(card.data.tags)
    assert "no loss crosses a document boundary" in card.text and f"{metrics['eval_loss']:.4f}" in card.text


def test_export_generates_and_classifies_without_hfssl(trained):
    code = textwrap.dedent(
        f"""
        import sys
        from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
        path = {str(trained / "final")!r}
        tokenizer = AutoTokenizer.from_pretrained(path)
        ids = tokenizer("the farmer planted")["input_ids"]
        assert ids[0] == tokenizer.bos_token_id and ids[-1] != tokenizer.eos_token_id, ids  # a prompt, not a document
        generate = pipeline("text-generation", model=path)
        text = generate("the farmer planted", max_new_tokens=5, do_sample=False)[0]["generated_text"]
        assert text.startswith("the farmer planted") and len(text) > len("the farmer planted"), text
        model, info = AutoModelForSequenceClassification.from_pretrained(path, num_labels=3, output_loading_info=True)
        assert set(info["missing_keys"]) == {{"score.weight"}}, info
        assert not info["unexpected_keys"] and not info["mismatched_keys"], info
        assert "hfssl" not in sys.modules
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")


def test_export_command_reproduces_final(trained, tmp_path):
    hfssl("export", trained / "checkpoints" / "step-0000040", tmp_path / "exported")
    a = load_file(str(trained / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "exported" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_ends_with_the_same_weights(trained, tmp_path):
    """A copy of the run stopped after its step-20 checkpoint and resumed ends with exactly the same weights."""
    steps = ["--train.max_steps", "40", "--train.eval_every", "20", "--train.save_every", "20"]
    assert_resumes_exactly(trained, tmp_path / "run", 20, RECIPE, *TINY, *steps)


def test_two_processes_train_as_one(tmp_path):
    out = tmp_path / "run"
    steps = ["--train.max_steps", "4", "--train.eval_every", "4", "--train.save_every", "4", "--model.arch", "gpt2"]
    torchrun_hfssl("pretrain", RECIPE, *TINY, *steps, "--train.output_dir", out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics["steps"] == 4
    assert (out / "final" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    "recipe, args, expected",
    [
        (RECIPE, ["--model.arch", "bert"], "model.arch: bert is not a causal decoder"),
        ("text/mlm-tiny", ["--model.arch", "llama"], "model.arch: llama is not an encoder"),
        (RECIPE, ["--masking.mask_rate", "0.2"], "masking.mask_rate: objective.name clm masks nothing"),
    ],
    ids=["encoder-for-clm", "decoder-for-mlm", "masking-for-clm"],
)
def test_the_wrong_kind_is_one_line(recipe, args, expected, tmp_path):
    done = hfssl("pretrain", recipe, *args, "--train.output_dir", tmp_path / "r", check=False)
    assert expected in one_line_error(done)
    assert not (tmp_path / "r").exists()


def test_a_causal_checkpoint_is_no_masked_lm(trained, tmp_path):
    done = hfssl(
        "pretrain", "text/mlm-tiny", "--model.name_or_path", trained / "final", "--train.output_dir", tmp_path / "r",
        check=False,
    )  # fmt: skip
    assert "is a llama model; masked-LM pretraining trains an encoder" in one_line_error(done)
    assert not (tmp_path / "r").exists()


def test_document_packing_restarts_positions_and_no_label_crosses_a_document():
    class Tokenizer:
        pad_token_id, sep_token_id, eos_token_id = 0, 3, None

    collator = CausalLMCollator(Tokenizer(), pad_to_multiple_of=4, documents=True)
    batch = collator([{"input_ids": [2, 5, 6, 3, 7, 8, 9, 3, 4]}, {"input_ids": [2, 5, 3]}])
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2, 3, 0, 0, 0, 0], [0, 1, 2] + [0] * 9]
    assert batch["document_ids"].tolist() == [[0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2], [0] * 12]
    # The model predicts labels[t] from the tokens before t: every target and the token before it share a document,
    # and no document's first token (position 0) is a target.
    targets = batch["labels"][:, 1:] != -100
    assert targets.sum() == 8
    assert (batch["document_ids"][:, 1:] == batch["document_ids"][:, :-1])[targets].all()
    assert (batch["position_ids"][:, 1:][targets] > 0).all()
    # Labels and inputs are those of separator packing.
    plain = CausalLMCollator(Tokenizer(), pad_to_multiple_of=4)(
        [{"input_ids": [2, 5, 6, 3, 7, 8, 9, 3, 4]}, {"input_ids": [2, 5, 3]}]
    )
    assert all(torch.equal(plain[key], batch[key]) for key in plain)
