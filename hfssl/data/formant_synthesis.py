"""A source-filter formant synthesiser: segments of steady parameters, a speaker's voice and a channel -> audio.

The time-varying filter runs frame by frame in the frequency domain (windowed source frames times each frame's complex
filter response, overlap-added), in numpy; `hfssl.data.synthetic_audio` decides what is said, by whom and where.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf

# Resonance bandwidths (Hz) of F1-F4 where a segment names none (a nasal's and a stop's are in the phone table).
DEFAULT_BANDWIDTHS = (60, 90, 130, 200)
_NASAL_POLE = (270.0, 100.0)  # the pole that a nasal zero moves away from; elsewhere the zero cancels it

# --------------------------------------------------------------------------- voices and segments


@dataclass(frozen=True)
class Speaker:
    pitch: float  # median f0 (Hz)
    formant_scale: tuple[float, float, float, float]  # vocal-tract length times a per-formant idiosyncrasy
    rate: float  # speaking rate (1: the phones' own durations)
    open_quotient: float  # of the glottal cycle; higher is breathier, with a steeper spectral tilt
    breathiness: float  # aspiration noise while voicing
    jitter: float  # relative f0 perturbation
    shimmer: float  # relative amplitude perturbation
    intonation: float  # relative f0 excursion across an utterance


@dataclass
class Segment:
    """A stretch with steady synthesis parameters; tracks are interpolated between segments' key points."""

    seconds: float
    formants: tuple[tuple[float, ...], ...] = ()  # F1-F4 targets; none: glide from the neighbours' (closures, /h/)
    bandwidths: tuple[float, ...] = DEFAULT_BANDWIDTHS
    voicing: float = 0.0
    aspiration: float = 0.0  # noise through the formants
    frication: float = 0.0  # noise through its own resonance
    noise: tuple[float, float] = (0.0, 0.0)  # centre and bandwidth (Hz) of the frication
    nasal_zero: float = 0.0
    ramp: float = 0.012  # seconds over which amplitudes change at each edge


# --------------------------------------------------------------------------- synthesis


@dataclass(frozen=True)
class _Channel:
    """The recording conditions of one clip."""

    eq_cosines: np.ndarray  # log gain: a sum of cosines over 0 Hz to Nyquist, a smooth random EQ
    lowpass: float  # a band-limited microphone's cutoff (Hz); 0: none
    noise_mix: np.ndarray  # white, pink and mains hum, summing to 1
    mains: float  # hum frequency (Hz)
    snr_db: float
    level_db: float  # RMS (dBFS)

    def eq(self, freqs: np.ndarray) -> np.ndarray:
        nyquist = 2 * freqs[-1]
        curve = np.cos(np.pi * np.outer(freqs / nyquist, np.arange(1, len(self.eq_cosines) + 1))) @ self.eq_cosines
        gain = np.exp(curve)
        return gain / np.sqrt(1 + (freqs / self.lowpass) ** 8) if self.lowpass else gain


def draw_channel(rng: np.random.Generator, sr: int) -> _Channel:
    return _Channel(
        eq_cosines=rng.normal(0.0, 0.25, 4),
        lowpass=rng.uniform(3500, 0.49 * sr) if rng.random() < 0.3 else 0.0,
        noise_mix=rng.dirichlet((1.0, 1.0, 0.5)),
        mains=float(rng.choice((50.0, 60.0))),
        snr_db=rng.uniform(5.0, 30.0),
        level_db=rng.uniform(-32.0, -18.0),
    )


