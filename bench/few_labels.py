"""Few-label fine-tuning settings, measured: what `hfssl finetune` scores at a few label fractions of a real task
under each setting of the `finetune` section, over seeds, against the same encoder from scratch.

    python bench/few_labels.py --export runs/deb-mlm/final --data runs/data/debian-packages \
        --recipe text/classify-tiny --fractions 0.01 0.1 --seeds 0 1 --out runs/few-labels.json

`--data` holds `train.csv`, `validation.csv` and `test.csv` (`text,label`, as `bench/debian_packages.py` writes them;
`--task audio` reads `path,label` lists, as `bench/klettres.py` writes them). Every run is `hfssl finetune`'s own
function on the recipe, with the fraction of the training labels (stratified, seeded) and the same fraction of the
validation split to choose on (`data.few_label_validation: fraction`, the default), scored on the whole test split.
No setting is chosen on the test split: this script only reports it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# name -> `finetune`/`model` settings over the recipe's; "epochs, choose on few" is hfssl before the few-label floor
SETTINGS = {
    "epochs, choose on few": {"finetune.min_steps": "0", "finetune.min_validation": "0"},
    "defaults": {},
    "defaults + layer decay 0.8": {"finetune.layer_lr_decay": "0.8"},
    "defaults + LP-FT 100 steps": {"finetune.probe_steps": "100"},
    "from scratch, defaults": {"model.from_scratch": "true"},
    # the training split's texts (or clips) without their labels: the pool a user with few labels already has
    "defaults + self-training 2 rounds": {"self_training.unlabeled": "{data}/train.csv", "self_training.rounds": "2"},
}


def run(args, setting: str, fraction: float, seed: int) -> dict:
    from hfssl import config as config_lib
    from hfssl.config import FinetuneConfig
    from hfssl.downstream.finetune import finetune

    with tempfile.TemporaryDirectory(prefix="hfssl-few-labels-") as scratch:
        values = {
            "model.name_or_path": str(args.export),
            "data.task": args.task,
            "data.train": str(args.data / "train.csv"),
            "data.validation": str(args.data / "validation.csv"),
            "data.test": str(args.data / "test.csv"),
            "data.label_fraction": str(fraction),
            "training.output_dir": str(Path(scratch) / "run"),
            "training.seed": str(seed),
            "training.report_to": "none",
            "training.disable_tqdm": "true",
            **{k: v.format(data=args.data) for k, v in SETTINGS[setting].items()},
            **dict(change.split("=", 1) for change in args.set),
        }
        start = time.time()
        metrics = finetune(config_lib.load(FinetuneConfig, args.recipe, values), export=False)
    return {
        "setting": setting,
        "fraction": fraction,
        "seed": seed,
        "train_examples": metrics["train_examples"],
        "steps": metrics["steps"],
        "accuracy": metrics["test"]["accuracy"],
        "f1": metrics["test"]["f1"],
        "selection": metrics["selection"],
        "self_training": [
            {k: r[k] for k in ("round", "pseudo_labels", "train_examples", "kept")}
            | {"accuracy": r["validation"].get("accuracy")}
            for r in metrics.get("self_training", [])
        ],
        "seconds": round(time.time() - start, 1),
    }


def table(rows: list[dict], fractions: list[float]) -> str:
    lines = ["| setting | " + " | ".join(f"{f:g} of the labels" for f in fractions) + " |"]
    lines.append("|---" * (len(fractions) + 1) + "|")
    for setting in dict.fromkeys(r["setting"] for r in rows):
        cells = []
        for fraction in fractions:
            scores = [r["accuracy"] for r in rows if r["setting"] == setting and r["fraction"] == fraction]
            if not scores:
                cells.append("")
                continue
            spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
            n = next(r["train_examples"] for r in rows if r["setting"] == setting and r["fraction"] == fraction)
            cells.append(f"{statistics.mean(scores):.3f} ± {spread:.3f} ({n:,} labels)")
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, required=True, help="the pretrained export to fine-tune")
    parser.add_argument("--data", type=Path, required=True, help="folder with train.csv, validation.csv, test.csv")
    parser.add_argument("--task", choices=("text", "audio"), default="text")
    parser.add_argument("--recipe", default="text/classify-tiny", help="the fine-tuning recipe the runs start from")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more recipe settings, every run")
    parser.add_argument("--out", type=Path, default=Path("runs/few-labels.json"))
    args = parser.parse_args(argv)
    for name in ("train.csv", "validation.csv", "test.csv"):
        if not (args.data / name).is_file():
            sys.exit(f"error: {args.data / name}: missing (build it with bench/debian_packages.py or klettres.py)")
    logging.basicConfig(level=logging.WARNING)
    rows = []
    for fraction in args.fractions:
        for setting in args.settings:
            for seed in args.seeds:
                rows.append(run(args, setting, fraction, seed))
                print(json.dumps(rows[-1]), flush=True)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                tmp = args.out.with_suffix(".tmp")
                tmp.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))
                tmp.replace(args.out)
    print(table(rows, args.fractions))


if __name__ == "__main__":
    main()
