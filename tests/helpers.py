"""Helpers the tests share: the real CLI in a subprocess, run directories stopped after a checkpoint, the dry run's
report, and the checks an export must pass in a process without hfssl."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def env() -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def hfssl(*args, cwd=None, check=True) -> subprocess.CompletedProcess:
    """`python -m hfssl ARGS`, offline; asserts it succeeded unless `check` is false."""
    done = subprocess.run(
        [sys.executable, "-m", "hfssl", *map(str, args)], capture_output=True, text=True, env=env(), cwd=cwd
    )
    if check:
        assert done.returncode == 0, done.stderr[-4000:]
    return done


def torchrun_hfssl(*args) -> subprocess.CompletedProcess:
    """`hfssl ARGS` in two processes under torchrun, offline; asserts it succeeded."""
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "hfssl",
         *map(str, args)],
        capture_output=True, text=True, env=env(), timeout=600, check=True,
    )  # fmt: skip


def one_line_error(done: subprocess.CompletedProcess) -> str:
    """The single `hfssl: error` line of a command that failed on bad input (exit 2, no traceback)."""
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("hfssl: error")]
    assert len(lines) == 1, done.stderr[-2000:]
    return lines[0]


def stop_after(run: Path, step: int) -> dict:
    """Turn a finished run into one stopped after its step-`step` checkpoint (the later checkpoints, final/ and
    metrics.json go), for `--resume` to continue; returns the finished run's metrics."""
    metrics = json.loads((run / "metrics.json").read_text())
    for checkpoint in (run / "checkpoints").glob("step-*"):
        if int(checkpoint.name.split("-")[1]) > step:
            shutil.rmtree(checkpoint)
    shutil.rmtree(run / "final")
    (run / "metrics.json").unlink()
    return metrics


def assert_resumes_exactly(trained: Path, run: Path, step: int, *pretrain_args) -> None:
    """A copy of the finished run `trained` at `run`, stopped after its step-`step` checkpoint and continued with
    `hfssl pretrain PRETRAIN_ARGS --train.output_dir RUN --resume`, ends with the same train and eval loss and
    exactly the same final weights."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(trained, run)
    full = stop_after(run, step)
    done = hfssl("pretrain", *pretrain_args, "--train.output_dir", run, "--resume")
    assert f"step-{step:07d}" in done.stderr
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["train_loss"] == full["train_loss"] and resumed["eval_loss"] == full["eval_loss"]
    a = load_file(str(trained / "final" / "model.safetensors"))
    b = load_file(str(run / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


DRY_RUN_FIELDS = [
    "data", "steps", "covering", "time per step", "evaluation", "probes", "total time", "checkpoint", "export", "disk",
]  # fmt: skip
UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}


def dry_run_report(stdout: str) -> dict[str, str]:
    """The fields `hfssl pretrain --dry-run` prints, one per line after its first."""
    lines = stdout.split("dry run of ", 1)[1].splitlines()[1:]
    return {line[:14].strip(): line[15:] for line in lines}


def size_in(text: str) -> float:
    """The first size ("1.6 MB") in a line of the report, in bytes."""
    number, unit = re.search(r"([\d,.]+) (B|kB|MB|GB)\b", text).groups()
    return float(number.replace(",", "")) * UNITS[unit]


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def snapshot(path: Path) -> dict:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in [path, *path.rglob("*")]}


def assert_loads_as_audio_classifier(path: Path) -> None:
    """`path` loads into AutoModelForAudioClassification in a process without hfssl, every encoder weight used."""
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import torch
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification
        path = {str(path)!r}
        model, info = AutoModelForAudioClassification.from_pretrained(path, num_labels=3, output_loading_info=True)
        new = {{k.split(".")[0] for k in info["missing_keys"]}}
        assert new <= {{"projector", "classifier"}}, info["missing_keys"]
        assert not info["unexpected_keys"], info["unexpected_keys"]
        assert not info["mismatched_keys"], info["mismatched_keys"]
        extractor = AutoFeatureExtractor.from_pretrained(path)
        inputs = extractor([np.zeros(16000, dtype=np.float32)], sampling_rate=16000, return_tensors="pt")
        assert model(**inputs).logits.shape == (1, 3)
        assert "hfssl" not in sys.modules
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"


def assert_pipeline_answers(path: Path) -> None:
    """A fine-tuned audio classifier at `path` answers in `pipeline("audio-classification")` with its own label
    names and scores that sum to 1, in a process without hfssl."""
    code = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        from transformers import pipeline
        path = {str(path)!r}
        labels = set(json.load(open(path + "/config.json"))["id2label"].values())
        classify = pipeline("audio-classification", model=path)
        wave = np.sin(2 * np.pi * 220 * np.arange(12000) / 16000).astype(np.float32)
        answers = classify({{"raw": wave, "sampling_rate": 16000}}, top_k=len(labels))
        assert {{a["label"] for a in answers}} == labels, answers
        assert abs(sum(a["score"] for a in answers) - 1) < 1e-3
        assert "hfssl" not in sys.modules
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"
