"""Batch-size warmup and the masking-rate schedule (`hfssl.ramps`): their shapes, the collators following the
schedule, and a run that uses both resuming exactly."""

import json

import pytest
import torch
from helpers import assert_resumes_exactly, dry_run_report, hfssl

from hfssl.checkpoint import read_state
from hfssl.collators.text import MLMCollator, SpanMaskCollator, WholeWordMaskCollator
from hfssl.config import MaskingArgs, TrainArgs
from hfssl.errors import UsageError
from hfssl.ramps import BatchWarmup, MaskRateSchedule
from hfssl.tokenizer import train_tokenizer


def test_batch_warmup_grows_with_the_data_then_stays_full():
    ramp = BatchWarmup(start=2, full=8, tokens=10_000, units=100)
    sizes = [ramp.micro_batches(k) for k in range(40)]
    assert sizes[0] == 2 and sizes[-1] == 8
    assert all(a <= b for a, b in zip(sizes, sizes[1:], strict=False))
    seen = 0
    for k, size in enumerate(sizes):
        # Each step's size is the ramp's at the data taken before it: start + (full - start) * share, floored.
        assert size == min(8, 2 + int(6 * seen * 100 / 10_000)), k
        seen += size
    # The ramp is over once 100 micro-batches of 100 units are in; not before.
    first_full = sizes.index(8)
    assert sum(sizes[:first_full]) >= 100 > sum(sizes[: first_full - 1])


def test_step_of_inverts_the_sizes():
    ramp = BatchWarmup(start=1, full=4, tokens=3_000, units=64)
    expected = [k for k in range(60) for _ in range(ramp.micro_batches(k))]
    # A fresh ramp, asked out of order, places every micro-batch in the step that trains it.
    fresh = BatchWarmup(start=1, full=4, tokens=3_000, units=64)
    order = list(range(len(expected)))[::-7] + list(range(len(expected)))
    assert all(fresh.step_of(i) == expected[i] for i in order)


@pytest.mark.parametrize("accumulation", [1, 3])
def test_mask_rate_schedule_steps_and_lines(accumulation):
    step = MaskRateSchedule([0.3, 0.15, 0.05], [0.6, 0.9], "step", total_steps=100, accumulation=accumulation)
    rates = [step(i * accumulation) for i in range(100)]
    assert rates[:60] == [0.3] * 60 and rates[60:90] == [0.15] * 30 and rates[90:] == [0.05] * 10
    line = MaskRateSchedule([0.4, 0.2], [0.5], "linear", total_steps=100, accumulation=accumulation)
    assert line(0) == 0.4 and line(25 * accumulation) == pytest.approx(0.3) and line(50 * accumulation) == 0.2
    assert line(99 * accumulation) == 0.2


def test_mask_rate_schedule_counts_steps_through_the_batch_warmup():
    ramp = BatchWarmup(start=1, full=4, tokens=2_000, units=100)
    schedule = MaskRateSchedule([0.3, 0.1], [0.5], "step", total_steps=20, accumulation=ramp)
    boundary = sum(ramp.micro_batches(k) for k in range(10))  # the first micro-batch of step 10
    assert schedule(boundary - 1) == 0.3 and schedule(boundary) == 0.1


