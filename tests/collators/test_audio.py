from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import (
    Data2VecAudioConfig,
    Data2VecAudioModel,
    HubertConfig,
    HubertModel,
    Wav2Vec2Config,
    Wav2Vec2ConformerConfig,
    Wav2Vec2ConformerModel,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2ForPreTraining,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMModel,
)

from hfssl.collators.audio import AudioMaskCollator, sample_negatives, span_mask
from hfssl.errors import UsageError
from hfssl.models.speech import frame_lengths

# A small conv encoder: 80 samples per frame, receptive field 400 samples.
TINY_CONV = {"conv_dim": (16, 16, 16), "conv_kernel": (10, 4, 4), "conv_stride": (5, 4, 4)}


def tiny_config(**overrides) -> Wav2Vec2Config:
    settings_ = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        codevector_dim=16,
        proj_codevector_dim=16,
        num_codevectors_per_group=8,
        num_codevector_groups=2,
        num_negatives=20,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        **TINY_CONV,
    )
    return Wav2Vec2Config(**(settings_ | overrides))


def transformers_masks(lengths, num_frames, mask_prob, mask_length, min_masks):
    """The one door to transformers' private masking helpers (an upstream change breaks here only)."""
    from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices

    attention_mask = (torch.arange(num_frames) < torch.as_tensor(lengths)[:, None]).long()
    shape = (len(lengths), num_frames)
    return torch.from_numpy(_compute_mask_indices(shape, mask_prob, mask_length, attention_mask, min_masks))


def transformers_negatives(mask, num_negatives):
    from transformers.models.wav2vec2.modeling_wav2vec2 import _sample_negative_indices

    return torch.from_numpy(_sample_negative_indices(tuple(mask.shape), num_negatives, mask.numpy()))


def run_lengths(mask: torch.Tensor) -> torch.Tensor:
    """Lengths of all runs of True along the last axis, pooled over the leading ones."""
    padded = torch.nn.functional.pad(mask.flatten(0, -2), (1, 1)).reshape(-1).int()
    edges = padded.diff()
    return (edges == -1).nonzero().flatten() - (edges == 1).nonzero().flatten()


def run_counts(mask: torch.Tensor) -> torch.Tensor:
    """Number of runs of True along the last axis."""
    starts = mask.clone()
    starts[..., 1:] &= ~mask[..., :-1]
    return starts.sum(-1)


def check_negatives(mask: torch.Tensor, negatives: torch.Tensor) -> None:
    batch, frames, k = negatives.shape
    assert negatives.shape[:2] == mask.shape
    flat = mask.reshape(-1)
    clip = torch.arange(batch * frames) // frames
    table = negatives.reshape(batch * frames, k).long()
    assert ((table >= 0) & (table < batch * frames)).all()
    rows = flat.nonzero().squeeze(1)
    counts = mask.sum(1)
    picked = table[rows]
    assert flat[picked].all(), "a negative is an unmasked or padding frame"
    assert (clip[picked] == clip[rows][:, None]).all(), "a negative comes from another clip"
    many = counts[clip[rows]] >= 2
    assert (picked[many] != rows[many][:, None]).all(), "a negative is the positive itself"
    assert (picked[~many] == rows[~many][:, None]).all(), "a lone masked frame must point at itself"


# --- frame_lengths -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "conv",
    [
        {},  # wav2vec 2.0's own layout
        TINY_CONV,
        {"conv_dim": (8, 8), "conv_kernel": (3, 2), "conv_stride": (3, 1)},
    ],
)
def test_frame_lengths_match_transformers(conv):
    config = Wav2Vec2Config(**conv)
    lengths = torch.arange(0, 50_000, 7)
    reference = Wav2Vec2Model._get_feat_extract_output_lengths(SimpleNamespace(config=config), lengths, False)
    assert torch.equal(frame_lengths(lengths, config), reference.clamp(min=0))
    assert (reference >= 1).sum() > 1000  # the comparison covers real lengths, not only the clamped ones
    assert int(frame_lengths(16_000, Wav2Vec2Config())) == 49


