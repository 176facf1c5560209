"""Audio masking benchmark: hfssl's span masks and negatives against transformers' helpers, in one process.

    python bench/audio_masking.py              # 1 torch thread (as in a DataLoader worker), ~1 minute
    python bench/audio_masking.py --threads 2  # the main process's share of a small machine

Utterances/s of producing what `Wav2Vec2ForPreTraining` takes for a batch: the span mask (B, T) and the (B, T, K)
negative indices. hfssl: `span_mask` + `sample_negatives` from frame lengths. Baseline: `_compute_mask_indices` with
a frame attention mask + `_sample_negative_indices`, wrapped with `torch.from_numpy` (free). Both draw the same
distributions (tests/collators/test_audio.py checks it); the baseline's indices are int32, so hfssl is timed with
int64 (the collator's output) and with int32 (the `dtype` option). Two batches of 32 utterances x 500 frames
(10 s at 50 Hz): all full length, and lengths uniform in 250-500 padded to 500. mask_prob 0.65, mask_length 10,
min_masks 2, 100 negatives. Each call is timed alone, passes interleaved after a warm-up, median kept.

A breakdown times hfssl's parts (the mask; the random words; the output's allocation and fill) and counts page
faults per call: the (B, T, K) output is 6.4-12.8 MB, and on a small VM first-touching fresh pages costs about as much
as the arithmetic, so the numbers move with how glibc happens to recycle memory between calls.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import numpy as np
import torch

from hfssl.collators.audio import sample_negatives, span_mask

BATCH, FRAMES, MASK_PROB, MASK_LENGTH, MIN_MASKS, NEGATIVES = 32, 500, 0.65, 10, 2, 100
TARGET = 20.0


def transformers_masking(attention_mask: torch.Tensor, negatives: bool = True):
    """The one door to transformers' private helpers: mask and negatives as a user of them writes it."""
    from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

    shape = tuple(attention_mask.shape)
    mask = _compute_mask_indices(shape, MASK_PROB, MASK_LENGTH, attention_mask, MIN_MASKS)
    if not negatives:
        return torch.from_numpy(mask)
    return torch.from_numpy(mask), torch.from_numpy(_sample_negative_indices(shape, NEGATIVES, mask))


def hfssl_masking(lengths: torch.Tensor, generator: torch.Generator, dtype: torch.dtype):
    mask = span_mask(lengths, FRAMES, MASK_PROB, MASK_LENGTH, MIN_MASKS, generator)
    return mask, sample_negatives(mask, NEGATIVES, generator, dtype=dtype)


def check(lengths: torch.Tensor, mask: torch.Tensor, negatives: torch.Tensor) -> None:
    """Both sides give a valid batch: nothing masked in padding, negatives masked frames of the same utterance."""
    assert mask.shape == (BATCH, FRAMES) and negatives.shape == (BATCH, FRAMES, NEGATIVES)
    assert not (mask & (torch.arange(FRAMES) >= lengths[:, None])).any()
    rows = mask.reshape(-1).nonzero().squeeze(1)
    picked = negatives.reshape(-1, NEGATIVES)[rows].long()
    assert mask.reshape(-1)[picked].all() and (picked // FRAMES == rows[:, None] // FRAMES).all()
    assert (picked != rows[:, None]).all()


def time_calls(cases: dict, repeats: int, warmup: int) -> dict[str, dict]:
    """Median seconds per call and page faults per call, each case timed alone, passes interleaved."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in cases}
    faults = dict.fromkeys(cases, 0)
    for _ in range(repeats):
        for name, fn in cases.items():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
            faults[name] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    return {name: {"s": statistics.median(t), "faults": faults[name] / repeats} for name, t in times.items()}


def run(args) -> dict:
    rng = torch.Generator().manual_seed(0)
    batches = {
        "32 x 500 frames": torch.full((BATCH,), FRAMES),
        "32 x 250-500 frames": torch.randint(250, FRAMES + 1, (BATCH,), generator=rng),
    }
    results = {}
    for label, lengths in batches.items():
        attention_mask = (torch.arange(FRAMES) < lengths[:, None]).long()
        generator = torch.Generator().manual_seed(1)
        np.random.seed(1)
        check(lengths, *transformers_masking(attention_mask))
        check(lengths, *hfssl_masking(lengths, generator, torch.long))
        check(lengths, *hfssl_masking(lengths, generator, torch.int32))
        mask = span_mask(lengths, FRAMES, MASK_PROB, MASK_LENGTH, MIN_MASKS, generator)
        words = (int(mask.sum()) * NEGATIVES + 1) // 2
        bits = np.random.PCG64(2)
        cases = {
            "transformers": lambda am=attention_mask: transformers_masking(am),
            "hfssl int64": lambda n=lengths, g=generator: hfssl_masking(n, g, torch.long),
            "hfssl int32": lambda n=lengths, g=generator: hfssl_masking(n, g, torch.int32),
            "  transformers mask only": lambda am=attention_mask: transformers_masking(am, negatives=False),
            "  mask only": lambda n=lengths, g=generator: span_mask(n, FRAMES, MASK_PROB, MASK_LENGTH, MIN_MASKS, g),
            "  negatives int64": lambda m=mask, g=generator: sample_negatives(m, NEGATIVES, g),
            "  random words": lambda w=words, g=generator: torch.empty(w, dtype=torch.long).random_(
                -(2**63), None, generator=g
            ),
            "  output alloc+fill int64": lambda: torch.arange(BATCH * FRAMES)[:, None].expand(-1, NEGATIVES).clone(),
            # The floor: the same number of random words from the fastest bit generator numpy has here, nothing else.
            "  floor: PCG64 raw words": lambda w=words, b=bits: b.random_raw(w),
        }
        results[label] = time_calls(cases, args.repeats, args.warmup)
    return results


def table(results: dict, threads: int) -> str:
    lines = [
        f"audio masking, utterances/s ({threads} torch thread{'s' * (threads > 1)}; load average "
        f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)",
        f"{'batch':<22}{'what':<28}{'utt/s':>10}{'ms/batch':>10}{'faults':>8}{'vs transformers':>17}  target",
    ]
    for label, timings in results.items():
        baseline = BATCH / timings["transformers"]["s"]
        for name, t in timings.items():
            speed = BATCH / t["s"]
            ratio, verdict = "", ""
            if name.startswith("hfssl"):
                ratio = f"{speed / baseline:.1f}x"
                verdict = f">= {TARGET:.0f}x {'PASS' if speed / baseline >= TARGET else 'MISS'}"
            lines.append(
                f"{label:<22}{name:<28}{speed:>10,.0f}{t['s'] * 1e3:>10.2f}{t['faults']:>8.0f}{ratio:>17}  {verdict}"
            )
        budget = timings["transformers"]["s"] / TARGET
        floor = timings["  floor: PCG64 raw words"]["s"]
        lines.append(
            f"{'':<22}{TARGET:.0f}x needs <= {budget * 1e3:.2f} ms/batch; the random bits alone take "
            f"{floor * 1e3:.2f} ms ({timings['transformers']['s'] / floor:.1f}x is the ceiling)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1, as in a worker)")
    parser.add_argument("--repeats", type=int, default=100, help="timed calls per case (median kept)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls per case first")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = run(args)
    print(table(results, torch.get_num_threads()))
    return results


if __name__ == "__main__":
    main()
