"""The classic pipeline a practitioner tries before pretraining anything, so that every sweep says whether
pretraining beat it: for speech, MFCC statistics and logistic regression.

Each clip (decoded, mono, cut to its first `max_seconds`) becomes 13 MFCCs (25 ms windows every 10 ms, 40 mel bands)
with their deltas and delta-deltas; their means and standard deviations over the clip's frames are its 78 features.
The classifier is `hfssl.probe.fit_probe`: standardised features, L2-penalised logistic regression fitted with L-BFGS.
"""

from __future__ import annotations

import numpy as np
import torch

MFCC_COEFFICIENTS = 13
MFCC_MEL_BANDS = 40
WINDOW_SECONDS, HOP_SECONDS = 0.025, 0.010
MFCC_STATISTICS = "MFCC statistics + logistic regression"


class MfccStatistics:
    """A clip -> (78,) float32: the mean and standard deviation of its MFCCs, deltas and delta-deltas."""

    def __init__(self, sampling_rate: int):
        import torchaudio

        self.window = round(WINDOW_SECONDS * sampling_rate)
        self.transform = torchaudio.transforms.MFCC(
            sample_rate=sampling_rate,
            n_mfcc=MFCC_COEFFICIENTS,
            melkwargs={
                "n_fft": self.window,
                "win_length": self.window,
                "hop_length": round(HOP_SECONDS * sampling_rate),
                "n_mels": MFCC_MEL_BANDS,
            },
        )

    @torch.inference_mode()
    def __call__(self, clip: np.ndarray) -> torch.Tensor:
        import torchaudio

        x = torch.as_tensor(clip, dtype=torch.float32)
        if len(x) < self.window:  # one window at least, so that every clip has statistics
            x = torch.nn.functional.pad(x, (0, self.window - len(x)))
        mfcc = self.transform(x)
        deltas = torchaudio.functional.compute_deltas(mfcc)
        frames = torch.cat([mfcc, deltas, torchaudio.functional.compute_deltas(deltas)])
        return torch.cat([frames.mean(1), frames.std(1, unbiased=False)])


def mfcc_features(dataset, sampling_rate: int, max_seconds: float) -> torch.Tensor:
    """[examples, 78] MFCC statistics of a dataset's undecoded "audio" column, each clip cut as fine-tuning cuts it."""
    from hfssl.data.audio import decode_audio

    features = MfccStatistics(sampling_rate)
    limit = round(max_seconds * sampling_rate)
    audio = dataset.select_columns(["audio"])
    return torch.stack([features(decode_audio(row["audio"], sampling_rate)[:limit]) for row in audio])
