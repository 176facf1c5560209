"""The generic loader: a YAML recipe and `--section.field value` overrides, checked against a schema of typed
dataclasses into that schema's objects.

A schema is a dataclass whose fields are sections; a section is a dataclass whose fields are settings, each with a
type, a default and a help string (`arg`) that doubles as `--help` text. Loading checks every key and type and raises
`UsageError` naming the key and what would be valid.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

import yaml

from hfssl.errors import UsageError, first_line

logger = logging.getLogger(__name__)


def arg(default: Any, help: str) -> Any:
    """A dataclass field with its help text (mutable defaults are copied per instance)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise UsageError(f"{key}: {message}")


def sections(schema: type) -> dict[str, type]:
    """Section name -> section dataclass of a top-level schema."""
    hints = typing.get_type_hints(schema)
    return {f.name: hints[f.name] for f in dataclasses.fields(schema)}


def section_fields(section: type) -> dict[str, tuple[Any, dataclasses.Field]]:
    hints = typing.get_type_hints(section)
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(section)}


def describe(tp: Any) -> str:
    """Human-readable form of a field type, for help text and errors."""
    if tp is Any:
        return "any YAML value"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        inner = [describe(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(inner) + " or empty"
    if origin is list:
        return f"a list of {describe(typing.get_args(tp)[0])}"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the field type `tp`; return it converted (int -> float) or raise UsageError."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return coerce(value, inner, key)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise UsageError(f"{key}: {value!r} is not valid; choose {describe(tp)[7:]}")
        return value
    if origin is list:
        if not isinstance(value, list):
            value = [value]
        (inner,) = typing.get_args(tp)
        return [coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, str):
        # YAML 1.1 reads 3e-4 (no dot) as a string; it plainly means a number.
        try:
            value = float(value)
        except ValueError:
            pass
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[tp]
    if not ok:
        raise UsageError(f"{key}: expected {describe(tp)}, got {value!r}")
    if tp is float and not math.isfinite(value):  # no setting means anything by inf or nan; YAML reads .inf, .nan
        raise UsageError(f"{key}: expected a finite number, got {value}")
    return float(value) if tp is float else value


def unknown_key(key: str, valid: list[str]) -> UsageError:
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return UsageError(f"unknown key {key!r}{hint}; valid keys: {', '.join(valid)}")


def build(schema: type, values: dict[str, Any], source: str = "recipe") -> Any:
    """Validate a nested dict of values against `schema` and build the dataclasses."""
    secs = sections(schema)
    if not isinstance(values, dict):
        raise UsageError(f"{source}: expected a mapping of sections ({', '.join(secs)}), got {type(values).__name__}")
    built = {}
    for name in values:
        if name not in secs:
            raise UsageError(f"{source}: " + str(unknown_key(name, list(secs))))
    for name, section in secs.items():
        given = values.get(name) or {}
        if not isinstance(given, dict):
            raise UsageError(f"{source}: section {name!r} must be a mapping of keys, got {given!r}")
        fields = section_fields(section)
        kwargs = {}
        for key, value in given.items():
            if key not in fields:
                raise UsageError(f"{source}: " + str(unknown_key(f"{name}.{key}", list(fields))))
            kwargs[key] = coerce(value, fields[key][0], f"{name}.{key}")
        try:
            built[name] = section(**kwargs)
        except UsageError as err:
            raise UsageError(f"{source}: {err}") from None
    return schema(**built)


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (YAML would keep the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_recipe(path: str | Path) -> dict[str, Any]:
    """Read a YAML recipe into a nested dict, with clear errors for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        packaged = Path(__file__).parent.parent / "recipes" / path
        if packaged.suffix == "":
            packaged = packaged.with_suffix(".yaml")
        if not packaged.is_file():
            raise UsageError(f"{path}: no such recipe file")
        path = packaged
    try:
        values = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or first_line(err)
        raise UsageError(f"{path}: not valid YAML ({where}{problem})") from None
    return values or {}


def apply_override(values: dict[str, Any], schema: type, dotted: str, raw: Any) -> None:
    """Set `section.key` in `values` from a command-line string, parsed as YAML unless the field is a string; a value
    that is not a string (from the Python API) is taken as it is, for the schema's types to check."""
    secs = sections(schema)
    name, _, key = dotted.partition(".")
    if name not in secs or not key:
        raise unknown_key(dotted, [f"{s}.{k}" for s, sec in secs.items() for k in section_fields(sec)])
    fields = section_fields(secs[name])
    if key not in fields:
        raise unknown_key(dotted, list(fields))
    tp = fields[key][0]
    choices = typing.get_args(tp) if typing.get_origin(tp) is Literal else ()
    plain_string = (
        tp is str
        or (typing.get_origin(tp) in (typing.Union, types.UnionType) and str in typing.get_args(tp))
        or (choices and all(isinstance(c, str) for c in choices))  # "no" is a choice here, not YAML's false
    )
    if not isinstance(raw, str) or (plain_string and raw not in ("", "null", "None", "~")):
        value: Any = raw
    else:
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
    values.setdefault(name, {})
    if values[name] is None:
        values[name] = {}
    values[name][key] = value


def load(schema: type, recipe: str | Path | None, overrides: dict[str, Any] | None = None) -> Any:
    """Recipe file + `section.key -> string` overrides -> validated config of type `schema`."""
    values = read_recipe(recipe) if recipe is not None else {}
    return load_values(schema, values, overrides, str(recipe) if recipe is not None else "command line")


def load_values(schema: type, values: Any, overrides: dict[str, str] | None = None, source: str = "recipe") -> Any:
    """A recipe already read (`values`) + `section.key -> string` overrides -> validated config of type `schema`.
    A key the schema renamed (its `RENAMED`: old `section.key` -> new) is read under its new name, with one log line."""
    if not isinstance(values, dict):
        raise UsageError(f"{source}: expected a mapping of sections, got {type(values).__name__}")
    for name, given in values.items():  # before the renames and overrides set keys in them
        if given is not None and not isinstance(given, dict):
            raise UsageError(f"{source}: section {name!r} must be a mapping of keys, got {given!r}")
    overrides = dict(overrides or {})
    for old, new in getattr(schema, "RENAMED", {}).items():
        (old_section, old_key), (new_section, new_key) = old.split("."), new.split(".")
        given = values.get(old_section)
        if isinstance(given, dict) and old_key in given:
            logger.warning("%s: %s is called %s now; read as %s", source, old, new, new)
            values.setdefault(new_section, {})
            if values[new_section] is None:
                values[new_section] = {}
            values[new_section][new_key] = given.pop(old_key)
        if old in overrides:
            logger.warning("--%s is called --%s now; read as %s", old, new, new)
            overrides[new] = overrides.pop(old)
    for dotted, raw in overrides.items():
        apply_override(values, schema, dotted, raw)
    return build(schema, values, source)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def dump(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
