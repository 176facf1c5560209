"""Every shell command and Python block the README and the docs pages show runs as written (the pretraining ones
shortened by overrides), each once, in one folder, in reading order: the README, then the docs in mkdocs.yml's order.
A command shown on several pages runs where it is first shown, and reads the runs of the commands before it, as a
reader following the pages would. Blocks that cannot run here (several GPUs or machines) are shown as `text`."""

import os
import re
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
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


FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", flags=re.M | re.S)
RUN = {"bash", "python"}
SHOWN = {"text", "yaml", ""}
"""Fenced-block languages that are only shown: output, files, commands for machines the tests do not have."""


def pages() -> list[Path]:
    """The README, then the docs pages in the order of mkdocs.yml's navigation, then any page it leaves out."""

    def walk(entry) -> list[str]:
        if isinstance(entry, str):
            return [entry]
        items = entry.values() if isinstance(entry, dict) else entry
        return [page for item in items for page in walk(item)]

    nav = [ROOT / "docs" / page for page in walk(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])]
    rest = sorted(set((ROOT / "docs").rglob("*.md")) - set(nav))
    return [ROOT / "README.md", *[page for page in nav if page.is_file()], *rest]


def fences(page: Path) -> list[tuple[str, str]]:
    """(language, code) of every fenced block of a page, the code unindented (blocks may sit in list items)."""
    return [(language, textwrap.dedent(code)) for _, language, code in FENCE.findall(page.read_text())]


@dataclass(frozen=True)
class Step:
    """One shell command line, or one Python block, where it is first shown."""

    page: str
    language: str
    code: str


def lines(code: str) -> list[str]:
    """The command lines of a bash block."""
    return [line.strip() for line in code.splitlines() if line.strip()]


def shell_commands(page: Path) -> list[str]:
    return [line for language, code in fences(page) if language == "bash" for line in lines(code)]


def steps() -> list[Step]:
    found: dict[tuple[str, str], Step] = {}
    for page in pages():
        for language, code in fences(page):
            if language not in RUN:
                continue
            # a bash block's every line, but `pytest`: this very run
            shown = [line for line in lines(code) if line != "pytest"] if language == "bash" else [code]
            for one in shown:
                found.setdefault((language, one), Step(str(page.relative_to(ROOT)), language, one))
    return list(found.values())


STEPS = steps()


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


def run_shell(command: str, cwd: Path) -> tuple[str, subprocess.CompletedProcess]:
    """Run one shown command in `cwd` as a user would, shortened; returns the command as run, and its result."""
    bin_dir = Path(sys.executable).parent
    if command.startswith("pip install"):
        install, _, command = command.partition(" && ")
        done = run(f"{bin_dir}/python -m {install}", ROOT)
        if done.returncode != 0 or not command:
            return install, done
    for prefix, extra in SHORTER.items():
        if command.startswith(prefix):
            command += " " + " ".join(extra)
            break
    if command.startswith("hfssl push"):
        return command, push_to_stand_in_hub(f"{bin_dir}/{command}", cwd)
    return command, run(f"{bin_dir}/{command}", cwd)


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """A Python block in a fresh interpreter; one that never names hfssl must not need it (an export is used
    without hfssl)."""
    if "hfssl" not in code:
        code += "\nimport sys\nassert 'hfssl' not in sys.modules\n"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=300
    )


class Reader:
    """A folder like a checkout, where the steps run in reading order, each once: reaching a step first runs every
    step shown before it, so any step can be tested (or selected with -k) alone."""

    def __init__(self, folder: Path):
        self.folder = folder
        (folder / "recipes").symlink_to(ROOT / "recipes")
        (folder / "pyproject.toml").symlink_to(ROOT / "pyproject.toml")
        self.results: dict[Step, tuple[str, subprocess.CompletedProcess]] = {}

    def reach(self, step: Step) -> tuple[str, subprocess.CompletedProcess]:
        for earlier in STEPS[: STEPS.index(step) + 1]:
            if earlier in self.results:
                continue
            if earlier.language == "python":
                self.results[earlier] = earlier.code, run_python(earlier.code, self.folder)
            else:
                self.results[earlier] = run_shell(earlier.code, self.folder)
        return self.results[step]


@pytest.fixture(scope="module")
def reader(tmp_path_factory) -> Reader:
    return Reader(tmp_path_factory.mktemp("reader"))


def test_readme_shows_the_two_setup_commands():
    commands = shell_commands(ROOT / "README.md")
    assert commands[0] == 'pip install -e ".[dev]" && hfssl pretrain recipes/text/mlm-tiny.yaml'
    assert commands[1] == "pytest"


def test_every_fenced_block_is_run_or_marked_as_shown():
    """A block in another language (`sh`, `console`, `py`) would be neither run nor meant to be shown only."""
    for page in pages():
        languages = {language for language, _ in fences(page)}
        assert languages <= RUN | SHOWN, f"{page.relative_to(ROOT)}: {languages - RUN - SHOWN}"


def step_id(step: Step) -> str:
    """The page and the command, or a Python block's last line (what it prints)."""
    return f"{Path(step.page).stem}: {step.code.strip().splitlines()[-1][:60]}"


@pytest.mark.parametrize("step", STEPS, ids=step_id)
def test_shown_code_runs(step, reader):
    command, done = reader.reach(step)
    assert done.returncode == 0, f"{step.page}: {command}\n{done.stderr[-3000:]}"
    if step.language == "python":
        assert done.stdout.strip()
    elif "--dry-run" in command:
        assert "dry run of" in done.stdout and "nothing written" in done.stdout
    elif "hfssl pretrain" in command and "--resume" not in command and "--help" not in command:
        out_dir = re.search(r"--train.output_dir (\S+)", command)
        recipe = re.search(r"recipes/\w+/([\w-]+)\.yaml", command)
        default = f"runs/{recipe.group(1)}" if recipe else "runs/mlm-tiny"
        assert (reader.folder / (out_dir.group(1) if out_dir else default) / "final" / "model.safetensors").is_file()
