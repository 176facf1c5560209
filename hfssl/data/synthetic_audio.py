"""The embedded default speech corpus: speech-like audio from a small formant synthesiser, and a 10-keyword task.

Speech pretraining needs audio whose structure a model can only learn from context, and a downstream task that rewards
what it learned. Here a source-filter synthesiser (a Rosenberg glottal pulse with jitter and shimmer, aspiration and
frication noise, a cascade of formant resonators with a nasal pole-zero pair) speaks phone-like units: vowels and
diphthongs, approximants, nasals, fricatives, and stops (closure, burst, aspiration). Formants glide between the phones'
targets, so the units are not trivially segmentable. Words are phone sequences from a fixed lexicon of 300, drawn with
Zipfian frequencies; the ten `KEYWORDS` are among its more frequent words, so the unlabelled corpus contains them, and
some pairs share phones (no/go, on/off, up/stop, right/down). Speakers differ in pitch, vocal-tract length, formant
idiosyncrasies, speaking rate and voice quality; every clip gets its own background noise (white, pink, mains hum) at
5-30 dB SNR, channel EQ and level. The keyword speakers are disjoint from the pretraining speakers, so a keyword
classifier evaluated on held-out speakers rewards speaker-invariant features.

Everything is numpy (the synthesiser is `hfssl.data.formant_synthesis`): 2,000 utterances, about 1.5 hours of audio,
take some 30-40 s on one core. Clip i is drawn from a generator seeded by (seed, i), so it is the same however many
clips are generated, in any process. Clips come out as 16-bit PCM WAV bytes in an `Audio(decode=False)` column, the
path real audio files take.
"""

from __future__ import annotations

from dataclasses import dataclass

import datasets
import numpy as np
import pyarrow as pa
from datasets.table import InMemoryTable

from hfssl.data.formant_synthesis import DEFAULT_BANDWIDTHS, Segment, Speaker, draw_channel, record, render, wav

SAMPLING_RATE = 16_000
KEYWORDS: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
PRETRAIN_SPEAKERS = range(0, 200)
"""Speaker ids of `synthetic_utterances`; a speaker's voice depends on its id only, not on the seed."""
KEYWORD_SPEAKERS = range(1000, 1100)
"""Speaker ids of `synthetic_keywords`, disjoint from `PRETRAIN_SPEAKERS`."""
KEYWORD_SECONDS = 1.0

# Independent random streams: SeedSequence(seed, spawn_key=(stream, index)). A spawn key, unlike extra entropy words,
# cannot collide ([1, 2] and [1, 2, 0] seed the same state).
_UTTERANCE_STREAM, _KEYWORD_STREAM, _LABEL_STREAM = 0, 1, 2
_SPEAKER_ENTROPY = 0x5EEC4  # the fixed speaker population
_LEXICON_ENTROPY = 0x1E71C0  # the fixed lexicon

# --------------------------------------------------------------------------- phones


@dataclass(frozen=True)
class _Phone:
    kind: str  # vowel, approximant, nasal, fricative, aspirate, stop
    targets: tuple[tuple[float, float, float, float], ...]  # F1-F4 (Hz) of an adult male: one, two for a diphthong
    seconds: float  # at speaking rate 1
    voiced: bool = True
    # A fricative's hiss or a stop's burst: centre and bandwidth (Hz), and a level that puts /s/ and /sh/ some 12 dB
    # below a vowel and /f/ and /th/ some 20 dB, as in natural speech.
    noise: tuple[float, float, float] = (0.0, 0.0, 0.0)
    nasal_zero: float = 0.0  # antiresonance of the nasal branch (Hz)


def _vowel(f1, f2, f3, f4=3500.0, seconds=0.11):
    return _Phone("vowel", ((f1, f2, f3, f4),), seconds)


def _diphthong(start: _Phone, end: _Phone, seconds=0.17):
    return _Phone("vowel", (start.targets[0], end.targets[0]), seconds)


