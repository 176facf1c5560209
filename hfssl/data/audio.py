"""Audio clips -> decoded, resampled training items: the header scan that drops bad clips, clip datasets, `load_audio`.

Where clips come from (folders, lists, parquet, Hub datasets, the synthetic corpus) is `hfssl.data.audio_sources`.
Audio is read with soundfile, never through `datasets`' own decoding: that needs torchcodec and FFmpeg libraries a
plain pip install lacks. Audio columns therefore stay `Audio(decode=False)` ({"bytes", "path"}) throughout.

Map-style sources are scanned once (`scan_audio`): a cached `datasets.map` reads every clip's header, and clips that
cannot train (corrupt, empty, non-finite, too short...) are dropped and counted in one warning line per reason, so a
bad file never stops an epoch halfway. Streamed sources are checked the same way as clips go by (`StreamedClips`).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import islice

import datasets
import numpy as np
import soundfile as sf
import torch
import torchaudio.functional
from datasets.distributed import split_dataset_by_node
from datasets.fingerprint import Hasher

from hfssl.config import AudioDataArgs
from hfssl.data.audio_sources import resolve_source, source_dataset
from hfssl.data.stream import StreamPart
from hfssl.data.text import _first_line
from hfssl.errors import UsageError

logger = logging.getLogger(__name__)

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
    "truncated": "cut short (the header promises more samples than the file holds)",
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
    short_by = _missing_data(info.extra_info)
    if short_by:
        return "truncated", short_by, 0, 0
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


def _missing_data(header: str) -> str:
    """How much of its data a clip lacks, from libsndfile's header dump ("data : 32000 (should be 15978)" for a WAV
    cut off after 15,978 bytes of a 32,000-byte data chunk); "" when it is whole. libsndfile reads such a clip up to
    where it ends without an error."""
    for line in header.splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == "data" and "(should be" in rest:
            promised, _, held = rest.partition("(should be")
            return f"{held.strip(' )')} of {promised.strip()} data bytes"
    return ""


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
    corpus, paths = source_dataset(source, key, data, split or data.hub_split, seed, data.synthetic_utterances)
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
        corpus, paths = source_dataset(data.validation, "data.validation", data, split, seed + 1, count)
        return _scan(corpus, paths, data.validation, "data.validation", data, min_samples)
    if data.hub_validation_split and data.train != "synthetic":
        resolved = resolve_source(data.train, "data.train")
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
    stream, _ = source_dataset(
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
        resolved = resolve_source(data.train, "data.train")
        if resolved is not None and resolved[0] in ("files", "folder"):
            count = len(resolved[1] if resolved[0] == "files" else resolved[1][1])
        else:
            split = (clips.stream.info.splits or {}).get(data.hub_split)
            count = split.num_examples if split is not None else None
    if not count:
        return None, f"unknown: the stream does not say how many clips it holds ({seen})"
    count -= 0 if data.validation else data.validation_clips
    return per_clip * count, f"estimate: {seen} x {count:,} clips"
