"""The classic pipeline a practitioner tries before pretraining anything, so that every sweep says whether
pretraining beat it: for speech, MFCC statistics and logistic regression.

Each clip (decoded, mono, cut to its first `max_seconds`) becomes 13 MFCCs (25 ms windows every 10 ms, 23 mel bands:
the features HuBERT's first iteration clusters, `hfssl.data.mfcc.MfccFeatures`) with their deltas and
delta-deltas; their means and standard deviations over the clip's frames are its 78 features.
The classifier is `hfssl.downstream.probe.fit_probe`: standardised features, L2-penalised logistic regression fitted
with L-BFGS.
"""

from __future__ import annotations

import numpy as np
import torch

HOP_SECONDS = 0.010


def mfcc_statistics(features, clip: np.ndarray) -> torch.Tensor:
    """(78,) float32: the mean and standard deviation over the clip's frames of `features(clip)` (frames, 39)."""
    frames = features(clip)
    return torch.cat([frames.mean(0), frames.std(0, unbiased=False)])


def mfcc_features(dataset, sampling_rate: int, max_seconds: float) -> torch.Tensor:
    """[examples, 78] MFCC statistics of a dataset's undecoded "audio" column, each clip cut as fine-tuning cuts it."""
    from hfssl.data.audio import decode_audio
    from hfssl.data.mfcc import MfccFeatures

    features = MfccFeatures(sampling_rate, round(HOP_SECONDS * sampling_rate))
    limit = round(max_seconds * sampling_rate)
    audio = dataset.select_columns(["audio"])
    return torch.stack([mfcc_statistics(features, decode_audio(row["audio"], sampling_rate)[:limit]) for row in audio])
