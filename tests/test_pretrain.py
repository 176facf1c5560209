"""The real CLI for a few steps on tiny models, asserting what a user would check."""

import json
import math
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import (
    DRY_RUN_FIELDS,
    ROOT,
    assert_resumes_exactly,
    dry_run_report,
    env,
    folder_size,
    hfssl,
    size_in,
    snapshot,
    stop_after,
)
from huggingface_hub import ModelCard
from transformers import AutoTokenizer

from hfssl.data.text import load_corpus, pack, tokenize_corpus
from hfssl.objectives import load_pretrain

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
        text = f"the weather today is {{tok.mask_token}} and the sky is clear ."
        answers = fill(text)
        assert len(answers) == 5 and all(a["token_str"].strip() for a in answers)
        # the pipeline's answers are the model's own five most likely tokens at the mask, with their probabilities
        inputs = tok(text, return_tensors="pt")
        with torch.no_grad():
            logits = model.eval()(**inputs).logits[0, inputs.input_ids[0].tolist().index(tok.mask_token_id)]
        top = logits.softmax(-1).topk(5)
        assert [a["token"] for a in answers] == top.indices.tolist()
        assert all(abs(a["score"] - p) < 1e-4 for a, p in zip(answers, top.values.tolist()))
        assert answers[0]["score"] > 5 / len(tok)  # far above a uniform guess: the model learned something
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


