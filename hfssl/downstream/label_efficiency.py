"""`hfssl label-efficiency`: what pretraining bought, as score vs number of labels, pretrained vs from scratch.

For every label fraction and seed, the same architecture is trained twice on the same labelled subsample (stratified,
seeded): once from the pretrained checkpoint and once from random initialisation; by fine-tuning (a fixed step budget
on the Trainer) or by probing frozen features. The task's classic pipeline (`hfssl.downstream.baselines`: TF-IDF +
logistic regression for text, MFCC statistics + logistic regression for audio) is fitted on the same subsamples too.
The results become a CSV and JSON table, a PNG plot and a model-card section with a verdict line (what pretraining
bought over scratch and over the classic pipeline at each label count), which is also written into the model's own
card when the model is a local directory.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import tempfile
from pathlib import Path

import torch

from hfssl.cards import put_card_section
from hfssl.config import LabelEfficiencyConfig
from hfssl.data.labelled import load_labelled, subsample
from hfssl.downstream import baselines, report
from hfssl.downstream.finetune import SCORED_AT_LAST_STEP, finetune
from hfssl.downstream.loaders import load_backbone, load_processor
from hfssl.downstream.probe import example_batches, fit_probe, parse_layer, pooled_features
from hfssl.errors import UsageError
from hfssl.io import write_json, write_text

logger = logging.getLogger(__name__)

MODELS = ("pretrained", "scratch")
SECTION_START, SECTION_END = "<!-- hfssl:label-efficiency -->", "<!-- /hfssl:label-efficiency -->"
PLOT = "label_efficiency.png"
# No run of a sweep looks at validation labels: its scores use only the labels each row counts.
SELECTION = {
    "finetune": "none: each run trains a fixed step budget and is scored at its last step (no validation labels "
    "choose a checkpoint or stop it early)",
    "probe": "none: the probe's L2 penalty is fixed (probe.l2), not tuned on validation labels",
}


def label_efficiency(cfg: LabelEfficiencyConfig) -> dict:
    """Run the sweep; returns {"rows": [...], "summary": [...]} as also written to the output directory."""
    sweep = cfg.sweep
    if cfg.data.regression:
        raise UsageError("data.regression: the sweep's table, probe and baseline score classes; fine-tune for scores")
    out = Path(sweep.output_dir)
    processor = load_processor(cfg)
    full = load_labelled(dataclasses.replace(cfg.data, label_fraction=1.0), seed=cfg.training.seed)
    evaluation = "test" if full.test is not None else "validation"
    if sweep.method == "probe":
        rows = _probe_rows(cfg, processor, full, evaluation)
    else:
        rows = _finetune_rows(cfg, full, evaluation)
    baseline = None
    if sweep.baseline:
        sampling_rate = processor.sampling_rate if cfg.data.task == "audio" else None
        baseline = baselines.for_task(cfg.data, len(full.label_names), sampling_rate, l2=cfg.probe.l2)
        rows += _baseline_rows(cfg, baseline, full)
    summary = summarise(rows)
    line = verdict(summary, baseline)
    result = {
        "method": sweep.method,
        "split": evaluation,
        "selection": SELECTION[sweep.method],
        "model": cfg.model.name_or_path,
        "baseline": baseline.name if baseline else None,
        "rows": rows,
        "summary": summary,
        "verdict": line,
    }
    write_json(out / "results.json", result)
    write_text(out / "results.csv", report.csv_text(rows, list(rows[0])))
    plot(summary, out / PLOT, title=f"{sweep.method}: {evaluation} accuracy vs labelled examples", baseline=baseline)
    section = card_section(summary, sweep.method, evaluation, PLOT, baseline)
    logger.info("%s", line)
    write_text(out / "label_efficiency.md", section)
    model_dir = Path(cfg.model.name_or_path)
    if sweep.update_card and (model_dir / "config.json").is_file():
        add_to_card(model_dir, section, out / PLOT)
    return result


def _finetune_rows(cfg: LabelEfficiencyConfig, full, evaluation: str) -> list[dict]:
    batch = cfg.training.per_device_train_batch_size
    scratch_dir = Path(tempfile.mkdtemp(prefix="hfssl-sweep-"))

    def run(fraction: float, seed: int) -> list[dict]:
        n = len(subsample(full.train, fraction, seed)) if fraction < 1 else len(full.train)
        steps = max(cfg.finetune.min_steps, math.ceil(cfg.training.num_train_epochs * n / batch))
        rows = []
        for kind in MODELS:
            run_cfg = dataclasses.replace(
                cfg,
                model=dataclasses.replace(cfg.model, from_scratch=kind == "scratch"),
                # no selection here (a fixed step budget, scored at its last step): the validation split is only
                # scored, whole, when there is no test split
                data=dataclasses.replace(cfg.data, label_fraction=fraction, few_label_validation="full"),
            )
            changes = SCORED_AT_LAST_STEP | {
                "output_dir": str(scratch_dir / f"{kind}-{fraction}-{seed}"),
                "seed": seed,
                "max_steps": steps,
            }
            metrics = finetune(run_cfg, export=False, changes=changes)
            scores = metrics.get(evaluation) or metrics["validation"]
            rows.append(_row(kind, fraction, n, seed, scores))
            logger.info("%s, %d labels, seed %d: accuracy %.4f", kind, n, seed, scores["accuracy"])
        return rows

    try:
        return report.sweep(cfg.sweep.fractions, lambda fraction: cfg.sweep.seeds, run)
    finally:
        shutil.rmtree(scratch_dir, ignore_errors=True)


def _probe_rows(cfg: LabelEfficiencyConfig, processor, full, evaluation: str) -> list[dict]:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    eval_split = full.test if full.test is not None else full.validation
    labels, test_y = torch.tensor(full.train["label"]), torch.tensor(eval_split["label"])
    p = cfg.probe

    def rows(kind: str) -> list[dict]:  # the features once per model; each subsample then indexes them
        backbone = load_backbone(cfg.model, scratch=kind == "scratch", seed=cfg.training.seed).to(device)
        layer = parse_layer(p.layer, backbone.config.num_hidden_layers)
        train_x, test_x = (
            pooled_features(
                backbone,
                example_batches(split, processor, p.batch_size, cfg.data.max_length, cfg.data.max_seconds),
                device,
            )
            for split in (full.train, eval_split)
        )

        def fit(chosen: torch.Tensor, seed: int) -> dict:
            return fit_probe(
                train_x[chosen], labels[chosen], test_x, test_y, len(full.label_names), layer=layer, l2=p.l2, seed=seed
            )

        return _fitted_rows(cfg, kind, full, fit)

    return [row for kind in MODELS for row in rows(kind)]


def _baseline_rows(cfg: LabelEfficiencyConfig, baseline: baselines.Baseline, full) -> list[dict]:
    """The classic pipeline fitted on the subsamples the probe sweep draws (for the embedded task, the ones
    fine-tuning draws too), scored on the same split."""
    eval_split = full.test if full.test is not None else full.validation
    train_x, test_x = baseline.inputs(full.train), baseline.inputs(eval_split)
    labels, test_y = torch.tensor(full.train["label"]), torch.tensor(eval_split["label"])

    def fit(chosen: torch.Tensor, seed: int) -> dict:
        (scores,) = baseline.score(train_x[chosen.numpy()], labels[chosen], [(test_x, test_y)], seed)
        return scores

    return _fitted_rows(cfg, baseline.name, full, fit)


def _fitted_rows(cfg: LabelEfficiencyConfig, kind: str, full, fit) -> list[dict]:
    """`kind`'s rows: `fit(indices, seed)`, a classifier fitted on each fraction x seed's subsample of the training
    split (its row indices) and scored on the evaluated split, returns its scores."""

    def run(fraction: float, seed: int) -> list[dict]:
        chosen = _indices(full.train, fraction, seed)
        return [_row(kind, fraction, len(chosen), seed, fit(chosen, seed))]

    return report.sweep(cfg.sweep.fractions, lambda fraction: cfg.sweep.seeds, run)


def _indices(train, fraction: float, seed: int) -> torch.Tensor:
    if fraction >= 1:
        return torch.arange(len(train))
    with_index = train.add_column("_row", list(range(len(train))))
    return torch.tensor(subsample(with_index, fraction, seed)["_row"])


def _row(kind: str, fraction: float, n: int, seed: int, scores: dict) -> dict:
    return {
        "model": kind,
        "fraction": fraction,
        "labels": n,
        "seed": seed,
        "accuracy": scores["accuracy"],
        "f1": scores["f1"],
    }


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds, per model and fraction (by fraction, then model name)."""
    return report.summarise(
        rows,
        by=("model", "fraction"),
        counts=("labels",),
        scores={"accuracy": ("accuracy", "accuracy_std"), "f1": ("f1", "f1_std")},
        order=lambda entry: (entry["fraction"], entry["model"]),
    )


