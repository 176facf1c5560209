"""Text objectives at equal pretraining time, then probed and fine-tuned on the embedded task with few labels.

    HF_HUB_OFFLINE=1 python bench/objectives.py --out runs/bench-objectives.json   # ~50 minutes on a 2-core CPU
    HF_HUB_OFFLINE=1 python bench/objectives.py --quick                            # smoke test, ~2-3 minutes

Pretraining. Each objective of `--objectives` trains its shipped tiny recipe (mlm: `text/mlm-tiny`, a ModernBERT
encoder; rtd: `text/electra-tiny`, replaced-token detection, whose export is the discriminator; clm: `text/clm-tiny`, a
Llama decoder) on the embedded synthetic corpus for `--minutes` of optimizer steps, one run each, with the recipe's
own settings and seed. The trainer takes a step count, not a time, so a short run of the same recipe
(`--calibration-steps` steps, timed after the dry run's warm-up steps) first measures its seconds per step, and the
real run gets `train.max_steps` = budget / that, so that its learning-rate schedule decays over the budget. The real
run evaluates only at its start and end, never probes, and checkpoints once, at the end. Steps are timed by torch's
global optimizer-step hook (`text_mlm.StepClock`), from the end of the first step to the end of the last, which
leaves out setup (tokenizer, tokenization), evaluation, the checkpoint and the export. In the table, "train s" is
that time scaled to all the steps (what the budget bought, to compare with it), tokens/s = tokens seen (non-padding
positions) / train s, "eval loss" is the run's final held-out loss in its own units (masked-token cross-entropy;
generator loss + weighted replaced-token detection loss; next-token cross-entropy): it shows that a run learned and
is not comparable across rows. "busy" is how many cores other processes kept busy while it trained: on a shared
machine throughput, and so the steps an objective gets, follows it.

Real text instead of the embedded data: `--corpus FILE` pretrains every objective on a text file (one document per
line) and `--task-train`/`--task-test` (.jsonl/.csv with `text` and `label`) replace the downstream task; e.g. Debian's
fortune cookies, which `bench/fortunes.py` turns into both.

Downstream, on the embedded topic task (8 topics; `text/label-efficiency-tiny`: 2,400 training examples, 300 test),
with each of `--fractions` of the training labels (a stratified subsample drawn by the seed) and each of `--seeds`:
- probe: `hfssl label-efficiency` with `sweep.method: probe`: every layer of the frozen export mean-pooled, a learned
  softmax mix of the layers and a logistic regression (`hfssl.downstream.probe`);
- fine-tuned: `hfssl label-efficiency` with `sweep.method: finetune`: the whole export with a classification head on
  transformers' Trainer, at the recipe's learning rate for 5 epochs (at least `finetune.min_steps` steps);
- random init: the from-scratch runs of the same two sweeps (the export's architecture and tokenizer, random
  weights), one row per architecture (the first objective's of each);
- TF-IDF + LR: scikit-learn's TF-IDF of word unigrams and bigrams (sublinear term frequency) and a logistic regression,
  on exactly the subsamples the sweeps train on (`load_labelled` with the same fraction and seed, as `hfssl finetune`
  loads them). It has no encoder to fine-tune, so its one classifier stands in both column groups.
Every score is accuracy on the task's test split, mean ± standard deviation over the seeds.

Targets: replaced-token detection at or above masked LM downstream at equal pretraining time (fine-tuned accuracy,
mean over seeds, at every label fraction), and the best objective's fine-tuned accuracy above TF-IDF + LR's at 10% of
the labels.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import datasets
import torch
import transformers

from hfssl.config import LabelEfficiencyConfig, load
from hfssl.data.labelled import load_labelled
from hfssl.downstream.label_efficiency import label_efficiency, summarise
from hfssl.dry_run import DRY_RUN_WARMUP
from hfssl.errors import UsageError
from hfssl.metrics import compute_classification_metrics
from hfssl.objectives import load_pretrain
from hfssl.pretrain import pretrain

logger = logging.getLogger("bench.objectives")

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {
    "mlm": ROOT / "recipes" / "text" / "mlm-tiny.yaml",
    "rtd": ROOT / "recipes" / "text" / "electra-tiny.yaml",
    "clm": ROOT / "recipes" / "text" / "clm-tiny.yaml",
}
TASK = ROOT / "recipes" / "text" / "label-efficiency-tiny.yaml"
TARGET_FRACTION = 0.1  # the label share at which the best objective should beat TF-IDF + LR
sys.path.insert(0, str(Path(__file__).parent))  # text_mlm's step clock, imported where it is used


def run_overrides(steps: int, output_dir: Path, args) -> dict[str, str]:
    """A pretraining run of `steps` steps that evaluates at its start and end, checkpoints once and never probes."""
    overrides = {
        "train.max_steps": str(steps),
        "train.eval_every": str(steps),
        "train.save_every": str(steps),
        "train.probe_every": "",
        "train.output_dir": str(output_dir),
    }
    if args.corpus:
        overrides["data.train"] = str(args.corpus)
    elif args.quick:
        overrides["data.synthetic_documents"] = "4000"
    return args.pretrain_set | overrides  # the run's own length and outputs win over --set


def timed_pretrain(recipe: Path, overrides: dict[str, str], device: torch.device, skip: int = 0) -> dict:
    """`hfssl.pretrain.pretrain` of the recipe, with its optimizer steps and the neighbours' load timed; seconds per
    step are measured from the end of step `skip` (or of the first) to the end of the last."""
    from text_mlm import OtherLoad, StepClock

    cfg = load_pretrain(recipe, overrides)
    with StepClock(device) as clock, OtherLoad() as other:
        metrics = pretrain(cfg)
    stamps = clock.stamps[max(skip, 1) - 1 :]
    step_s = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    return {
        "steps": metrics["steps"],
        "step_s": step_s,
        "train_s": step_s * metrics["steps"],
        "tokens_per_s": metrics["tokens_seen"] / metrics["steps"] / step_s,
        "tokens_seen": metrics["tokens_seen"],
        "run_wall_s": metrics["wall_time_s"],
        "eval_loss": metrics["eval_loss"],
        "initial_eval_loss": metrics["initial_eval_loss"],
        "eval": {k: v for k, v in metrics.items() if k.startswith("eval_")},
        "other_cores": other.cores,
    }


def pretrain_for(name: str, budget_s: float, work: Path, args, device: torch.device) -> dict:
    """Calibrate the recipe's seconds per step with a short run, then pretrain it for `budget_s` of steps."""
    recipe = RECIPES[name]
    calibration_dir = work / f"{name}-calibration"
    logger.info("%s: timing %d calibration steps", name, args.calibration_steps)
    # The first steps pay for allocation: timed after the warm-up `hfssl pretrain --dry-run` leaves out.
    overrides = run_overrides(args.calibration_steps, calibration_dir, args)
    calibration = timed_pretrain(recipe, overrides, device, skip=DRY_RUN_WARMUP)
    shutil.rmtree(calibration_dir, ignore_errors=True)
    steps = max(2, round(budget_s / calibration["step_s"]))  # two steps at least: one interval to time
    logger.info("%s: %.3f s/step -> %d steps for %.0f s", name, calibration["step_s"], steps, budget_s)
    result = timed_pretrain(recipe, run_overrides(steps, work / name, args), device)
    result["calibration_step_s"] = calibration["step_s"]
    result["export"] = str(work / name / "final")
    arch = json.loads((work / name / "final" / "config.json").read_text())["model_type"]
    result["architecture"] = arch
    logger.info(
        "%s (%s): %d steps in %.0f s of steps, %.0f tokens/s, eval loss %.4f",
        name, arch, result["steps"], result["train_s"], result["tokens_per_s"], result["eval_loss"],
    )  # fmt: skip
    return result


