"""`train.time_budget`: durations, the plan's arithmetic, the grid's pick, and a budgeted run that resumes on the
plan it started with."""

import json
from types import SimpleNamespace

import pytest
from helpers import assert_resumes_exactly, hfssl

from hfssl import budget
from hfssl.config.pretrain import budget_seconds
from hfssl.errors import UsageError
from hfssl.objectives import load_pretrain

TINY = [
    "text/mlm-tiny", "--model.num_layers", "1", "--model.hidden_size", "32", "--model.num_heads", "2",
    "--data.synthetic_documents", "300", "--data.seq_len", "32", "--tokenizer.vocab_size", "300",
    "--train.batch_size", "8", "--train.eval_every", "50", "--train.save_every", "25", "--train.keep_last", "1000",
    "--train.eval_batches", "2", "--train.probe_every", "",
]  # fmt: skip


@pytest.mark.parametrize(
    "text, seconds", [("90s", 90), ("30m", 1800), ("6h", 21600), ("1h30m", 5400), ("2.5h", 9000), ("45", 2700)]
)
def test_durations(text, seconds):
    assert budget_seconds(text) == seconds


@pytest.mark.parametrize("text", ["30x", "", "m", "1m30h", "0s", "-5m"])
def test_bad_durations_name_the_field(text):
    with pytest.raises(UsageError, match="train.time_budget"):
        budget_seconds(text)


def test_a_budget_takes_warmup_as_a_fraction_of_the_plan():
    with pytest.raises(UsageError, match="train.warmup_steps"):
        load_pretrain("text/mlm-tiny", {"train.time_budget": "10m", "train.warmup_steps": "100"})


def report(**changes) -> dict:
    base = {
        "unit": "tokens", "step_seconds": 0.5, "eval_batches": 4, "eval_batch_seconds": 0.25, "probes": 0,
        "probe_seconds": 0.0, "setup_seconds": 20.0, "export_seconds": 5.0, "checkpoint_seconds": 2.0,
        "units_per_step": 4096.0, "parameters": 3_000_000, "embedding_parameters": 1_000_000,
    }  # fmt: skip
    return base | changes


def test_the_plan_spends_the_budget_on_steps_after_what_every_run_pays():
    t = SimpleNamespace(eval_every=100, save_every=50, probe_every=None)
    plan = budget.plan_steps(report(), t, budget=600.0, spent=30.0)
    # setup 20 + two evaluations of 4 x 0.25 + export 5; a step: 0.5 + 1 s of evaluation / 100 + 2 s of checkpoint / 50
    assert plan.fixed == pytest.approx(27.0)
    assert plan.per_step == pytest.approx(0.55)
    assert plan.steps == int((600 - 30 - 27) / 0.55)
    assert plan.per_parameter() == pytest.approx(plan.steps * 4096 / 2_000_000)
    probed = budget.plan_steps(report(probes=3, probe_seconds=10.0), SimpleNamespace(**vars(t) | {"probe_every": 100}),
                               budget=600.0, spent=30.0)  # fmt: skip
    assert probed.fixed == pytest.approx(37.0) and probed.per_step == pytest.approx(0.65)


def cell(size: str, vocab: int, steps: int, parameters: int) -> budget.Cell:
    r = report(parameters=parameters, embedding_parameters=vocab * 10, units_per_step=1000.0)
    return budget.Cell(size, vocab, budget.Plan(steps, 600.0, 0.0, 0.0, 1.0, r))


def test_the_pick_takes_the_vocabulary_the_corpus_needs_then_the_largest_model_with_enough_data():
    cells = [
        cell(size, vocab, steps, parameters)
        for vocab in (4096, 8192)
        for size, steps, parameters in (
            ("tiny", 4000, 100_000),
            ("mini", 2000, 80_000 + 1_000_000),
            ("small", 20, 10**7),
        )
    ]
    chosen, reason = budget.pick(cells, types=5000)
    assert (chosen.size, chosen.vocab) == ("tiny", 4096)  # mini: 2e6 tokens on 1e6 parameters, 2 per parameter
    assert "4,096" in reason and "5,000 word types" in reason and "mini would get" in reason
    chosen, _ = budget.pick(cells, types=100_000)
    assert chosen.vocab == 8192
    starved = [cell("tiny", 4096, 100, 10**6), cell("mini", 4096, 50, 10**7)]
    chosen, reason = budget.pick(starved, types=10**5)
    assert chosen.size == "tiny" and "the smallest" in reason


