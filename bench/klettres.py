"""Real human speech hfssl never saw, from Debian's `klettres-data`: spoken letter names across languages and voices.

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/klettres.py --out runs/data/klettres

KLettres (KDE's alphabet tutor) ships one recorded voice per language reading its alphabet and, for most languages,
a list of syllables: 1,835 OGG Vorbis clips (about 51 minutes; 44.1 kHz, half of them stereo) named by
`usr/share/klettres/<lang>/sounds.xml`. The script fetches the package with `apt-get download klettres-data` (or
takes `--deb`), unpacks it with `dpkg-deb -x` and writes to `--out`:
- `clips/<voice>/{alpha,syllab}/<name>.wav`: every clip, 16 kHz mono 16-bit WAV (a clip shared by two languages,
  Norwegian Bokmål and Nynorsk, once);
- `train.csv`, `validation.csv`, `test.csv` (columns `path,label,voice`; paths relative to the list): the task,
  **which Latin letter A-Z is named**, from every voice whose alphabet has it, labelled by `sounds.xml`. A letter's
  name differs between languages (English "aitch", French "ache", German "ha") but mostly keeps its consonant and
  vowel, so a model must hear the phones across speakers and languages. Whole voices (a voice: the recordings of
  one language folder) are held out: seeded, the test voices first until they hold `--test-share` of the clips, then
  the validation ones. For `hfssl finetune`: `data.task: audio`, `data.train/validation/test` = these lists
  (`data.path_column: path`, `data.label_column: label`, the defaults);
- `unlabeled.csv` (column `path`): every clip, letters of every script and syllables, of every voice that is neither
  a test nor a validation voice: the pretraining corpus (`data.train` of `hfssl pretrain` on speech; clips under its
  `data.min_seconds`, 0.5 s by default, are skipped there);
- `baselines.json`: hfssl's own classic column, MFCC statistics + logistic regression
  (`hfssl.downstream.baselines`, fitted by `hfssl.downstream.probe.fit_probe` as `hfssl label-efficiency` fits its
  MFCC row, on the clips `hfssl.data.labelled` loads from the lists above), test accuracy and macro-F1 with 10%
  (stratified subsamples, seeds `--seed` to `--seed`+2) and 100% of the training labels, printed as a table.
The same `--seed` on the same package gives the same files; everything is written to a temporary folder that
replaces `--out` at the end. About 2 minutes on a busy 2-core machine.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PACKAGE = "klettres-data"
RATE = 16000
LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
FRACTIONS = (0.1, 1.0)
SPLITS = ("train", "validation", "test")


class BuildError(Exception):
    """A missing tool or package: printed as one line, without a traceback."""


@dataclass
class Clip:
    voice: str  # the language folder the file sits in
    kind: str  # alphabet or syllables
    name: str  # what is said, as sounds.xml spells it
    source: Path

    @property
    def path(self) -> str:
        """The WAV's path relative to `--out`."""
        relative = self.source.relative_to(self.source.parents[2]).with_suffix(".wav")
        return f"clips/{relative.as_posix()}"


def run(command: list[str], cwd: Path) -> None:
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise BuildError(f"{command[0]} not found: this needs Debian's apt and dpkg") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise BuildError(f"`{' '.join(command)}` failed: {last}")


def unpack(deb: Path | None, folder: Path) -> Path:
    """The package's `usr/share/klettres`, unpacked under `folder` from `deb`, or from a fresh download."""
    if deb is None:
        run(["apt-get", "download", PACKAGE], folder)
        debs = sorted(folder.glob(f"{PACKAGE}_*.deb"))
        if not debs:
            raise BuildError(f"`apt-get download {PACKAGE}` left no .deb")
        deb = debs[-1]
    elif not deb.is_file():
        raise BuildError(f"--deb {deb}: no such file")
    run(["dpkg-deb", "-x", str(deb.resolve()), "root"], folder)
    share = folder / "root/usr/share/klettres"
    if not any(share.glob("*/sounds.xml")):
        raise BuildError(f"{deb} holds no usr/share/klettres/*/sounds.xml: not {PACKAGE}?")
    return share


