"""Masked-audio collator: wav2vec 2.0 span masks over feature frames and, for the contrastive objective, negatives.

The masks live in the frame space of the model's front end, computed from its public config (a convolutional feature
encoder's `conv_kernel` and `conv_stride`, or the filterbank framing of wav2vec2-bert; `hfssl.models.speech`), so the
same collator serves wav2vec2, wav2vec2-conformer, HuBERT, WavLM, data2vec-audio and wav2vec2-bert. `span_mask`
draws the same distribution as transformers' `_compute_mask_indices` given an attention mask, and `sample_negatives`
the same as its `_sample_negative_indices`, both vectorised over the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hfssl.collators.seeding import SeededGenerator, SeededStream
from hfssl.errors import UsageError
from hfssl.models.speech import frame_lengths, is_speech_encoder, samples_per_frame, uses_filterbanks


def span_mask(
    lengths: torch.Tensor,
    num_frames: int,
    mask_prob: float,
    mask_length: int,
    min_masks: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """wav2vec 2.0 / SpecAugment time masks: spans of `mask_length` frames from uniformly drawn starts.

    Example b gets `n = floor(mask_prob * L / mask_length + eps)` spans, with one `eps ~ U[0, 1)` per call shared by
    the batch (probabilistic rounding, as transformers does), at least `min_masks`, at most `num_frames //
    mask_length`, and at most the `L - mask_length + 1` starts that keep a span inside the clip (0 for a clip
    shorter than a span). The `n` starts are distinct, drawn uniformly without replacement; spans may overlap. Unlike
    transformers, which pads short clips' span lists with a dummy span on the last padded frame, nothing at or past a
    clip's length is ever masked; and a batch shorter than one span gets no mask instead of an error.

    Args:
        lengths: long (B,): frames of each clip, at most `num_frames`.
        num_frames: frames of the padded batch.
        mask_prob: expected share of frames that start a span (an upper bound on the masked share, given overlaps).
        mask_length: frames per span.
        min_masks: spans per clip at least (where they fit).
        generator: source of randomness.

    Returns:
        bool (B, num_frames): the masked frames.
    """
    lengths = torch.as_tensor(lengths, dtype=torch.long)
    if mask_length < 1:
        raise ValueError(f"mask_length must be at least 1, got {mask_length}")
    if lengths.numel() and (int(lengths.min()) < 0 or int(lengths.max()) > num_frames):
        raise ValueError(f"lengths must lie in [0, num_frames={num_frames}], got {lengths.tolist()}")
    batch = lengths.shape[0]
    mask = torch.zeros(batch, num_frames + 1, dtype=torch.bool)
    most_starts = num_frames - mask_length + 1
    if batch == 0 or most_starts < 1:
        return mask[:, :num_frames]
    epsilon = torch.rand((), generator=generator, dtype=torch.float64)
    spans = torch.floor(mask_prob * lengths.double() / mask_length + epsilon).long()
    valid_starts = (lengths - mask_length + 1).clamp(min=0)
    spans = spans.clamp(min=min_masks, max=num_frames // mask_length).minimum(valid_starts)
    most_spans = int(spans.max())
    if most_spans == 0:
        return mask[:, :num_frames]
    # The `n` smallest of i.i.d. uniform keys are a uniform `n`-subset; invalid starts get keys above every valid one.
    keys = torch.rand(batch, most_starts, generator=generator, dtype=torch.float64)
    keys.masked_fill_(torch.arange(most_starts) >= valid_starts[:, None], 2.0)
    starts = keys.topk(most_spans, dim=1, largest=False, sorted=True).indices
    # Unused slots point at the spare column past the last frame, which is dropped.
    starts = torch.where(torch.arange(most_spans) < spans[:, None], starts, num_frames)
    frames = (starts[:, :, None] + torch.arange(mask_length)).flatten(1).clamp_(max=num_frames)
    return mask.scatter_(1, frames, True)[:, :num_frames]


def sample_negatives(
    mask: torch.Tensor,
    num_negatives: int,
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.long,
) -> torch.Tensor:
    """Distractors for the contrastive loss: for each masked frame, `num_negatives` other masked frames of its clip.

    Draws are uniform with replacement over the clip's other masked frames (to within 2^-32 relative), never the
    frame itself, as transformers' `_sample_negative_indices` does. A clip with a single masked frame has nothing
    else to draw, so that frame's negatives point at itself: `Wav2Vec2ForPreTraining` sets the logit of a negative
    equal to the positive to -inf, so such a frame adds zero loss instead of comparing against padding. Rows of
    unmasked frames also point at the frame itself; the loss ignores them.

    Args:
        mask: bool (B, T): the masked frames.
        num_negatives: distractors per masked frame (K).
        generator: source of randomness.
        dtype: index dtype; `Wav2Vec2ForPreTraining` takes int32 as well (it calls `.long()`), at half the memory.

    Returns:
        (B, T, K) indices into the features flattened to (B * T), the layout of `sampled_negative_indices`.
    """
    batch, frames = mask.shape
    # Rows of the flattened batch that are masked, clip after clip, and where each clip's run of them begins.
    rows = mask.reshape(-1).nonzero().squeeze(1)
    counts = mask.sum(1)
    first = (counts.cumsum(0) - counts).repeat_interleave(counts)
    per_row = counts.repeat_interleave(counts)
    rank = torch.arange(len(rows)) - first
    # Each clip's rows twice in a row: frame `rank` draws offset d in [0, m - 2] and takes entry rank + 1 + d, which
    # covers the clip's other m - 1 frames once each without a modulo (and is the frame itself when m = 1).
    table = torch.empty(2 * len(rows), dtype=dtype)
    table[2 * first + rank] = rows.to(dtype)
    table[2 * first + rank + per_row] = rows.to(dtype)
    start = 2 * first + rank + 1
    # 32 random bits per draw, two per 64-bit word (torch's generator makes a 64-bit word as fast as a 32-bit one);
    # d = bits * (m - 1) >> 32 is exact integer arithmetic, uniform on [0, m - 2]. Large buffers are few and updated
    # in place: on a small machine fresh pages cost as much as the arithmetic.
    draws = len(rows) * num_negatives
    words = torch.empty((draws + 1) // 2, dtype=torch.long).random_(-(2**63), None, generator=generator)
    offsets = words.view(torch.uint32)[:draws].view(len(rows), num_negatives).to(torch.long)
    del words
    offsets.mul_((per_row - 1)[:, None]).add_(start[:, None] << 32).bitwise_right_shift_(32)
    # index_select, not take or fancy indexing: several times faster on CPU for the same gather.
    negatives = table.index_select(0, offsets.view(-1)).view(len(rows), num_negatives)
    del offsets
    out = torch.arange(batch * frames, dtype=dtype)[:, None].expand(-1, num_negatives).clone()
    out[rows] = negatives
    return out.view(batch, frames, num_negatives)


@dataclass
class AudioMaskCollator(SeededStream):
    """wav2vec 2.0 masking: pads raw audio (or its filterbank frames), masks spans of feature frames, and samples
    contrastive negatives."""

    feature_extractor: Any
    """A transformers feature extractor that returns attention masks: `Wav2Vec2FeatureExtractor` (pads and normalises
    the audio) or, for filterbank encoders, `SeamlessM4TFeatureExtractor`."""
    config: Any
    """The model's config: its front end sets how samples map to frames (`hfssl.models.speech.frame_lengths`)."""
    mask_prob: float = 0.65
    """Chance of each frame starting a masked span (wav2vec 2.0: 0.65, about half the frames masked)."""
    mask_length: int = 10
    """Frames per masked span."""
    min_masks: int = 2
    """Spans masked in every clip at least (where they fit)."""
    num_negatives: int = 100
    """Contrastive distractors per masked frame; 0 leaves `sampled_negative_indices` out (masked prediction)."""
    max_samples: int | None = None
    """Clips longer than this are cropped to a random window of this many samples; None keeps them whole."""
    mask_copies: int = 1
    """Masks drawn per clip: `mask_time_indices` has `mask_copies` x batch rows, copy c of clip b at row c * batch + b
    (data2vec 2.0's clones: one teacher pass, several masked student passes)."""
    pad_to_multiple_of: int | None = None
    """Pad each batch to a multiple of this many samples; None pads to the longest clip."""
    seed: int = 0
    """Seed of the masking generator; each DataLoader worker and distributed rank derives its own stream."""
    targets: Callable[[list[np.ndarray], int], torch.Tensor] | None = None
    """Per-frame `labels` computed from the cropped raw clips and the batch's frame count (e.g. `MelTargets`)."""
    _rng: SeededGenerator = field(init=False, repr=False)

    def __post_init__(self):
        if not 0.0 < self.mask_prob < 1.0:
            raise UsageError(f"masking.mask_prob: must be in (0, 1), got {self.mask_prob}")
        if self.mask_length < 1:
            raise UsageError(f"masking.mask_length: must be at least 1, got {self.mask_length}")
        if self.min_masks < 0:
            raise UsageError(f"masking.min_masks: must not be negative, got {self.min_masks}")
        if self.num_negatives < 0:
            raise UsageError(f"objective.num_negatives: must not be negative, got {self.num_negatives}")
        if self.mask_copies < 1:
            raise UsageError(f"objective.mask_copies: must be at least 1, got {self.mask_copies}")
        if self.mask_copies > 1 and self.num_negatives > 0:
            raise UsageError("objective.mask_copies: contrastive negatives are drawn for one mask per clip")
        if self.num_negatives > 0 and self.mask_length < 2:
            # A span of 2 frames guarantees every masked clip another masked frame to contrast with.
            raise UsageError(
                f"masking.mask_length: contrastive negatives need spans of at least 2 frames, got {self.mask_length}"
            )
        if self.max_samples is not None and self.max_samples < 1:
            raise UsageError(f"data.max_seconds: crops must keep at least one sample, got {self.max_samples} samples")
        if self.pad_to_multiple_of is not None and self.pad_to_multiple_of < 1:
            raise UsageError(f"pad_to_multiple_of: must be a positive length or None, got {self.pad_to_multiple_of}")
        if not is_speech_encoder(self.config) or (
            not uses_filterbanks(self.config) and len(self.config.conv_kernel) != len(self.config.conv_stride)
        ):
            raise UsageError(
                "model: the config has neither filterbank input nor matching conv_kernel and conv_stride, so audio "
                "samples cannot be mapped to feature frames (it is not a wav2vec 2.0-style speech encoder)"
            )
        if not getattr(self.feature_extractor, "return_attention_mask", False):
            raise UsageError(
                "feature extractor: it does not return attention masks (return_attention_mask=False), which masking "
                "padded batches needs; use one with return_attention_mask=True"
            )
        if getattr(self.feature_extractor, "padding_side", "right") != "right":
            raise UsageError("feature extractor: padding_side must be 'right', where the masks expect padding")
        self._rng = SeededGenerator(self.seed)

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        if not examples:
            raise UsageError("cannot collate an empty batch")
        clips = [np.asarray(example["input_values"], dtype=np.float32) for example in examples]
        if any(clip.ndim != 1 for clip in clips):
            raise UsageError("input_values must be 1-D mono audio, one array per example")
        generator = self._rng.get()
        # Precomputed per-frame labels (HuBERT's clusters) stay aligned with a crop that starts on a frame.
        frame_labels = [example["labels"] for example in examples] if "labels" in examples[0] else None
        offsets = [0] * len(clips)
        if self.max_samples is not None:
            align = samples_per_frame(self.config) if frame_labels is not None else 1
            clips, offsets = self._crop(clips, generator, align)
        batch = self.feature_extractor(
            clips,
            sampling_rate=self.feature_extractor.sampling_rate,
            padding=True,
            pad_to_multiple_of=self.pad_to_multiple_of,
            return_attention_mask=True,
            return_tensors="pt",
        )
        samples = torch.tensor([len(clip) for clip in clips])
        lengths = frame_lengths(samples, self.config)
        if uses_filterbanks(self.config):
            key = "input_features"
            num_frames = batch[key].shape[1]  # the extractor pads the frames, and to a multiple of its own
        else:
            key = "input_values"
            num_frames = int(frame_lengths(batch[key].shape[1], self.config))
        mask = span_mask(
            lengths.repeat(self.mask_copies), num_frames, self.mask_prob, self.mask_length, self.min_masks, generator
        )
        out = {
            key: batch[key].float(),
            "attention_mask": batch["attention_mask"].long(),
            "mask_time_indices": mask,
        }
        if self.num_negatives > 0:
            out["sampled_negative_indices"] = sample_negatives(mask, self.num_negatives, generator)
        if frame_labels is not None:
            out["labels"] = _frame_labels(frame_labels, offsets, lengths, num_frames, samples_per_frame(self.config))
        elif self.targets is not None:
            out["labels"] = self.targets(clips, num_frames)
        return out

    def _crop(
        self, clips: list[np.ndarray], generator: torch.Generator, align: int = 1
    ) -> tuple[list[np.ndarray], list[int]]:
        """A random window of `max_samples` from each longer clip (one draw per clip, used or not), starting on a
        multiple of `align` samples; the windows and their offsets."""
        spare = torch.tensor([max(len(clip) - self.max_samples, 0) for clip in clips]) // align
        offsets = (
            (torch.rand(len(clips), generator=generator, dtype=torch.float64) * (spare + 1))
            .long()
            .clamp(max=spare)
            .mul(align)
            .tolist()
        )
        windows = [clip[offset : offset + self.max_samples] for clip, offset in zip(clips, offsets, strict=True)]
        return windows, offsets


