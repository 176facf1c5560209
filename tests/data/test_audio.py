import io
import json
import logging
import os

import datasets
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from hfssl.config import AudioDataArgs
from hfssl.data import audio as audio_data
from hfssl.data.audio import (
    AudioClips,
    StreamedClips,
    decode_audio,
    estimate_seconds,
    load_audio,
    scan_audio,
)
from hfssl.errors import UsageError

SR = 16000


def tone(seconds: float, sr: int = SR, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    wave = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return wave if channels == 1 else np.stack([wave * (c + 1) / channels for c in range(channels)], axis=1)


def write(path, seconds: float = 1.0, sr: int = SR, freq: float = 440.0, channels: int = 1, **kwargs):
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, tone(seconds, sr, freq, channels), sr, **kwargs)
    return path


def wav_bytes(seconds: float, sr: int = SR, freq: float = 440.0) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, tone(seconds, sr, freq), sr, format="WAV")
    return buffer.getvalue()


def args(tmp_path, train, **kwargs) -> AudioDataArgs:
    defaults = {"min_seconds": 0.1, "max_seconds": 2.0, "batch_seconds": 4.0, "cache_dir": str(tmp_path / "cache")}
    return AudioDataArgs(train=str(train), **(defaults | kwargs))


def paths_of(dataset: datasets.Dataset) -> list[str]:
    return [a["path"] for a in dataset["audio"]]


def folder(tmp_path, n: int = 4, name: str = "clips") -> str:
    root = tmp_path / name
    for i in range(n):
        write(root / f"c{i}.wav", seconds=0.2 + 0.1 * i, freq=300 + 50 * i)
    return str(root)


# --------------------------------------------------------------------------- sources


def test_folder_is_scanned_recursively_with_durations_and_rates(tmp_path):
    root = tmp_path / "audio"
    write(root / "a.wav", 0.5)
    write(root / "deep" / "er" / "b.flac", 0.25, sr=8000)
    write(root / "c.ogg", 1.0, sr=22050)
    write(root / "d.mp3", 1.0)
    (root / "notes.txt").write_text("not audio")
    scanned = scan_audio(str(root), "data.train", args(tmp_path, root))
    assert set(scanned.column_names) == {"audio", "duration", "sampling_rate"}
    assert [os.path.basename(p) for p in paths_of(scanned)] == ["a.wav", "c.ogg", "d.mp3", "b.flac"]
    assert list(scanned["sampling_rate"]) == [SR, 22050, SR, 8000]
    durations = list(scanned["duration"])
    assert durations[0] == pytest.approx(0.5) and durations[1] == pytest.approx(1.0)
    assert durations[2] == pytest.approx(1.0, abs=0.1)  # MP3 pads with encoder delay
    assert durations[3] == pytest.approx(0.25)
    assert scanned.features["audio"] == datasets.Audio(decode=False)


def test_labels_from_class_subfolders(tmp_path):
    root = tmp_path / "classes"
    for label in ("cat", "dog"):
        for i in range(2):
            write(root / label / f"{label}{i}.wav", 0.3)
    scanned = scan_audio(str(root), "data.train", args(tmp_path, root))
    assert list(scanned["label"]) == ["cat", "cat", "dog", "dog"]
    assert all(
        os.path.basename(p).startswith(label) for p, label in zip(paths_of(scanned), scanned["label"], strict=True)
    )
    clips = AudioClips(scanned, SR, columns=("label",))
    assert clips[2]["label"] == "dog" and clips[2]["input_values"].dtype == np.float32


def test_files_at_mixed_depths_get_no_labels(tmp_path):
    root = tmp_path / "mixed"
    write(root / "cat" / "a.wav", 0.3)
    write(root / "b.wav", 0.3)
    assert "label" not in scan_audio(str(root), "data.train", args(tmp_path, root)).column_names