def read_clips(share: Path) -> tuple[list[Clip], int, int]:
    """Every clip that `sounds.xml` names and the package holds, each audio file once (the first language to name
    it keeps it; Nynorsk reuses Bokmål's recordings); with the counts of missing and repeated entries."""
    clips, seen, missing, repeated = [], set(), 0, 0
    for listing in sorted(share.glob("*/sounds.xml")):
        for language in ET.parse(listing).getroot().iter("language"):
            for kind in ("alphabet", "syllables"):
                for part in language.iter(kind):
                    for sound in part.iter("sound"):
                        source = share / sound.get("file", "")
                        if not source.is_file() or source.suffix != ".ogg":
                            missing += 1  # Indonesian names .wav files the package lacks
                            continue
                        digest = hashlib.sha256(source.read_bytes()).hexdigest()
                        if digest in seen:
                            repeated += 1
                            continue
                        seen.add(digest)
                        voice = source.relative_to(share).parts[0]
                        clips.append(Clip(voice, kind, sound.get("name", ""), source))
    return clips, missing, repeated


def is_task(clip: Clip) -> bool:
    return clip.kind == "alphabet" and clip.name.upper() in LETTERS


def hold_out_voices(clips: list[Clip], shares: dict[str, float], rng: random.Random) -> dict[str, str]:
    """Voice -> split: voices with task clips, shuffled, to test until it holds its share of the task clips, then
    to validation likewise, the rest (and every voice without task clips) to train."""
    counts = Counter(clip.voice for clip in clips if is_task(clip))
    voices = sorted(counts)
    rng.shuffle(voices)
    total, split_of, dealt = sum(counts.values()), {}, dict.fromkeys(SPLITS, 0)
    for voice in voices:
        split = next((s for s in ("test", "validation") if dealt[s] < shares[s] * total), "train")
        split_of[voice] = split
        dealt[split] += counts[voice]
    return split_of