_V = {
    "iy": _vowel(270, 2290, 3010, 3600, 0.12),
    "ih": _vowel(390, 1990, 2550, 3500, 0.085),
    "eh": _vowel(530, 1840, 2480, 3500, 0.095),
    "ae": _vowel(660, 1720, 2410, 3500, 0.12),
    "aa": _vowel(730, 1090, 2440, 3400, 0.12),
    "ao": _vowel(570, 840, 2410, 3300, 0.12),
    "uh": _vowel(440, 1020, 2240, 3400, 0.085),
    "uw": _vowel(300, 870, 2240, 3400, 0.12),
    "ah": _vowel(640, 1190, 2390, 3400, 0.085),
    "er": _vowel(490, 1350, 1690, 3300, 0.11),
}
_PHONES: dict[str, _Phone] = {
    **_V,
    "ay": _diphthong(_V["aa"], _V["iy"]),
    "ey": _diphthong(_V["eh"], _V["iy"], 0.15),
    "ow": _diphthong(_V["ao"], _V["uw"], 0.15),
    "aw": _diphthong(_V["aa"], _V["uw"]),
    "oy": _diphthong(_V["ao"], _V["iy"]),
    "l": _Phone("approximant", ((360, 1050, 2800, 3500),), 0.065),
    "r": _Phone("approximant", ((420, 1250, 1600, 3300),), 0.065),
    "w": _Phone("approximant", ((300, 650, 2200, 3300),), 0.06),
    "y": _Phone("approximant", ((260, 2100, 3000, 3600),), 0.06),
    "m": _Phone("nasal", ((260, 1000, 2200, 3300),), 0.075, nasal_zero=1000),
    "n": _Phone("nasal", ((260, 1700, 2600, 3400),), 0.07, nasal_zero=1600),
    "ng": _Phone("nasal", ((260, 2000, 2500, 3400),), 0.08, nasal_zero=3000),
    "f": _Phone("fricative", ((300, 1000, 2300, 3400),), 0.10, False, (5500, 5000, 0.2)),
    "th": _Phone("fricative", ((300, 1500, 2600, 3400),), 0.09, False, (6500, 5000, 0.16)),
    "s": _Phone("fricative", ((300, 1700, 2600, 3500),), 0.11, False, (5800, 1800, 3.5)),
    "sh": _Phone("fricative", ((300, 1900, 2500, 3400),), 0.11, False, (3000, 1200, 4.5)),
    "v": _Phone("fricative", ((300, 1000, 2300, 3400),), 0.07, True, (5500, 5000, 0.12)),
    "dh": _Phone("fricative", ((300, 1500, 2600, 3400),), 0.06, True, (6500, 5000, 0.1)),
    "z": _Phone("fricative", ((300, 1700, 2600, 3500),), 0.08, True, (5800, 1800, 2.0)),
    "zh": _Phone("fricative", ((300, 1900, 2500, 3400),), 0.08, True, (3000, 1200, 2.6)),
    "h": _Phone("aspirate", (), 0.06, False),
    # A stop's targets are its locus: where the formants of the neighbouring vowels point at the release.
    "p": _Phone("stop", ((300, 900, 2200, 3300),), 0.07, False, (1200, 2000, 3.0)),
    "b": _Phone("stop", ((300, 900, 2200, 3300),), 0.06, True, (1200, 2000, 2.0)),
    "t": _Phone("stop", ((300, 1800, 2700, 3500),), 0.065, False, (4200, 2500, 3.0)),
    "d": _Phone("stop", ((300, 1800, 2700, 3500),), 0.055, True, (4200, 2500, 2.0)),
    "k": _Phone("stop", ((300, 2000, 2400, 3400),), 0.07, False, (2300, 900, 4.0)),
    "g": _Phone("stop", ((300, 2000, 2400, 3400),), 0.06, True, (2300, 900, 2.6)),
}
_VOWELS = tuple(p for p, phone in _PHONES.items() if phone.kind == "vowel")
_SONORANTS = frozenset(p for p, phone in _PHONES.items() if phone.kind in ("vowel", "approximant"))
# Resonance bandwidths (Hz) of F1-F4; a nasal's are wider, its upper formants damped by the open side branch.
_BANDWIDTHS = {"nasal": (100, 200, 300, 400), "stop": (90, 130, 180, 250)}
_AMPLITUDE = {"vowel": 1.0, "approximant": 0.7, "nasal": 0.55}  # of the voicing

# --------------------------------------------------------------------------- lexicon