def test_labels_and_columns_from_metadata_csv(tmp_path):
    root = tmp_path / "meta"
    write(root / "x" / "one.wav", 0.3)
    write(root / "two.wav", 0.4)
    write(root / "unlisted.wav", 0.4)
    pd.DataFrame({"file_name": ["two.wav", "x/one.wav"], "label": ["b", "a"], "speaker": [7, 3]}).to_csv(
        root / "metadata.csv", index=False
    )
    scanned = scan_audio(str(root), "data.train", args(tmp_path, root))
    assert [os.path.basename(p) for p in paths_of(scanned)] == ["two.wav", "one.wav"]
    assert list(scanned["label"]) == ["b", "a"] and list(scanned["speaker"]) == [7, 3]
    assert list(scanned["duration"]) == pytest.approx([0.4, 0.3])


def test_metadata_without_file_name_names_its_columns(tmp_path):
    root = tmp_path / "meta"
    write(root / "a.wav", 0.3)
    pd.DataFrame({"file": ["a.wav"], "label": ["x"]}).to_csv(root / "metadata.csv", index=False)
    with pytest.raises(UsageError, match="no column 'file_name'.*file, label"):
        scan_audio(str(root), "data.train", args(tmp_path, root))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json"])
def test_lists_resolve_paths_against_their_folder_and_keep_columns(tmp_path, suffix):
    absolute = write(tmp_path / "elsewhere" / "abs.wav", 0.5)
    write(tmp_path / "lists" / "audio" / "rel.wav", 0.3)
    rows = [{"path": "audio/rel.wav", "text": "hello"}, {"path": absolute, "text": "world"}]
    listing = tmp_path / "lists" / f"list{suffix}"
    if suffix == ".csv":
        pd.DataFrame(rows).to_csv(listing, index=False)
    elif suffix == ".jsonl":
        listing.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        listing.write_text(json.dumps(rows))
    scanned = scan_audio(str(listing), "data.train", args(tmp_path, listing))
    assert paths_of(scanned) == [str(tmp_path / "lists" / "audio" / "rel.wav"), absolute]
    assert list(scanned["text"]) == ["hello", "world"]
    assert "path" not in scanned.column_names


def test_list_without_the_path_column_names_the_key_and_columns(tmp_path):
    write(tmp_path / "a.wav", 0.3)
    listing = tmp_path / "list.csv"
    pd.DataFrame({"file": ["a.wav"], "label": [1]}).to_csv(listing, index=False)
    with pytest.raises(UsageError, match=r"data\.train: .*no column 'path' \(set data\.path_column\).*file, label"):
        scan_audio(str(listing), "data.train", args(tmp_path, listing))
    scanned = scan_audio(str(listing), "data.train", args(tmp_path, listing, path_column="file"))
    assert list(scanned["label"]) == [1]


def audio_table(n: int, column: str = "audio") -> datasets.Dataset:
    table = {
        column: [{"bytes": wav_bytes(0.2 + 0.1 * i, freq=200 + 100 * i), "path": f"clip{i}.wav"} for i in range(n)],
        "label": [i % 2 for i in range(n)],
    }
    return datasets.Dataset.from_dict(table).cast_column(column, datasets.Audio(decode=False))


def test_parquet_file_glob_and_folder_with_an_audio_column(tmp_path):
    audio_table(3, "speech").to_parquet(str(tmp_path / "pq" / "part-0.parquet"))
    audio_table(2, "speech").to_parquet(str(tmp_path / "pq" / "part-1.parquet"))
    for source, n in [
        (tmp_path / "pq" / "part-0.parquet", 3),
        (tmp_path / "pq" / "*.parquet", 5),
        (tmp_path / "pq", 5),
    ]:
        scanned = scan_audio(str(source), "data.train", args(tmp_path, source, audio_column="speech"))
        assert len(scanned) == n and "speech" not in scanned.column_names
        assert list(scanned["label"]) == [0, 1, 0, 0, 1][:n]
        assert list(scanned["duration"])[:3] == pytest.approx([0.2, 0.3, 0.4])
        assert AudioClips(scanned, SR)[1]["input_values"].shape == (int(0.3 * SR),)