def task_overrides(args) -> dict[str, str]:
    """The label-efficiency recipe's settings this bench changes: fractions, seeds and, with --quick, its size."""
    overrides = {
        "sweep.fractions": json.dumps(args.fractions),
        "sweep.seeds": json.dumps(args.seeds),
        "sweep.update_card": "false",
    }
    if args.task_train:
        overrides.update({"data.train": str(args.task_train), "data.test": str(args.task_test)})
    if args.quick:
        overrides.update(
            {"data.synthetic_examples": "600", "training.num_train_epochs": "2", "finetune.min_steps": "10"}
        )
    return overrides | args.finetune_set


def sweep(export: str, method: str, out: Path, args) -> dict:
    """`hfssl label-efficiency` of `export` by `method` (probe or finetune): its rows and summary."""
    cfg = load(
        LabelEfficiencyConfig,
        TASK,
        {
            **task_overrides(args),
            "model.name_or_path": export,
            "sweep.method": method,
            "sweep.output_dir": str(out),
            "training.output_dir": str(out / "runs"),
        },
    )
    return label_efficiency(cfg)


def tfidf_baseline(args) -> dict:
    """TF-IDF + logistic regression on the labelled subsamples the sweeps train on, scored on the same test split."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    cfg = load(LabelEfficiencyConfig, TASK, task_overrides(args))
    rows = []
    for fraction in args.fractions:
        for seed in args.seeds:
            # As `hfssl finetune` loads each sweep run's data: the same fraction and seed give the same subsample.
            splits = load_labelled(dataclasses.replace(cfg.data, label_fraction=fraction), seed=seed)
            test = splits.test if splits.test is not None else splits.validation
            vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
            train_x = vectorizer.fit_transform(splits.train["text"])
            classifier = LogisticRegression(max_iter=2000, random_state=seed)
            classifier.fit(train_x, splits.train["label"])
            predictions = classifier.predict(vectorizer.transform(test["text"]))
            scores = compute_classification_metrics(predictions.tolist(), test["label"])
            rows.append(
                {
                    "model": "tfidf",
                    "fraction": fraction,
                    "labels": len(splits.train),
                    "seed": seed,
                    "accuracy": scores["accuracy"],
                    "f1": scores["f1"],
                }
            )
    return {"rows": rows, "summary": summarise(rows)}


def share(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def by_fraction(summary: list[dict], model: str) -> dict[float, dict]:
    return {entry["fraction"]: entry for entry in summary if entry["model"] == model}


def cell(entry: dict | None) -> str:
    if entry is None:
        return "-"
    if entry["seeds"] == 1:
        return f"{entry['accuracy']:.3f}"
    return f"{entry['accuracy']:.3f}±{entry['accuracy_std']:.3f}"


def targets(results: dict) -> list[str]:
    """The two PASS/MISS lines (or why one was not measured)."""
    objectives, tfidf = results["objectives"], by_fraction(results["tfidf"]["summary"], "tfidf")

    def finetuned(name: str) -> dict[float, dict]:
        return by_fraction(objectives[name]["finetune"]["summary"], "pretrained")

    lines = []
    if "rtd" in objectives and "mlm" in objectives:
        rtd, mlm = finetuned("rtd"), finetuned("mlm")
        gaps = {f: rtd[f]["accuracy"] - mlm[f]["accuracy"] for f in sorted(rtd)}
        verdict = "PASS" if all(gap >= 0 for gap in gaps.values()) else "MISS"
        detail = ", ".join(f"{share(f)} {gap:+.3f}" for f, gap in gaps.items())
        lines.append(f"{verdict}  rtd >= mlm fine-tuned at every label fraction, equal pretraining time ({detail})")
    else:
        lines.append("----  rtd >= mlm downstream: not measured (needs --objectives with mlm and rtd)")
    if TARGET_FRACTION in tfidf:
        best = max(objectives, key=lambda name: finetuned(name)[TARGET_FRACTION]["accuracy"])
        ours, theirs = finetuned(best)[TARGET_FRACTION]["accuracy"], tfidf[TARGET_FRACTION]["accuracy"]
        verdict = "PASS" if ours > theirs else "MISS"
        lines.append(
            f"{verdict}  best objective > TF-IDF + LR at {share(TARGET_FRACTION)} of the labels "
            f"({best} {ours:.3f} vs {theirs:.3f}, fine-tuned)"
        )
    else:
        lines.append(f"----  best objective > TF-IDF + LR: not measured (--fractions lacks {TARGET_FRACTION})")
    return lines


def table(results: dict) -> str:
    """One row per objective, random-init architecture and TF-IDF + LR; then the targets."""
    fractions, objectives = results["fractions"], results["objectives"]
    labels = by_fraction(results["tfidf"]["summary"], "tfidf")
    heads = [f"{share(f)} ({labels[f]['labels']})" for f in fractions]
    archs = list(dict.fromkeys(r["pretraining"]["architecture"] for r in objectives.values()))
    names = {name: f"{name} ({r['pretraining']['architecture']})" for name, r in objectives.items()}
    names.update({arch: f"random init ({arch})" for arch in archs})
    first = max(len(text) for text in [*names.values(), "TF-IDF + LR"])
    width = 12
    blank = f"{'':<{first}} {'':>7} {'':>9} {'':>8} {'':>9} {'':>5}"
    lead = f"{'':<{first}} {'steps':>7} {'tokens/s':>9} {'train s':>8} {'eval loss':>9} {'busy':>5}"
    groups = f"{'probe (frozen, LR)':^{width * len(fractions)}}  {'fine-tuned':^{width * len(fractions)}}"
    lines = [
        f"equal pretraining time: {results['budget_s']:.0f} s of optimizer steps per objective "
        f"({results['device']}, torch threads {results['torch_threads']}) on {results['corpus']}; test accuracy "
        f"on {results['task']}, mean ± sd over seeds {', '.join(map(str, results['seeds']))}",
        f"{blank}  {groups}",
        f"{lead}  " + "".join(f"{h:>{width}}" for h in heads) + "  " + "".join(f"{h:>{width}}" for h in heads),
    ]
    lines[1:1] = [
        f"{flag}: " + ", ".join(f"{key}={value}" for key, value in changed.items())
        for flag, changed in (("--set", results.get("pretrain_set")), ("--finetune-set", results.get("finetune_set")))
        if changed
    ]

    def accuracy_cells(probe: dict[float, dict], tuned: dict[float, dict]) -> str:
        left = "".join(f"{cell(probe.get(f)):>{width}}" for f in fractions)
        return f"{left}  " + "".join(f"{cell(tuned.get(f)):>{width}}" for f in fractions)

    for name, r in objectives.items():
        p = r["pretraining"]
        busy = "?" if p["other_cores"] is None else f"{p['other_cores']:.1f}"
        lead = (
            f"{names[name]:<{first}} {p['steps']:>7,} {p['tokens_per_s']:>9,.0f} "
            f"{p['train_s']:>8.0f} {p['eval_loss']:>9.4f} {busy:>5}"
        )
        probe = by_fraction(r["probe"]["summary"], "pretrained")
        tuned = by_fraction(r["finetune"]["summary"], "pretrained")
        lines.append(f"{lead}  {accuracy_cells(probe, tuned)}")
    for arch in archs:  # the from-scratch runs of the first objective of each architecture
        r = next(r for r in objectives.values() if r["pretraining"]["architecture"] == arch)
        probe, tuned = by_fraction(r["probe"]["summary"], "scratch"), by_fraction(r["finetune"]["summary"], "scratch")
        lines.append(f"{names[arch]:<{first}}{blank[first:]}  {accuracy_cells(probe, tuned)}")
    lines.append(f"{'TF-IDF + LR':<{first}}{blank[first:]}  {accuracy_cells(labels, labels)}")
    lines += [
        "(eval loss: each objective's own held-out loss, not comparable across rows; busy: cores other processes kept "
        "busy while it pretrained;",
        " column heads: share of the task's training labels (examples); TF-IDF + LR has one classifier, shown in both "
        "groups)",
    ]
    return "\n".join(lines + [""] + targets(results))


def run(args, device: torch.device) -> dict:
    """Pretrain every objective (back to back, so that they share the machine's conditions), then the sweeps."""
    budget_s = args.minutes * 60
    results = {
        "budget_s": budget_s,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "fractions": args.fractions,
        "corpus": str(args.corpus) if args.corpus else "the embedded synthetic corpus",
        "task": str(args.task_train) if args.task_train else "the embedded topic task",
        "seeds": args.seeds,
        "pretrain_set": args.pretrain_set,
        "finetune_set": args.finetune_set,
        "objectives": {},
    }
    with tempfile.TemporaryDirectory(prefix="hfssl-bench-objectives-") as scratch:
        work = args.work_dir or Path(scratch)
        for name in args.objectives:
            results["objectives"][name] = {"pretraining": pretrain_for(name, budget_s, work, args, device)}
        for name, r in results["objectives"].items():
            export = r["pretraining"]["export"]
            for method in ("probe", "finetune"):
                logger.info("%s: label-efficiency sweep, %s", name, method)
                r[method] = sweep(export, method, work / f"{name}-{method}", args)
        logger.info("TF-IDF + logistic regression")
        results["tfidf"] = tfidf_baseline(args)
    return results


def parse_list(text: str, kind: type) -> list:
    try:
        return [kind(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__} values, got {text!r}") from None


def setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. masking.mask_rate=0.15), got {text!r}")
    return key.strip(), value.strip()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--objectives",
        type=lambda text: parse_list(text, str),
        default=["mlm", "rtd", "clm"],
        help=f"comma-separated, of {', '.join(RECIPES)} (default: all three)",
    )
    parser.add_argument("--minutes", type=float, help="pretraining time per objective, in optimizer steps (default 8)")
    parser.add_argument(
        "--seeds", type=lambda text: parse_list(text, int), help="downstream seeds, comma-separated (default 0,1,2)"
    )
    parser.add_argument(
        "--fractions",
        type=lambda text: parse_list(text, float),
        default=[0.01, 0.1, 1.0],
        help="shares of the task's training labels, comma-separated (default 0.01,0.1,1)",
    )
    parser.add_argument(
        "--calibration-steps", type=int, help="steps of the short run that times each recipe (default 50)"
    )
    parser.add_argument("--corpus", type=Path, help="pretrain on this text file instead of the embedded corpus")
    parser.add_argument("--task-train", type=Path, help="labelled training examples instead of the embedded task")
    parser.add_argument("--task-test", type=Path, help="the test split of --task-train's task")
    parser.add_argument(
        "--set",
        dest="pretrain_set",
        metavar="KEY=VALUE",
        action="append",
        type=setting,
        default=[],
        help="change a pretraining recipe setting for every objective, e.g. masking.mask_rate=0.15 (repeatable)",
    )
    parser.add_argument(
        "--finetune-set",
        metavar="KEY=VALUE",
        action="append",
        type=setting,
        default=[],
        help="change a setting of the downstream sweeps, e.g. training.learning_rate=1e-3 (repeatable)",
    )
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own)")
    parser.add_argument("--work-dir", type=Path, help="keep the runs and exports here (default: a temporary folder)")
    parser.add_argument("--out", type=Path, help="also write the results to this JSON file")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke test: 15 s per objective, 1 seed, a small task and corpus"
    )
    args = parser.parse_args(argv)
    args.pretrain_set, args.finetune_set = dict(args.pretrain_set), dict(args.finetune_set)
    unknown = [name for name in args.objectives if name not in RECIPES]
    if unknown or not args.objectives:
        given = repr(unknown[0]) + " is not an objective" if unknown else "none given"
        parser.error(f"--objectives: {given}; choose from {', '.join(RECIPES)}")
    for name in args.objectives:
        if not RECIPES[name].is_file():
            parser.error(f"--objectives {name}: its recipe {RECIPES[name].relative_to(ROOT)} does not exist")
    if args.minutes is None:
        args.minutes = 0.25 if args.quick else 8.0
    if args.seeds is None:
        args.seeds = [0] if args.quick else [0, 1, 2]
    if args.calibration_steps is None:
        args.calibration_steps = 10 if args.quick else 50
    if importlib.util.find_spec("sklearn") is None:
        parser.error("the TF-IDF baseline needs scikit-learn: pip install -e '.[bench]'")
    if (args.task_train is None) != (args.task_test is None):
        parser.error("--task-train and --task-test go together")
    for given in (args.corpus, args.task_train, args.task_test):
        if given is not None and not given.is_file():
            parser.error(f"{given}: no such file")
    if args.minutes <= 0:
        parser.error(f"--minutes: must be positive, got {args.minutes:g}")
    if args.work_dir is not None and args.work_dir.exists() and any(args.work_dir.iterdir()):
        parser.error(f"--work-dir: {args.work_dir} is not empty; name a new or empty folder")
    if args.calibration_steps < DRY_RUN_WARMUP + 2:
        parser.error(f"--calibration-steps: at least {DRY_RUN_WARMUP + 2} ({DRY_RUN_WARMUP} warm-up, 2 timed)")

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logger.setLevel(logging.INFO)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()  # every from-scratch head says it is newly initialised
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "true"  # Accelerate's switch, for every Accelerator in the process

    try:
        for name in args.objectives:  # every recipe and override checked before anything trains
            load_pretrain(RECIPES[name], run_overrides(args.calibration_steps, Path(tempfile.gettempdir()), args))
        load(LabelEfficiencyConfig, TASK, task_overrides(args))
        results = run(args, device)
    except UsageError as err:
        raise SystemExit(f"objectives.py: error: {err}") from None
    print(table(results))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
