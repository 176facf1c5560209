"""`hfssl push`: upload an exported model directory to the Hugging Face Hub with `huggingface_hub.HfApi`.

The token comes from where huggingface_hub looks (`HF_TOKEN`, then a saved `hf auth login`); hfssl never reads it
into a log line, a card or a config. Training state (checkpoints, optimizer, RNG) stays local unless asked for.
"""

from __future__ import annotations

import logging
import queue
import re
import shutil
import threading
from pathlib import Path

from huggingface_hub import HfApi, get_token, is_offline_mode
from huggingface_hub.errors import HfHubHTTPError

from hfssl.errors import UsageError, first_line
from hfssl.io import write_text

logger = logging.getLogger(__name__)

# What an export never needs on the Hub: training state and temporary files.
TRAINING_STATE = [
    "checkpoints/**", "checkpoint-*/**", "step-*/**", "optimizer*.bin", "optimizer*.pt", "scheduler*.bin",
    "scheduler*.pt", "random_states*.pkl", "rng_state*.pth", "trainer_state.json", "training_args.bin", "*.tmp",
    ".*.tmp/**", "logs/**",
]  # fmt: skip


def push(
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    include_training_state: bool = False,
    token: str | None = None,
) -> str:
    """Create `repo_id` if needed and upload `folder` to it in one commit; returns the commit URL.

    Args:
        folder: an exported model directory (it must hold a config.json).
        repo_id: "owner/name" or "name" on the Hub.
        private: create the repository private (an existing repository keeps its visibility).
        revision: the branch to commit to, created from main if it does not exist (default: main).
        commit_message: the commit summary (default: "Upload <folder name> with hfssl").
        include_training_state: upload checkpoints and optimizer state too.
        token: a token to use instead of the saved one; never logged.
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise UsageError(f"{folder}: not an exported model (no config.json); push a run's final/ or an export")
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private or None, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(url.repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(
            repo_id=url.repo_id,
            folder_path=folder,
            revision=revision,
            commit_message=commit_message or f"Upload {folder.resolve().name} with hfssl",
            ignore_patterns=None if include_training_state else TRAINING_STATE,
        )
    except HfHubHTTPError as err:
        raise UsageError(f"push to {repo_id}: the Hub refused it ({first_line(err)})") from None
    except (OSError, ValueError) as err:
        raise UsageError(f"push to {repo_id}: {first_line(err)}") from None
    logger.info("pushed %s to %s", folder, url.repo_id)
    return info.commit_url


def check_can_push(hub) -> None:
    """Before a run whose recipe pushes (`hub.push_to_hub`, `hub.push_checkpoints`): fail now, not after the
    training, when the push cannot happen. Looks at the environment only; the token's value is never read into a
    message."""
    key = "hub.push_to_hub" if hub.push_to_hub else "hub.push_checkpoints"
    if not (hub.push_to_hub or getattr(hub, "push_checkpoints", False)):
        return
    if is_offline_mode():
        raise UsageError(f"{key}: HF_HUB_OFFLINE is set, so the run could not push; unset it or push later")
    if get_token() is None:
        raise UsageError(f"{key}: no Hugging Face token; set HF_TOKEN or run `hf auth login` first")


def push_final(hub, folder: str | Path) -> str | None:
    """Push a finished run's export as the recipe's `hub` section says, from the main process only; returns the
    commit URL (None where nothing was pushed). A failed push names the command that retries it."""
    from accelerate import PartialState

    if not hub.push_to_hub or not PartialState().is_main_process:
        return None
    try:
        return push(folder, hub.repo_id, private=hub.private, revision=hub.revision, commit_message=hub.commit_message)
    except UsageError as err:
        retry = f"hfssl push {folder} --repo-id {hub.repo_id}" + (f" --revision {hub.revision}" if hub.revision else "")
        raise UsageError(f"{err}; the trained model is in {folder}, retry with `{retry}`") from None


def revision_name(step: int) -> str:
    """The Hub branch a checkpoint's export is pushed to (`hub.push_checkpoints`)."""
    return f"step-{step}"


class CheckpointPusher:
    """Pushes checkpoint exports to their `step-N` branches from one background thread, in the order given, so
    training never waits on the network; `close` waits for the queue and returns the branches that arrived.

    Each export folder is deleted once pushed (or once its push failed: the checkpoint itself stays in the run
    directory, and `hfssl export` + `hfssl push --revision step-N` retries it)."""

    def __init__(self, hub):
        self.hub = hub
        self.pushed: list[str] = []
        self.failed: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="hfssl-push-checkpoints", daemon=True)
        self._thread.start()

    def submit(self, folder: Path, step: int, cleanup: Path | None = None) -> None:
        """Queue `folder` for branch step-`step`; `cleanup` (default: `folder`) is deleted after the push."""
        self._queue.put((Path(folder), step, Path(cleanup or folder)))

    def close(self) -> list[str]:
        self._queue.put(None)
        self._thread.join()
        return self.pushed

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            folder, step, cleanup = item
            branch = revision_name(step)
            try:
                push(
                    folder,
                    self.hub.repo_id,
                    private=self.hub.private,
                    revision=branch,
                    commit_message=f"Checkpoint at step {step} (hfssl)",
                )
                self.pushed.append(branch)
            except UsageError as err:
                self.failed.append(branch)
                logger.warning("checkpoint push to %s failed, training goes on: %s", branch, err)
            finally:
                shutil.rmtree(cleanup, ignore_errors=True)


def list_checkpoint_revisions(hub, pushed: list[str]) -> list[str]:
    """The `step-N` branches of `hub.repo_id`, as the Hub lists them (a resumed run's earlier pushes included, a push
    killed with its run left out), oldest first; this session's `pushed` where the Hub cannot be asked."""
    try:
        refs = HfApi().list_repo_refs(hub.repo_id, repo_type="model")
        names = [branch.name for branch in refs.branches]
    except (HfHubHTTPError, OSError, ValueError) as err:
        logger.warning("could not list the branches of %s (%s); the card lists this session's", hub.repo_id, err)
        names = pushed
    steps = sorted(int(m.group(1)) for name in names if (m := re.fullmatch(r"step-(\d+)", name)))
    return [revision_name(step) for step in steps]


def add_revisions_to_card(folder: Path, repo_id: str, revisions: list[str]) -> None:
    """Append the checkpoint branches to the export's model card, with how to load one."""
    if not revisions:
        return
    card = Path(folder) / "README.md"
    listing = ", ".join(f"`{name}`" for name in revisions)
    section = (
        "\n## Intermediate checkpoints\n\n"
        f"Every saved checkpoint of the run is a branch of this repository: {listing}. Load one by its revision:\n\n"
        "```python\n"
        "from transformers import AutoModel\n\n"
        f'model = AutoModel.from_pretrained("{repo_id}", revision="{revisions[0]}")\n'
        "```\n"
    )
    write_text(card, card.read_text(encoding="utf-8").rstrip("\n") + "\n" + section)
