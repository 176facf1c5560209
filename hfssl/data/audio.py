"""Audio files and datasets -> decoded, resampled clips (`load_audio`), and batches built by duration.

A source is the embedded synthetic speech, a folder of audio files (the `audiofolder` layout: labels from class
subfolders or a metadata.csv), a .csv/.json/.jsonl list of file paths, a .parquet file or glob, a glob of audio files,
or a dataset with an audio column (a Hub name, or a local folder laid out like a Hub dataset repository).

Audio is read with soundfile, never through `datasets`' own decoding: that needs torchcodec and FFmpeg libraries a
plain pip install lacks. Audio columns therefore stay `Audio(decode=False)` ({"bytes", "path"}) throughout.

Map-style sources are scanned once (`scan_audio`): a cached `datasets.map` reads every clip's header, and clips that
cannot train (corrupt, empty, non-finite, too short...) are dropped and counted in one warning line per reason, so a
bad file never stops an epoch halfway. Streamed sources are checked the same way as clips go by (`StreamedClips`).
"""

from __future__ import annotations

import glob
import hashlib
import io
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path

import datasets
import numpy as np
import soundfile as sf
import torch
import torchaudio.functional
from datasets.distributed import split_dataset_by_node
from datasets.fingerprint import Hasher

from hfssl.config import AudioDataArgs
from hfssl.data.stream import StreamPart
from hfssl.data.text import _GLOB_CHARS, _first_line
from hfssl.errors import UsageError

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus")
LIST_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json"}
_DATA_FILES = (".parquet", ".arrow", ".csv", ".json", ".jsonl")  # what a local dataset repository may hold
_METADATA = ("metadata.csv", "metadata.jsonl")
_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")  # only these can hold NaN or inf
_SMALL_SCAN = 2_000  # below this many clips, starting scan processes costs more than it saves
_SCAN_VERSION = 1  # part of the scan cache key: bump it when the scan's checks or columns change
_UNSUPPORTED_CODES = (1, 4)  # libsndfile: format not recognised, unsupported encoding

Clips = torch.utils.data.Dataset | torch.utils.data.IterableDataset


# --------------------------------------------------------------------------- decoding


def decode_audio(audio: dict, sampling_rate: int) -> np.ndarray:
    """Decode one `Audio(decode=False)` value ({"bytes", "path"}; bytes win when both are set).

    Args:
        audio: the clip's bytes, or the path of its file.
        sampling_rate: the rate to return the clip at; other rates are resampled.

    Returns:
        The whole clip as a 1-D float32 array, mono (channels averaged), neither cropped nor normalised.

    Raises:
        UsageError: the clip cannot be read, with one line naming it.
    """
    try:
        with sf.SoundFile(_open(audio)) as f:
            rate = f.samplerate
            data = f.read(dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile's errors, a missing file: all the data's fault
        raise UsageError(f"could not decode {_name(audio)}: {_first_line(err)}") from None
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if rate != sampling_rate:
        resampled = torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(mono)), rate, sampling_rate)
        mono = resampled.numpy()
    return np.ascontiguousarray(mono, dtype=np.float32)


def _open(audio: dict):
    data = audio.get("bytes")
    return io.BytesIO(data) if data else audio.get("path")


def _name(audio: dict | None) -> str:
    return (audio or {}).get("path") or "a clip given as bytes"


