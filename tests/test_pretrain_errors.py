"""Bad input: one clear line naming the thing, exit code 2, no traceback, nothing written."""

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from hfssl.__main__ import main


def run_cli(capsys, *args) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hfssl: error: "), err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.fixture
def out(tmp_path):
    return tmp_path / "run"


def pretrain(capsys, out, *args) -> str:
    message = run_cli(capsys, "pretrain", "text/mlm-tiny", "--train.output_dir", out, "--train.max_steps", "2", *args)
    assert not out.exists(), "nothing may be written for bad input"
    return message


def test_missing_file(capsys, out, tmp_path):
    message = pretrain(capsys, out, "--data.train", tmp_path / "nope.txt")
    assert "nope.txt" in message


def test_empty_corpus(capsys, out, tmp_path):
    corpus = tmp_path / "empty.txt"
    corpus.write_text("")
    assert "empty.txt" in pretrain(capsys, out, "--data.train", corpus)


def test_only_blank_lines(capsys, out, tmp_path):
    corpus = tmp_path / "blank.txt"
    corpus.write_text("\n   \n\t\n\n")
    assert "blank.txt" in pretrain(capsys, out, "--data.train", corpus)


def test_non_utf8(capsys, out, tmp_path):
    corpus = tmp_path / "latin1.txt"
    corpus.write_bytes("caf\xe9 au lait\n".encode("latin-1") * 50)
    message = pretrain(capsys, out, "--data.train", corpus)
    assert "latin1.txt" in message and "UTF-8" in message


def test_directory_without_matching_files(capsys, out, tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "notes.md").write_text("text\n")
    assert "corpus" in pretrain(capsys, out, "--data.train", folder)


def test_tokenizer_without_mask_token(capsys, out, tmp_path):
    raw = Tokenizer(models.WordLevel({"[UNK]": 0, "[PAD]": 1, "a": 2}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(
        tmp_path / "tok"
    )
    message = pretrain(capsys, out, "--tokenizer.path", tmp_path / "tok", "--data.synthetic_documents", "200")
    assert "tok" in message and "mask token" in message


def test_sequence_longer_than_positions(capsys, out):
    message = pretrain(capsys, out, "--data.seq_len", "1024")
    assert "data.seq_len" in message and "512" in message


def test_unknown_option(capsys, out):
    message = pretrain(capsys, out, "--train.max_stepz", "3")
    assert "--train.max_stepz" in message and "--train.max_steps" in message


def test_option_prefix_is_not_taken_for_the_option(capsys, out):
    message = pretrain(capsys, out, "--train.max_step", "3")
    assert "unknown option --train.max_step" in message and "--train.max_steps" in message


def test_unknown_recipe_key(capsys, out, tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("train:\n  max_stepz: 3\n")
    message = run_cli(capsys, "pretrain", recipe, "--train.output_dir", out)
    assert "train.max_stepz" in message and "max_steps" in message


def test_wrong_type(capsys, out):
    assert "train.lr" in pretrain(capsys, out, "--train.lr", "fast")


def test_resume_without_checkpoint(capsys, out, tmp_path):
    empty = tmp_path / "nothing"
    empty.mkdir()
    message = pretrain(capsys, out, "--resume", empty)
    assert "nothing" in message and "no checkpoint" in message


def test_stable_adamw_without_torch_optimi(capsys, out, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optimi" else find_spec(name, *a))
    message = pretrain(capsys, out, "--train.optimizer", "stable_adamw")
    assert "train.optimizer: stable_adamw needs torch-optimi, which is not installed" in message