def test_missing_audio_column_names_the_key_and_columns(tmp_path):
    source = tmp_path / "data.parquet"
    audio_table(2, "speech").to_parquet(str(source))
    with pytest.raises(
        UsageError, match=r"no column 'audio' \(set data\.audio_column\); its columns are: speech, label"
    ):
        scan_audio(str(source), "data.train", args(tmp_path, source))
    with pytest.raises(UsageError, match="column 'label' .* not audio"):
        scan_audio(str(source), "data.train", args(tmp_path, source, audio_column="label"))


def test_local_dataset_repository_uses_its_splits_like_the_hub(tmp_path):
    repo = tmp_path / "repo"
    audio_table(6).to_parquet(str(repo / "data" / "train-00000-of-00001.parquet"))
    audio_table(2).to_parquet(str(repo / "data" / "validation-00000-of-00001.parquet"))
    train, validation = load_audio(args(tmp_path, repo, hub_validation_split="validation"))
    assert (len(train), len(validation)) == (6, 2)
    train, validation = load_audio(args(tmp_path, repo, validation=str(repo)))
    assert (len(train), len(validation)) == (6, 2)
    with pytest.raises(UsageError, match=r"data\.train: could not load .*repo.*split"):
        load_audio(args(tmp_path, repo, hub_split="nope"))


def test_glob_of_audio_files(tmp_path):
    root = folder(tmp_path, 4)
    write(tmp_path / "clips" / "x.flac", 0.3)
    scanned = scan_audio(os.path.join(root, "*.wav"), "data.train", args(tmp_path, root))
    assert [os.path.basename(p) for p in paths_of(scanned)] == ["c0.wav", "c1.wav", "c2.wav", "c3.wav"]


def test_missing_and_unsupported_sources(tmp_path):
    with pytest.raises(UsageError, match="data.train: .*nowhere: no such file or directory"):
        scan_audio(str(tmp_path / "nowhere"), "data.train", args(tmp_path, "x"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("hi")
    with pytest.raises(
        UsageError, match=r"directory .*empty holds no audio files \(\.wav, \.flac, \.ogg, \.mp3, \.opus"
    ):
        scan_audio(str(tmp_path / "empty"), "data.train", args(tmp_path, "x"))
    with pytest.raises(UsageError, match=r"matches no audio"):
        scan_audio(str(tmp_path / "*.wav"), "data.validation", args(tmp_path, "x"))
    with pytest.raises(UsageError, match="not a supported file"):
        scan_audio(str(tmp_path / "empty" / "readme.txt"), "data.train", args(tmp_path, "x"))


def test_synthetic_source(tmp_path):
    pytest.importorskip("hfssl.data.synthetic_audio", reason="hfssl.data.synthetic_audio is not in this checkout yet")
    data = args(tmp_path, "synthetic", synthetic_utterances=10, max_seconds=5.0, batch_seconds=10.0)
    train, validation = load_audio(data, seed=0)
    assert len(train) + len(validation) == 10
    assert {"speaker", "duration", "sampling_rate"} <= set(train.dataset.column_names)
    item = train[0]["input_values"]
    assert item.dtype == np.float32 and len(item) == train.full_lengths[0]


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("rate", [8000, 22050, 44100])
def test_resampling_keeps_duration_and_pitch(tmp_path, rate):
    path = write(tmp_path / f"tone{rate}.wav", 1.0, sr=rate, freq=1000.0)
    values = decode_audio({"bytes": None, "path": path}, SR)
    assert values.dtype == np.float32 and values.shape == (SR,)
    spectrum = np.abs(np.fft.rfft(values * np.hanning(len(values))))
    assert np.fft.rfftfreq(len(values), 1 / SR)[spectrum.argmax()] == pytest.approx(1000.0, abs=2.0)


def test_stereo_is_downmixed_to_the_channel_mean(tmp_path):
    path = write(tmp_path / "stereo.wav", 0.5, channels=2, subtype="FLOAT")
    values = decode_audio({"bytes": None, "path": path}, SR)
    np.testing.assert_allclose(values, tone(0.5, channels=2).mean(axis=1), atol=1e-6)


def test_bytes_win_over_the_path(tmp_path):
    values = decode_audio({"bytes": wav_bytes(0.25), "path": str(tmp_path / "gone.wav")}, SR)
    assert values.shape == (SR // 4,)


def test_decode_error_is_one_line(tmp_path):
    (tmp_path / "bad.wav").write_text("not audio")
    with pytest.raises(UsageError, match="could not decode .*bad.wav") as err:
        decode_audio({"bytes": None, "path": str(tmp_path / "bad.wav")}, SR)
    assert "\n" not in str(err.value)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3000), st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000]))))
