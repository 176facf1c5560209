"""`hfssl push` against a local stand-in for the Hub: what arrives, what stays home, and that the token never leaks."""

import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest

TOKEN = "hf_hfsslTestTokenThatMustNotLeak"


class FakeHub(BaseHTTPRequestHandler):
    """The endpoints HfApi.create_repo, create_branch, upload_folder and list_repo_refs call, recording what they
    receive; and file downloads by revision, as `from_pretrained(repo, revision=...)` makes them."""

    calls: list = []
    files: dict = {}  # every file committed, whatever the branch
    revisions: dict = {}  # branch -> {path: content}, as committed to that branch

    def log_message(self, *args):  # keep the test output clean
        pass

    def _reply(self, payload: dict, status: int = 200):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.calls.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": b""})
        if self.path.startswith("/api/models/") and self.path.split("?")[0].endswith("/refs"):
            branches = [
                {"name": name, "ref": f"refs/heads/{name}", "targetCommit": commit(name)} for name in self.revisions
            ]
            self._reply({"branches": branches, "tags": [], "converts": []})
        elif "/resolve/" in self.path:
            self._serve_file(body=True)
        else:
            self._reply({}, status=404)

    def do_HEAD(self):
        self._serve_file(body=False)

    def _serve_file(self, body: bool):
        """/{owner}/{name}/resolve/{revision}/{path}: the file as last committed to that branch."""
        _, _, rest = self.path.split("?")[0].partition("/resolve/")
        revision, _, name = unquote(rest).partition("/")
        if revision not in self.revisions or name not in self.revisions[revision]:
            code = "RevisionNotFound" if revision not in self.revisions else "EntryNotFound"
            self.send_response(404)
            self.send_header("X-Error-Code", code)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        content = self.revisions[revision][name]
        self.send_response(200)
        self.send_header("X-Repo-Commit", commit(revision))
        self.send_header("ETag", f'"{hashlib.sha256(content).hexdigest()}"')
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if body:
            self.wfile.write(content)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.calls.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        host = f"http://{self.headers['Host']}"
        if self.path == "/api/repos/create":
            request = json.loads(body)
            name = f"{request.get('organization') or 'someone'}/{request['name']}"
            self._reply({"url": f"{host}/{name}", "name": name})
        elif "/preupload/" in self.path:
            files = json.loads(body)["files"]
            self._reply({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
        elif "/commit/" in self.path:
            revision = unquote(self.path.split("?")[0].rpartition("/commit/")[2])
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    content = base64.b64decode(item["value"]["content"])
                    self.files[item["value"]["path"]] = content
                    self.revisions.setdefault(revision, {})[item["value"]["path"]] = content
            self._reply({"commitUrl": f"{host}/someone/model/commit/abc123", "commitOid": "abc123"})
        elif self.path == "/api/validate-yaml":  # upload_folder has the Hub check a README's metadata first
            self._reply({"errors": [], "warnings": []})
        elif "/branch/" in self.path:
            branch = unquote(self.path.split("?")[0].rpartition("/branch/")[2])
            self.revisions.setdefault(branch, dict(self.revisions.get("main", {})))  # from main, as the Hub does
            self._reply({})
        else:
            self._reply({"error": f"unexpected {self.path}"}, status=404)


def commit(revision: str) -> str:
    """A stand-in commit hash for a branch's head."""
    return hashlib.sha1(revision.encode()).hexdigest()


@pytest.fixture
def hub():
    FakeHub.calls, FakeHub.files, FakeHub.revisions = [], {}, {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def export_dir(tmp_path) -> Path:
    """An export-shaped directory with training state beside it, as a run directory has."""
    run = tmp_path / "run"
    final = run / "final"
    final.mkdir(parents=True)
    (final / "config.json").write_text('{"model_type": "bert"}')
    (final / "model.safetensors").write_bytes(b"weights")
    (final / "README.md").write_text("---\nlibrary_name: transformers\n---\n# a model\n")
    (final / "checkpoints" / "step-10").mkdir(parents=True)
    (final / "checkpoints" / "step-10" / "optimizer.bin").write_bytes(b"state")
    (final / "training_args.bin").write_bytes(b"args")
    return final


def push(hub_url, tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}  # offline mode blocks 127.0.0.1 too
    env.update(HF_ENDPOINT=hub_url, HF_TOKEN=TOKEN, HF_HOME=str(tmp_path / "hf-home"))
    return subprocess.run(
        [sys.executable, "-m", "hfssl", "push", *map(str, args)], env=env, capture_output=True, text=True, timeout=120
    )


def test_push_uploads_the_export_and_not_the_training_state(hub, tmp_path, export_dir):
    done = push(hub, tmp_path, export_dir, "--repo-id", "someone/model", "--private", "--commit-message", "first")
    assert done.returncode == 0, done.stderr[-3000:]
    assert set(FakeHub.files) == {"config.json", "model.safetensors", "README.md"}
    assert FakeHub.files["model.safetensors"] == b"weights"
    create = json.loads(next(c for c in FakeHub.calls if c["path"] == "/api/repos/create")["body"])
    assert create["name"] == "model" and create["visibility"] == "private"
    commit = next(c for c in FakeHub.calls if "/commit/" in c["path"])
    assert json.loads(commit["body"].decode().splitlines()[0])["value"]["summary"] == "first"
    assert commit["path"].endswith("/commit/main")
    # the token is sent to the Hub, and nowhere else
    assert all(call["auth"] == f"Bearer {TOKEN}" for call in FakeHub.calls if call["body"])
    assert TOKEN not in done.stdout + done.stderr
    assert not any(TOKEN.encode() in content for content in FakeHub.files.values())


def test_training_state_when_asked_and_a_branch(hub, tmp_path, export_dir):
    done = push(hub, tmp_path, export_dir, "--repo-id", "someone/model", "--revision", "v1",
                "--include-training-state")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "checkpoints/step-10/optimizer.bin" in FakeHub.files and "training_args.bin" in FakeHub.files
    assert any(c["path"].endswith("/branch/v1") for c in FakeHub.calls)
    assert next(c for c in FakeHub.calls if "/commit/" in c["path"])["path"].endswith("/commit/v1")


def test_not_an_export_is_one_line(hub, tmp_path):
    done = push(hub, tmp_path, tmp_path, "--repo-id", "someone/model")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "not an exported model" in done.stderr
    assert not [c for c in FakeHub.calls if c["body"]]


# --------------------------------------------------------------------------- a recipe's hub section

TINY_RUN = ["--model.num_layers", "2", "--model.hidden_size", "32", "--model.num_heads", "2",
            "--data.synthetic_documents", "300", "--data.seq_len", "32", "--tokenizer.vocab_size", "300",
            "--train.batch_size", "8", "--train.max_steps", "4", "--train.eval_every", "4", "--train.save_every", "4",
            "--train.eval_batches", "2", "--train.probe_every", ""]  # fmt: skip


def hfssl(hub_url, tmp_path, *args, token=TOKEN, offline=False):
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE") and k != "HF_TOKEN"}
    env.update(HF_ENDPOINT=hub_url, HF_HOME=str(tmp_path / "hf-home"), TOKENIZERS_PARALLELISM="false")
    if token:
        env["HF_TOKEN"] = token
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "hfssl", *map(str, args)], env=env, capture_output=True, text=True, timeout=600
    )


def check_arrived_and_kept_secret(done, run: Path) -> None:
    """Every file of run/final arrived as it is (but the Trainer's pickled arguments); the token is in no file of
    the run, no output and no upload."""
    assert done.returncode == 0, done.stderr[-3000:]
    final = run / "final"
    exported = {p.relative_to(final).as_posix() for p in final.rglob("*") if p.is_file()}
    assert set(FakeHub.files) == exported - {"training_args.bin"}
    assert all(content == (final / name).read_bytes() for name, content in FakeHub.files.items())
    assert all(call["auth"] == f"Bearer {TOKEN}" for call in FakeHub.calls if call["body"])
    assert TOKEN not in done.stdout + done.stderr
    written = [p for p in run.rglob("*") if p.is_file()]
    assert (run / "metrics.json") in written and (final / "README.md") in written
    assert not [p for p in written if TOKEN.encode() in p.read_bytes()]
    assert not any(TOKEN.encode() in content for content in FakeHub.files.values())


def test_pretrain_pushes_its_export_when_the_recipe_says(hub, tmp_path):
    run = tmp_path / "run"
    done = hfssl(hub, tmp_path, "pretrain", "text/mlm-tiny", *TINY_RUN, "--train.output_dir", run,
                 "--hub.push_to_hub", "true", "--hub.repo_id", "someone/mlm", "--hub.private", "true",
                 "--hub.commit_message", "a tiny run")  # fmt: skip
    check_arrived_and_kept_secret(done, run)
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= set(FakeHub.files)
    assert "pushed to someone/mlm: " in done.stdout
    create = json.loads(next(c for c in FakeHub.calls if c["path"] == "/api/repos/create")["body"])
    assert create["name"] == "mlm" and create["visibility"] == "private"
    commit = next(c for c in FakeHub.calls if "/commit/" in c["path"])
    assert commit["path"].endswith("/commit/main")
    assert json.loads(commit["body"].decode().splitlines()[0])["value"]["summary"] == "a tiny run"
    assert "hub:\n  push_to_hub: true\n  repo_id: someone/mlm" in (run / "config.yaml").read_text()


def test_finetune_pushes_its_classifier_to_a_branch(hub, tmp_path, mlm_export):
    run = tmp_path / "topics"
    done = hfssl(hub, tmp_path, "finetune", "text/classify-tiny", "--model.name_or_path", mlm_export,
                 "--data.synthetic_examples", "80", "--data.max_length", "32", "--training.num_train_epochs", "1",
                 "--training.output_dir", run, "--hub.push_to_hub", "true", "--hub.repo_id", "someone/topics",
                 "--hub.revision", "v1", "--finetune.min_steps", "0")  # fmt: skip
    check_arrived_and_kept_secret(done, run)
    assert any(c["path"].endswith("/branch/v1") for c in FakeHub.calls)
    assert next(c for c in FakeHub.calls if "/commit/" in c["path"])["path"].endswith("/commit/v1")
    assert b"model-index:" in FakeHub.files["README.md"]
    assert any(p.name.startswith("checkpoint-") for p in run.iterdir())  # Trainer state stayed home


@pytest.mark.parametrize(
    "case, expected",
    [
        ("no_repo_id", "hub.repo_id: must be set when hub.push_to_hub is true"),
        ("bad_repo_id", "hub.repo_id: Repo id must be in the form"),
        ("offline", "hub.push_to_hub: HF_HUB_OFFLINE is set"),
        ("no_token", "hub.push_to_hub: no Hugging Face token"),
    ],
)
def test_a_push_that_cannot_happen_stops_the_run_before_training(hub, tmp_path, case, expected):
    run = tmp_path / "run"
    repo = {"no_repo_id": [], "bad_repo_id": ["--hub.repo_id", "a/b/c"]}.get(case, ["--hub.repo_id", "someone/mlm"])
    done = hfssl(hub, tmp_path, "pretrain", "text/mlm-tiny", *TINY_RUN, "--train.output_dir", run,
                 "--hub.push_to_hub", "true", *repo, token=None if case == "no_token" else TOKEN,
                 offline=case == "offline")  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hfssl: error: ") and expected in lines[0], done.stderr
    assert not run.exists()
    assert not [c for c in FakeHub.calls if c["body"]]


# --------------------------------------------------------------------------- checkpoints as revisions

LOAD_BY_REVISION = """
import sys
import tempfile
import torch
from transformers import AutoModelForMaskedLM

repo, local_early, local_late = sys.argv[1:]
early = AutoModelForMaskedLM.from_pretrained(repo, revision="step-2").state_dict()
late = AutoModelForMaskedLM.from_pretrained(repo, revision="step-4").state_dict()
assert "hfssl" not in sys.modules
for name, loaded in (("step-2", early), ("step-4", late)):
    local = AutoModelForMaskedLM.from_pretrained(local_early if name == "step-2" else local_late).state_dict()
    assert loaded.keys() == local.keys() and all(torch.equal(loaded[k], local[k]) for k in local), name
assert not all(torch.equal(early[k], late[k]) for k in early)
print("loaded by revision")
"""


def test_checkpoints_are_pushed_as_revisions_that_load_by_name(hub, tmp_path):
    run = tmp_path / "run"
    done = hfssl(hub, tmp_path, "pretrain", "text/mlm-tiny", *TINY_RUN, "--train.save_every", "2",
                 "--train.output_dir", run, "--hub.push_checkpoints", "true", "--hub.push_to_hub", "true",
                 "--hub.repo_id", "someone/mlm")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert {"step-2", "step-4", "main"} <= set(FakeHub.revisions)
    for branch in ("step-2", "step-4"):
        assert {"config.json", "model.safetensors", "README.md"} <= set(FakeHub.revisions[branch])
    assert json.loads((run / "metrics.json").read_text())["hub_revisions"] == ["step-2", "step-4"]
    card = (run / "final" / "README.md").read_text()
    assert "## Intermediate checkpoints" in card and "`step-2`, `step-4`" in card
    assert FakeHub.revisions["main"]["README.md"].decode() == card  # the final push carries the listing
    assert not list(Path(tempfile.gettempdir()).glob("hfssl-checkpoint-*"))  # the exports were cleaned up

    # what loads by revision is what `hfssl export` makes of that checkpoint
    for step in (2, 4):
        exported = hfssl(hub, tmp_path, "export", run / "checkpoints" / f"step-{step:07d}", tmp_path / f"e{step}")
        assert exported.returncode == 0, exported.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    env.update(HF_ENDPOINT=hub, HF_HOME=str(tmp_path / "hf-home-2"))
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_BY_REVISION, "someone/mlm", tmp_path / "e2", tmp_path / "e4"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert loaded.returncode == 0 and "loaded by revision" in loaded.stdout, loaded.stderr[-3000:]
