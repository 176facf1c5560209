"""The embedded spoken-keyword task written out as files, so the real-data benches (`few_labels.py --task audio`,
self-training on an unlabeled pool) can run on it as they run on KLettres.

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/synthetic_keywords.py --out runs/data/synthetic-keywords

`hfssl finetune recipes/speech/keywords-tiny.yaml` trains on `data.train: synthetic` with `data.synthetic_examples`
(1,500) clips: its test and validation splits (10% each) and its training split are drawn from disjoint seeds by
`hfssl.data.labelled`. This script asks that same loader for the same three splits and writes:
- `clips/<split>/<index>.wav`: every clip, the generated 16 kHz WAV, byte for byte;
- `train.csv`, `validation.csv`, `test.csv` (columns `path,label`; the label is the keyword's name): the lists
  `hfssl finetune` reads with `data.task: audio`; `unlabeled.csv` (column `path`): the training clips without
  their labels, the pool self-training pseudo-labels;
- `baselines.json`: MFCC statistics + logistic regression, hfssl's own classic column, at 10% and 100% of the
  training labels (`klettres.baselines`, the same fit).
Everything is written to a temporary folder that replaces `--out` at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # klettres's writers and its MFCC baseline

from klettres import RATE, baselines, replace, write_csv  # noqa: E402


def build(examples: int, seed: int, tmp: Path) -> dict:
    import soundfile as sf

    from hfssl.config import LabelledDataArgs
    from hfssl.data.labelled import load_labelled

    with tempfile.TemporaryDirectory() as cache:
        data = LabelledDataArgs(task="audio", train="synthetic", synthetic_examples=examples, cache_dir=cache)
        splits = load_labelled(data, seed=seed)
        sizes = {}
        for split in ("train", "validation", "test"):
            dataset = getattr(splits, split)
            rows = []
            for index, example in enumerate(dataset):
                path = f"clips/{split}/{index:05d}.wav"
                (tmp / path).parent.mkdir(parents=True, exist_ok=True)
                (tmp / path).write_bytes(example["audio"]["bytes"])  # the generated WAV, byte for byte
                if sf.info(tmp / path).samplerate != RATE:
                    raise SystemExit(f"error: the embedded keywords are not at {RATE} Hz")
                rows.append({"path": path, "label": splits.label_names[example["label"]]})
            write_csv(tmp / f"{split}.csv", rows, ["path", "label"])
            if split == "train":
                write_csv(tmp / "unlabeled.csv", [{"path": row["path"]} for row in rows], ["path"])
            sizes[split] = len(rows)
    print(f"{examples:,} embedded keyword clips, {len(splits.label_names)} classes: train / validation / test {sizes}")
    return {"examples": sizes, "classes": len(splits.label_names)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/data/synthetic-keywords"), help="folder to (re)write")
    parser.add_argument("--examples", type=int, default=1500, help="data.synthetic_examples (keywords-tiny's 1,500)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the subsamples and classifiers of the baselines")
    args = parser.parse_args(argv)
    tmp = args.out.with_name(args.out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        summary = build(args.examples, args.seed, tmp)
        summary["baselines"] = baselines(tmp, args.seed)
        (tmp / "baselines.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        replace(tmp, args.out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
