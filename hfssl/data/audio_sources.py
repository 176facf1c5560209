"""Where clips come from: a source named in the settings -> a table with an `Audio(decode=False)` "audio" column.

A source is the embedded synthetic speech, a folder of audio files (the `audiofolder` layout: labels from class
subfolders or a metadata.csv), a .csv/.json/.jsonl list of file paths, a .parquet file or glob, a glob of audio files,
or a dataset with an audio column (a Hub name, or a local folder laid out like a Hub dataset repository). Clips stay
{"bytes", "path"} values: `hfssl.data.audio` decodes them with soundfile.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import datasets

from hfssl.config import AudioDataArgs
from hfssl.data.text import _GLOB_CHARS, _first_line
from hfssl.errors import UsageError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus")
LIST_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json"}
_DATA_FILES = (".parquet", ".arrow", ".csv", ".json", ".jsonl")  # what a local dataset repository may hold
_METADATA = ("metadata.csv", "metadata.jsonl")


def resolve_source(source: str, key: str) -> tuple[str, object] | None:
    """What a local source names: ("files", audio files), ("folder", directory with audio files), ("list",
    list files), ("parquet", parquet files) or ("repo", directory of data files); None for a Hub dataset name."""
    expanded = os.path.expanduser(source)
    path = Path(expanded)
    known = f"audio ({', '.join(AUDIO_EXTENSIONS)}), .csv/.json/.jsonl lists or .parquet"
    if _GLOB_CHARS & set(source):
        files = sorted(f for f in glob.glob(expanded, recursive=True) if os.path.isfile(f))
        kinds = {_kind(f) for f in files} - {None}
        if not kinds:
            raise UsageError(f"{key}: {source} matches no {known} files")
        if len(kinds) > 1:
            raise UsageError(f"{key}: {source} mixes {' and '.join(sorted(kinds))} files; give one kind per source")
        kind = kinds.pop()
        return kind, [f for f in files if _kind(f) == kind]
    if path.is_dir():
        audio = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
        if audio:
            return "folder", (expanded, audio)
        if any(p.suffix.lower() in _DATA_FILES and p.is_file() for p in path.rglob("*")):
            return "repo", expanded
        raise UsageError(
            f"{key}: directory {source} holds no audio files ({', '.join(AUDIO_EXTENSIONS)}) "
            f"and no {', '.join(_DATA_FILES)} data files"
        )
    if path.is_file():
        kind = _kind(expanded)
        if kind is None:
            raise UsageError(f"{key}: {source} is not a supported file; use {known}")
        return kind, [expanded]
    if source.startswith((".", "/", "~")) or _kind(expanded) is not None:
        raise UsageError(f"{key}: {source}: no such file or directory")
    return None


def _kind(file: str) -> str | None:
    suffix = Path(file).suffix.lower()
    if suffix in AUDIO_EXTENSIONS:
        return "files"
    if suffix in LIST_BUILDERS:
        return "list"
    if suffix == ".parquet":
        return "parquet"
    return None


def source_dataset(
    source: str, key: str, data: AudioDataArgs, split: str, seed: int, synthetic_count: int, streaming: bool = False
) -> tuple[datasets.Dataset | datasets.IterableDataset, list[str] | None]:
    """The source as a dataset with an "audio" column (`Audio(decode=False)`) and its other columns, and the
    paths of its files when it names files on disk (their sizes and times key the scan cache)."""
    if source == "synthetic":
        from hfssl.data.synthetic_audio import synthetic_utterances

        corpus = synthetic_utterances(synthetic_count, seed)
        if not isinstance(corpus, datasets.Dataset):
            corpus = datasets.Dataset.from_list(list(corpus))
        corpus = corpus.cast_column("audio", datasets.Audio(decode=False))
        return (_to_stream(corpus) if streaming else corpus), None
    resolved = resolve_source(source, key)
    if resolved is None or resolved[0] in ("repo", "parquet"):
        if resolved is None:
            where, args = f"dataset {source!r} from the Hub", (source, data.hub_config)
        elif resolved[0] == "repo":
            where, args = source, (resolved[1], data.hub_config)
        else:
            where, args = source, ("parquet",)
        kwargs = {"data_files": resolved[1]} if resolved and resolved[0] == "parquet" else {}
        revision = data.hub_revision if resolved is None else None
        try:
            corpus = datasets.load_dataset(
                *args, split=split, revision=revision, streaming=streaming, cache_dir=data.cache_dir, **kwargs
            )
        except Exception as err:  # offline, unknown name, bad config or split, unreadable files: the user's to fix
            raise UsageError(f"{key}: could not load {where}: {_first_line(err)}") from err
        base = resolved[1] if resolved and resolved[0] == "repo" else None
        return _audio_column(corpus, source, key, data, base, streaming)
    kind, found = resolved
    if kind == "folder":
        table, paths = _folder_table(*found, key, data)
    elif kind == "list":
        table, paths = _list_table(found, source, key, data)
    else:
        table, paths = {"audio": [{"bytes": None, "path": os.path.abspath(f)} for f in found]}, list(found)
    corpus = datasets.Dataset.from_dict(table).cast_column("audio", datasets.Audio(decode=False))
    return (_to_stream(corpus) if streaming else corpus), paths


def _to_stream(corpus: datasets.Dataset) -> datasets.IterableDataset:
    # several shards: DataLoader workers and split_dataset_by_node then share out whole shards
    return corpus.to_iterable_dataset(num_shards=max(1, min(len(corpus), 64)))


def _folder_table(root: str, files: list[str], key: str, data: AudioDataArgs) -> tuple[dict, list[str]]:
    """The `audiofolder` layout: a metadata.csv/.jsonl (column "file_name", relative to the folder) names the clips
    and their other columns; without one, class subfolders one level below the root give a "label" column."""
    for name in _METADATA:
        metadata = os.path.join(root, name)
        if os.path.isfile(metadata):
            table = _read_list(metadata, key, data).to_dict()
            if "file_name" not in table:
                raise UsageError(
                    f"{key}: {metadata} has no column 'file_name' naming the audio files; its columns are: "
                    f"{', '.join(table)}"
                )
            paths = [_join(root, file) for file in table.pop("file_name")]
            table.pop("audio", None)
            return {"audio": [{"bytes": None, "path": p} for p in paths], **table}, paths
    paths = [os.path.abspath(f) for f in files]
    table: dict[str, list] = {"audio": [{"bytes": None, "path": p} for p in paths]}
    parts = [Path(f).relative_to(root).parts for f in files]
    labels = {p[-2] for p in parts if len(p) > 1}
    if len({len(p) for p in parts}) == 1 and len(parts[0]) > 1 and len(labels) > 1:
        table["label"] = [p[-2] for p in parts]
    return table, paths


def _list_table(files: list[str], source: str, key: str, data: AudioDataArgs) -> tuple[dict, list[str]]:
    """Lists of file paths (`data.path_column`, relative to each list's folder), other columns kept."""
    tables = []
    for file in files:
        table = _read_list(file, key, data).to_dict()
        if data.path_column not in table:
            raise UsageError(
                f"{key}: {file} has no column {data.path_column!r} (set data.path_column); its columns are: "
                f"{', '.join(table) or 'none'}"
            )
        folder = os.path.dirname(os.path.abspath(file))
        table["audio"] = [{"bytes": None, "path": _join(folder, p)} for p in table.pop(data.path_column)]
        tables.append(table)
    columns = set(tables[0])
    for file, table in zip(files, tables, strict=True):
        if set(table) != columns:
            raise UsageError(
                f"{key}: the lists of {source} have different columns ({', '.join(sorted(columns))} in {files[0]}, "
                f"{', '.join(sorted(table))} in {file})"
            )
    merged = {column: [v for table in tables for v in table[column]] for column in tables[0]}
    return merged, [a["path"] for a in merged["audio"]]


def _read_list(file: str, key: str, data: AudioDataArgs) -> datasets.Dataset:
    if os.path.getsize(file) == 0:
        raise UsageError(f"{key}: {file} is empty")
    builder = LIST_BUILDERS[Path(file).suffix.lower()]
    try:
        return datasets.load_dataset(builder, data_files=[file], split="train", cache_dir=data.cache_dir)
    except Exception as err:  # the builders' parse errors come from the user's file
        raise UsageError(f"{key}: could not read {file}: {_first_line(err)}") from err


def _join(folder: str, path) -> str:
    """An absolute path for a list entry; a blank entry becomes "", which the scan counts as missing."""
    if not isinstance(path, str) or not path.strip():
        return ""
    return os.path.normpath(os.path.join(folder, os.path.expanduser(path)))


def _audio_column(
    corpus: datasets.Dataset | datasets.IterableDataset,
    source: str,
    key: str,
    data: AudioDataArgs,
    base: str | None,
    streaming: bool,
) -> tuple[datasets.Dataset | datasets.IterableDataset, list[str] | None]:
    """Name the audio column "audio" and make it `Audio(decode=False)`; in a local dataset folder, a path column
    (relative to the folder) will do instead."""
    try:
        columns = corpus.column_names or list(next(iter(corpus), {}))
    except Exception as err:
        raise UsageError(f"{key}: could not read {source}: {_first_line(err)}") from err
    if not columns:
        raise UsageError(f"{key}: {source} is empty")
    column = data.audio_column
    if column not in columns:
        if base is not None and data.path_column in columns and not streaming:
            table = corpus.to_dict()
            table.pop("audio", None)
            paths = [_join(base, p) for p in table.pop(data.path_column)]
            table = {"audio": [{"bytes": None, "path": p} for p in paths], **table}
            return datasets.Dataset.from_dict(table).cast_column("audio", datasets.Audio(decode=False)), paths
        raise UsageError(
            f"{key}: {source} has no column {column!r} (set data.audio_column); its columns are: {', '.join(columns)}"
        )
    feature = (corpus.features or {}).get(column)
    if feature is not None and not _audio_like(feature):
        raise UsageError(f"{key}: column {column!r} of {source} holds {feature}, not audio (set data.audio_column)")
    if column != "audio":
        if "audio" in columns:
            corpus = corpus.remove_columns("audio")
        corpus = corpus.rename_column(column, "audio")
    try:
        return corpus.cast_column("audio", datasets.Audio(decode=False)), None
    except Exception as err:
        raise UsageError(f"{key}: column {column!r} of {source} is not audio: {_first_line(err)}") from err


def _audio_like(feature) -> bool:
    if isinstance(feature, datasets.Audio):
        return True
    if isinstance(feature, datasets.Value):
        return feature.dtype in ("string", "large_string", "binary", "large_binary")
    return isinstance(feature, dict) and {"bytes", "path"} >= set(feature) and bool(feature)