_PRONUNCIATIONS = {
    "yes": "y eh s",
    "no": "n ow",
    "up": "ah p",
    "down": "d aw n",
    "left": "l eh f t",
    "right": "r ay t",
    "on": "aa n",
    "off": "ao f",
    "stop": "s t aa p",
    "go": "g ow",
}
_ONSETS = (
    "p t k b d g m n f s sh v z h l r w y th dh "
    "s_t s_p s_k p_l b_l k_l g_l f_l s_l p_r t_r k_r b_r d_r g_r f_r s_m s_n s_w"
).split()
_CODAS = "p t k b d g m n ng f s sh v z th l r n_t n_d s_t m_p ng_k l_d r_t r_n k_s p_s t_s l_f".split()
_LEXICON_SIZE = 300
# Zipf ranks (1 = commonest) of the keywords: frequent enough that 2,000 utterances say each dozens of times.
_KEYWORD_RANKS = (3, 6, 9, 13, 17, 22, 28, 35, 43, 52)


def _make_lexicon() -> tuple[tuple[str, ...], ...]:
    """Words as phone tuples, commonest first: the keywords at `_KEYWORD_RANKS`, generated syllables elsewhere."""
    rng = np.random.default_rng(np.random.SeedSequence(_LEXICON_ENTROPY))
    keywords = {tuple(_PRONUNCIATIONS[k].split()) for k in KEYWORDS}
    words: list[tuple[str, ...]] = []
    seen = set(keywords)
    while len(words) < _LEXICON_SIZE - len(KEYWORDS):
        phones: list[str] = []
        syllables = 1 + int(rng.choice(3, p=(0.45, 0.4, 0.15)))
        for s in range(syllables):
            if rng.random() < 0.8:
                phones += _ONSETS[rng.integers(len(_ONSETS))].split("_")
            phones.append(_VOWELS[rng.integers(len(_VOWELS))])
            if rng.random() < (0.6 if s == syllables - 1 else 0.3):
                phones += _CODAS[rng.integers(len(_CODAS))].split("_")
        word = tuple(phones)
        if word not in seen:
            seen.add(word)
            words.append(word)
    for rank, keyword in zip(_KEYWORD_RANKS, KEYWORDS, strict=True):
        words.insert(rank - 1, tuple(_PRONUNCIATIONS[keyword].split()))
    return tuple(words)


_LEXICON = _make_lexicon()
_KEYWORD_INDEX = tuple(_LEXICON.index(tuple(_PRONUNCIATIONS[k].split())) for k in KEYWORDS)
_FILLERS = np.array([i for i in range(len(_LEXICON)) if i not in _KEYWORD_INDEX])
_WORD_CDF = np.cumsum(1.0 / np.arange(1, len(_LEXICON) + 1))
_WORD_CDF /= _WORD_CDF[-1]
_FILLER_CDF = np.cumsum(1.0 / (_FILLERS + 1))
_FILLER_CDF /= _FILLER_CDF[-1]


def _zipf_word(rng: np.random.Generator, fillers_only: bool = False) -> tuple[str, ...]:
    if fillers_only:
        return _LEXICON[_FILLERS[np.searchsorted(_FILLER_CDF, rng.random())]]
    return _LEXICON[np.searchsorted(_WORD_CDF, rng.random())]


# --------------------------------------------------------------------------- speakers


def _speaker(speaker_id: int) -> Speaker:
    rng = np.random.default_rng(np.random.SeedSequence(_SPEAKER_ENTROPY, spawn_key=(speaker_id,)))
    # Two overlapping groups like adult male and female voices: low pitch with a long tract, high with a short one.
    if rng.random() < 0.5:
        pitch, scale = rng.lognormal(np.log(115), 0.17), rng.normal(0.95, 0.06)
    else:
        pitch, scale = rng.lognormal(np.log(205), 0.14), rng.normal(1.12, 0.06)
    scale = float(np.clip(scale, 0.8, 1.25))
    return Speaker(
        pitch=float(np.clip(pitch, 80, 260)),
        formant_scale=tuple(float(scale * s) for s in rng.normal(1.0, 0.04, 4)),
        rate=float(rng.uniform(0.8, 1.25)),
        open_quotient=float(rng.uniform(0.45, 0.8)),
        breathiness=float(rng.uniform(0.0, 0.08)),
        jitter=float(rng.uniform(0.005, 0.02)),
        shimmer=float(rng.uniform(0.02, 0.1)),
        intonation=float(rng.uniform(0.03, 0.12)),
    )


# --------------------------------------------------------------------------- segments