def resampled_length(frames: np.ndarray | int, rate: np.ndarray | int, sampling_rate: int) -> np.ndarray:
    """Samples a clip of `frames` at `rate` has once resampled to `sampling_rate` (as `decode_audio` returns it)."""
    frames = np.asarray(frames, dtype=np.int64)
    return -(-frames * sampling_rate // np.asarray(rate, dtype=np.int64))


# --------------------------------------------------------------------------- checking clips


_REASONS = {  # reason -> how a count of such clips reads ("3 corrupt"), in the order they are reported
    "missing": "missing",
    "unsupported": "in an unsupported format",
    "corrupt": "corrupt",
    "empty": "empty",
    "nonfinite": "with NaN/inf samples",
    "short": "shorter than {min_seconds:g} s",
}


def _probe(audio: dict | None, min_seconds: float, min_samples: int, sampling_rate: int) -> tuple[str, str, int, int]:
    """(problem, detail, frames, rate) of one clip from its header: problem is "" for a usable clip, else a key of
    `_REASONS`. Float clips are decoded too, as only a full read finds NaN/inf."""
    audio = audio or {}
    data, path = audio.get("bytes"), audio.get("path")
    if data is not None and len(data) == 0:
        return "empty", "no bytes", 0, 0
    if data is None and (not path or not os.path.isfile(path)):
        return "missing", "no such file", 0, 0
    if data is None and os.path.getsize(path) == 0:
        return "empty", "0 bytes", 0, 0
    try:
        info = sf.info(_open(audio))
    except sf.LibsndfileError as err:
        problem = "unsupported" if err.code in _UNSUPPORTED_CODES else "corrupt"
        return problem, err.error_string.strip(), 0, 0
    except Exception as err:
        return "corrupt", _first_line(err), 0, 0
    frames, rate = int(info.frames), int(info.samplerate)
    if frames <= 0 or rate <= 0:
        return "empty", "no samples", 0, 0
    if info.subtype in _FLOAT_SUBTYPES:
        try:
            samples, _ = sf.read(_open(audio), dtype="float32")
        except Exception as err:
            return "corrupt", _first_line(err), 0, 0
        if not np.isfinite(samples).all():
            return "nonfinite", "", 0, 0
    if frames / rate < min_seconds or resampled_length(frames, rate, sampling_rate) < min_samples:
        return "short", f"{frames / rate:.3f} s", frames, rate
    return "", "", frames, rate


def _scan_batch(audios: list[dict], min_seconds: float, min_samples: int, sampling_rate: int) -> dict[str, list]:
    probes = [_probe(audio, min_seconds, min_samples, sampling_rate) for audio in audios]
    return {
        "duration": [frames / rate if rate else 0.0 for _, _, frames, rate in probes],
        "sampling_rate": [rate for _, _, _, rate in probes],
        "problem": [problem for problem, _, _, _ in probes],
        "problem_detail": [detail for _, detail, _, _ in probes],
    }


def _min_seconds(data: AudioDataArgs, min_samples: int) -> float:
    """The shortest usable clip in seconds: `data.min_seconds`, or longer when `min_samples` asks for more."""
    return max(data.min_seconds, min_samples / data.sampling_rate)


def _reason_text(reason: str, data: AudioDataArgs, min_samples: int) -> str:
    return _REASONS[reason].format(min_seconds=_min_seconds(data, min_samples))


# --------------------------------------------------------------------------- sources


def _resolve(source: str, key: str) -> tuple[str, object] | None:
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


def _source_dataset(
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
    resolved = _resolve(source, key)
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


# --------------------------------------------------------------------------- scanning


def scan_audio(
    source: str, key: str, data: AudioDataArgs, min_samples: int = 0, split: str | None = None, seed: int = 0
) -> datasets.Dataset:
    """Load a source and keep its usable clips, each with its duration and rate read from its header.

    Args:
        source: any form `data.train` takes.
        key: the setting that named `source`, for messages ("data.train").
        data: the audio settings (columns, `min_seconds`, `sampling_rate`, `num_proc`, `cache_dir`, Hub options).
        min_samples: clips with fewer samples than this at `data.sampling_rate` are skipped too.
        split: the split of a Hub dataset or local dataset folder (default `data.hub_split`).
        seed: seeds the synthetic corpus.

    Returns:
        A dataset with the columns "audio" (`Audio(decode=False)`), "duration" (seconds), "sampling_rate" (the
        file's) and the source's other columns (e.g. "label"). The scan is cached: a second scan of unchanged
        files (same sizes and times) with the same settings reads the cache.

    Raises:
        UsageError: a missing or empty source, a missing column, or no usable clip at all.
    """
    corpus, paths = _source_dataset(source, key, data, split or data.hub_split, seed, data.synthetic_utterances)
    return _scan(corpus, paths, source, key, data, min_samples)


def _scan(
    corpus: datasets.Dataset, paths: list[str] | None, source: str, key: str, data: AudioDataArgs, min_samples: int
) -> datasets.Dataset:
    if len(corpus) == 0:
        raise UsageError(f"{key}: {source} holds no clips")
    settings = (_SCAN_VERSION, data.min_seconds, min_samples, data.sampling_rate)
    fingerprint = Hasher.hash((corpus._fingerprint, settings, [_stat(p) for p in paths or []]))
    folder = os.path.join(data.cache_dir or datasets.config.HF_DATASETS_CACHE, "hfssl_audio_scans")
    os.makedirs(folder, exist_ok=True)
    scanned = corpus.map(
        _scan_batch,
        batched=True,
        batch_size=100,
        input_columns=["audio"],
        fn_kwargs={"min_seconds": data.min_seconds, "min_samples": min_samples, "sampling_rate": data.sampling_rate},
        num_proc=_num_proc(data, len(corpus)),
        new_fingerprint=fingerprint,
        cache_file_name=os.path.join(folder, f"{fingerprint}.arrow"),
        desc=f"Scanning {key} audio headers",
    )
    problems = list(scanned["problem"])
    good = [i for i, problem in enumerate(problems) if not problem]
    counts = Counter(problem for problem in problems if problem)
    for reason in _REASONS:
        if reason in counts:
            first = problems.index(reason)
            example = _name(scanned.select_columns(["audio"])[first]["audio"])
            detail = scanned[first]["problem_detail"]
            logger.warning(
                f"{key}: skipped {counts[reason]} of {len(problems)} clips of {source}: "
                f"{_reason_text(reason, data, min_samples)} (first: {example}{': ' + detail if detail else ''})"
            )
    if not good:
        found = ", ".join(f"{counts[r]} {_reason_text(r, data, min_samples)}" for r in _REASONS if r in counts)
        raise UsageError(f"{key}: no usable audio in {source}: {found}")
    if len(good) < len(problems):
        scanned = scanned.select(good)
    return scanned.remove_columns(["problem", "problem_detail"])


def _stat(path: str) -> tuple[str, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return path, stat.st_size, stat.st_mtime_ns


def _num_proc(data: AudioDataArgs, clips: int) -> int:
    if data.num_proc is not None:
        return data.num_proc
    if clips < _SMALL_SCAN:
        return 1
    return min(os.cpu_count() or 1, 8)


# --------------------------------------------------------------------------- clips


class AudioClips(torch.utils.data.Dataset):
    """A scanned dataset as training items: `{"input_values": float32 1-D array}`, the whole clip decoded, mono and
    resampled to `sampling_rate`; neither cropped (the collator crops) nor normalised (the feature extractor does).

    Args:
        dataset: the output of `scan_audio` (columns "audio", "duration", "sampling_rate", ...).
        sampling_rate: the rate items are returned at.
        max_seconds: caps `lengths` at this duration, as the collator will crop longer clips (None: no cap).
        columns: other columns to return in each item as they are (e.g. ("label",)).

    `lengths` holds every item's length in samples at `sampling_rate` (capped), computed from the headers without
    decoding, for `DurationBatchSampler`. A clip whose header was fine but whose audio fails to decode gives
    silence of its length and one warning, rather than stopping the epoch.
    """

    def __init__(
        self,
        dataset: datasets.Dataset,
        sampling_rate: int,
        max_seconds: float | None = None,
        columns: Sequence[str] = (),
    ):
        missing = [c for c in columns if c not in dataset.column_names]
        if missing:
            raise UsageError(
                f"the audio data has no column {missing[0]!r}; its columns are: {', '.join(dataset.column_names)}"
            )
        self.dataset, self.sampling_rate, self.max_seconds = dataset, sampling_rate, max_seconds
        self.columns = tuple(columns)
        self.rows = dataset.select_columns(["audio", *self.columns])
        rates = np.asarray(dataset["sampling_rate"], dtype=np.int64)
        frames = np.rint(np.asarray(dataset["duration"], dtype=np.float64) * rates).astype(np.int64)
        self.full_lengths = resampled_length(frames, rates, sampling_rate)
        self.lengths = self.full_lengths
        if max_seconds is not None:
            self.lengths = np.minimum(self.full_lengths, round(max_seconds * sampling_rate))
        self._failed: set[int] = set()

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        row = self.rows[index]
        try:
            values = decode_audio(row["audio"], self.sampling_rate)
        except UsageError as err:
            if index not in self._failed:
                self._failed.add(index)
                logger.warning(f"{err}; using silence of its length instead")
            values = np.zeros(int(self.full_lengths[index]), dtype=np.float32)
        return {"input_values": values, **{c: row[c] for c in self.columns}}


class StreamedClips(torch.utils.data.IterableDataset):
    """A streamed source as training items (the same items `AudioClips` gives, in the same order), each clip's
    header checked as it goes by. Unusable clips are skipped and counted in `skipped` (reason -> count, per
    process and DataLoader worker), with one warning for the first of each reason.

    Training reads it through `DurationBatches.batches`, one part per process and DataLoader worker (see
    `hfssl.data.stream`); `part()` gives such a part, whose `stream.state_dict()` says where it stands. Iterated as it
    is inside DataLoader workers, the datasets stream shards itself across them; `clips.split_by_node(rank,
    world_size)` gives a rank its own part.
    """

    def __init__(
        self,
        stream: datasets.IterableDataset,
        sampling_rate: int,
        min_seconds: float,
        min_samples: int = 0,
        columns: Sequence[str] = (),
        name: str = "data.train",
    ):
        self.stream, self.sampling_rate, self.min_seconds, self.min_samples = (
            stream,
            sampling_rate,
            min_seconds,
            min_samples,
        )
        self.columns, self.name = tuple(columns), name
        self.skipped: Counter[str] = Counter()

    def split_by_node(self, rank: int, world_size: int) -> StreamedClips:
        """This rank's part of the stream (`datasets.distributed.split_dataset_by_node`): whole shards when the
        stream has a multiple of `world_size` shards, else every `world_size`-th clip."""
        part = split_dataset_by_node(self.stream, rank=rank, world_size=world_size)
        return StreamedClips(part, self.sampling_rate, self.min_seconds, self.min_samples, self.columns, self.name)

    def part(self, part: int, parts: int, state: dict | None = None) -> StreamedClips:
        """Part `part` of `parts` of the stream (a `StreamPart`), from `state` on (None: its start)."""
        stream = StreamPart(self.stream, part, parts, state)
        return StreamedClips(stream, self.sampling_rate, self.min_seconds, self.min_samples, self.columns, self.name)

    def __iter__(self) -> Iterator[dict]:
        for example in self.stream:
            audio = example["audio"]
            problem, detail, _, _ = _probe(audio, self.min_seconds, self.min_samples, self.sampling_rate)
            if not problem:
                try:
                    values = decode_audio(audio, self.sampling_rate)
                except UsageError as err:
                    problem, detail = "corrupt", str(err)
            if problem:
                self.skipped[problem] += 1
                if self.skipped[problem] == 1:
                    reason = _REASONS[problem].format(min_seconds=self.min_seconds)
                    logger.warning(
                        f"{self.name}: skipping streamed clips {reason} (first: {_name(audio)}"
                        f"{': ' + detail if detail else ''})"
                    )
                continue
            yield {"input_values": values, **{c: example[c] for c in self.columns}}


# --------------------------------------------------------------------------- loading


def load_audio(data: AudioDataArgs, seed: int = 0, min_samples: int = 0) -> tuple[Clips, AudioClips]:
    """The training and validation clips named by `data`, for pretraining.

    Args:
        data: `data.train`/`data.validation` name the sources (see `scan_audio`).
        seed: seeds the synthetic corpus and the held-out validation split.
        min_samples: the fewest samples (at `data.sampling_rate`) a clip needs, e.g. for the masked spans to fit.

    Returns:
        `(train, validation)`: `AudioClips` (lengths capped at `data.max_seconds`), or for `data.streaming` a
        `StreamedClips` to train on. Validation is always `AudioClips`: `data.validation` (a Hub name in it is read
        from `data.hub_validation_split`, else its "validation" split), a Hub training source's
        `data.hub_validation_split`, or else held out of the training clips: a seeded `data.validation_fraction`,
        or the first `data.validation_clips` of a stream.

    Raises:
        UsageError: see `scan_audio`; also a source too small to hold out validation from.
    """
    if data.streaming:
        return _load_streaming(data, seed, min_samples)
    train = scan_audio(data.train, "data.train", data, min_samples, data.hub_split, seed)
    validation = _validation(data, seed, min_samples)
    if validation is None:
        if len(train) < 2:
            raise UsageError(
                f"data.train: {data.train} has only {len(train)} usable clip, too few to hold out a validation split; "
                "add clips or set data.validation"
            )
        split = train.train_test_split(test_size=data.validation_fraction, seed=seed)
        train, validation = split["train"], split["test"]
    return _clips(train, data), _clips(validation, data)


def _validation(data: AudioDataArgs, seed: int, min_samples: int) -> datasets.Dataset | None:
    if data.validation:
        count = max(1, round(data.synthetic_utterances * data.validation_fraction))
        split = data.hub_validation_split or "validation"
        # seed + 1: a synthetic validation corpus must not repeat the training utterances
        corpus, paths = _source_dataset(data.validation, "data.validation", data, split, seed + 1, count)
        return _scan(corpus, paths, data.validation, "data.validation", data, min_samples)
    if data.hub_validation_split and data.train != "synthetic":
        resolved = _resolve(data.train, "data.train")
        if resolved is None or resolved[0] == "repo":  # a dataset with splits
            return scan_audio(data.train, "data.hub_validation_split", data, min_samples, data.hub_validation_split)
    return None


def _clip_key(audio: dict | None) -> str:
    """A clip's identity: its bytes' digest when it has bytes (they win when decoding), else its path."""
    audio = audio or {}
    if audio.get("bytes"):
        return hashlib.sha1(audio["bytes"]).hexdigest()
    return f"path:{audio.get('path')}"


def _not_held_out(audio: dict, held_out: set[str]) -> bool:
    return _clip_key(audio) not in held_out


def _clips(dataset: datasets.Dataset, data: AudioDataArgs) -> AudioClips:
    return AudioClips(dataset, data.sampling_rate, max_seconds=data.max_seconds)


def _load_streaming(data: AudioDataArgs, seed: int, min_samples: int) -> tuple[StreamedClips, AudioClips]:
    stream, _ = _source_dataset(
        data.train, "data.train", data, data.hub_split, seed, data.synthetic_utterances, streaming=True
    )
    validation = _validation(data, seed, min_samples)
    if validation is None:
        head = list(stream.take(data.validation_clips))
        # from_list with the Audio feature would encode each clip, which imports torchcodec; an Arrow cast does not
        corpus = datasets.Dataset.from_list(head).cast_column("audio", datasets.Audio(decode=False))
        paths = [a["path"] for a in corpus["audio"] if not a["bytes"] and a["path"]]
        validation = _scan(corpus, paths, data.train, "data.train", data, min_samples)
        # Filtered out by content, not skipped by count: a stream split by shards across processes and DataLoader
        # workers would skip a share of the count in every part, training on held-out clips and dropping others.
        held_out = {_clip_key(example["audio"]) for example in head}
        stream = stream.filter(_not_held_out, input_columns=["audio"], fn_kwargs={"held_out": held_out})
        if next(iter(stream), None) is None:
            raise UsageError(
                f"data.validation_clips: the streamed audio {data.train} has only {len(head)} clips, all held out "
                "for validation, leaving none to train on; lower data.validation_clips or set data.validation"
            )
    train = StreamedClips(stream, data.sampling_rate, _min_seconds(data, min_samples), min_samples)
    return train, _clips(validation, data)


def estimate_seconds(clips: StreamedClips, data: AudioDataArgs, sample: int = 200) -> tuple[float | None, str]:
    """An estimate of a streamed training source's audio from its first `sample` clips' headers: seconds per usable
    clip times the clips the source holds.

    Returns:
        `(seconds or None when the source does not say how many clips it holds, how the number was found)`.
    """
    durations = []
    for example in islice(clips.stream, sample):
        problem, _, frames, rate = _probe(example["audio"], clips.min_seconds, clips.min_samples, clips.sampling_rate)
        if not problem:
            durations.append(frames / rate)
    per_clip = sum(durations) / max(1, len(durations))
    seen = f"{per_clip:,.2f} s per usable clip in the first {sample:,}"
    count = None
    if data.train == "synthetic":
        count = data.synthetic_utterances
    else:
        resolved = _resolve(data.train, "data.train")
        if resolved is not None and resolved[0] in ("files", "folder"):
            count = len(resolved[1] if resolved[0] == "files" else resolved[1][1])
        else:
            split = (clips.stream.info.splits or {}).get(data.hub_split)
            count = split.num_examples if split is not None else None
    if not count:
        return None, f"unknown: the stream does not say how many clips it holds ({seen})"
    count -= 0 if data.validation else data.validation_clips
    return per_clip * count, f"estimate: {seen} x {count:,} clips"


# --------------------------------------------------------------------------- batching by duration


class EpochPermutation(torch.utils.data.Sampler[int]):
    """`range(n)` in an order fixed by `(seed, epoch)`: shuffled, or in order when `shuffle` is False.

    `DurationBatchSampler` keeps one as its `.sampler`, where Accelerate's `DataLoaderShard.set_epoch` reaches it
    (also through the `BatchSamplerShard` that wraps the batch sampler when several processes train).
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generator(self, stream: int) -> np.random.Generator:
        """A generator for this (seed, epoch); `stream` tells apart its uses within one epoch."""
        return np.random.default_rng([self.seed & 0xFFFFFFFF, self.seed >> 32 & 0xFFFFFFFF, self.epoch, stream])

    def permutation(self) -> np.ndarray:
        return self.generator(0).permutation(self.n) if self.shuffle else np.arange(self.n)

    def __iter__(self) -> Iterator[int]:
        return iter(self.permutation().tolist())

    def __len__(self) -> int:
        return self.n


class DurationBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of indices whose padded size stays within a budget of samples: `len(batch) * longest <=
    max_samples_per_batch` (a clip longer than the budget alone makes a batch of one).

    Shuffled (training): the indices are shuffled by `(seed, epoch)`, cut into chunks of about `chunk_batches`
    batches, each chunk sorted by length and cut greedily, so a batch holds clips of similar length and little
    padding; then the batch order is shuffled. Not shuffled (evaluation): all indices sorted by length, cut the
    same way, in that fixed order. Every index appears exactly once per epoch; `len()` is exact for the current
    epoch (set with `set_epoch`).

    With Accelerate, pass it as a DataLoader's `batch_sampler`; `batch_size` is None so that, with several
    processes, `BatchSamplerShard` deals whole batches to the processes instead of splitting them.
    """

    batch_size = None
    drop_last = False

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        max_samples_per_batch: int,
        seed: int = 0,
        shuffle: bool = True,
        chunk_batches: int = 100,
    ):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if self.lengths.ndim != 1:
            raise ValueError(f"lengths must be 1-D, got shape {self.lengths.shape}")
        if max_samples_per_batch <= 0:
            raise ValueError(f"max_samples_per_batch must be positive, got {max_samples_per_batch}")
        if chunk_batches <= 0:
            raise ValueError(f"chunk_batches must be positive, got {chunk_batches}")
        self.max_samples_per_batch, self.shuffle = int(max_samples_per_batch), shuffle
        self.sampler = EpochPermutation(len(self.lengths), seed, shuffle)
        typical = max(1, int(np.mean(np.minimum(self.lengths, max_samples_per_batch)))) if len(self.lengths) else 1
        self.chunk_size = chunk_batches * max(1, self.max_samples_per_batch // typical)
        self._cached: tuple[int, list[list[int]]] | None = None

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def batches(self) -> list[list[int]]:
        """This epoch's batches, in order."""
        if self._cached is not None and self._cached[0] == self.epoch:
            return self._cached[1]
        order = self.sampler.permutation()
        if not self.shuffle:
            batches = _cut(order[np.argsort(self.lengths, kind="stable")], self.lengths, self.max_samples_per_batch)
        else:
            batches = []
            for start in range(0, len(order), self.chunk_size):
                chunk = order[start : start + self.chunk_size]
                chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
                batches.extend(_cut(chunk, self.lengths, self.max_samples_per_batch))
            batches = [batches[i] for i in self.sampler.generator(1).permutation(len(batches))]
        self._cached = (self.epoch, batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


def _cut(sorted_indices: Iterable[int], lengths: np.ndarray, budget: int) -> list[list[int]]:
    """Cut indices sorted by ascending length into batches whose padded size stays within `budget`."""
    batches, batch = [], []
    for index in sorted_indices:
        length = int(lengths[index])  # the longest so far: the indices come sorted
        if batch and (len(batch) + 1) * length > budget:
            batches.append(batch)
            batch = []
        batch.append(int(index))
    if batch:
        batches.append(batch)
    return batches


def duration_batches(
    items: Iterable[dict],
    max_samples_per_batch: int,
    buffer_size: int = 1000,
    max_samples: int | None = None,
    seed: int | None = 0,
) -> Iterator[list[dict]]:
    """Batch a stream of items by duration: read `buffer_size` items, sort them by length, cut batches under the
    same padded budget as `DurationBatchSampler` and yield them (in an order shuffled by `seed`; None: shortest
    first), then read the next buffer.

    Args:
        items: dicts with "input_values" (e.g. a `StreamedClips`).
        max_samples_per_batch: the budget, padding included.
        buffer_size: items sorted together; more gives less padding but more memory.
        max_samples: lengths are counted at most this (the collator crops longer clips).
        seed: seeds the batch order within each buffer.
    """
    rng = np.random.default_rng(seed) if seed is not None else None
    buffer: list[dict] = []
    for item in items:
        buffer.append(item)
        if len(buffer) >= buffer_size:
            yield from _buffer_batches(buffer, max_samples_per_batch, max_samples, rng)
            buffer = []
    if buffer:
        yield from _buffer_batches(buffer, max_samples_per_batch, max_samples, rng)


def _buffer_batches(
    buffer: list[dict], budget: int, max_samples: int | None, rng: np.random.Generator | None
) -> Iterator[list[dict]]:
    lengths = np.array([len(item["input_values"]) for item in buffer], dtype=np.int64)
    if max_samples is not None:
        lengths = np.minimum(lengths, max_samples)
    batches = _cut(np.argsort(lengths, kind="stable"), lengths, budget)
    order = rng.permutation(len(batches)) if rng is not None else range(len(batches))
    for i in order:
        yield [buffer[j] for j in batches[i]]


class DurationBatches(torch.utils.data.IterableDataset):
    """`duration_batches` over an iterable of items, as a dataset of batches: use it with
    `DataLoader(batches, batch_size=None, collate_fn=collator)`, which hands each list of items to the collator."""

    def __init__(
        self,
        items: Iterable[dict],
        max_samples_per_batch: int,
        buffer_size: int = 1000,
        max_samples: int | None = None,
        seed: int | None = 0,
    ):
        self.items, self.max_samples_per_batch, self.buffer_size = items, max_samples_per_batch, buffer_size
        self.max_samples, self.seed = max_samples, seed

    def __iter__(self) -> Iterator[list[dict]]:
        return duration_batches(self.items, self.max_samples_per_batch, self.buffer_size, self.max_samples, self.seed)

    def batches(self, part: int, parts: int, state: dict | None = None) -> Iterator[tuple[list[dict], dict]]:
        """Part `part` of `parts` of a `StreamedClips` in batches, each with the state after it: where the clips stood
        when its buffer began, the batch-order generator's state then, and the batches of the buffer already made.
        Given that state, the buffer is read again and the next batch follows."""
        clips = self.items.part(part, parts, state["clips"] if state else None)
        rng = np.random.default_rng([self.seed, part]) if self.seed is not None else None
        if state and rng is not None:
            rng.bit_generator.state = state["rng"]
        done = state["taken"] if state else 0
        items = iter(clips)
        while True:
            where, order = clips.stream.state_dict(), rng.bit_generator.state if rng is not None else None
            buffer = list(islice(items, self.buffer_size))
            if not buffer:
                return
            made = list(_buffer_batches(buffer, self.max_samples_per_batch, self.max_samples, rng))
            for taken in range(done + 1, len(made) + 1):
                yield made[taken - 1], {"clips": where, "rng": order, "taken": taken}
            done = 0
