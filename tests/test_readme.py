"""Every command the README shows runs as written (the pretraining ones shortened by overrides)."""

import os
import re
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SHORT = [
    "--train.max_steps",
    "12",
    "--train.eval_every",
    "6",
    "--train.save_every",
    "6",
    "--train.log_every",
    "3",
    "--data.synthetic_documents",
    "1500",
    "--tokenizer.vocab_size",
    "1000",
    "--train.batch_size",
    "8",
]

DOWNSTREAM = ["--data.synthetic_examples", "300", "--data.max_length", "64"]
SPEECH = ["--data.synthetic_utterances", "60", "--data.max_seconds", "2", "--data.batch_seconds", "8",
          "--model.conv_dim", "32", "--model.hidden_size", "32", "--train.max_steps", "6", "--train.eval_every", "3",
          "--train.save_every", "3", "--train.log_every", "3"]  # fmt: skip
LOG_MEL = [arg for i, arg in enumerate(SPEECH) if "--model.conv_dim" not in SPEECH[max(i - 1, 0) : i + 1]]
"""SPEECH for a log-mel (filterbank) encoder, which has no conv front end to size."""
KEYWORDS = ["--data.synthetic_examples", "100", "--data.max_seconds", "1", "--training.num_train_epochs", "1",
            "--finetune.min_steps", "0"]  # fmt: skip
# The first matching prefix applies: the speech recipes before the text ones.
SHORTER = {
    "hfssl pretrain recipes/speech/best-rq-w2v-bert": LOG_MEL,
    "hfssl pretrain recipes/speech/data2vec-w2v-bert": LOG_MEL,
    "hfssl pretrain recipes/speech": SPEECH,
    "hfssl finetune recipes/speech": KEYWORDS,
    "hfssl pretrain recipes/text/simcse": [*SHORT, "--train.probe_examples", "100"],
    "hfssl pretrain": SHORT,
    "torchrun --standalone --nproc_per_node 2 -m hfssl pretrain": SHORT,
    "hfssl finetune": [*DOWNSTREAM, "--training.num_train_epochs", "1", "--finetune.min_steps", "0"],
    "hfssl probe": DOWNSTREAM,
    "hfssl evaluate": [*DOWNSTREAM, "--training.num_train_epochs", "1", "--suite.seeds", "[0]",
                       "--finetune.min_steps", "0"],
    "hfssl label-efficiency": [*DOWNSTREAM, "--sweep.seeds", "[0]", "--finetune.min_steps", "4",
                               "--training.num_train_epochs", "1"],
}  # fmt: skip


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def shell_commands() -> list[str]:
    return [line.strip() for block in blocks("bash") for line in block.splitlines() if line.strip()]


def clean_env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("PYTHONPATH", None)
    return env


def run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, shell=True, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=900)


def push_to_stand_in_hub(command: str, cwd: Path) -> subprocess.CompletedProcess:
    """The Hub is out of reach here: run a push against tests/test_hub.py's local stand-in."""
    from test_hub import TOKEN, FakeHub

    FakeHub.calls, FakeHub.files = [], {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {k: v for k, v in clean_env().items() if not k.endswith("_OFFLINE")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{server.server_address[1]}", HF_TOKEN=TOKEN, HF_HOME=str(cwd / "hf"))
    try:
        done = subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    finally:
        server.shutdown()
    assert done.returncode != 0 or "model.safetensors" in FakeHub.files
    return done


def test_readme_shows_the_two_setup_commands():
    commands = shell_commands()
    assert commands[0] == 'pip install -e ".[dev]" && hfssl pretrain recipes/text/mlm-tiny.yaml'
    assert commands[1] == "pytest"


def test_every_readme_command_runs(tmp_path):
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    (tmp_path / "pyproject.toml").symlink_to(ROOT / "pyproject.toml")
    bin_dir = Path(sys.executable).parent
    for command in shell_commands():
        if command == "pytest":
            continue  # this very run
        if command.startswith("pip install"):
            install, _, command = command.partition(" && ")
            done = run(f"{bin_dir}/python -m {install}", ROOT)
            assert done.returncode == 0, done.stderr[-2000:]
        for prefix, extra in SHORTER.items():
            if command.startswith(prefix):
                command += " " + " ".join(extra)
                break
        if command.startswith("hfssl push"):
            done = push_to_stand_in_hub(f"{bin_dir}/{command}", tmp_path)
        else:
            done = run(f"{bin_dir}/{command}", tmp_path)
        assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
        if "--dry-run" in command:
            assert "dry run of" in done.stdout and "nothing written" in done.stdout
        elif "hfssl pretrain" in command and "--resume" not in command:
            out_dir = re.search(r"--train.output_dir (\S+)", command)
            recipe = re.search(r"recipes/\w+/([\w-]+)\.yaml", command)
            default = f"runs/{recipe.group(1)}" if recipe else "runs/mlm-tiny"
            assert (tmp_path / (out_dir.group(1) if out_dir else default) / "final" / "model.safetensors").is_file()

    for code in blocks("python"):
        done = subprocess.run(
            [sys.executable, "-c", code + "\nimport sys\nassert 'hfssl' not in sys.modules\n"],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.strip()
