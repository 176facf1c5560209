"""The recipe reference: every setting of every command's schema (key, type, default, help) as one Markdown page,
written from the dataclasses themselves so that it cannot fall behind them.

The docs build writes it as `reference.md` (`docs/hooks.py`); `python -m hfssl.reference` prints it. A section that
several commands or objectives read (the same dataclass at the same defaults) is listed once, with who reads it.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Any

import yaml

from hfssl import config as config_lib
from hfssl.config import (
    EvaluateConfig,
    FinetuneConfig,
    LabelEfficiencyConfig,
    ProbeConfig,
    TokenizerTrainConfig,
    TrainingSection,
)

TRAINING_ARGUMENTS = "https://huggingface.co/docs/transformers/main_classes/trainer#transformers.TrainingArguments"


def schemas() -> dict[str, type]:
    """What each command reads: `hfssl pretrain` once per objective (the objective picks the schema), then the
    commands with one schema each. Keys are the command as a user would type its start."""
    from hfssl.objectives import OBJECTIVES
    from hfssl.objectives.hubert import HubertConfig

    found = {f"pretrain --objective.name {name}": module.SCHEMA for name, module in OBJECTIVES.items()}
    return found | {
        "hubert-targets": HubertConfig,
        "tokenizer train": TokenizerTrainConfig,
        "finetune": FinetuneConfig,
        "probe": ProbeConfig,
        "label-efficiency": LabelEfficiencyConfig,
        "evaluate": EvaluateConfig,
    }


@dataclasses.dataclass
class Section:
    """One section dataclass at one set of defaults, and every command that reads it."""

    name: str
    dataclass: type
    defaults: Any
    readers: list[str]

    @property
    def anchor(self) -> str:
        return f"{self.name}-{self.dataclass.__name__.lower()}"


def sections() -> list[Section]:
    """Every distinct section, in the order the commands first read them."""
    found: dict[tuple, Section] = {}
    for command, schema in schemas().items():
        defaults = schema()
        for name, section in config_lib.sections(schema).items():
            values = getattr(defaults, name)
            key = (name, section, repr(values))
            found.setdefault(key, Section(name, section, values, [])).readers.append(command)
    return list(found.values())


def value(default: Any) -> str:
    """A default as a recipe would write it (YAML), or `null`."""
    text = yaml.safe_dump(default, default_flow_style=True, width=math.inf).strip()
    return text.removesuffix("...").strip()


def cell(text: str) -> str:
    """Text that stays inside one Markdown table cell, and is not read as HTML."""
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;")


def readers_line(readers: list[str]) -> str:
    """`hfssl pretrain` with objective.name mlm, rtd; `hfssl finetune`: who reads a section, compactly."""
    objectives = [r.removeprefix("pretrain --objective.name ") for r in readers if r.startswith("pretrain ")]
    others = [f"`hfssl {r}`" for r in readers if not r.startswith("pretrain ")]
    every = sum(command.startswith("pretrain ") for command in schemas())
    if len(objectives) == every:
        others.insert(0, "`hfssl pretrain` (every objective)")
    elif objectives:
        others.insert(0, f"`hfssl pretrain` with `objective.name` {', '.join(objectives)}")
    return "; ".join(others)


def changed_training_defaults(section: Section) -> list[str]:
    """The `TrainingArguments` fields whose default hfssl's `training` section changes."""
    from transformers import TrainingArguments

    theirs = {f.name: f for f in dataclasses.fields(TrainingArguments)}
    changed = []
    for key in config_lib.section_fields(section.dataclass):
        upstream = theirs[key].default
        if theirs[key].default_factory is not dataclasses.MISSING:
            upstream = theirs[key].default_factory()
        upstream = getattr(upstream, "value", upstream)  # an Enum of strings reads as its string
        if getattr(section.defaults, key) != upstream:
            changed.append(key)
    return changed


def section_markdown(section: Section) -> list[str]:
    lines = [f"### `{section.name}`: {section.dataclass.__name__} {{ #{section.anchor} }}", ""]
    lines += [f"Read by {readers_line(section.readers)}.", ""]
    doc = section.dataclass.__dict__.get("__doc__") or ""
    if doc and not doc.startswith(f"{section.dataclass.__name__}("):  # not the signature dataclasses writes
        lines += [" ".join(doc.split()), ""]
    if section.dataclass is TrainingSection:
        changed = ", ".join(f"`{key}`" for key in changed_training_defaults(section))
        lines += [
            f"transformers' [`TrainingArguments`]({TRAINING_ARGUMENTS}), field for field, with its help. hfssl "
            f"changes the defaults of {changed}.",
            "",
        ]
    lines += ["| key | type | default | what it sets |", "|---|---|---|---|"]
    for key, (tp, fld) in config_lib.section_fields(section.dataclass).items():
        default = cell(value(getattr(section.defaults, key)))
        lines.append(
            f"| `{section.name}.{key}` | {cell(config_lib.describe(tp))} | `{default}` | {cell(fld.metadata['help'])} |"
        )
    return lines + [""]


def markdown() -> str:
    """The whole reference page."""
    found = sections()
    lines = [
        "# Recipe reference",
        "",
        "Every setting each command reads, generated from hfssl's schema when the docs are built. A recipe sets it "
        "as `section: {key: value}` in YAML, and the command line as `--section.key value`; `hfssl COMMAND --help` "
        "prints the same. `null` (an empty value on the command line) means the setting's own fallback, which its "
        "help names.",
        "",
        "## Commands and their sections",
        "",
        "| command | sections |",
        "|---|---|",
    ]
    for command, schema in schemas().items():
        mine = {s.name: s for s in found if command in s.readers}
        links = [f"[{name}](#{mine[name].anchor})" for name in config_lib.sections(schema)]
        lines.append(f"| `hfssl {command}` | {', '.join(links)} |")
    renamed = {old: new for schema in schemas().values() for old, new in getattr(schema, "RENAMED", {}).items()}
    if renamed:
        lines += ["", "Older names still read, under their new names (with one log line):", ""]
        lines += [f"- `{old}`: now `{new}`" for old, new in renamed.items()]
    lines += ["", "## Sections", ""]
    for section in found:
        lines += section_markdown(section)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(markdown())
