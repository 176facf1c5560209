"""Tables of texts for contrastive learning and embedding evaluation: (anchor, positive[, negative]) pairs for
supervised SimCSE, and tables whose columns a caller names (semantic-similarity sets), from local files or the Hub."""

from __future__ import annotations

import os
from pathlib import Path

import datasets

from hfssl.data.text import _check_utf8, _first_line, _local_files, _read_error
from hfssl.errors import UsageError

PAIR_COLUMNS = ("anchor", "positive")
NEGATIVE = "negative"
_TEXT_FILES = {".json", ".jsonl", ".csv"}


def load_table(
    source: str,
    key: str,
    columns: tuple[str, ...],
    optional: tuple[str, ...] = (),
    hub_config: str | None = None,
    split: str = "train",
    cache_dir: str | None = None,
    repo_copy: bool = False,
) -> datasets.Dataset:
    """`columns` (and those of `optional` it has) of a local .json/.jsonl/.csv/.parquet file, a folder or glob of
    them, a local copy of a Hub dataset repository (a folder, with `hub_config` or `repo_copy`), or a Hub dataset's
    `split`; a repository, local or not, gives its `split`.

    Raises:
        UsageError naming `key`: a missing, unreadable or empty source, or a missing column.
    """
    repo_copy = (repo_copy or hub_config is not None) and Path(os.path.expanduser(source)).is_dir()
    local = None if repo_copy else _local_files(source, key)
    try:
        if local is None:
            table = datasets.load_dataset(source, hub_config, split=split, cache_dir=cache_dir)
        else:
            builder, files = local
            if builder == "text":
                raise UsageError(f"{key}: {source} is plain text; give a .json/.jsonl/.csv/.parquet file with columns")
            if all(os.path.getsize(f) == 0 for f in files):
                raise UsageError(f"{key}: {source} is empty")
            for file in files:
                if os.path.splitext(file)[1].lower() in _TEXT_FILES:
                    _check_utf8(file, key)
            table = datasets.load_dataset(builder, data_files=files, split="train", cache_dir=cache_dir)
    except UsageError:
        raise
    except Exception as err:  # offline, unknown name, malformed file: all the user's to fix
        why = _first_line(err) if local is None else _read_error(local[1], err)
        raise UsageError(f"{key}: could not read {source!r}: {why}") from err
    if len(table) == 0:
        raise UsageError(f"{key}: {source} is empty")
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise UsageError(
            f"{key}: {source} has no column {missing[0]!r}; it needs {', '.join(columns)} and has "
            f"{', '.join(table.column_names)}"
        )
    return table.select_columns([*columns, *(c for c in optional if c in table.column_names)])


def check_texts(table: datasets.Dataset, key: str, source: str, columns: list[str]) -> None:
    """Every cell of the text `columns` is a non-empty string; else one line naming the first bad row."""
    for column in columns:
        for row, text in enumerate(table[column]):
            if not isinstance(text, str) or not text.strip():
                what = "is empty" if isinstance(text, str) or text is None else f"is not text ({type(text).__name__})"
                raise UsageError(f"{key}: {source} row {row + 1}: column {column!r} {what}")


def load_pairs(
    source: str, key: str, hub_config: str | None = None, split: str = "train", cache_dir: str | None = None
) -> datasets.Dataset:
    """Supervised contrastive pairs: columns anchor, positive and, where the source has it, negative; all non-empty.
    `hub_config` and `split` choose a Hub dataset's (e.g. sentence-transformers/all-nli, triplet)."""
    table = load_table(source, key, PAIR_COLUMNS, (NEGATIVE,), hub_config, split, cache_dir)
    check_texts(table, key, source, table.column_names)
    return table


def tokenize_pairs(table: datasets.Dataset, tokenizer, seq_len: int) -> datasets.Dataset:
    """Each text column's token ids (the tokenizer's own special tokens, cut to `seq_len`), as the embedding model
    will see the text at inference."""

    def encode(batch: dict[str, list]) -> dict[str, list]:
        return {
            f"{column}_ids": tokenizer(texts, truncation=True, max_length=seq_len)["input_ids"]
            for column, texts in batch.items()
        }

    return table.map(encode, batched=True, remove_columns=table.column_names).with_format("torch")