def test_export_into_the_users_folder_needs_overwrite(trained, tmp_path):
    """`hfssl export` into a folder with files in it refuses in one line and leaves the files; --overwrite replaces."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    done = hfssl("export", trained, out, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith("is a directory with files in it; pass --overwrite to "
                                                         "replace it, or choose another output")  # fmt: skip
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    hfssl("export", trained, out, "--overwrite")
    assert (out / "model.safetensors").is_file() and not (out / "notes.txt").exists()


def test_resume_passes_over_a_checkpoint_killed_while_written(trained, tmp_path):
    """A run killed between writing step-N.tmp and renaming it resumes from the checkpoint before, and the
    leftover goes."""
    run = tmp_path / "run"
    shutil.copytree(trained, run, ignore=shutil.ignore_patterns("logs"))
    full = stop_after(run, 20)
    shutil.copytree(run / "checkpoints" / "step-0000020", run / "checkpoints" / "step-0000040.tmp")
    done = hfssl(
        "pretrain", "text/mlm-tiny", *TINY, "--train.max_steps", "40", "--train.eval_every", "20",
        "--train.save_every", "20", "--train.lr", "3e-3", "--train.output_dir", run, "--resume",
    )  # fmt: skip
    assert "resumed from" in done.stderr and "step-0000020" in done.stderr
    assert json.loads((run / "metrics.json").read_text())["eval_loss"] == pytest.approx(full["eval_loss"], abs=1e-5)
    assert not list((run / "checkpoints").glob("*.tmp"))


RESUME = [
    *TINY,
    "--train.max_steps",
    "40",
    "--train.eval_every",
    "20",
    "--train.save_every",
    "20",
    "--train.lr",
    "3e-3",
]


def test_resume_into_another_model_is_one_line_and_leaves_the_run(trained, tmp_path):
    """A --resume whose settings build another model fails in one line before it writes anything: the run's
    config.yaml and model_config stay, and its checkpoints still export."""
    run = tmp_path / "run"
    shutil.copytree(trained, run, ignore=shutil.ignore_patterns("logs"))
    stop_after(run, 20)
    before = snapshot(run)
    done = hfssl("pretrain", "text/mlm-tiny", *RESUME, "--model.hidden_size", "32", "--train.output_dir", run,
                 "--resume", check=False)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--resume: model.hidden_size is 32 here and " in done.stderr.strip().splitlines()[-1]
    assert snapshot(run) == before
    hfssl("export", run, tmp_path / "exported")


def test_resuming_a_finished_run_keeps_its_train_loss_and_time(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run, ignore=shutil.ignore_patterns("logs"))
    finished = json.loads((run / "metrics.json").read_text())
    saved = json.loads((run / "checkpoints" / "step-0000040" / "trainer_state.json").read_text())
    hfssl("pretrain", "text/mlm-tiny", *RESUME, "--train.output_dir", run, "--resume")
    again = json.loads((run / "metrics.json").read_text())
    assert again["train_loss"] == finished["train_loss"] == saved["train_loss"]
    assert again["wall_time_s"] > saved["wall_time_s"] > 0  # the earlier session's time, and this one's


@pytest.mark.parametrize(
    "damage, export_says, resume_says",
    [
        (
            "model.safetensors",
            "model.safetensors: not readable weights",
            "step-0000020/model.safetensors: not readable, the checkpoint is damaged",
        ),
        ("trainer_state.json", "trainer_state.json: not a readable checkpoint state", "not a readable checkpoint"),
    ],
)
def test_a_damaged_checkpoint_is_one_line(trained, tmp_path, damage, export_says, resume_says):
    run = tmp_path / "run"
    shutil.copytree(trained, run, ignore=shutil.ignore_patterns("logs"))
    stop_after(run, 20)
    target = run / "checkpoints" / "step-0000020" / damage
    target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 2])  # a write cut short
    done = hfssl("export", run, tmp_path / "exported", check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert export_says in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "exported").exists()
    done = hfssl("pretrain", "text/mlm-tiny", *RESUME, "--train.output_dir", run, "--resume", check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert resume_says in done.stderr.strip().splitlines()[-1]


def test_a_damaged_random_state_is_one_line_on_resume(trained, tmp_path):
    """Without its random state a run would go on, but not as it would have: --resume says so instead."""
    run = tmp_path / "run"
    shutil.copytree(trained, run, ignore=shutil.ignore_patterns("logs"))
    stop_after(run, 20)
    state = run / "checkpoints" / "step-0000020" / "random_states_0.pkl"
    state.write_bytes(state.read_bytes()[:50])
    done = hfssl("pretrain", "text/mlm-tiny", *RESUME, "--train.output_dir", run, "--resume", check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith("random_states_0.pkl: the saved random state is missing or damaged; resume from another checkpoint")
    )


def test_export_of_a_checkpoint_without_readable_weights(trained, tmp_path):
    """A DeepSpeed checkpoint (its weights in pytorch_model/) or one with no weights: one line, nothing written."""
    run = tmp_path / "run"
    shutil.copytree(trained, run, ignore=shutil.ignore_patterns("final", "logs"))
    checkpoint = run / "checkpoints" / "step-0000040"
    (checkpoint / "model.safetensors").unlink()
    done = hfssl("export", checkpoint, tmp_path / "none", check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith("holds no model weights (model.safetensors or an FSDP checkpoint)")
    )
    (checkpoint / "pytorch_model").mkdir()
    done = hfssl("export", checkpoint, tmp_path / "deepspeed", check=False)
    assert done.returncode == 2 and "a DeepSpeed checkpoint" in done.stderr.strip().splitlines()[-1]
    assert "zero_to_fp32.py" in done.stderr
    assert not (tmp_path / "none").exists() and not (tmp_path / "deepspeed").exists()


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


def test_dry_run_reports_the_run_and_writes_nothing(trained, tmp_path):
    """A dry run of the fixture's run: the packed set's tokens, its steps, a time per step, and a disk footprint
    within 2x of what the real run wrote; the output directory is left as it was."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own file")
    before = snapshot(out)
    args = [*TINY, "--train.max_steps", "40", "--train.eval_every", "20", "--train.save_every", "20"]
    done = hfssl("pretrain", "text/mlm-tiny", *args, "--train.lr", "3e-3", "--train.output_dir", out, "--dry-run")
    assert snapshot(out) == before
    report = dry_run_report(done.stdout)
    assert list(report) == DRY_RUN_FIELDS

    overrides = {key.removeprefix("--"): value for key, value in zip(TINY[::2], TINY[1::2], strict=True)}
    cfg = load_pretrain(ROOT / "recipes" / "text" / "mlm-tiny.yaml", overrides)
    tokenizer = AutoTokenizer.from_pretrained(trained / "tokenizer")  # the dry run trains the same one
    corpus, _ = load_corpus(cfg.data, seed=cfg.train.seed)
    blocks = pack(tokenize_corpus(corpus, tokenizer, cfg.data), tokenizer, cfg.data)
    tokens = sum(len(blocks[i]["input_ids"]) for i in range(len(blocks)))
    assert report["data"].startswith(f"{tokens:,} tokens (counted in the {len(blocks):,} training sequences)")
    assert report["steps"].startswith("40 optimizer steps of 16 sequences of 64 tokens x 1 accumulated x 1 process")
    epochs = float(report["covering"].split()[0])
    assert epochs == pytest.approx(40 / math.ceil(len(blocks) / 16), rel=1e-2)
    assert 0 < float(report["time per step"].split()[0]) < 60
    assert "x 3 evaluations" in report["evaluation"] and "about" in report["total time"]

    real_checkpoint = folder_size(trained / "checkpoints" / "step-0000040")
    assert 0.5 < size_in(report["checkpoint"]) / real_checkpoint < 2
    assert "x 2 kept" in report["checkpoint"]
    assert 0.5 < size_in(report["export"]) / folder_size(trained / "final") < 2
    assert 0.5 < size_in(report["disk"]) / folder_size(trained) < 2


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_run_resumes_exactly(tmp_path, workers):
    """A streamed corpus, resumed at step 3 of 6, ends where the uninterrupted run did, masking-rate schedule
    included. With 2 DataLoader workers 3 batches in, the second worker's part is due first: the resumed loader's
    workers take over each other's parts."""
    args = [
        *TINY, "--data.streaming", "true", "--data.validation_documents", "100", "--train.num_workers", str(workers),
        "--train.max_steps", "6", "--train.eval_every", "3", "--train.save_every", "3", "--train.log_every", "3",
        "--train.keep_last", "5", "--train.probe_every", "null",
        # the masking rate falls at step 3: the stream tells the collator each batch's place
        "--masking.mask_rate_schedule", "[0.4, 0.15]", "--masking.mask_rate_milestones", "[0.5]",
    ]  # fmt: skip
    run = tmp_path / "run"
    hfssl("pretrain", "text/mlm-tiny", *args, "--train.output_dir", run)
    full = stop_after(run, 3)
    done = hfssl("pretrain", "text/mlm-tiny", *args, "--train.output_dir", run, "--resume")
    assert "resumed from" in done.stderr and "step-0000003" in done.stderr
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["steps"] == full["steps"] == 6
    assert resumed["train_loss"] == pytest.approx(full["train_loss"], abs=1e-5)
    assert resumed["eval_loss"] == pytest.approx(full["eval_loss"], abs=1e-5)
    assert resumed["tokens_seen"] == full["tokens_seen"]