def test_header_lengths_match_decoded_lengths(clips):
    for frames, rate in clips:
        buffer = io.BytesIO()
        sf.write(buffer, np.zeros(frames, dtype=np.float32), rate, format="WAV")
        decoded = decode_audio({"bytes": buffer.getvalue(), "path": None}, SR)
        assert len(decoded) == audio_data.resampled_length(frames, rate, SR)


def test_clips_lengths_come_from_headers_capped_but_items_are_whole(tmp_path):
    root = tmp_path / "rates"
    write(root / "a.wav", 0.7, sr=8000)
    write(root / "b.wav", 1.3, sr=44100)
    write(root / "c.wav", 0.9, sr=22050, channels=2)
    scanned = scan_audio(str(root), "data.train", args(tmp_path, root))
    clips = AudioClips(scanned, SR, max_seconds=1.0)
    decoded = [len(clips[i]["input_values"]) for i in range(len(clips))]
    assert list(clips.full_lengths) == decoded
    assert list(clips.lengths) == [min(n, SR) for n in decoded] and decoded[1] > SR
    with pytest.raises(UsageError, match="no column 'label'"):
        AudioClips(scanned, SR, columns=("label",))


# --------------------------------------------------------------------------- bad clips


def corrupt(path):  # a WAV header cut off before its data chunk
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(wav_bytes(0.5)[:30])


