"""The real CLI for a few steps on tiny models, asserting what a user would check."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--model.num_layers",
    "2",
    "--model.hidden_size",
    "64",
    "--model.num_heads",
    "2",
    "--data.synthetic_documents",
    "1500",
    "--data.seq_len",
    "64",
    "--tokenizer.vocab_size",
    "800",
    "--train.batch_size",
    "16",
    "--train.log_every",
    "2",
    "--train.eval_batches",
    "8",
]


def env() -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def hfssl(*args, cwd=None, check=True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "hfssl", *map(str, args)], capture_output=True, text=True, env=env(), cwd=cwd
    )
    if check:
        assert done.returncode == 0, done.stderr[-4000:]
    return done


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "mlm"
    hfssl(
        "pretrain",
        "text/mlm-tiny",
        *TINY,
        "--train.max_steps",
        "40",
        "--train.eval_every",
        "20",
        "--train.save_every",
        "20",
        "--train.lr",
        "3e-3",
        "--train.output_dir",
        out,
    )
    return out


def test_eval_loss_falls(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["steps"] == 40
    assert [e["step"] for e in metrics["evals"]] == [0, 20, 40]
    assert metrics["eval_loss"] < metrics["initial_eval_loss"] - 1.0
    assert 0.0 < metrics["eval_accuracy"] <= 1.0
    assert metrics["tokens_seen"] > 0


def test_run_directory_layout(trained):
    final = trained / "final"
    assert (final / "model.safetensors").is_file()
    assert not list(final.glob("*.bin"))
    assert (trained / "tokenizer" / "tokenizer.json").is_file()
    assert sorted(p.name for p in (trained / "checkpoints").iterdir()) == ["step-0000020", "step-0000040"]
    assert list((trained / "logs").rglob("events.out.tfevents.*"))
    assert not list(trained.rglob("*.tmp"))


def test_model_card(trained):
    card = ModelCard.load(trained / "final" / "README.md")
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "fill-mask"
    assert "hfssl" in card.data.tags and "modernbert" in card.data.tags
    assert card.data.license == "apache-2.0"
    metrics = json.loads((trained / "metrics.json").read_text())
    assert f"{metrics['eval_loss']:.4f}" in card.text
    assert "from_pretrained" in card.text


def test_export_loads_without_hfssl(trained):
    code = textwrap.dedent(
        f"""
        import sys
        import torch
        from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline
        path = {str(trained / "final")!r}
        model = AutoModelForMaskedLM.from_pretrained(path)
        tok = AutoTokenizer.from_pretrained(path)
        assert tok.is_fast and tok.mask_token
        fill = pipeline("fill-mask", model=path)
        answers = fill(f"the weather today is {{tok.mask_token}} and the sky is clear .")
        assert len(answers) == 5 and all(a["token_str"].strip() for a in answers)
        assert abs(sum(a["score"] for a in answers) - 1.0) < 1.0
        assert "hfssl" not in sys.modules
        print("ok", answers[0]["token_str"])
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok")


def test_export_command_reproduces_final(trained, tmp_path):
    hfssl("export", trained / "checkpoints" / "step-0000040", tmp_path / "exported")
    from safetensors.torch import load_file

    a = load_file(str(trained / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "exported" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a)
    assert (tmp_path / "exported" / "README.md").is_file()


def wait_for_checkpoint(process: subprocess.Popen, checkpoints: Path, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if any(p.is_dir() and not p.name.endswith(".tmp") for p in checkpoints.glob("step-*")):
            return
        time.sleep(0.05)


def test_resume_after_kill_matches_uninterrupted(tmp_path):
    args = [
        *TINY,
        "--train.max_steps",
        "24",
        "--train.eval_every",
        "12",
        "--train.save_every",
        "4",
        "--train.keep_last",
        "10",
        "--train.grad_accum",
        "2",
        "--train.batch_size",
        "8",
    ]
    hfssl("pretrain", "text/mlm-tiny", *args, "--train.output_dir", tmp_path / "full")

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "hfssl", "pretrain", "text/mlm-tiny", *args, "--train.output_dir", str(killed)],
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_checkpoint(process, killed / "checkpoints")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "metrics.json").exists(), "the run finished before it could be killed"
    done = hfssl("pretrain", "text/mlm-tiny", *args, "--train.output_dir", killed, "--resume")
    assert "resumed from" in done.stderr

    full = json.loads((tmp_path / "full" / "metrics.json").read_text())
    resumed = json.loads((killed / "metrics.json").read_text())
    assert resumed["steps"] == full["steps"] == 24
    assert resumed["eval_loss"] == pytest.approx(full["eval_loss"], abs=1e-5)
    assert resumed["train_loss"] == pytest.approx(full["train_loss"], abs=1e-5)
    assert resumed["tokens_seen"] == full["tokens_seen"]