def write_wav(source: Path, target: Path) -> float:
    """`source` as 16 kHz mono 16-bit WAV at `target`; returns its duration in seconds."""
    import soundfile as sf
    import torch
    import torchaudio.functional

    audio, rate = sf.read(source, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if rate != RATE:
        mono = torchaudio.functional.resample(torch.from_numpy(mono), rate, RATE).numpy()
    target.parent.mkdir(parents=True, exist_ok=True)
    # 16-bit PCM wraps around rather than saturating: a resampled peak just over 1 would click
    sf.write(target, np.clip(mono, -1.0, 1.0), RATE, subtype="PCM_16")
    return len(mono) / RATE


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def replace(tmp: Path, out: Path) -> None:
    """Put the finished folder `tmp` where `out` was, the old one set aside first so neither is ever half-written."""
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/data/klettres"), help="the folder to (re)write")
    parser.add_argument("--seed", type=int, default=0, help="seeds the held-out voices, subsamples and classifiers")
    parser.add_argument("--deb", type=Path, help=f"a downloaded {PACKAGE} .deb (default: apt-get download it)")
    parser.add_argument("--test-share", type=float, default=0.2, help="share of the task clips in test voices")
    parser.add_argument("--validation-share", type=float, default=0.1, help="share in validation voices")
    parser.add_argument("--no-baselines", action="store_true", help="write the data only")
    args = parser.parse_args(argv)
    if not 0 < args.test_share + args.validation_share < 1:
        parser.error("--test-share plus --validation-share must be in (0, 1)")
    tmp = args.out.with_name(args.out.name + ".tmp")  # becomes --out once complete
    try:
        build(args, tmp)
    except BuildError as err:
        sys.exit(f"error: {err}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build(args: argparse.Namespace, tmp: Path) -> None:
    import torch

    torch.set_num_threads(1)  # one clip at a time: intra-op threads cost more than they save
    started = time.perf_counter()
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as download:
        clips, missing, repeated = read_clips(unpack(args.deb, Path(download)))
        seconds = {clip.path: write_wav(clip.source, tmp / clip.path) for clip in clips}
    shares = {"test": args.test_share, "validation": args.validation_share}
    split_of = hold_out_voices(clips, shares, random.Random(args.seed))
    rng = random.Random(args.seed)
    splits = {split: [] for split in SPLITS}
    for clip in clips:
        if is_task(clip):
            splits[split_of[clip.voice]].append({"path": clip.path, "label": clip.name.upper(), "voice": clip.voice})
    unlabeled = [{"path": clip.path} for clip in clips if split_of.get(clip.voice, "train") == "train"]
    for rows in (*splits.values(), unlabeled):
        rng.shuffle(rows)
    for split, rows in splits.items():
        write_csv(tmp / f"{split}.csv", rows, ["path", "label", "voice"])
    write_csv(tmp / "unlabeled.csv", unlabeled, ["path"])

    durations = np.array(list(seconds.values()))
    minutes = {
        "all": durations.sum() / 60,
        "unlabeled": sum(seconds[row["path"]] for row in unlabeled) / 60,
        **{split: sum(seconds[row["path"]] for row in rows) / 60 for split, rows in splits.items()},
    }
    summary = {
        "clips": len(clips),
        "missing_files": missing,
        "repeated_files": repeated,
        "voices": len({clip.voice for clip in clips}),
        "seconds": {q: round(float(np.quantile(durations, q / 100)), 2) for q in (0, 5, 50, 95, 100)},
        "under_half_a_second": int((durations < 0.5).sum()),
        "classes": len({row["label"] for row in splits["train"]}),
        "examples": {split: len(rows) for split, rows in splits.items()},
        "voices_by_split": {split: sorted({row["voice"] for row in rows}) for split, rows in splits.items()},
        "unlabeled": len(unlabeled),
        "minutes": {key: round(value, 1) for key, value in minutes.items()},
        "seed": args.seed,
    }
    print(
        f"{len(clips):,} clips ({missing} named files missing, {repeated} repeats), {summary['voices']} voices, "
        f"{minutes['all']:.1f} minutes (median {summary['seconds'][50]} s, {summary['under_half_a_second']} under "
        f"0.5 s); task: {summary['classes']} letters, train / validation / test {len(splits['train'])} / "
        f"{len(splits['validation'])} / {len(splits['test'])} clips, test voices "
        f"{', '.join(summary['voices_by_split']['test'])}, validation voices "
        f"{', '.join(summary['voices_by_split']['validation'])}; unlabeled {len(unlabeled):,} clips, "
        f"{minutes['unlabeled']:.1f} minutes"
    )
    if not args.no_baselines:
        summary["baselines"] = baselines(tmp, args.seed)
    summary["wall_seconds"] = round(time.perf_counter() - started)
    (tmp / "baselines.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    replace(tmp, args.out)
    print(f"-> {args.out} ({summary['wall_seconds']} s)")


def baselines(folder: Path, seed: int) -> dict:
    """MFCC statistics + logistic regression as `hfssl label-efficiency` computes its MFCC row, on the lists as
    `hfssl finetune` loads them."""
    import torch

    from hfssl.config import LabelledDataArgs, ProbeArgs
    from hfssl.data.labelled import load_labelled, subsample
    from hfssl.downstream.baselines import mfcc_features
    from hfssl.downstream.probe import fit_probe

    with tempfile.TemporaryDirectory() as cache:
        data = LabelledDataArgs(
            task="audio",
            train=str(folder / "train.csv"),
            validation=str(folder / "validation.csv"),
            test=str(folder / "test.csv"),
            cache_dir=cache,
        )
        splits = load_labelled(data, seed=seed)
        train_x = mfcc_features(splits.train, RATE, data.max_seconds)
        test_x = mfcc_features(splits.test, RATE, data.max_seconds)
    labels, test_y = torch.tensor(splits.train["label"]), torch.tensor(splits.test["label"])
    results = {}
    for fraction in FRACTIONS:
        runs = []
        for run_seed in (seed, seed + 1, seed + 2):
            if fraction < 1:
                indexed = splits.train.add_column("_row", list(range(len(splits.train))))
                chosen = torch.tensor(subsample(indexed, fraction, run_seed)["_row"])
            else:
                chosen = torch.arange(len(splits.train))
            scores = fit_probe(
                train_x[chosen, None], labels[chosen], test_x[:, None], test_y, len(splits.label_names), layer=0,
                l2=ProbeArgs().l2, seed=run_seed,
            )  # fmt: skip
            runs.append({"labels": len(chosen), "accuracy": scores["accuracy"], "f1": scores["f1"]})
        results[f"{fraction:g}"] = {
            "labels": round(statistics.mean(r["labels"] for r in runs)),
            **{
                metric: {
                    "mean": statistics.mean(r[metric] for r in runs),
                    "std": statistics.stdev(r[metric] for r in runs),
                }
                for metric in ("accuracy", "f1")
            },
        }
    print(f"\nMFCC statistics + logistic regression (hfssl's own), {len(splits.test)} test clips of unseen voices:\n")
    print("| training labels | accuracy | macro-F1 |\n|---|---|---|")
    for fraction, scores in results.items():
        accuracy, f1 = scores["accuracy"], scores["f1"]
        print(
            f"| {float(fraction):.0%} ({scores['labels']}, 3 seeds) | {accuracy['mean']:.3f} ± {accuracy['std']:.3f} "
            f"| {f1['mean']:.3f} ± {f1['std']:.3f} |"
        )
    return results


if __name__ == "__main__":
    main()
