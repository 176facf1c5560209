"""MFCC features: 13 coefficients with their deltas and delta-deltas, framed as a speech encoder frames its input.

HuBERT's first iteration clusters them (`hfssl.hubert_targets`); the classic speech pipeline's statistics are taken
over them (`hfssl.downstream.baselines`).
"""

from __future__ import annotations

import numpy as np
import torch
import torchaudio

MFCC_COEFFICIENTS = 13
MFCC_MEL_BINS = 23  # Kaldi's default; more bands than this leave empty filters with a 25 ms window
MFCC_WINDOW_SECONDS = 0.025


class MfccFeatures:
    """13 MFCCs with deltas and delta-deltas (39 dims): a 25 ms window, a hop of one encoder frame, no centring, so
    frame i covers the same samples as the conv encoder's frame i (at 16 kHz both see [320 i, 320 i + 400))."""

    def __init__(self, sampling_rate: int, samples_per_frame: int):
        self.window = round(MFCC_WINDOW_SECONDS * sampling_rate)
        self.transform = torchaudio.transforms.MFCC(
            sample_rate=sampling_rate,
            n_mfcc=MFCC_COEFFICIENTS,
            melkwargs={
                "n_fft": self.window,
                "win_length": self.window,
                "hop_length": samples_per_frame,
                "n_mels": MFCC_MEL_BINS,
                "center": False,
            },
        )

    @torch.inference_mode()
    def __call__(self, clip: np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(clip, dtype=torch.float32)
        if len(x) < self.window:  # one frame at least, so that trimming to the encoder's count can repeat it
            x = torch.nn.functional.pad(x, (0, self.window - len(x)))
        # One clip's tensors are too small for intra-op threads: waking them costs more than the work (measured
        # 2 ms a 2 s clip on one thread, 20 ms on two of a busy 2-core machine).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            mfcc = self.transform(x)
            deltas = torchaudio.functional.compute_deltas(mfcc)
            return torch.cat([mfcc, deltas, torchaudio.functional.compute_deltas(deltas)]).T.contiguous()
        finally:
            torch.set_num_threads(threads)
