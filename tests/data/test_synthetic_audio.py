import hashlib
import io
import os
import subprocess
import sys
from collections import Counter

import datasets
import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from hfssl.data.synthetic_audio import (
    KEYWORD_SPEAKERS,
    KEYWORDS,
    PRETRAIN_SPEAKERS,
    SAMPLING_RATE,
    synthetic_keywords,
    synthetic_utterances,
)


@pytest.fixture(scope="module")
def utterances():
    return synthetic_utterances(20, seed=0)


@pytest.fixture(scope="module")
def keywords():
    return synthetic_keywords(400, seed=0)


def _decode(audio: dict) -> tuple[np.ndarray, int]:
    return sf.read(io.BytesIO(audio["bytes"]), dtype="float32")


def _digest(dataset: datasets.Dataset) -> str:
    return hashlib.sha256(b"".join(a["bytes"] for a in dataset["audio"])).hexdigest()


def test_clip_i_is_the_same_however_many_are_generated(utterances, keywords):
    assert synthetic_utterances(5, seed=0)["audio"] == utterances["audio"][:5]
    few = synthetic_keywords(15, seed=0)
    assert few["audio"] == keywords["audio"][:15]
    assert few["label"] == keywords["label"][:15]


def test_same_arguments_same_bytes_in_another_process(utterances):
    # Another hash seed: nothing may depend on Python's hash() or on the process.
    script = (
        "import hashlib; from hfssl.data.synthetic_audio import synthetic_utterances as s; "
        "print(hashlib.sha256(b''.join(a['bytes'] for a in s(3, seed=0)['audio'])).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == _digest(utterances.select(range(3)))


def test_other_seed_other_audio(utterances, keywords):
    other = synthetic_utterances(5, seed=1)
    assert all(a["bytes"] != b["bytes"] for a, b in zip(other["audio"], utterances["audio"][:5], strict=True))
    other = synthetic_keywords(5, seed=1)
    assert all(a["bytes"] != b["bytes"] for a, b in zip(other["audio"], keywords["audio"][:5], strict=True))


def test_columns_are_undecoded_audio_a_class_label_and_numbers(utterances, keywords):
    assert utterances.column_names == ["audio", "speaker", "duration"]
    assert keywords.column_names == ["audio", "label", "speaker", "duration"]
    for dataset in (utterances, keywords):
        assert isinstance(dataset.features["audio"], datasets.Audio)
        assert not dataset.features["audio"].decode
        assert [a["path"] for a in dataset["audio"][:2]] == ["synthetic-000000.wav", "synthetic-000001.wav"]
    assert keywords.features["label"].names == list(KEYWORDS)
    assert synthetic_keywords(0).features == keywords.features
    assert synthetic_utterances(0).features == utterances.features


@pytest.mark.parametrize("which", ["utterances", "keywords"])
def test_audio_decodes_to_16_khz_mono_speech_like_levels(which, request):
    dataset = request.getfixturevalue(which).select(range(20))
    for row in dataset:
        audio, rate = _decode(row["audio"])
        assert rate == SAMPLING_RATE
        assert audio.ndim == 1 and audio.dtype == np.float32
        assert np.isfinite(audio).all()
        assert len(audio) / rate == pytest.approx(row["duration"], abs=1e-9)
        assert np.abs(audio).max() < 0.99, "clipped"
        rms_db = 10 * np.log10(np.mean(audio**2))
        assert -40 < rms_db < -10
        # Speech comes in bursts: the loudest 50 ms are far louder than the quietest.
        frames = audio[: len(audio) // 800 * 800].reshape(-1, 800)
        energy_db = 10 * np.log10(np.mean(frames**2, axis=1))
        assert energy_db.max() - energy_db.min() > 5


def test_utterances_last_one_to_four_seconds_and_vary(utterances):
    durations = np.array(utterances["duration"])
    assert durations.min() >= 1.0 and durations.max() < 4.6
    assert durations.std() > 0.3
    assert set(utterances["speaker"]) <= set(PRETRAIN_SPEAKERS)
    assert len(set(utterances["speaker"])) > 10


def test_keywords_are_balanced_and_spoken_by_unseen_speakers(keywords):
    assert Counter(keywords["label"]) == dict.fromkeys(range(len(KEYWORDS)), 40)
    assert keywords["label"][:10] != list(range(10)), "order is not shuffled"
    assert set(keywords["duration"]) == {1.0}
    speakers = set(keywords["speaker"])
    assert speakers <= set(KEYWORD_SPEAKERS) and not speakers & set(PRETRAIN_SPEAKERS)
    assert len(speakers) > 50


def test_other_sampling_rates():
    dataset = synthetic_keywords(2, sampling_rate=8000)
    audio, rate = _decode(dataset[0]["audio"])
    assert rate == 8000 and len(audio) == 8000 and np.isfinite(audio).all()


def test_keyword_task_is_learnable_but_not_trivial(keywords):
    # Pooled log-mel statistics and a ridge classifier, fit on some speakers and scored on the others: well above
    # chance (0.1), so the labels are in the audio, yet far from perfect, so pretraining has room to help.
    audio = torch.stack([torch.from_numpy(_decode(a)[0]) for a in keywords["audio"]])
    mel = torchaudio.transforms.MelSpectrogram(SAMPLING_RATE, n_fft=400, hop_length=160, n_mels=40)(audio)
    log_mel = torch.log(mel + 1e-6)
    features = torch.cat([log_mel.mean(-1), log_mel.std(-1)], dim=1).double()
    labels = torch.tensor(keywords["label"])
    held_out = torch.tensor(keywords["speaker"]) >= KEYWORD_SPEAKERS.start + 70
    assert 0.2 < held_out.float().mean() < 0.5
    train = ~held_out
    features = (features - features[train].mean(0)) / features[train].std(0)
    features = torch.cat([features, torch.ones(len(features), 1, dtype=features.dtype)], dim=1)
    targets = torch.nn.functional.one_hot(labels, len(KEYWORDS)).double()
    gram = features[train].T @ features[train] + torch.eye(features.shape[1], dtype=features.dtype)
    weights = torch.linalg.solve(gram, features[train].T @ targets[train])
    accuracy = ((features[held_out] @ weights).argmax(1) == labels[held_out]).double().mean().item()
    assert 0.3 < accuracy < 0.9, accuracy
