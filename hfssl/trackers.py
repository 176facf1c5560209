"""Experiment trackers a recipe names (`train.report_to` for pretraining, `training.report_to` for fine-tuning),
checked before a run starts: each must be one that Accelerate (pretraining) or the Trainer (fine-tuning) drives, and
installed. Accelerate and the Trainer do the tracking; hfssl only refuses a name they would skip or fail on late.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

from hfssl.errors import UsageError

# where a tracker's pip package is not its name
_PACKAGES = {"comet_ml": "comet-ml", "azure_ml": "azureml-core", "flyte": "flytekit", "kubeflow": "kfp"}


def pretraining_trackers(names: list[str] | str | None, key: str = "train.report_to") -> list[str]:
    """The Accelerate trackers named ("all": every installed one; "none" or nothing: none)."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers

    installed = {str(getattr(t, "value", t)) for t in get_available_trackers()}
    return _checked(names, key, sorted(LOGGER_TYPE_TO_CLASS), installed)


def finetuning_trackers(names: list[str] | str | None, key: str = "training.report_to") -> list[str]:
    """The Trainer integrations named, as `TrainingArguments.report_to` takes them."""
    from transformers.integrations.integration_utils import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    return _checked(names, key, sorted(INTEGRATION_TO_CALLBACK), set(get_available_reporting_integrations()))


def _checked(names, key: str, supported: list[str], installed: set[str]) -> list[str]:
    if names is None:
        return []
    if isinstance(names, str):
        names = [names]
    wanted = []
    for name in names:
        if not isinstance(name, str):
            raise UsageError(f"{key}: {name!r} is not a tracker name")
        name = name.strip().lower()
        if name in ("", "none"):
            continue
        if name == "all":
            return sorted(installed)
        if name not in supported:
            raise UsageError(f"{key}: {name!r} is not a tracker; choose from {', '.join(supported)}, or none")
        if name not in installed:
            raise UsageError(f"{key}: {name} is not installed (pip install {_PACKAGES.get(name, name)})")
        if name == "wandb" and not wandb_can_log():
            raise UsageError(
                f"{key}: wandb is not logged in (run wandb login, set WANDB_API_KEY, or WANDB_MODE=offline to log "
                "locally)"
            )
        if name not in wanted:
            wanted.append(name)
    return wanted


def wandb_can_log() -> bool:
    """Whether Weights & Biases can start a run without asking for a key: offline or disabled, a key in the
    environment, or one that `wandb login` wrote to the netrc file for the server it logs to. Otherwise its first
    call would stop a run that has already trained its tokenizer and written its config, or wait on a prompt."""
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return True
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return netrc.netrc(str(path)).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def finish_finetuning_trackers(report_to: list[str]) -> None:
    """End the tracker runs the Trainer's integrations leave open once training ends: Weights & Biases keeps its run
    for later `evaluate`/`predict` calls, so a run would stay unfinished (and a second fine-tuning in the same process
    would log into it) until the process exits."""
    if "wandb" in report_to:
        import wandb

        if wandb.run is not None:
            wandb.finish()