def plot(summary: list[dict], path: Path, title: str, baseline: baselines.Baseline | None = None) -> None:
    """Accuracy (mean ± std over seeds) against labelled examples, one line per model and one for `baseline`'s rows,
    written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4), dpi=120)
    lines = [(kind, kind, style) for kind, style in zip(MODELS, ("o-", "s--"), strict=True)]
    if baseline is not None:
        lines.append((baseline.name, baseline.title, "^:"))
    for kind, label, style in lines:
        points = [e for e in summary if e["model"] == kind]
        if not points:
            continue
        x = [e["labels"] for e in points]
        mean = [e["accuracy"] for e in points]
        std = [e["accuracy_std"] for e in points]
        axes.errorbar(x, mean, yerr=std, fmt=style, capsize=3, label=label)
    axes.set_xscale("log")
    axes.set_xlabel("labelled training examples")
    axes.set_ylabel("accuracy")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    figure.savefig(tmp, format="png")
    plt.close(figure)
    tmp.replace(path)


def card_section(
    summary: list[dict], method: str, split: str, image: str, baseline: baselines.Baseline | None = None
) -> str:
    by_fraction = _by_fraction(summary)
    how = "fine-tuned" if method == "finetune" else "probed (frozen features, logistic regression)"
    lines = [
        f"How much pretraining helps with few labels: the same architecture {how} from this checkpoint and from",
        f"random initialisation on stratified subsamples of the labelled data; {split} accuracy, mean ± standard",
        "deviation over seeds (written by `hfssl label-efficiency`). Model selection: "
        + SELECTION[method].replace("none: ", "none; ")
        + ".",
    ]
    if baseline is not None and not any(baseline.name in entries for entries in by_fraction.values()):
        baseline = None
    if baseline is not None:
        lines.append(
            f"The classic pipeline, {baseline.about}, is fitted on the same subsamples: pretraining pays off where it "
            "beats that column."
        )
    lines += ["", verdict(summary, baseline)]
    table = []
    for fraction, entries in sorted(by_fraction.items()):
        pre, scratch = entries.get("pretrained"), entries.get("scratch")
        if pre is None or scratch is None:
            continue
        cells = [str(pre["labels"]), f"{fraction:g}", _score(pre), _score(scratch)]
        cells.append(f"{pre['accuracy'] - scratch['accuracy']:+.3f}")
        if baseline is not None:
            cells.append(_score(entries[baseline.name]) if baseline.name in entries else "-")
        table.append(cells)
    header = ["labels", "fraction", "pretrained", "from scratch", "gain", *([baseline.title] if baseline else [])]
    lines += ["", report.markdown_table(header, table), "", f"![label efficiency]({image})"]
    return report.card_section(SECTION_START, SECTION_END, "Label efficiency", lines)


def verdict(summary: list[dict], baseline: baselines.Baseline | None = None) -> str:
    """One line: what pretraining bought, in accuracy points of the summary's means, over scratch and over `baseline`
    at each label count ("within noise" where the difference is smaller than the larger standard deviation), e.g.
    "Pretraining bought +8.1 points over scratch at 120 labels and +2.0 at 1,200; against TF-IDF + LR: -3.2 at 120
    labels and +1.5 at 1,200 (within noise)." """
    by_fraction = [entries for _, entries in sorted(_by_fraction(summary).items()) if "pretrained" in entries]
    others = [("scratch", "scratch")] + ([(baseline.name, baseline.title)] if baseline is not None else [])
    clauses = []
    for kind, title in others:
        items = []
        for entries in by_fraction:
            if kind not in entries:
                continue
            pre, other = entries["pretrained"], entries[kind]
            difference = pre["accuracy"] - other["accuracy"]
            points = f"{round(100 * difference, 1) + 0.0:+.1f}"  # + 0.0: no "-0.0"
            if not items and not clauses:
                points += f" points over {title}"
            noise = " (within noise)" if abs(difference) < max(pre["accuracy_std"], other["accuracy_std"]) else ""
            items.append(f"{points} at {pre['labels']:,}{'' if items else ' labels'}{noise}")
        if items:
            clauses.append(("" if not clauses else f"against {title}: ") + _join(items))
    if not clauses:
        return "Pretraining bought: no pretrained and comparison rows share a label count."
    return f"Pretraining bought {'; '.join(clauses)}."


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _by_fraction(summary: list[dict]) -> dict[float, dict[str, dict]]:
    by_fraction: dict[float, dict[str, dict]] = {}
    for entry in summary:
        by_fraction.setdefault(entry["fraction"], {})[entry["model"]] = entry
    return by_fraction


def _score(entry: dict) -> str:
    return f"{entry['accuracy']:.3f} ± {entry['accuracy_std']:.3f}"


def add_to_card(model_dir: Path, section: str, image: Path) -> None:
    """Put `section` into the model's README.md (replacing an earlier one) and copy the plot next to it."""
    card = model_dir / "README.md"
    tmp = model_dir / (image.name + ".tmp")
    shutil.copyfile(image, tmp)
    tmp.replace(model_dir / image.name)
    text = card.read_text(encoding="utf-8") if card.is_file() else ""
    put_card_section(card, text, SECTION_START, SECTION_END, section)
