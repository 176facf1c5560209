"""Model-card text the cards hfssl writes share (pretraining exports of every objective, fine-tuned classifiers):
metadata, training and compute rows, number formats, and which sources name Hub repositories."""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from huggingface_hub import ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from hfssl.io import write_text

TEMPLATES = Path(__file__).parent / "model_cards"

# Files a data source can name; a name ending so is a local file, even when it does not exist here (any more).
LOCAL_SUFFIXES = {".txt", ".json", ".jsonl", ".csv", ".tsv", ".parquet", ".arrow", ".wav", ".flac", ".mp3", ".ogg"}


def _is_hub_id(name: str) -> bool:
    if name.startswith((".", "/", "~")) or any(c in name for c in "*?[") or Path(name).expanduser().exists():
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def hub_model_id(name_or_path: str | None) -> str | None:
    """`name_or_path` when it names a model on the Hub, else None. The Hub takes only ids as `base_model`, so a local
    path is named in the card's text instead (transformers' Trainer leaves local paths out the same way)."""
    return name_or_path if name_or_path and _is_hub_id(name_or_path) else None


def hub_dataset_ids(*sources: str | None) -> list[str]:
    """The sources that name Hub datasets (not 'synthetic', not local files), for the card's `datasets`."""
    ids = []
    for source in sources:
        if source and source != "synthetic" and Path(source).suffix.lower() not in LOCAL_SUFFIXES:
            if _is_hub_id(source) and source not in ids:
                ids.append(source)
    return ids


def base_model(export, name_or_path: str | None) -> str | None:
    """The card's `base_model`: the recipe's `export.base_model`, else the starting checkpoint if it is a Hub id."""
    return export.base_model or hub_model_id(name_or_path)


def model_name(export, output_dir: str) -> str:
    """The name in the card's title: `export.model_name`, else the run directory's name."""
    return export.model_name or Path(output_dir).resolve().name


def pretrain_card_data(cfg, pipeline_tag: str, tags: list[str], library_name: str = "transformers") -> ModelCardData:
    """The metadata of a pretraining export's card: the recipe's export section, the Hub datasets it trained on and
    the model it continued from, under `pipeline_tag` with `tags` after "hfssl"."""
    return ModelCardData(
        language=cfg.export.language or None,
        license=cfg.export.license,
        library_name=library_name,
        pipeline_tag=pipeline_tag,
        tags=["hfssl", *tags, *cfg.export.tags],
        datasets=cfg.export.datasets or hub_dataset_ids(cfg.data.train, cfg.data.validation) or None,
        base_model=base_model(cfg.export, cfg.model.name_or_path),
    )


def training_rows(t, metrics: dict) -> dict:
    """The model-card rows every pretraining objective shares: optimizer, schedule, steps and seed."""
    return {
        "optimizer": f"{'StableAdamW' if t.optimizer == 'stable_adamw' else 'AdamW'} (betas {t.adam_beta1}, "
        f"{t.adam_beta2}; eps {t.adam_eps}; weight decay {t.weight_decay})",
        "peak learning rate": t.lr,
        "schedule": f"{t.schedule}, warmup {t.warmup_steps if t.warmup_steps is not None else t.warmup_ratio}",
        "steps": metrics.get("steps"),
        "seed": t.seed,
    } | batch_rows(t, "seconds of audio" if "audio_seconds_seen" in metrics else "tokens")


def batch_rows(t, unit: str) -> dict:
    """The card's batch-size warmup row, when the run had one."""
    if t.batch_warmup_start is None:
        return {}
    return {
        "batch-size warmup": f"{t.batch_warmup_start} to {t.grad_accum} micro-batches per step over the first "
        f"{t.batch_warmup_tokens:,.0f} {unit}"
    }


def describe_hardware(device: str | None, processes: int = 1) -> str:
    """A torch device string as the card's hardware, e.g. "2 x NVIDIA H100 80GB HBM3" ("not recorded": none given)."""
    if not device:
        return "not recorded"
    name = device
    if device.startswith("cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name(torch.device(device))
    elif device == "cpu":
        name = f"CPU ({os.cpu_count()} cores)"
    return f"{processes} x {name}"


def compute_rows(metrics: dict, seen: tuple[str, str]) -> dict:
    """The model card's compute table: hardware, wall time and how much data went through the model."""
    wall = metrics.get("wall_time_s")
    if wall is None:
        wall_time = "not recorded"
    else:
        wall_time = f"{wall:,.1f} s" + (f" ({wall / 3600:.1f} h)" if wall >= 3600 else "")
    return {
        "hardware": describe_hardware(metrics.get("device"), metrics.get("num_processes", 1)),
        "wall time": wall_time,
        seen[0]: seen[1],
    }


def count(n: float) -> str:
    """12345678 -> "12.3M": parameter counts that stay readable for tiny models too."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.1f}{suffix}"
    return str(int(n))


def fmt(value) -> str:
    """A metric for a card's table ("n/a" where it was not measured)."""
    return "n/a" if value is None else f"{value:.4f}"


def put_card_section(card: Path, text: str, start: str, end: str, section: str) -> None:
    """Write `text` (a model card) to `card` with `section` (which begins with `start` and ends with `end`) in it:
    in place of an earlier one, else before the Limitations section, else at the end."""
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        marker = "\n## Limitations"
        text = (
            text.replace(marker, "\n" + section + marker, 1) if marker in text else text.rstrip("\n") + "\n\n" + section
        )
    write_text(card, text)