def truncated(path):  # a WAV cut off inside its data chunk: libsndfile reads what is there without an error
    os.makedirs(os.path.dirname(path), exist_ok=True)
    whole = wav_bytes(0.5)
    with open(path, "wb") as f:
        f.write(whole[: len(whole) // 2])


def zero_length(path):
    write(path, 0.0)


def nan_samples(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    values = tone(0.5)
    values[100] = np.nan
    sf.write(path, values, SR, subtype="FLOAT")


def inf_samples(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    values = tone(0.5).astype(np.float64)
    values[-1] = np.inf
    sf.write(path, values, SR, subtype="DOUBLE")


def text_as_wav(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("this is text, not audio\n" * 20)


def empty_file(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()


def too_short(path):
    write(path, 0.05)


BAD = {
    "corrupt": (corrupt, "corrupt"),
    "truncated": (truncated, "cut short (the header promises more samples than the file holds)"),
    "zero_length": (zero_length, "empty"),
    "empty_file": (empty_file, "empty"),
    "nan": (nan_samples, "with NaN/inf samples"),
    "inf": (inf_samples, "with NaN/inf samples"),
    "text": (text_as_wav, "in an unsupported format"),
    "short": (too_short, "shorter than 0.1 s"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_clip_is_skipped_and_counted(tmp_path, caplog, case):
    make, reason = BAD[case]
    root = folder(tmp_path, 2)
    make(os.path.join(root, "zz_bad.wav"))
    with caplog.at_level(logging.WARNING, logger="hfssl.data.audio"):
        scanned = scan_audio(root, "data.train", args(tmp_path, root))
    assert [os.path.basename(p) for p in paths_of(scanned)] == ["c0.wav", "c1.wav"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"data.train: skipped 1 of 3 clips of {root}: {reason}" in warnings[0]
    assert "zz_bad.wav" in warnings[0]


@pytest.mark.parametrize("case", BAD)
def test_only_bad_clips_is_a_one_line_error(tmp_path, case):
    make, reason = BAD[case]
    root = str(tmp_path / "bad")
    make(os.path.join(root, "a.wav"))
    make(os.path.join(root, "b.wav"))
    with pytest.raises(UsageError) as err:
        scan_audio(root, "data.train", args(tmp_path, root))
    assert str(err.value) == f"data.train: no usable audio in {root}: 2 {reason}"


def test_counts_of_several_reasons_in_one_error(tmp_path, caplog):
    root = str(tmp_path / "bad")
    for i in range(3):
        corrupt(os.path.join(root, f"c{i}.wav"))
    for i in range(2):
        write(os.path.join(root, f"s{i}.wav"), 0.3)
    with caplog.at_level(logging.WARNING), pytest.raises(UsageError) as err:
        scan_audio(root, "data.train", args(tmp_path, root, min_seconds=0.5))
    assert str(err.value) == f"data.train: no usable audio in {root}: 3 corrupt, 2 shorter than 0.5 s"
    assert len([r for r in caplog.records if "skipped" in r.getMessage()]) == 2


def test_min_samples_raises_the_minimum(tmp_path, caplog):
    root = str(tmp_path / "clips")
    write(os.path.join(root, "a.wav"), 0.2)
    write(os.path.join(root, "b.wav"), 0.4)
    data = args(tmp_path, root)
    assert len(scan_audio(root, "data.train", data)) == 2
    with caplog.at_level(logging.WARNING):
        scanned = scan_audio(root, "data.train", data, min_samples=int(0.3 * SR))
    assert [os.path.basename(p) for p in paths_of(scanned)] == ["b.wav"]
    assert "shorter than 0.3 s (first: " in caplog.text


def test_stereo_and_unusual_rates_are_kept(tmp_path, caplog):
    root = tmp_path / "odd"
    write(root / "stereo.wav", 0.5, channels=2)
    write(root / "narrow.wav", 0.5, sr=8000)
    write(root / "cd.flac", 0.5, sr=44100, channels=2)
    with caplog.at_level(logging.WARNING):
        clips = AudioClips(scan_audio(str(root), "data.train", args(tmp_path, root)), SR)
    assert "skipped" not in caplog.text
    assert [clips[i]["input_values"].shape for i in range(3)] == [(SR // 2,)] * 3


def test_missing_file_and_unsupported_extension_in_a_list(tmp_path, caplog):
    write(tmp_path / "ok.wav", 0.3)
    (tmp_path / "song.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    listing = tmp_path / "list.csv"
    pd.DataFrame({"path": ["ok.wav", "gone.wav", "song.m4a"]}).to_csv(listing, index=False)
    with caplog.at_level(logging.WARNING):
        scanned = scan_audio(str(listing), "data.train", args(tmp_path, listing))
    assert len(scanned) == 1
    assert "skipped 1 of 3 clips" in caplog.text and "missing (first: " in caplog.text and "gone.wav" in caplog.text
    assert "in an unsupported format (first: " in caplog.text and "song.m4a" in caplog.text


def test_unreadable_audio_behind_a_good_header_gives_silence_not_a_crash(tmp_path, caplog):
    root = tmp_path / "flac"
    path = write(root / "a.flac", 0.5)
    data = open(path, "rb").read()
    with open(path, "wb") as f:  # keep the header, zero the frames
        f.write(data[:200] + bytes(len(data) - 200))
    write(root / "b.flac", 0.5)
    clips = AudioClips(scan_audio(str(root), "data.train", args(tmp_path, root)), SR)
    with caplog.at_level(logging.WARNING):
        item = clips[0]["input_values"]
        clips[0]
    assert item.shape == (SR // 2,) and not item.any()
    assert caplog.text.count("using silence") == 1
    assert clips[1]["input_values"].any()


def test_the_scan_is_cached_until_a_file_changes(tmp_path, monkeypatch):
    root = folder(tmp_path, 3)
    data = args(tmp_path, root)
    first = scan_audio(root, "data.train", data)

    def fail(*args, **kwargs):
        raise AssertionError("scanned again")

    monkeypatch.setattr(audio_data, "_probe", fail)
    assert list(scan_audio(root, "data.train", data)["duration"]) == list(first["duration"])
    monkeypatch.undo()
    write(os.path.join(root, "c0.wav"), 1.5)
    assert scan_audio(root, "data.train", data)["duration"][0] == pytest.approx(1.5)


# --------------------------------------------------------------------------- train/validation


def test_held_out_validation_is_disjoint_and_seeded(tmp_path):
    root = folder(tmp_path, 20)
    data = args(tmp_path, root, validation_fraction=0.25)
    train, validation = load_audio(data, seed=0)
    assert (len(train), len(validation)) == (15, 5)
    train_paths, validation_paths = set(paths_of(train.dataset)), set(paths_of(validation.dataset))
    assert not train_paths & validation_paths and len(train_paths | validation_paths) == 20
    assert set(paths_of(load_audio(data, seed=0)[1].dataset)) == validation_paths
    assert set(paths_of(load_audio(data, seed=1)[1].dataset)) != validation_paths
    assert len(train.lengths) == 15


def test_one_clip_cannot_be_split(tmp_path):
    root = folder(tmp_path, 1)
    with pytest.raises(UsageError, match="only 1 usable clip"):
        load_audio(args(tmp_path, root))


def test_validation_source(tmp_path):
    train_root, validation_root = folder(tmp_path, 4, "train"), folder(tmp_path, 2, "valid")
    train, validation = load_audio(args(tmp_path, train_root, validation=validation_root))
    assert (len(train), len(validation)) == (4, 2)
    assert all(p.startswith(validation_root) for p in paths_of(validation.dataset))


# --------------------------------------------------------------------------- streaming


def test_streaming_yields_the_clips_of_the_map_style_path(tmp_path, caplog):
    root = folder(tmp_path, 6)
    corrupt(os.path.join(root, "c2_bad.wav"))
    validation_root = folder(tmp_path, 2, "valid")
    data = args(tmp_path, root, validation=validation_root)
    train, validation = load_audio(data)
    with caplog.at_level(logging.WARNING):
        streamed, streamed_validation = load_audio(args(tmp_path, root, validation=validation_root, streaming=True))
        items = list(streamed)
    assert isinstance(streamed, StreamedClips) and len(streamed_validation) == len(validation) == 2
    assert len(items) == len(train) == 6
    for i, item in enumerate(items):
        np.testing.assert_array_equal(item["input_values"], train[i]["input_values"])
    assert streamed.skipped == {"corrupt": 1}
    assert "skipping streamed clips corrupt (first: " in caplog.text


def test_streaming_holds_out_the_head_for_validation(tmp_path):
    root = folder(tmp_path, 5)
    train, validation = load_audio(args(tmp_path, root, streaming=True, validation_clips=2))
    assert [os.path.basename(p) for p in paths_of(validation.dataset)] == ["c0.wav", "c1.wav"]
    assert [len(item["input_values"]) for item in train] == [int(s * SR) for s in (0.4, 0.5, 0.6)]
    with pytest.raises(UsageError, match="data.validation_clips: .* only 5 clips"):
        load_audio(args(tmp_path, root, streaming=True, validation_clips=5))


def test_streaming_splits_by_node(tmp_path):
    root = folder(tmp_path, 6)
    train, _ = load_audio(args(tmp_path, root, streaming=True, validation=root))
    everything = [len(item["input_values"]) for item in train]
    parts = [[len(item["input_values"]) for item in train.split_by_node(rank, 2)] for rank in range(2)]
    assert sorted(parts[0] + parts[1]) == sorted(everything) and all(parts)


def test_streaming_from_a_parquet_dataset(tmp_path):
    source = tmp_path / "data.parquet"
    audio_table(4).to_parquet(str(source))
    train, validation = load_audio(args(tmp_path, source, streaming=True, validation_clips=1))
    assert len(validation) == 1
    assert [len(item["input_values"]) for item in train] == [int(s * SR) for s in (0.3, 0.4, 0.5)]


def test_streamed_audio_is_estimated_from_its_first_clips(tmp_path):
    """`--dry-run` on a stream: seconds per clip in the first clips' headers times the clips the source holds."""
    root = folder(tmp_path, 6)
    data = args(tmp_path, root, streaming=True, validation_clips=2)
    train, _ = load_audio(data)
    seconds, how = estimate_seconds(train, data, sample=100)
    assert seconds == pytest.approx(sum(len(item["input_values"]) for item in train) / SR)
    assert how.startswith("estimate: ") and how.endswith("x 4 clips")