def test_the_dry_run_grid_plans_every_size_and_vocabulary(monkeypatch):
    """The grid measures each cell (faked here: a step costs in proportion to the cell's parameters) with a
    tokenizer of its vocabulary trained once, and prints every cell and the pick."""
    seen = []

    def fake_measure(cfg, end=False, min_seconds=0.0):
        layers = {"tiny": 1, "mini": 4, "small": 16, "base": 64}[cfg.model.size]
        seen.append((cfg.model.size, cfg.tokenizer.vocab_size, cfg.tokenizer.path, cfg.model.num_layers))
        return report(step_seconds=0.01 * layers, parameters=layers * 10**5 + cfg.tokenizer.vocab_size * 64,
                      embedding_parameters=cfg.tokenizer.vocab_size * 64)  # fmt: skip

    monkeypatch.setattr(budget, "measure", fake_measure)
    cfg = load_pretrain(
        TINY[0],
        {k.removeprefix("--"): v for k, v in zip(TINY[1::2], TINY[2::2], strict=True)} | {"train.time_budget": "5m"},
    )
    cells, chosen, reason, types = budget.plan_grid(cfg)
    vocabs = sorted({*budget.VOCAB_SIZES, 300})
    assert [(c.size, c.vocab) for c in cells] == [(s, v) for v in vocabs for s in ("tiny", "mini", "small", "base")]
    assert all(path and str(vocab) in path and layers is None for _, vocab, path, layers in seen)
    assert 0 < types < 4096 and chosen.vocab == 300  # a few hundred word types: the smallest vocabulary
    text = budget.format_grid(cells, chosen, reason, cfg)
    assert text.count("<- picked") == 1 and len(text.splitlines()) == len(cells) + 3


def test_a_budgeted_run_plans_once_and_a_resumed_one_follows_that_plan(tmp_path):
    run = tmp_path / "budgeted"
    hfssl("pretrain", *TINY, "--train.time_budget", "10s", "--train.output_dir", run)
    metrics = json.loads((run / "metrics.json").read_text())
    last = sorted((run / "checkpoints").glob("step-*"))[-1]
    state = json.loads((last / "trainer_state.json").read_text())
    assert state["planned_steps"] == metrics["steps"] > budget.MIN_STEPS
    assert "time_budget: 10s" in (run / "config.yaml").read_text()
    # Continued from its first checkpoint, on another machine's speed the run would plan otherwise: it must not.
    assert_resumes_exactly(run, tmp_path / "resumed", 25, *TINY, "--train.time_budget", "10s")


def test_a_budget_too_short_for_ten_steps_names_the_field(monkeypatch, tmp_path):
    monkeypatch.setattr(budget, "measure", lambda cfg, end=False, min_seconds=0.0: report(step_seconds=5.0))
    cfg = load_pretrain("text/mlm-tiny", {"train.time_budget": "1m", "train.output_dir": str(tmp_path)})
    with pytest.raises(UsageError, match=r"train.time_budget: 1m leaves room for \d+ steps of 5.0\d s"):
        budget.plan_run(cfg, resume=None)


def test_the_loop_refuses_a_budget_nobody_planned(tmp_path):
    from hfssl.pretrain import pretrain

    cfg = load_pretrain("text/mlm-tiny", {"train.time_budget": "1m", "train.output_dir": str(tmp_path / "r")})
    with pytest.raises(UsageError, match="train.time_budget: the run has no plan yet"):
        pretrain(cfg)
    assert not (tmp_path / "r").exists()