@pytest.mark.parametrize("collator_class", [MLMCollator, WholeWordMaskCollator, SpanMaskCollator])
def test_collators_mask_at_the_scheduled_rate(collator_class):
    words = [f"w{i}" for i in range(300)]
    generator = torch.Generator().manual_seed(0)
    texts = [" ".join(words[j] for j in torch.randint(300, (40,), generator=generator)) for _ in range(400)]
    tokenizer = train_tokenizer(texts, kind="wordpiece", vocab_size=400)
    examples = [{"input_ids": ids} for ids in tokenizer(texts)["input_ids"]]
    schedule = MaskRateSchedule([0.4, 0.1], [0.5], "step", total_steps=10)
    collator = collator_class(tokenizer, seed=3, rate_schedule=schedule)
    shares = []
    for i in range(10):
        batch = collator(examples[i * 40 : (i + 1) * 40])
        maskable = (batch["attention_mask"] == 1) & (batch["input_ids"] != tokenizer.cls_token_id)
        maskable &= batch["input_ids"] != tokenizer.sep_token_id
        shares.append(float((batch["labels"] != -100).sum() / maskable.sum()))
    assert all(abs(s - 0.4) < 0.04 for s in shares[:5]), shares
    assert all(abs(s - 0.1) < 0.03 for s in shares[5:]), shares


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: MaskingArgs(mask_rate_schedule=[0.3, 0.1]), "masking.mask_rate_milestones: needs one fraction"),
        (lambda: MaskingArgs(mask_rate_schedule=[0.3, 0.1], mask_rate_milestones=[1.0]), "must increase strictly"),
        (lambda: MaskingArgs(mask_rate_schedule=[0.3, 1.2], mask_rate_milestones=[0.5]), "mask_rate_schedule[1]"),
        (lambda: TrainArgs(batch_warmup_start=2), "needs both batch_warmup_start and batch_warmup_tokens"),
        (lambda: TrainArgs(batch_warmup_start=4, batch_warmup_tokens=1e6, grad_accum=4), "below train.grad_accum"),
        (lambda: TrainArgs(batch_warmup_start=1, batch_warmup_tokens=1e6, grad_accum=4, max_steps=None, epochs=1),
         "train.max_steps: batch-size warmup"),
    ],
)  # fmt: skip
def test_settings_that_cannot_work_are_refused(build, message):
    with pytest.raises(UsageError, match=message.replace("[", r"\[")):
        build()


TINY = ["--model.num_layers", "2", "--model.hidden_size", "32", "--model.num_heads", "2",
        "--data.synthetic_documents", "300", "--data.seq_len", "32", "--tokenizer.vocab_size", "300",
        "--train.batch_size", "4", "--train.grad_accum", "4", "--train.max_steps", "8", "--train.eval_every", "4",
        "--train.save_every", "4", "--train.log_every", "4", "--train.keep_last", "3", "--train.eval_batches", "2",
        "--train.probe_every", "",
        "--train.batch_warmup_start", "1", "--train.batch_warmup_tokens", "1536",
        "--masking.mask_rate_schedule", "[0.4, 0.15]", "--masking.mask_rate_milestones", "[0.5]"]  # fmt: skip


def test_a_run_with_both_ramps_takes_its_planned_batches_and_resumes_exactly(tmp_path):
    run = tmp_path / "run"
    hfssl("pretrain", "text/mlm-tiny", *TINY, "--train.output_dir", run)
    # 1,536 tokens are 12 micro-batches of 4 x 32: a step after M micro-batches takes 1 + floor(M / 4) of them.
    ramp = BatchWarmup(start=1, full=4, tokens=1536, units=4 * 32)
    planned = [ramp.micro_batches(k) for k in range(8)]
    assert planned == [1, 1, 1, 1, 2, 2, 3, 3]
    assert read_state(run / "checkpoints" / "step-0000004")["micro_batches"] == sum(planned[:4])
    assert read_state(run / "checkpoints" / "step-0000008")["micro_batches"] == sum(planned)
    card = (run / "final" / "README.md").read_text()
    assert "| batch-size warmup | 1 to 4 micro-batches per step over the first 1,536 tokens |" in card
    assert "0.4, then 0.15 from 50% of the steps; evaluated at 0.3" in card
    assert json.loads((run / "metrics.json").read_text())["steps"] == 8
    assert_resumes_exactly(run, tmp_path / "resumed", 4, "text/mlm-tiny", *TINY)


def test_a_schedule_the_run_cannot_follow_is_refused(tmp_path):
    done = hfssl("pretrain", "text/mlm-tiny", *TINY, "--train.num_workers", "1", "--train.output_dir",
                 tmp_path / "run", check=False)  # fmt: skip
    assert done.returncode == 2 and "set train.num_workers 0" in done.stderr.splitlines()[-1]
    assert not (tmp_path / "run").exists()


def test_a_dry_run_counts_the_smaller_first_steps(tmp_path):
    """The estimate covers the micro-batches the ramp plans (14 of 128 tokens in 8 steps), not 8 full steps."""
    done = hfssl("pretrain", "text/mlm-tiny", *TINY, "--train.output_dir", tmp_path / "run", "--dry-run")
    report = dry_run_report(done.stdout)
    tokens = float(report["data"].split(" tokens")[0].replace(",", ""))
    epochs = float(report["covering"].split(" epochs")[0])
    assert epochs == pytest.approx(14 * 128 / tokens, rel=0.02)
    assert "512 tokens per step" in report["covering"]