@pytest.mark.parametrize(
    "model_class, config",
    [
        (HubertModel, HubertConfig()),
        (WavLMModel, WavLMConfig()),
        (Data2VecAudioModel, Data2VecAudioConfig()),
        (Wav2Vec2ConformerModel, Wav2Vec2ConformerConfig(conv_kernel=(7, 3), conv_stride=(3, 2), conv_dim=(4, 4))),
    ],
)
def test_frame_lengths_for_other_speech_encoders(model_class, config):
    lengths = torch.arange(400, 40_000, 13)
    reference = model_class._get_feat_extract_output_lengths(SimpleNamespace(config=config), lengths)
    assert torch.equal(frame_lengths(lengths, config), reference)


def test_frame_lengths_equal_the_models_output_frames():
    config = tiny_config()
    model = Wav2Vec2Model(config).eval()
    for samples in (400, 479, 480, 1234, 4000):
        with torch.no_grad():
            frames = model(torch.randn(1, samples)).extract_features.shape[1]
        assert int(frame_lengths(samples, config)) == frames


# --- span_mask ---------------------------------------------------------------------------------------------------


def close_means(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Two samples' means agree within 4.5 standard errors of their difference (or exactly, if both are constant)."""
    error = (a.var() / len(a) + b.var() / len(b)).sqrt()
    return bool((a.mean() - b.mean()).abs() <= 4.5 * error + 1e-9)


def draw_many(fn, draws: int) -> torch.Tensor:
    return torch.stack([fn(i) for i in range(draws)])


MASK_SETTINGS = [
    # (lengths, num_frames, mask_prob, mask_length, min_masks)
    ([200] * 4, 200, 0.65, 10, 2),
    ([0, 5, 9, 10, 11, 15, 30, 57, 120, 200], 200, 0.65, 10, 2),
    ([40, 60, 100], 100, 0.05, 5, 4),
    ([23, 50, 77], 80, 0.3, 3, 0),
]


@pytest.mark.parametrize("lengths, num_frames, mask_prob, mask_length, min_masks", MASK_SETTINGS)
def test_span_mask_statistics_match_transformers(lengths, num_frames, mask_prob, mask_length, min_masks):
    draws = 300
    lengths_t = torch.tensor(lengths)
    valid = torch.arange(num_frames) < lengths_t[:, None]
    g = torch.Generator().manual_seed(0)
    ours = draw_many(lambda _: span_mask(lengths_t, num_frames, mask_prob, mask_length, min_masks, g), draws)
    np.random.seed(0)
    theirs = draw_many(lambda _: transformers_masks(lengths, num_frames, mask_prob, mask_length, min_masks), draws)
    # transformers pads the span list of a clip with no span of its own with a dummy span on the last (padding)
    # frame; hfssl never masks padding, so the comparison is over each clip's own frames.
    assert not (ours & ~valid).any()
    theirs &= valid

    for clip, length in enumerate(lengths):
        count_ours, count_theirs = ours[:, clip].sum(1).double(), theirs[:, clip].sum(1).double()
        assert close_means(count_ours, count_theirs), f"masked frames, clip of {length}"
        if length < mask_length:
            assert count_ours.max() == 0 and count_theirs.max() == 0
        runs_ours, runs_theirs = run_counts(ours[:, clip]).double(), run_counts(theirs[:, clip]).double()
        assert close_means(runs_ours, runs_theirs), f"masked runs, clip of {length}"
        # Where the clip starts masked or not: starts are uniform over the valid ones in both.
        assert abs(ours[:, clip, 0].double().mean() - theirs[:, clip, 0].double().mean()) < 0.1
    # The pooled run-length distribution (overlapping spans merge into longer runs).
    hist_ours = torch.bincount(run_lengths(ours), minlength=num_frames + 1).double()
    hist_theirs = torch.bincount(run_lengths(theirs), minlength=num_frames + 1).double()
    assert hist_theirs.sum() > 0
    assert (hist_ours / hist_ours.sum() - hist_theirs / hist_theirs.sum()).abs().max() < 0.05
    assert hist_ours.nonzero().min() >= mask_length


def test_span_counts_round_like_transformers():
    # Spans of one frame never overlap, so the masked count is the number of spans: 0.33 * 10 = 3.3 spans, i.e. 3
    # spans 70% of the time and 4 spans 30%, with min_masks 2 not binding.
    lengths = [10] * 3
    g = torch.Generator().manual_seed(1)
    ours = draw_many(lambda _: span_mask(torch.tensor(lengths), 10, 0.33, 1, 2, g).sum(1), 1000)
    np.random.seed(1)
    theirs = draw_many(lambda _: transformers_masks(lengths, 10, 0.33, 1, 2).sum(1), 1000)
    assert set(ours.unique().tolist()) == set(theirs.unique().tolist()) == {3, 4}
    assert abs((ours == 4).double().mean() - 0.3) < 0.05
    assert abs((theirs == 4).double().mean() - 0.3) < 0.05
    # One rounding draw per batch, as transformers: clips of equal length get the same number of spans.
    assert (ours == ours[:, :1]).all() and (theirs == theirs[:, :1]).all()


def test_min_masks_and_caps():
    g = torch.Generator().manual_seed(0)
    # 0.01 * 100 / 5 rounds to 0 or 1 span; min_masks lifts it to 4 spans of 5 frames.
    mask = span_mask(torch.tensor([100] * 200), 100, 0.01, 5, 4, g)
    assert mask.sum(1).min() >= 5 and mask.sum(1).max() <= 20
    assert mask.sum(1).double().mean() > 15  # 4 spans of 5 overlap little in 100 frames
    # A clip of 12 frames has 3 valid starts for spans of 10: min_masks 5 is capped at 3, always covering all 12.
    mask = span_mask(torch.tensor([12, 30]), 30, 0.01, 10, 5, g)
    assert mask[0].sum() == 12 and not mask[0, 12:].any()
    # A batch shorter than one span masks nothing (transformers raises instead).
    assert not span_mask(torch.tensor([3, 4]), 4, 0.65, 10, 2, g).any()
    with pytest.raises(ValueError):
        span_mask(torch.tensor([31]), 30, 0.5, 2, 0, g)


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 120), min_size=1, max_size=6),
    extra=st.integers(0, 20),
    mask_prob=st.floats(0.01, 0.99),
    mask_length=st.integers(1, 12),
    min_masks=st.integers(0, 5),
    num_negatives=st.integers(1, 7),
    seed=st.integers(0, 2**31),
)
def test_mask_and_negative_invariants(lengths, extra, mask_prob, mask_length, min_masks, num_negatives, seed):
    num_frames = max(lengths) + extra
    lengths_t = torch.tensor(lengths)
    g = torch.Generator().manual_seed(seed)
    mask = span_mask(lengths_t, num_frames, mask_prob, mask_length, min_masks, g)
    assert mask.shape == (len(lengths), num_frames) and mask.dtype == torch.bool
    assert not (mask & (torch.arange(num_frames) >= lengths_t[:, None])).any()
    counts = mask.sum(1)
    fit = (lengths_t - mask_length + 1).clamp(min=0)
    lowest = torch.minimum(torch.full_like(fit, min_masks), torch.minimum(fit, torch.tensor(num_frames // mask_length)))
    assert ((lowest == 0) | (counts >= mask_length)).all()  # at least one whole span where one is due
    assert (counts[fit == 0] == 0).all()
    assert (run_lengths(mask) >= mask_length).all()
    highest = torch.floor(mask_prob * lengths_t / mask_length + 1).clamp(min=min_masks).long()
    assert (counts <= highest * mask_length).all()
    negatives = sample_negatives(mask, num_negatives, g)
    assert negatives.shape == (len(lengths), num_frames, num_negatives) and negatives.dtype == torch.long
    check_negatives(mask, negatives)


# --- sample_negatives --------------------------------------------------------------------------------------------


def test_negatives_are_uniform_over_the_other_masked_frames():
    mask = torch.zeros(2, 40, dtype=torch.bool)
    mask[0, 3:13] = True
    mask[0, 20:25] = True
    mask[1, 0:30] = True
    k = 6000
    g = torch.Generator().manual_seed(0)
    negatives = sample_negatives(mask, k, g)
    check_negatives(mask, negatives)
    np.random.seed(0)
    reference = transformers_negatives(mask, k)
    for clip, frame in [(0, 3), (0, 24), (1, 17)]:
        others = [clip * 40 + t for t in mask[clip].nonzero().flatten().tolist() if t != frame]
        for draws in (negatives[clip, frame], reference[clip, frame].long()):
            counts = torch.bincount(draws, minlength=80)[others].double()
            assert counts.sum() == k
            expected = k / len(others)
            chi2 = float(((counts - expected) ** 2 / expected).sum())
            dof = len(others) - 1
            assert chi2 < dof + 5 * (2 * dof) ** 0.5, chi2


def test_negatives_layout_matches_transformers():
    lengths = torch.tensor([50, 37, 12])
    mask = span_mask(lengths, 50, 0.65, 4, 2, torch.Generator().manual_seed(3))
    ours = sample_negatives(mask, 9, torch.Generator().manual_seed(3))
    theirs = transformers_negatives(mask, 9)
    assert ours.shape == theirs.shape
    check_negatives(mask, ours)
    check_negatives(mask, theirs)
    ours32 = sample_negatives(mask, 9, torch.Generator().manual_seed(3), dtype=torch.int32)
    assert ours32.dtype == torch.int32 and torch.equal(ours32.long(), ours)


def test_lone_or_missing_masked_frames():
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[0, 4] = True
    mask[2, 1:3] = True
    negatives = sample_negatives(mask, 5, torch.Generator().manual_seed(0))
    check_negatives(mask, negatives)
    assert (negatives[0, 4] == 4).all()
    assert (negatives[2, 1] == 14).all() and (negatives[2, 2] == 13).all()
    assert (negatives[1] == torch.arange(6, 12)[:, None]).all()
    assert sample_negatives(torch.zeros(2, 3, dtype=torch.bool), 4).shape == (2, 3, 4)


# --- the collator ------------------------------------------------------------------------------------------------


def feature_extractor(**overrides):
    return Wav2Vec2FeatureExtractor(**({"return_attention_mask": True, "do_normalize": True} | overrides))


def clips(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [{"input_values": rng.standard_normal(n).astype(np.float32)} for n in lengths]


def test_collator_batch_layout():
    config = tiny_config()
    collator = AudioMaskCollator(feature_extractor(), config, mask_length=4, num_negatives=7, pad_to_multiple_of=320)
    lengths = [4000, 1200, 2500, 700]
    batch = collator(clips(lengths))
    samples = batch["input_values"].shape[1]
    assert samples % 320 == 0 and samples >= 4000
    num_frames = int(frame_lengths(samples, config))
    assert batch["input_values"].dtype == torch.float32
    assert batch["attention_mask"].dtype == torch.long
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert batch["mask_time_indices"].shape == (4, num_frames)
    assert batch["sampled_negative_indices"].shape == (4, num_frames, 7)
    own_frames = frame_lengths(torch.tensor(lengths), config)
    assert not (batch["mask_time_indices"] & (torch.arange(num_frames) >= own_frames[:, None])).any()
    assert (batch["mask_time_indices"].sum(1) > 0).all()
    check_negatives(batch["mask_time_indices"], batch["sampled_negative_indices"])
    # do_normalize: each clip zero-mean, unit-variance over its own samples; padding stays 0.
    second = batch["input_values"][1]
    assert abs(float(second[:1200].mean())) < 1e-3 and abs(float(second[:1200].std()) - 1) < 1e-2
    assert (second[1200:] == 0).all()
    assert "sampled_negative_indices" not in AudioMaskCollator(feature_extractor(), config, num_negatives=0)(
        clips(lengths)
    )
    assert AudioMaskCollator(feature_extractor(), config)(clips([4000], seed=1))["input_values"].shape == (1, 4000)


def test_pretraining_loss_is_finite():
    torch.manual_seed(0)
    config = tiny_config()
    model = Wav2Vec2ForPreTraining(config).eval()
    collator = AudioMaskCollator(feature_extractor(), config, mask_length=4, num_negatives=config.num_negatives)
    batch = collator(clips([4000, 3000, 2200, 900]))
    # A clip with a single masked frame (its negatives point at itself) still gives a finite loss.
    batch["mask_time_indices"][3] = False
    batch["mask_time_indices"][3, 2] = True
    batch["sampled_negative_indices"] = sample_negatives(batch["mask_time_indices"], config.num_negatives)
    with torch.no_grad():
        loss = model(**batch).loss
        batch["sampled_negative_indices"] = batch["sampled_negative_indices"].int()
        loss_int32 = model(**batch).loss
    assert torch.isfinite(loss) and loss > 0
    assert torch.equal(loss, loss_int32)


def test_same_seed_same_batches_and_exact_resume():
    config = tiny_config()
    data = [clips([3000, 2000, 4400], seed=i) for i in range(5)]

    def make(seed=0):
        return AudioMaskCollator(feature_extractor(), config, mask_length=3, num_negatives=5, seed=seed)

    first, second = make(), make()
    batches = [first(examples) for examples in data]
    for examples, batch in zip(data, batches, strict=True):
        again = second(examples)
        assert all(torch.equal(batch[key], again[key]) for key in batch)
    other = make(seed=1)(data[0])
    assert not torch.equal(other["sampled_negative_indices"], batches[0]["sampled_negative_indices"])

    resumed = make(seed=7)
    replay = make()
    for examples in data[:3]:
        replay(examples)
    resumed.load_state_dict(replay.state_dict())
    assert resumed.seed == 0
    assert torch.equal(resumed(data[3])["mask_time_indices"], batches[3]["mask_time_indices"])
    assert torch.equal(resumed(data[4])["sampled_negative_indices"], batches[4]["sampled_negative_indices"])
    resumed.reset()
    assert torch.equal(resumed(data[0])["sampled_negative_indices"], batches[0]["sampled_negative_indices"])


def test_cropping_keeps_clips_short_and_moves_the_window():
    config = tiny_config()
    collator = AudioMaskCollator(feature_extractor(do_normalize=False), config, mask_length=2, max_samples=1000)
    ramp = {"input_values": np.arange(5000, dtype=np.float32)}
    short = {"input_values": np.arange(600, dtype=np.float32)}
    starts = set()
    for _ in range(20):
        batch = collator([ramp, short])
        assert batch["input_values"].shape == (2, 1000)
        assert batch["attention_mask"].sum(1).tolist() == [1000, 600]
        window = batch["input_values"][0]
        start = int(window[0])
        assert torch.equal(window, torch.arange(start, start + 1000, dtype=torch.float32))
        assert 0 <= start <= 4000
        assert torch.equal(batch["input_values"][1, :600], torch.arange(600, dtype=torch.float32))
        starts.add(start)
    assert len(starts) > 15


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"mask_prob": 0.0}, "masking.mask_prob"),
        ({"mask_prob": 1.0}, "masking.mask_prob"),
        ({"mask_length": 0, "num_negatives": 0}, "masking.mask_length"),
        ({"mask_length": 1}, "masking.mask_length: contrastive negatives need spans of at least 2 frames"),
        ({"min_masks": -1}, "masking.min_masks"),
        ({"num_negatives": -1}, "objective.num_negatives"),
        ({"max_samples": 0}, "data.max_seconds"),
        ({"pad_to_multiple_of": 0}, "pad_to_multiple_of"),
        ({"feature_extractor": feature_extractor(return_attention_mask=False)}, "attention mask"),
        ({"feature_extractor": feature_extractor(padding_side="left")}, "padding_side"),
        ({"config": SimpleNamespace(hidden_size=32)}, "conv_kernel"),
    ],
)
def test_bad_settings_name_the_key(kwargs, key):
    arguments = {"feature_extractor": feature_extractor(), "config": tiny_config()} | kwargs
    with pytest.raises(UsageError, match=key):
        AudioMaskCollator(**arguments)


def test_mask_length_one_is_fine_without_negatives():
    collator = AudioMaskCollator(feature_extractor(), tiny_config(), mask_length=1, num_negatives=0)
    assert collator(clips([2000]))["mask_time_indices"].any()
    with pytest.raises(UsageError, match="empty batch"):
        collator([])