def _frame_labels(
    labels: list, offsets: list[int], lengths: torch.Tensor, num_frames: int, samples_per_frame: int
) -> torch.Tensor:
    """(B, num_frames) long: each clip's labels from the frame its crop starts on, -100 past its frames."""
    out = torch.full((len(labels), num_frames), -100, dtype=torch.long)
    for row, (clip_labels, offset, length) in enumerate(zip(labels, offsets, lengths.tolist(), strict=True)):
        start = offset // samples_per_frame
        window = torch.as_tensor(np.asarray(clip_labels)[start : start + length], dtype=torch.long)
        out[row, : len(window)] = window
    return out


@dataclass
class MelTargets:
    """Per-frame targets from log-mel frames of the cropped raw clips, at the encoder's frame rate: 25 ms windows
    every `samples_per_frame / stack` samples (10 ms at 16 kHz and 20 ms frames), `stack` of them side by side per
    encoder frame, each bin normalised to zero mean and unit variance over the clip's frames. Encoder frame t reads
    samples [t * hop * stack, ...), and so do its stacked mel frames.

    With a `quantizer` (BEST-RQ's frozen projection and l2-normalised codebook) the targets are code ids, (B, T)
    long with -100 past each clip's frames; without, the stacked frames themselves, (B, T, stack * mel_bins) float
    (masked reconstruction).
    """

    config: Any
    """The encoder's config: its front end sets the frames (`hfssl.models.speech.frame_lengths`)."""
    sampling_rate: int = 16000
    mel_bins: int = 80
    quantizer: tuple[torch.Tensor, torch.Tensor] | None = None
    """(projection (stack * mel_bins, d), codebook (codes, d)) from `hfssl.heads.random_quantizer`."""
    _mel: Any = field(default=None, init=False, repr=False)

    def __post_init__(self):
        spf = samples_per_frame(self.config)
        self.stack = max(1, round(spf / (self.sampling_rate / 100)))
        if spf % self.stack:
            raise UsageError(
                f"data.sampling_rate: the encoder's frames of {spf} samples cannot be cut into {self.stack} equal "
                f"log-mel hops of about 10 ms at {self.sampling_rate} Hz; resample to a rate where they can "
                "(16000 Hz: 2 hops of 160)"
            )
        self.hop = spf // self.stack
        self.window = round(0.025 * self.sampling_rate)
        if self.quantizer is not None and self.quantizer[0].shape[0] != self.dim:
            raise UsageError(
                f"objective.mel_bins: the quantizer projects {self.quantizer[0].shape[0]} values per frame, but "
                f"{self.stack} stacked frames of {self.mel_bins} bins give {self.dim}"
            )

    @property
    def dim(self) -> int:
        return self.stack * self.mel_bins

    def features(self, clips: list[np.ndarray], num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, num_frames, dim) normalised stacked log-mel frames and (B, num_frames) bool: inside the clip."""
        import torchaudio

        if self._mel is None:
            self._mel = torchaudio.transforms.MelSpectrogram(
                sample_rate=self.sampling_rate,
                n_fft=self.window,
                win_length=self.window,
                hop_length=self.hop,
                n_mels=self.mel_bins,
                center=False,
            )
        samples = max(len(clip) for clip in clips)
        # Room for every stacked frame of the longest clip's last encoder frame.
        width = max(samples, (num_frames * self.stack - 1) * self.hop + self.window)
        audio = torch.zeros(len(clips), width)
        for row, clip in enumerate(clips):
            audio[row, : len(clip)] = torch.as_tensor(clip, dtype=torch.float32)
        with torch.no_grad():
            mel = self._mel(audio).clamp_min(1e-10).log().transpose(1, 2)  # (B, mel frames, bins)
        mel = mel[:, : num_frames * self.stack]
        valid = torch.arange(num_frames) < frame_lengths(torch.tensor([len(c) for c in clips]), self.config)[:, None]
        frame_valid = valid.repeat_interleave(self.stack, dim=1)[:, :, None]
        count = frame_valid.sum(1).clamp(min=1)
        mean = (mel * frame_valid).sum(1, keepdim=True) / count[:, None]
        var = (((mel - mean) * frame_valid) ** 2).sum(1, keepdim=True) / count[:, None]
        mel = ((mel - mean) / (var + 1e-5).sqrt()) * frame_valid
        return mel.reshape(len(clips), num_frames, self.dim), valid

    def __call__(self, clips: list[np.ndarray], num_frames: int) -> torch.Tensor:
        frames, valid = self.features(clips, num_frames)
        if self.quantizer is None:
            return frames
        projection, codebook = self.quantizer
        codes = (F.normalize(frames @ projection, dim=-1) @ codebook.T).argmax(-1)
        return codes.masked_fill(~valid, -100)