def _phone_segments(phones: list[str], pauses: list[float], rate: float, rng: np.random.Generator) -> list[Segment]:
    """Segments for a phone sequence; `pauses[i]` is the silence (seconds) after phone i, usually 0."""
    out = []
    for i, symbol in enumerate(phones):
        phone = _PHONES[symbol]
        before = phones[i - 1] if i > 0 and not pauses[i - 1] else None
        after = phones[i + 1] if i + 1 < len(phones) and not pauses[i] else None
        final = after is None
        seconds = phone.seconds / rate * rng.lognormal(0.0, 0.15) * (1.25 if final else 1.0)
        if phone.kind == "stop":
            closure = Segment(seconds, voicing=0.12 if phone.voiced else 0.0, ramp=0.01)
            burst = Segment(
                0.012 / rate,
                phone.targets,
                _BANDWIDTHS["stop"],
                voicing=0.25 if phone.voiced else 0.0,
                frication=phone.noise[2] * rng.uniform(0.5, 1.0) * (0.5 if final else 1.0),
                noise=phone.noise[:2],
                ramp=0.001,
            )
            out += [closure, burst]
            # English voiceless stops are aspirated before a sonorant, but not after /s/ (stop vs top).
            if not phone.voiced and (after in _SONORANTS or final) and before != "s":
                out.append(Segment((0.02 if final else 0.045) / rate * rng.lognormal(0.0, 0.15), aspiration=0.35))
        elif phone.kind == "aspirate":
            out.append(Segment(seconds, aspiration=0.4))
        elif phone.kind == "fricative":
            out.append(
                Segment(
                    seconds,
                    phone.targets,
                    voicing=0.35 if phone.voiced else 0.0,
                    frication=phone.noise[2],
                    noise=phone.noise[:2],
                )
            )
        else:
            out.append(
                Segment(
                    seconds,
                    phone.targets,
                    _BANDWIDTHS.get(phone.kind, DEFAULT_BANDWIDTHS),
                    voicing=_AMPLITUDE[phone.kind],
                    nasal_zero=phone.nasal_zero,
                )
            )
        if pauses[i]:
            out.append(Segment(pauses[i]))
    return out


def _words(
    words: list[tuple[str, ...]], rate: float, rng: np.random.Generator
) -> tuple[list[Segment], list[tuple[float, float]]]:
    """Segments for words spoken in a row, and the (start, end) seconds of each word."""
    segments: list[Segment] = []
    spans = []
    now = 0.0
    for word in words:
        # Words mostly run together (coarticulated); sometimes the speaker pauses.
        pause = rng.uniform(0.05, 0.25) if rng.random() < 0.3 else 0.0
        word_segments = _phone_segments(list(word), [0.0] * (len(word) - 1) + [pause], rate, rng)
        length = sum(s.seconds for s in word_segments)
        spans.append((now, now + length - pause))
        segments += word_segments
        now += length
    return segments, spans


# --------------------------------------------------------------------------- clips


def _utterance(seed: int, index: int, sr: int) -> dict:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_UTTERANCE_STREAM, index)))
    speaker_id = int(PRETRAIN_SPEAKERS[rng.integers(len(PRETRAIN_SPEAKERS))])
    speaker = _speaker(speaker_id)
    rate = speaker.rate * rng.uniform(0.9, 1.1)
    target = rng.uniform(1.0, 4.0)
    lead, tail = rng.uniform(0.05, 0.3, 2)
    segments: list[Segment] = []
    length = lead + tail
    while length < target:
        word, _ = _words([_zipf_word(rng)], rate, rng)
        extra = sum(s.seconds for s in word)
        if segments and length + extra > 4.0:
            break
        segments += word
        length += extra
    tail = max(tail, 1.0 - length + tail)
    channel = draw_channel(rng, sr)
    audio = render([Segment(lead), *segments, Segment(tail)], speaker, channel, rng, sr)
    return {"audio": record(audio, channel, rng, sr), "speaker": speaker_id}