def _tracks(
    segments: list[Segment], speaker: Speaker, sr: int, n: int, hop: int
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Voicing, aspiration and frication levels per sample; per frame (frame j centred on sample j * hop) the formant
    filter (F1-F4, B1-B4, nasal zero) and the frication band (centre, bandwidth)."""
    amp_t, amps = [], []
    filt_t, filt = [], []
    noise_t, noises = [], []
    scale = np.array(speaker.formant_scale)
    nyquist = 0.45 * sr
    start = 0.0
    for seg in segments:
        end = start + seg.seconds
        ramp = min(seg.ramp, seg.seconds / 3)
        level = (seg.voicing, seg.aspiration, seg.frication)
        amp_t += [start + ramp, end - ramp]
        amps += [level, level]
        # Elsewhere the zero sits on the nasal pole and cancels it.
        nasal = seg.nasal_zero * scale[1] if seg.nasal_zero else _NASAL_POLE[0] * scale[0]
        # A target holds over the middle of its segment; a diphthong glides between its two; a burst is one instant.
        if len(seg.formants) == 2:
            keys = [(start + 0.2 * seg.seconds, seg.formants[0]), (end - 0.2 * seg.seconds, seg.formants[1])]
        elif seg.formants and seg.ramp < 0.005:
            keys = [(start + 0.5 * seg.seconds, seg.formants[0])]
        elif seg.formants:
            keys = [(start + 0.3 * seg.seconds, seg.formants[0]), (end - 0.3 * seg.seconds, seg.formants[0])]
        else:
            keys = []
        for t, target in keys:
            filt_t.append(t)
            filt.append([*target, *seg.bandwidths, nasal])
        if seg.frication:
            noise_t.append(start + 0.5 * seg.seconds)
            noises.append(seg.noise)
        start = end
    frames = np.arange(n // hop + 2) * hop
    if not noises:
        noise_t, noises = [0.0], [(4000.0, 2000.0)]
    filt, noises = np.array(filt), np.array(noises)
    filt[:, :4] = np.minimum(filt[:, :4] * scale, nyquist)
    noises[:, 0] = np.minimum(noises[:, 0] * scale[2], nyquist)
    levels = [_per_sample(np.array(amp_t) * sr, v, n) for v in np.array(amps).T]
    filters = np.stack([np.interp(frames, np.array(filt_t) * sr, v) for v in filt.T], axis=1)
    bands = np.stack([np.interp(frames, np.array(noise_t) * sr, v) for v in noises.T], axis=1)
    return levels, filters, bands


def _resonator_polynomials(freq: np.ndarray, bandwidth: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Denominators [1, -b, -c] (in powers of 1/z) of two-pole resonators, and the gains `a` that make their response
    1 at 0 Hz (Klatt's resonator: y[n] = a x[n] + b y[n-1] + c y[n-2])."""
    r = np.exp(-np.pi * bandwidth / sr)
    b = 2 * r * np.cos(2 * np.pi * freq / sr)
    c = -(r**2)
    return np.stack([np.ones_like(b), -b, -c], axis=-1), 1 - b - c


def _polymul(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise product of polynomials given as coefficient rows."""
    out = np.zeros((len(p), p.shape[1] + q.shape[1] - 1))
    for j in range(q.shape[1]):
        out[:, j : j + p.shape[1]] += p * q[:, j : j + 1]
    return out


_PULSE_POINTS = 512  # a power of two, so that a running phase indexes the table with a bit mask


def _glottal_pulse(open_quotient: float) -> tuple[np.ndarray, np.ndarray]:
    """One period of Rosenberg's glottal flow, and its derivative with respect to phase (the radiated source)."""
    phase = np.arange(_PULSE_POINTS) / _PULSE_POINTS
    opening, closing = 0.6 * open_quotient, 0.4 * open_quotient
    rising = phase < opening
    falling = ~rising & (phase < opening + closing)
    flow = np.zeros_like(phase)
    slope = np.zeros_like(phase)
    flow[rising] = 0.5 * (1 - np.cos(np.pi * phase[rising] / opening))
    slope[rising] = 0.5 * np.pi / opening * np.sin(np.pi * phase[rising] / opening)
    flow[falling] = np.cos(0.5 * np.pi * (phase[falling] - opening) / closing)
    slope[falling] = -0.5 * np.pi / closing * np.sin(0.5 * np.pi * (phase[falling] - opening) / closing)
    return flow, slope


_STEP = 8  # samples: tracks are interpolated on this grid, then linearly in between (np.interp per sample is slow)


def _per_sample(at: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """The piecewise-linear curve through (at, values), at samples 0..n-1."""
    coarse = np.interp(np.arange(0, n + _STEP, _STEP), at, values)
    return _upsample(coarse, n)


def _upsample(coarse: np.ndarray, n: int) -> np.ndarray:
    """Linear interpolation of values given every `_STEP` samples, at samples 0..n-1."""
    return (coarse[:-1, None] + np.diff(coarse)[:, None] * (np.arange(_STEP) / _STEP)).reshape(-1)[:n]


def _contour(rng: np.random.Generator, n: int, sr: int, rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Sample positions `rate_hz` apart over n samples, and a unit-variance random value at each."""
    points = int(n / sr * rate_hz) + 2
    return np.linspace(0, n, points), rng.standard_normal(points)


def _active_frames(level: np.ndarray, n: int, hop: int, frames: int) -> np.ndarray:
    """Frames (2 hops, frame j from sample (j - 1) * hop) in which the (non-negative) level is anywhere above 0."""
    blocks = np.zeros(frames + 1, dtype=bool)
    blocks[1 : (n + hop - 1) // hop + 1] = np.maximum.reduceat(level, np.arange(0, n, hop)) > 0
    return blocks[:-1] | blocks[1:]


def render(
    segments: list[Segment], speaker: Speaker, channel: _Channel, rng: np.random.Generator, sr: int
) -> np.ndarray:
    """Speech for the segments, through the channel's EQ: voicing and aspiration through the formant cascade,
    frication through its own resonance, frame by frame in the frequency domain and overlap-added."""
    n = int(round(sum(s.seconds for s in segments) * sr))
    hop = max(sr // 125, 16)  # 8 ms: formants move smoothly at this rate
    (voicing, aspiration, frication), filters, bands = _tracks(segments, speaker, sr, n, hop)

    # Pitch: a slow melody, a declination, and jitter from one period to the next.
    grid = np.arange(0, n + _STEP, _STEP)
    log_f0 = 0.08 - 0.16 * grid / n
    log_f0 += speaker.intonation * np.interp(grid, *_contour(rng, n, sr, 4.0))
    log_f0 += speaker.jitter * np.interp(grid, *_contour(rng, n, sr, speaker.pitch))
    f0 = _upsample(speaker.pitch * np.exp(log_f0), n)
    flow_table, slope_table = _glottal_pulse(speaker.open_quotient)
    phase = (np.cumsum(f0 * (_PULSE_POINTS / sr)).astype(np.int64)) & (_PULSE_POINTS - 1)
    shimmer = _upsample(1 + speaker.shimmer * np.interp(grid, *_contour(rng, n, sr, speaker.pitch)), n)
    noise = rng.standard_normal(n)
    # Breathy voicing is aspiration noise pulsed by the glottal opening.
    breath = speaker.breathiness * (0.3 + flow_table[phase])
    through_formants = voicing * (shimmer * slope_table[phase] + breath * noise) + aspiration * noise
    through_noise = frication * noise

    # Frames of 2 hops, filtered in 4 (2 for the filters' ringing, which has decayed by some 25 dB by then). A frame
    # with no input has no output, so only frames with some input are filtered.
    window, nfft = 2 * hop, 4 * hop
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(window) / window)  # periodic: overlaps at hop sum to 1
    frames = len(filters)
    voiced = _active_frames(voicing + aspiration, n, hop, frames)
    hissing = _active_frames(frication, n, hop, frames)

    def spectra(x, which):
        padded = np.zeros((frames + 1) * hop)
        padded[hop : hop + n] = x
        return np.fft.rfft(np.lib.stride_tricks.sliding_window_view(padded, window)[::hop][which] * hann, nfft)

    freqs = np.fft.rfftfreq(nfft, 1 / sr)
    eq = channel.eq(freqs)
    filt = filters[voiced]
    nasal_pole = np.full((len(filt), 1), _NASAL_POLE[0] * speaker.formant_scale[0])
    nasal_width = np.full((len(filt), 1), _NASAL_POLE[1])
    poles, gains = _resonator_polynomials(
        np.hstack([filt[:, :4], nasal_pole]), np.hstack([filt[:, 4:8], nasal_width]), sr
    )
    zero, zero_gain = _resonator_polynomials(filt[:, 8], nasal_width[:, 0], sr)
    # The cascade as one rational function of 1/z, evaluated at the FFT bins by FFTs of its coefficients.
    denominator = poles[:, 0]
    for k in range(1, poles.shape[1]):
        denominator = _polymul(denominator, poles[:, k])
    numerator = zero * (gains.prod(axis=1) / zero_gain)[:, None]
    formant_filter = eq * np.fft.rfft(numerator, nfft) / np.fft.rfft(denominator, nfft)
    centre, width = bands[hissing].T
    # Frication is noise, so its filter needs no phase: a band around the centre over a floor.
    hiss_filter = eq * (0.1 + np.exp(-0.5 * ((freqs - centre[:, None]) / (0.5 * width[:, None])) ** 2))

    heard = voiced | hissing
    spectrum = np.zeros((frames, len(freqs)), dtype=complex)
    spectrum[voiced] = spectra(through_formants, voiced) * formant_filter
    spectrum[hissing] += spectra(through_noise, hissing) * hiss_filter
    out_frames = np.zeros((frames, nfft))
    out_frames[heard] = np.fft.irfft(spectrum[heard], nfft)
    out = np.zeros((frames + 3) * hop)
    for k in range(4):
        out[k * hop : (k + frames) * hop] += out_frames[:, k * hop : (k + 1) * hop].reshape(-1)
    return out[hop : hop + n]


def _fast_size(n: int) -> int:
    """The least 2^a 3^b 5^c at least n: an FFT of n samples can be many times slower than one of that size."""
    best = 1 << (n - 1).bit_length()
    fives = 1
    while fives < best:
        threes = fives
        while threes < best:
            size = threes << max(0, (n - 1) // threes).bit_length()
            best = min(best, size)
            threes *= 3
        fives *= 5
    return best


def record(speech: np.ndarray, channel: _Channel, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Speech (already through the channel's EQ) plus background noise at the channel's SNR, at its level."""
    n = len(speech)
    size = _fast_size(n)
    freqs = np.fft.rfftfreq(size, 1 / sr)
    white, pink, hum = channel.noise_mix
    coarse = np.linspace(0, sr / 2, 257)
    shape = (white + pink / np.sqrt(np.maximum(freqs, 20.0) / 1000)) * np.interp(freqs, coarse, channel.eq(coarse))
    # White noise drawn as its spectrum (independent complex Gaussian bins), shaped, and brought back.
    white_spectrum = rng.standard_normal((len(freqs), 2)).view(complex)[:, 0]
    noise = np.fft.irfft(white_spectrum * shape, size)[:n]
    noise /= np.sqrt(np.mean(noise**2)) + 1e-12
    # Hum repeats every 0.1 s at 50 and at 60 Hz.
    t = np.arange(sr // 10) / sr
    buzz = sum(np.sin(2 * np.pi * k * channel.mains * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 6))
    buzz = np.resize(np.roll(buzz, rng.integers(len(t))), n)
    noise = np.sqrt(1 - hum) * noise + np.sqrt(hum) * buzz / np.sqrt(np.mean(buzz**2))
    power = np.mean(speech**2) + 1e-12
    mix = speech + noise * np.sqrt(power / 10 ** (channel.snr_db / 10))
    mix *= 10 ** (channel.level_db / 20) / np.sqrt(np.mean(mix**2))
    peak = np.max(np.abs(mix))
    return mix * (0.95 / peak) if peak > 0.95 else mix


def wav(audio: np.ndarray, sr: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.round(audio * 32767).astype(np.int16), sr, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
