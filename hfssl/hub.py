"""`hfssl push`: upload an exported model directory to the Hugging Face Hub with `huggingface_hub.HfApi`.

The token comes from where huggingface_hub looks (`HF_TOKEN`, then a saved `hf auth login`); hfssl never reads it
into a log line, a card or a config. Training state (checkpoints, optimizer, RNG) stays local unless asked for.
"""

from __future__ import annotations

import logging
from pathlib import Path

from huggingface_hub import HfApi, get_token, is_offline_mode
from huggingface_hub.errors import HfHubHTTPError

from hfssl.errors import UsageError, first_line

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
    """Before a run whose recipe pushes at the end (`hub.push_to_hub`): fail now, not after the training, when the
    push cannot happen. Looks at the environment only; the token's value is never read into a message."""
    if not hub.push_to_hub:
        return
    if is_offline_mode():
        raise UsageError("hub.push_to_hub: HF_HUB_OFFLINE is set, so the run could not push; unset it or push later")
    if get_token() is None:
        raise UsageError("hub.push_to_hub: no Hugging Face token; set HF_TOKEN or run `hf auth login` first")


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
