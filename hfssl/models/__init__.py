"""Model size presets and configs, apart from the objectives that train them."""

from __future__ import annotations

from transformers import AutoConfig

from hfssl.errors import UsageError, first_line
from hfssl.io import check_local


def load_config(model):
    """`model.name_or_path`'s config (text or speech `model` section), for continued pretraining; one line when it
    cannot be loaded."""
    check_local(model.name_or_path, "model.name_or_path")
    try:
        return AutoConfig.from_pretrained(model.name_or_path, trust_remote_code=model.trust_remote_code)
    except (OSError, ValueError) as err:
        raise UsageError(f"model.name_or_path: could not load {model.name_or_path!r} ({first_line(err)})") from None
