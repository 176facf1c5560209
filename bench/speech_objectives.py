"""Speech objectives on the embedded speech, in one process: at equal steps (a frozen probe each), or at equal
pretraining time and then downstream with few labels against MFCC statistics + logistic regression.

    HF_HUB_OFFLINE=1 python bench/speech_objectives.py --steps 250                # equal steps, ~15 minutes
    HF_HUB_OFFLINE=1 python bench/speech_objectives.py --minutes 30 --label-efficiency \\
        --only best-rq-w2v-bert-tiny,best-rq-tiny --seeds 0,1                      # ~2.5 hours on 2 cores

Pretraining. Each shipped tiny recipe (wav2vec2-tiny: contrastive; hubert-tiny: k-means targets over MFCCs;
best-rq-tiny; recon-tiny; best-rq-w2v-bert-tiny: BEST-RQ on the log-mel front end; data2vec-w2v-bert-tiny:
teacher-student on it) runs `--steps` optimizer steps with its own settings, or, with `--minutes`, as many as fit that
budget: a short run of the recipe (`--calibration-steps`, timed after the dry run's warm-up) measures its seconds per
step, and the real run gets `train.max_steps` = budget / that, so its learning-rate schedule decays over the budget.
Steps are timed by torch's global optimizer-step hook (`text_mlm.StepClock`): setup, evaluation, probes and the export
are left out. All encoders are 2 layers x 64 with 20 ms frames; the raw-waveform ones learn a conv front end
(`Wav2Vec2Model`, `HubertModel`), the log-mel ones read filterbanks (`Wav2Vec2BertModel`).

Equal steps (the default). Each frozen encoder is probed on the embedded keyword task (10 words, speakers never heard
in pretraining; the probe `train.probe_every` runs: mean-pooled layers, softmax-weighted, logistic regression), and
randomly initialised encoders of each architecture are probed as the floor. HuBERT's target building (MFCC features,
k-means, labelling every clip) is timed on its own and added in the last column.

`--label-efficiency`. Each export then goes through `hfssl label-efficiency` with
`recipes/speech/label-efficiency-keywords-tiny.yaml` (1,200 training clips, 150 test), twice: probed (frozen,
`sweep.method: probe`) and fine-tuned (`sweep.method: finetune`, the recipe's step budget and learning rates), at
`--fractions` of the labels and `--seeds`; each sweep also trains the same architecture from random initialisation,
and fits MFCC statistics + logistic regression (`hfssl.downstream.baselines`) on the same subsamples. Every score is
test accuracy, mean ± standard deviation over the seeds.

Target (issue 15): the best encoder fine-tuned with 10% of the labels at or above the MFCC baseline with all of them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import datasets
import torch
import transformers

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {
    "wav2vec2 (contrastive)": "wav2vec2-tiny",
    "HuBERT (MFCC k-means)": "hubert-tiny",
    "BEST-RQ": "best-rq-tiny",
    "reconstruction (L1)": "recon-tiny",
    "BEST-RQ, log-mel front end": "best-rq-w2v-bert-tiny",
    "data2vec, log-mel front end": "data2vec-w2v-bert-tiny",
}
TASK = ROOT / "recipes" / "speech" / "label-efficiency-keywords-tiny.yaml"
TARGET_FRACTION = 0.1
sys.path.insert(0, str(Path(__file__).parent))  # text_mlm's step clock, imported where it is used
logger = logging.getLogger("bench.speech_objectives")


def pretrain_one(recipe: str, steps: int, out: Path, threads: int, probe: bool = True, evals: int = 5) -> dict:
    """The recipe for `steps` steps (evaluated `evals` times, probed at the end when `probe`); its metrics, the
    time stamps of its optimizer steps and HuBERT's target-building time."""
    from text_mlm import StepClock

    from hfssl.objectives import load_pretrain
    from hfssl.pretrain import pretrain

    overrides = {
        "train.max_steps": str(steps),
        "train.probe_every": str(steps) if probe else "",
        "train.eval_every": str(max(steps // evals, 1)),
        "train.save_every": str(steps),
        "train.output_dir": str(out),
    }
    cfg = load_pretrain(ROOT / "recipes" / "speech" / f"{recipe}.yaml", overrides)
    targets_s = 0.0
    if cfg.objective.name == "hubert":
        from hfssl.hubert_targets import run_hubert_targets

        cfg.targets.dir = str(out / "targets")
        start = time.perf_counter()
        run_hubert_targets(cfg)
        targets_s = time.perf_counter() - start
    torch.set_num_threads(threads)
    with StepClock(torch.device("cpu")) as clock:
        pretrain(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["targets_s"] = targets_s
    metrics["stamps"] = clock.stamps
    metrics["architecture"] = json.loads((out / "final" / "config.json").read_text())["model_type"]
    return metrics


def seconds_per_step(stamps: list[float], skip: int = 0) -> float:
    stamps = stamps[max(skip, 1) - 1 :]
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def pretrain_for(recipe: str, minutes: float, work: Path, args) -> dict:
    """Time the recipe's steps with a short run, then pretrain it for `minutes` of steps."""
    from hfssl.dry_run import DRY_RUN_WARMUP

    # evaluated once, at the end, so that the steps timed are steps only
    calibration = pretrain_one(
        recipe, args.calibration_steps, work / f"{recipe}-calibration", args.threads, probe=False, evals=1
    )
    shutil.rmtree(work / f"{recipe}-calibration", ignore_errors=True)
    step_s = seconds_per_step(calibration["stamps"], DRY_RUN_WARMUP)
    steps = max(2, round(minutes * 60 / step_s))
    logger.info("%s: %.3f s/step -> %d steps for %.0f minutes", recipe, step_s, steps, minutes)
    return pretrain_one(recipe, steps, work / recipe, args.threads, probe=False)


def random_probe(arch: str, threads: int) -> float:
    """The probe of a randomly initialised tiny encoder of `arch` (the floor every objective should clear)."""
    from hfssl.config import AudioDataArgs, SpeechModelArgs, TrainArgs
    from hfssl.downstream.probe import load_probe_data, probe
    from hfssl.models.speech import feature_extractor
    from hfssl.objectives import masked_speech, wav2vec2
    from hfssl.objectives.best_rq import BestRQArgs

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    encoder = SpeechModelArgs(arch=arch, size="tiny", dropout=0.0)
    if arch == "wav2vec2":
        model = wav2vec2.build_model(encoder, wav2vec2.Wav2Vec2Args(codevectors_per_group=16), 0.5)
    else:
        model = masked_speech.build_model(encoder, BestRQArgs(), 0.5)
    data = AudioDataArgs(max_seconds=2.0, batch_seconds=8.0)
    splits = load_probe_data(TrainArgs(probe_every=1), task="audio", max_seconds=data.max_seconds)
    extractor = feature_extractor(data, model.base_model.config)
    return probe(model.base_model, extractor, splits, batch_size=32, max_seconds=2.0)["accuracy"]


def sweep(export: Path, method: str, out: Path, args) -> dict:
    """`hfssl label-efficiency` of `export` by `method` on the keyword task: its rows and summary."""
    from hfssl.config import LabelEfficiencyConfig, load
    from hfssl.downstream.label_efficiency import label_efficiency

    overrides = {
        "model.name_or_path": str(export),
        "sweep.method": method,
        "sweep.fractions": json.dumps(args.fractions),
        "sweep.seeds": json.dumps(args.seeds),
        "sweep.update_card": "false",
        "sweep.output_dir": str(out),
        "training.output_dir": str(out / "runs"),
    }
    return label_efficiency(load(LabelEfficiencyConfig, TASK, overrides | args.finetune_set))


def cell(summary: list[dict], model: str, fraction: float) -> str:
    entry = next((e for e in summary if e["model"] == model and e["fraction"] == fraction), None)
    if entry is None:
        return "-"
    if entry["seeds"] == 1:
        return f"{entry['accuracy']:.3f}"
    return f"{entry['accuracy']:.3f}±{entry['accuracy_std']:.3f}"


def accuracy(summary: list[dict], model: str, fraction: float) -> float | None:
    entry = next((e for e in summary if e["model"] == model and e["fraction"] == fraction), None)
    return None if entry is None else entry["accuracy"]


def steps_table(rows: list[dict], floors: dict[str, float], steps: int, threads: int) -> str:
    load = os.getloadavg()[0]
    lines = [
        f"speech objectives at {steps} steps, tiny recipes ({threads} threads; load average {load:.2f})",
        f"{'objective':<28}{'eval loss':>18}{'probe acc':>11}{'wall s':>9}{'s/step':>8}{'+targets s':>12}",
    ]
    for r in rows:
        loss = f"{r['initial_eval_loss']:.3f}->{r['eval_loss']:.3f}"
        lines.append(
            f"{r['objective']:<28}{loss:>18}{r['probe']:>11.3f}{r['wall_s']:>9.0f}{r['step_s']:>8.2f}"
            f"{r['targets_s']:>12.0f}"
        )
    for arch, value in floors.items():
        lines.append(f"{'random ' + arch:<28}{'':>18}{value:>11.3f}")
    lines.append("(chance on the keyword task: 0.100; losses are per objective and not comparable across rows)")
    return "\n".join(lines)


def efficiency_table(rows: list[dict], args) -> str:
    """Probe and fine-tuned accuracy per encoder and label share; random init per architecture; MFCC + LR."""
    fractions, width = args.fractions, 13
    heads = "".join(f"{f * 100:>{width - 1}g}%" for f in fractions)
    first, group = 34, width * len(fractions)
    budget = f"{args.minutes:g} minutes" if args.minutes is not None else f"{args.steps} steps"
    lines = [
        f"{budget} of pretraining each ({args.threads} threads); test accuracy on the embedded keywords, mean ± sd "
        f"over seeds {', '.join(map(str, args.seeds))}",
        f"{'':<{first}}{'steps':>7}  {'probe (frozen)':^{group}}  {'fine-tuned':^{group}}",
        f"{'':<{first}}{'':>7}  {heads}  {heads}",
    ]
    if args.finetune_set:
        lines.insert(1, "--finetune-set: " + ", ".join(f"{k}={v}" for k, v in args.finetune_set.items()))

    def cells(probe: list[dict], tuned: list[dict], model: str) -> str:
        return (
            "".join(f"{cell(probe, model, f):>{width}}" for f in fractions)
            + "  "
            + "".join(f"{cell(tuned, model, f):>{width}}" for f in fractions)
        )

    archs: dict[str, dict] = {}
    for r in rows:
        lines.append(f"{r['objective']:<{first}}{r['steps']:>7,}  {cells(r['probe'], r['finetune'], 'pretrained')}")
        archs.setdefault(r["architecture"], r)
    for arch, r in archs.items():
        lines.append(f"{'random init (' + arch + ')':<{first}}{'':>7}  {cells(r['probe'], r['finetune'], 'scratch')}")
    baseline = rows[0]["finetune"]
    lines.append(f"{'MFCC statistics + LR':<{first}}{'':>7}  {cells(baseline, baseline, 'mfcc')}")
    lines.append("(MFCC + LR has one classifier, shown in both groups; chance is 0.100)")
    best = max(rows, key=lambda r: accuracy(r["finetune"], "pretrained", TARGET_FRACTION) or 0.0)
    ours = accuracy(best["finetune"], "pretrained", TARGET_FRACTION)
    theirs = accuracy(baseline, "mfcc", 1.0)
    if ours is None or theirs is None:
        lines.append("----  target not measured: --fractions needs 0.1 and 1")
    else:
        verdict = "PASS" if ours >= theirs else "MISS"
        lines.append(
            f"{verdict}  best encoder fine-tuned with 10% of the labels >= MFCC + LR with all of them "
            f"({best['objective']} {ours:.3f} vs {theirs:.3f})"
        )
    return "\n".join(lines)


def parse_list(text: str, kind: type) -> list:
    try:
        return [kind(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__} values, got {text!r}") from None


def setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. training.learning_rate=1e-3), got {text!r}")
    return key.strip(), value.strip()


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps per objective (default 1000)")
    parser.add_argument("--minutes", type=float, help="pretrain each recipe for this long instead of --steps")
    parser.add_argument("--calibration-steps", type=int, default=60, help="steps of the run that times a recipe")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument(
        "--only", type=lambda t: parse_list(t, str), default=None, help="recipe names, comma-separated (default: all)"
    )
    parser.add_argument(
        "--label-efficiency", action="store_true", help="probe and fine-tune each export with few labels"
    )
    parser.add_argument("--fractions", type=lambda t: parse_list(t, float), default=[0.1, 0.25, 1.0])
    parser.add_argument("--seeds", type=lambda t: parse_list(t, int), default=[0, 1, 2])
    parser.add_argument(
        "--finetune-set", metavar="KEY=VALUE", action="append", type=setting, default=[],
        help="change a setting of the label-efficiency recipe, e.g. training.learning_rate=1e-3 (repeatable)",
    )  # fmt: skip
    parser.add_argument("--work-dir", type=Path, help="keep the runs and exports here (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    args.finetune_set = dict(args.finetune_set)
    unknown = [name for name in args.only or [] if name not in RECIPES.values()]
    if unknown:
        parser.error(f"--only: {unknown[0]!r} is not a recipe; choose from {', '.join(RECIPES.values())}")
    if args.minutes is not None and args.minutes <= 0:
        parser.error(f"--minutes: must be positive, got {args.minutes:g}")
    if args.work_dir is not None and args.work_dir.exists() and any(args.work_dir.iterdir()):
        parser.error(f"--work-dir: {args.work_dir} is not empty; name a new or empty folder")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logger.setLevel(logging.INFO)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    os.environ["ACCELERATE_USE_CPU"] = "true"

    rows = []
    with tempfile.TemporaryDirectory(prefix="hfssl-bench-speech-") as scratch:
        work = args.work_dir or Path(scratch)
        for label, recipe in RECIPES.items():
            if args.only and recipe not in args.only:
                continue
            if args.minutes is not None:
                m = pretrain_for(recipe, args.minutes, work, args)
            else:
                m = pretrain_one(recipe, args.steps, work / recipe, args.threads, probe=not args.label_efficiency)
            row = {
                "objective": label,
                "recipe": recipe,
                "architecture": m["architecture"],
                "steps": m["steps"],
                "step_s": seconds_per_step(m["stamps"]),
                "initial_eval_loss": m["initial_eval_loss"],
                "eval_loss": m["eval_loss"],
                "probe": m["probes"][-1]["accuracy"] if m.get("probes") else None,
                "wall_s": m["wall_time_s"],
                "targets_s": m["targets_s"],
            }
            if args.label_efficiency:
                for method in ("probe", "finetune"):
                    logger.info("%s: label-efficiency sweep, %s", recipe, method)
                    row[method] = sweep(work / recipe / "final", method, work / f"{recipe}-{method}", args)["summary"]
            rows.append(row)
            logger.info("done: %s", {k: v for k, v in row.items() if k not in ("probe", "finetune")})
        if args.label_efficiency:
            print(efficiency_table(rows, args))
        else:
            floors = {arch: random_probe(arch, args.threads) for arch in ("wav2vec2", "hubert", "wav2vec2-bert")}
            print(steps_table(rows, floors, args.steps, args.threads))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
