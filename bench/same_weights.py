"""Digest of the trained weights after short runs of every objective, for refactors that must not change them.

    python bench/same_weights.py OUT.json      # run it before and after a change; the digests must be equal

40-step text runs (masked LM: ModernBERT with token and whole-word masking, BERT with span masking; ELECTRA's
replaced-token detection; Llama next-word prediction) and a 10-step run of each speech objective (wav2vec 2.0 also
on a conformer; data2vec on wav2vec 2.0), at the same seed, each checkpointed at its last step. The digest is
a sha256 over every tensor of the checkpoint's objective state (names and bytes, sorted by name), so it does not
depend on how a file lays the tensors out.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TEXT = {
    "model.num_layers": "2",
    "model.hidden_size": "64",
    "model.num_heads": "2",
    "data.synthetic_documents": "1000",
    "data.seq_len": "64",
    "tokenizer.vocab_size": "1000",
    "train.batch_size": "16",
    "train.max_steps": "40",
    "train.eval_every": "20",
    "train.save_every": "40",
    "train.eval_batches": "4",
    "train.probe_every": "",
}
SPEECH = {
    "model.num_layers": "2",
    "model.hidden_size": "32",
    "model.num_heads": "2",
    "model.conv_dim": "32",
    "data.synthetic_utterances": "60",
    "data.max_seconds": "1.0",
    "data.batch_seconds": "4.0",
    "train.max_steps": "10",
    "train.eval_every": "5",
    "train.save_every": "10",
    "train.eval_batches": "2",
    "train.probe_every": "",
}
WAV2VEC2 = SPEECH | {"objective.num_negatives": "10", "objective.codevectors_per_group": "8"}
HUBERT = SPEECH | {"targets.clusters": "8", "targets.fit_frames": "2000"}
RUNS = {
    "mlm": ("text/mlm-tiny", TEXT),
    "mlm-bert-span": ("text/mlm-tiny", TEXT | {"model.arch": "bert", "masking.strategy": "span"}),
    "mlm-whole-word": ("text/mlm-tiny", TEXT | {"masking.strategy": "whole_word"}),
    "rtd": ("text/electra-tiny", TEXT),
    "clm": ("text/clm-tiny", TEXT),
    "wav2vec2": ("speech/wav2vec2-tiny", WAV2VEC2),
    "wav2vec2-conformer": ("speech/wav2vec2-tiny", WAV2VEC2 | {"model.arch": "wav2vec2-conformer"}),
    "hubert": ("speech/hubert-tiny", HUBERT),
    "best-rq": ("speech/best-rq-tiny", SPEECH),
    "reconstruction": ("speech/recon-tiny", SPEECH),
    "data2vec": ("speech/data2vec-w2v-bert-tiny", SPEECH | {"model.arch": "wav2vec2", "objective.top_k_layers": "2"}),
}


def digest(path: Path) -> str:
    import torch
    from safetensors.torch import load_file

    weights = load_file(str(path))
    h = hashlib.sha256()
    for name in sorted(weights):
        h.update(name.encode())
        h.update(weights[name].contiguous().view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return h.hexdigest()


def main(out: str) -> None:
    from hfssl.__main__ import main as hfssl

    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (recipe, changes) in RUNS.items():
            run = Path(tmp) / name
            args = ["pretrain", recipe, "--train.output_dir", str(run)]
            for key, value in changes.items():
                args += [f"--{key}", value]
            hfssl(args)
            checkpoint = max((run / "checkpoints").glob("step-*"))
            metrics = json.loads((run / "metrics.json").read_text())
            result[name] = {"digest": digest(checkpoint / "model.safetensors"), "eval_loss": metrics["eval_loss"]}
            print(name, result[name], flush=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