def test_stable_adamw_trains_and_resumes_exactly(tmp_path):
    """torch-optimi's StableAdamW: the loss falls, the card names it, and its state comes back with a checkpoint, so
    a run stopped at step 4 of 8 ends with exactly the uninterrupted run's weights."""
    pytest.importorskip("optimi")
    args = [*TINY, "--train.optimizer", "stable_adamw", "--train.lr", "3e-3", "--train.max_steps", "8",
            "--train.eval_every", "4", "--train.save_every", "4", "--train.keep_last", "3",
            "--train.probe_every", "null"]  # fmt: skip
    run = tmp_path / "run"
    hfssl("pretrain", "text/mlm-tiny", *args, "--train.output_dir", run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["eval_loss"] < metrics["initial_eval_loss"]
    assert "| optimizer | StableAdamW (betas" in (run / "final" / "README.md").read_text()
    assert_resumes_exactly(run, tmp_path / "resumed", 4, "text/mlm-tiny", *args)


def test_line_by_line_grouped_by_length_resumes_exactly(tmp_path):
    """packing none, batches grouped by length: 4 batches an epoch, so a run stopped at step 5 resumes inside its
    second epoch (set_epoch, then skipping a batch) and ends with exactly the uninterrupted run's weights."""
    args = ["--model.num_layers", "2", "--model.hidden_size", "32", "--model.num_heads", "2",
            "--data.synthetic_documents", "10", "--data.seq_len", "32", "--tokenizer.vocab_size", "400",
            "--data.packing", "none", "--train.batch_size", "8", "--train.max_steps", "6", "--train.eval_every", "6",
            "--train.save_every", "5", "--train.log_every", "1", "--train.eval_batches", "2",
            "--train.probe_every", "null"]  # fmt: skip
    run = tmp_path / "run"
    done = hfssl("pretrain", "text/mlm-tiny", *args, "--train.output_dir", run)
    grouped, mixed = re.search(r"padding is ([\d.]+)% .* \(([\d.]+)% in random batches\)", done.stderr).groups()
    assert float(grouped) < float(mixed)
    stopped = json.loads((run / "checkpoints" / "step-0000005" / "trainer_state.json").read_text())
    assert (stopped["epoch"], stopped["batch_in_epoch"]) == (1, 1)
    assert_resumes_exactly(run, tmp_path / "resumed", 5, "text/mlm-tiny", *args)
