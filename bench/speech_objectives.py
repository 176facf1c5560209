"""The four speech objectives at equal pretraining steps, on the embedded speech, in one process.

    HF_HUB_OFFLINE=1 python bench/speech_objectives.py                 # 1,000 steps each, ~30 minutes on 2 cores
    HF_HUB_OFFLINE=1 python bench/speech_objectives.py --steps 200     # a quicker look

Each shipped tiny recipe (wav2vec2-tiny: contrastive; hubert-tiny: k-means targets over MFCCs; best-rq-tiny;
recon-tiny) runs `--steps` optimizer steps with its own settings, then its frozen encoder is probed on the embedded
keyword task (10 words, speakers never heard in pretraining; the probe `train.probe_every` runs: mean-pooled layers,
softmax-weighted, logistic regression). The same probe of randomly initialised encoders of the two architectures
is the floor. All four encoders are 2 layers x 64 with the same 20 ms conv front end; the contrastive one is a
`Wav2Vec2Model`, the others `HubertModel`s (the same transformer without a quantizer).

Wall time is the pretraining loop's own (`wall_time_s`: data loading, evaluation and probes included); HuBERT's
target building (MFCC features, k-means, labelling every clip) is timed on its own and added in the last column.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {
    "wav2vec2 (contrastive)": "wav2vec2-tiny",
    "HuBERT (MFCC k-means)": "hubert-tiny",
    "BEST-RQ": "best-rq-tiny",
    "reconstruction (L1)": "recon-tiny",
}


def pretrain_one(recipe: str, steps: int, out: Path, threads: int) -> dict:
    from hfssl.objectives import load_pretrain
    from hfssl.pretrain import pretrain

    overrides = {
        "train.max_steps": str(steps),
        "train.probe_every": str(steps),
        "train.eval_every": str(max(steps // 5, 1)),
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
    pretrain(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["targets_s"] = targets_s
    return metrics


def random_probe(arch: str, threads: int) -> float:
    """The probe of a randomly initialised tiny encoder of `arch` (the floor every objective should clear)."""
    from hfssl.config import AudioDataArgs, ObjectiveArgs, SpeechModelArgs, TrainArgs
    from hfssl.models.speech import feature_extractor
    from hfssl.objectives import masked_speech, wav2vec2
    from hfssl.probe import load_probe_data, probe

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    objective = ObjectiveArgs(name="contrastive" if arch == "wav2vec2" else "best-rq", codevectors_per_group=16)
    build_model = wav2vec2.build_model if objective.name == "contrastive" else masked_speech.build_model
    model = build_model(SpeechModelArgs(arch=arch, size="tiny", dropout=0.0), objective, 0.5)
    data = AudioDataArgs(max_seconds=2.0, batch_seconds=8.0)
    splits = load_probe_data(TrainArgs(probe_every=1), task="audio", max_seconds=data.max_seconds)
    return probe(model.base_model, feature_extractor(data), splits, batch_size=32, max_seconds=2.0)["accuracy"]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps per objective (default 1000)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--only", nargs="*", default=None, help="recipe names to run (default: all four)")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, recipe in RECIPES.items():
            if args.only and recipe not in args.only:
                continue
            m = pretrain_one(recipe, args.steps, Path(tmp) / recipe, args.threads)
            rows.append(
                {
                    "objective": label,
                    "recipe": recipe,
                    "initial_eval_loss": m["initial_eval_loss"],
                    "eval_loss": m["eval_loss"],
                    "probe": m["probes"][-1]["accuracy"],
                    "wall_s": m["wall_time_s"],
                    "targets_s": m["targets_s"],
                }
            )
            print(f"done: {label} {rows[-1]}", flush=True)
    floors = {arch: random_probe(arch, args.threads) for arch in ("wav2vec2", "hubert")}
    load = os.getloadavg()[0]
    print(f"\nspeech objectives at {args.steps} steps, tiny recipes ({args.threads} threads; load average {load:.2f})")
    print(f"{'objective':<26}{'eval loss':>18}{'probe acc':>11}{'wall s':>9}{'s/step':>8}{'+targets s':>12}")
    for r in rows:
        loss = f"{r['initial_eval_loss']:.3f}->{r['eval_loss']:.3f}"
        print(
            f"{r['objective']:<26}{loss:>18}{r['probe']:>11.3f}{r['wall_s']:>9.0f}{r['wall_s'] / args.steps:>8.2f}"
            f"{r['targets_s']:>12.0f}"
        )
    for arch, accuracy in floors.items():
        print(f"{'random ' + arch:<26}{'':>18}{accuracy:>11.3f}")
    print("(chance on the keyword task: 0.100; losses are per objective and not comparable across rows)")
    if args.out:
        args.out.write_text(json.dumps({"steps": args.steps, "rows": rows, "random_probe": floors}, indent=2))
    return rows


if __name__ == "__main__":
    main()