def _keyword(seed: int, index: int, label: int, sr: int) -> dict:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_KEYWORD_STREAM, index)))
    speaker_id = int(KEYWORD_SPEAKERS[rng.integers(len(KEYWORD_SPEAKERS))])
    speaker = _speaker(speaker_id)
    # Sometimes cut from running speech: a neighbouring word, partly inside the clip, before or after the keyword.
    before, after = (int(x) for x in rng.random(2) < 0.3)
    words = [_zipf_word(rng, fillers_only=True)] * before + [_LEXICON[_KEYWORD_INDEX[label]]]
    words += [_zipf_word(rng, fillers_only=True)] * after
    segments, spans = _words(words, speaker.rate * rng.uniform(0.9, 1.1), rng)
    start, end = spans[before]
    length = sum(s.seconds for s in segments)
    # Silence either side, just enough that any window holding the keyword lies inside the synthesised audio.
    lead, tail = max(KEYWORD_SECONDS - end, 0.0), max(KEYWORD_SECONDS - (length - start), 0.0)
    start, end, total = start + lead, end + lead, lead + length + tail
    # The window holds the whole keyword, with at least 30 ms to spare where it fits.
    low, high = end + 0.03 - KEYWORD_SECONDS, start - 0.03
    offset = rng.uniform(low, high) if low < high else 0.5 * (start + end - KEYWORD_SECONDS)
    first = int(round(np.clip(offset, 0.0, total - KEYWORD_SECONDS) * sr))
    channel = draw_channel(rng, sr)
    audio = render([Segment(lead), *segments, Segment(tail)], speaker, channel, rng, sr)
    audio = audio[first : first + int(round(KEYWORD_SECONDS * sr))]
    return {"audio": record(audio, channel, rng, sr), "speaker": speaker_id}


def _dataset(rows: list[dict], sr: int, label: bool) -> datasets.Dataset:
    columns = {
        "audio": [{"bytes": wav(row["audio"], sr), "path": f"synthetic-{i:06d}.wav"} for i, row in enumerate(rows)],
        **({"label": [row["label"] for row in rows]} if label else {}),
        "speaker": [row["speaker"] for row in rows],
        "duration": [len(row["audio"]) / sr for row in rows],
    }
    features = datasets.Features(
        {
            "audio": datasets.Audio(sampling_rate=sr, decode=False),
            **({"label": datasets.ClassLabel(names=list(KEYWORDS))} if label else {}),
            "speaker": datasets.Value("int32"),
            "duration": datasets.Value("float64"),
        }
    )
    # Straight to Arrow: Dataset.from_dict would pass each clip through Audio.encode_example, which needs torchcodec
    # even for ready-made bytes, and a later cast (a batched map) leaves an empty dataset's features as they were.
    table = pa.Table.from_pydict(columns, schema=features.arrow_schema)
    return datasets.Dataset(InMemoryTable(table), info=datasets.DatasetInfo(features=features))


def synthetic_utterances(num_utterances: int, seed: int = 0, sampling_rate: int = SAMPLING_RATE) -> datasets.Dataset:
    """Generate unlabelled speech-like utterances for pretraining.

    Args:
        num_utterances: how many clips.
        seed: the same seed always gives the same bytes; clip i does not depend on how many are generated.
        sampling_rate: of the audio (Hz).

    Returns:
        A dataset with columns `audio` (`Audio(decode=False)`: 16-bit PCM WAV `bytes` and a `path` like
        "synthetic-000123.wav"), `speaker` (an id in `PRETRAIN_SPEAKERS`) and `duration` (seconds, about 1-4).
    """
    rows = [_utterance(seed, i, sampling_rate) for i in range(num_utterances)]
    return _dataset(rows, sampling_rate, label=False)


def _keyword_labels(num_examples: int, seed: int = 0) -> list[int]:
    """Label of each keyword clip: every block of 10 clips holds each keyword once, in a seeded order."""
    labels: list[int] = []
    for block in range((num_examples + len(KEYWORDS) - 1) // len(KEYWORDS)):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_LABEL_STREAM, block)))
        labels += rng.permutation(len(KEYWORDS)).tolist()
    return labels[:num_examples]


def synthetic_keywords(num_examples: int, seed: int = 0, sampling_rate: int = SAMPLING_RATE) -> datasets.Dataset:
    """Generate labelled one-second keyword clips, spoken by speakers the pretraining corpus never has.

    Args:
        num_examples: how many clips; labels are balanced (each block of 10 holds every keyword once).
        seed: the same seed always gives the same bytes; clip i does not depend on how many are generated.
        sampling_rate: of the audio (Hz).

    Returns:
        A dataset with columns `audio` (as in `synthetic_utterances`), `label` (a `ClassLabel` over `KEYWORDS`),
        `speaker` (an id in `KEYWORD_SPEAKERS`) and `duration` (`KEYWORD_SECONDS`).
    """
    rows = []
    for i, label in enumerate(_keyword_labels(num_examples, seed)):
        rows.append({**_keyword(seed, i, label, sampling_rate), "label": label})
    return _dataset(rows, sampling_rate, label=True)
