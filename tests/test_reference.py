"""The recipe reference page lists every setting of every command, once per section, with the type, default and help
the schema gives it, and exactly the settings the command line takes."""

import argparse
import re

import pytest
import yaml

from hfssl import config as config_lib
from hfssl.__main__ import build_parser
from hfssl.reference import markdown, schemas

HEADING = re.compile(r"^### .* \{ #([\w-]+) \}$")
ROW = re.compile(r"^\| `(\w+\.\w+)` \| (.*) \| `(.*)` \| (.*) \|$")
COMMAND = re.compile(r"^\| `hfssl ([^`]+)` \| (.*) \|$")


def plain(cell: str) -> str:
    """A table cell's text as written before it was escaped for Markdown."""
    return cell.replace("\\|", "|").replace("&lt;", "<")


@pytest.fixture(scope="module")
def page() -> str:
    return markdown()


@pytest.fixture(scope="module")
def tables(page) -> dict[str, dict[str, tuple[str, str, str]]]:
    """Section anchor -> `section.key` -> (type, default, help) as the page lists them."""
    found: dict[str, dict[str, tuple[str, str, str]]] = {}
    rows = None
    for line in page.splitlines():
        if heading := HEADING.match(line):
            rows = found.setdefault(heading.group(1), {})
        elif (row := ROW.match(line)) and rows is not None:
            key, tp, default, help = row.groups()
            assert key not in rows, f"{key} listed twice"
            rows[key] = (plain(tp), plain(default), plain(help))
    return found


@pytest.fixture(scope="module")
def commands(page) -> dict[str, list[str]]:
    """Command -> the anchors of the sections the page's first table says it reads."""
    found = {}
    for line in page.splitlines():
        if match := COMMAND.match(line):
            found[match.group(1)] = re.findall(r"\]\(#([\w-]+)\)", match.group(2))
    return found


def listed_settings(command: str, tables, commands) -> dict[str, tuple[str, str, str]]:
    return {key: row for anchor in commands[command] for key, row in tables[anchor].items()}


def test_every_setting_has_the_type_default_and_help_of_the_schema(tables, commands):
    assert set(commands) == set(schemas())
    for command, schema in schemas().items():
        listed = listed_settings(command, tables, commands)
        defaults = schema()
        expected = set()
        for name, section in config_lib.sections(schema).items():
            for key, (tp, fld) in config_lib.section_fields(section).items():
                dotted = f"{name}.{key}"
                expected.add(dotted)
                assert dotted in listed, f"hfssl {command}: {dotted} is missing"
                tp_text, default_text, help_text = listed[dotted]
                assert tp_text == config_lib.describe(tp), dotted
                assert yaml.safe_load(default_text) == getattr(getattr(defaults, name), key), dotted
                assert help_text == " ".join(fld.metadata["help"].split()), dotted
        assert set(listed) == expected, f"hfssl {command}: listed but not in the schema"


def subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def options(parser: argparse.ArgumentParser) -> set[str]:
    """The `section.key` settings a parser offers (renamed keys, hidden from help, left out)."""
    return {
        option.removeprefix("--")
        for action in parser._actions
        if action.help != argparse.SUPPRESS
        for option in action.option_strings
        if "." in option
    }


def test_the_page_lists_what_the_command_line_takes(tables, commands):
    pretrain = set()
    for command in schemas():
        if command.startswith("pretrain "):
            pretrain |= set(listed_settings(command, tables, commands))
            continue
        words = command.split()
        parser = subparser(build_parser(words[0]), words[0])
        for word in words[1:]:
            parser = subparser(parser, word)
        assert options(parser) == set(listed_settings(command, tables, commands)), command
    assert options(subparser(build_parser("pretrain"), "pretrain")) == pretrain


def test_every_link_on_the_page_has_its_heading(page, tables):
    assert set(re.findall(r"\]\(#([\w-]+)\)", page)) <= set(tables)
