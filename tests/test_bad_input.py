"""Bad input across every subcommand: one clear line naming the file, field or option and what is wrong, exit 2, no
traceback, and nothing written where the command would have written. Each case runs the real CLI entry point in
this process (what fails, fails before any training) in a folder of its own, and checks that folder is unchanged."""

import json
import os
from pathlib import Path

import pytest
import torch
from helpers import snapshot

from hfssl.__main__ import main

# Small, in case a case did not fail as it should: it then trains for seconds, not minutes.
TEXT = ["--train.max_steps", "2", "--data.synthetic_documents", "200", "--tokenizer.vocab_size", "200",
        "--model.hidden_size", "32", "--model.num_heads", "2", "--train.probe_every", ""]  # fmt: skip
SPEECH = ["--train.max_steps", "2", "--data.synthetic_utterances", "20", "--data.max_seconds", "1",
          "--data.batch_seconds", "4", "--model.hidden_size", "32", "--model.conv_dim", "32",
          "--train.probe_every", ""]  # fmt: skip
SIMCSE = lambda m: ["pretrain", "text/simcse-tiny", *TEXT, "--model.name_or_path", m.text_export]  # noqa: E731
DOWNSTREAM = ["--data.synthetic_examples", "100", "--data.max_length", "32", "--training.num_train_epochs", "1",
              "--finetune.min_steps", "0"]  # fmt: skip


def file(tmp, name="a_file.txt", text="not a directory"):
    (tmp / name).write_text(text)
    return tmp / name


def folder_with_files(tmp, name="mine"):
    (tmp / name).mkdir()
    (tmp / name / "notes.txt").write_text("keep me")
    return tmp / name


LOCKED: set = set()


def locked(tmp, name="locked"):
    """A directory this user cannot write in. Its mode says so; where the tests run as root, whom modes do not stop,
    `os.access` is told so as well (test_bad_input_is_one_line)."""
    path = tmp / name
    path.mkdir()
    path.chmod(0o555)
    LOCKED.add(path)
    return path


def bad_recipe(tmp, text):
    (tmp / "recipe.yaml").write_text(text)
    return tmp / "recipe.yaml"


def rows(tmp, name, data):
    path = tmp / name
    path.write_text("".join(json.dumps(row) + "\n" for row in data))
    return path


LABELS = [{"text": f"example {i}", "label": ["a", "b"][i % 2]} for i in range(30)]


def jsonl_with_a_broken_row(tmp):
    """Row 4 of 30 is cut off mid-object."""
    lines = [json.dumps(row) for row in LABELS]
    lines[3] = lines[3][:-5]
    path = tmp / "labelled.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def csv_with_empty_text(tmp):
    path = tmp / "labelled.csv"
    path.write_text("text,label\n" + "".join(f"{'' if i == 3 else row['text']},{row['label']}\n"
                                               for i, row in enumerate(LABELS)))  # fmt: skip
    return path


def earlier_finetune(tmp):
    """An output directory an earlier `hfssl finetune` wrote."""
    (tmp / "ft" / "final").mkdir(parents=True)
    (tmp / "ft" / "metrics.json").write_text("{}")
    return tmp / "ft"


CPU_ONLY = {"text-fp16-on-cpu"}
"""Cases that are bad input on a machine without a GPU only."""

# (id, argv from (tmp, models), the message fragment). `models` gives the shared tiny exports and runs.
CASES = [
    # pretrain, text
    ("text-unknown-option", lambda t, m: ["pretrain", "text/mlm-tiny", "--train.lrate", "1"], "--train.lr?"),
    ("text-steps-not-int", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--train.max_steps", "abc"],
     "train.max_steps: expected an integer"),
    ("text-steps-zero", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--train.max_steps", "0"],
     "train.max_steps: must be positive"),
    ("text-negative-lr", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--train.lr", "-1"], "train.lr"),
    ("text-infinite-lr", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--train.lr", ".inf"],
     "train.lr: expected a finite number, got inf"),
    ("text-adam-beta1", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--train.adam_beta1", "1.5"],
     "train.adam_beta1: must be in [0, 1), got 1.5"),
    ("text-fp16-on-cpu", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--train.mixed_precision", "fp16"],
     "train.mixed_precision: fp16 needs a GPU"),  # skipped where a GPU is (CPU_ONLY)
    ("text-negative-seed", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--train.seed", "-1"],
     "train.seed: must not be negative"),
    ("text-infinite-epochs", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--train.max_steps", "",
                                           "--train.epochs", ".inf"], "train.epochs: expected a finite number"),
    ("text-negative-grad-norm", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--train.max_grad_norm", "-1"],
     "train.max_grad_norm: must be positive"),
    ("text-section-number", lambda t, m: ["pretrain", bad_recipe(t, "train: 3\n")],
     "section 'train' must be a mapping of keys, got 3"),
    ("text-section-list", lambda t, m: ["pretrain", bad_recipe(t, "train:\n  - lr\n"), "--train.lr", "1e-3"],
     "section 'train' must be a mapping of keys, got ['lr']"),
    ("text-key-twice", lambda t, m: ["pretrain", bad_recipe(t, "train:\n  lr: 0.001\n  lr: 0.002\n")],
     "line 3, column 3: key 'lr' is given twice"),
    ("text-resume-other-vocab", lambda t, m: ["pretrain", "text/mlm-tiny", *m.tiny_pretrain(t),
                                              "--tokenizer.vocab_size", "500", "--resume"],
     "--resume: tokenizer.vocab_size is 500 here and 1000 in the run the checkpoint continues"),
    ("text-resume-other-seq-len", lambda t, m: ["pretrain", "text/mlm-tiny", *m.tiny_pretrain(t),
                                                "--data.seq_len", "32", "--resume"],
     "--resume: data.seq_len is 32 here and 64"),
    ("text-speech-arch", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--model.arch", "wav2vec2",
                                       "--train.output_dir", t / "run"],
     "model.arch: wav2vec2 is a speech architecture and text/mlm-tiny is a text recipe (tokenizer."),
    ("text-resume-damaged", lambda t, m: ["pretrain", "text/mlm-tiny", *m.tiny_pretrain(t, damaged=True),
                                          "--resume"], "model.safetensors: not readable, the checkpoint is damaged"),
    ("text-resume-empty-state", lambda t, m: ["pretrain", "text/mlm-tiny", *m.tiny_pretrain(t, state="{}"),
                                              "--resume"], "not a checkpoint state (it has no 'step')"),
    ("text-unknown-tracker", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--train.report_to", "[tensorbord]",
                                           "--train.output_dir", t / "run"], "'tensorbord' is not a tracker"),
    ("text-tracker-not-installed", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--train.report_to", "[aim]",
                                                 "--train.output_dir", t / "run"], "aim is not installed"),
    ("text-mask-rate", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--masking.mask_rate", "1.5"],
     "masking.mask_rate: must be in (0, 1)"),
    ("text-strategy", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--masking.strategy", "words"],
     "masking.strategy: 'words' is not valid"),
    ("text-arch", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--model.arch", "gpt3"], "model.arch"),
    ("text-objective", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--objective.name", "nope"],
     "objective.name: 'nope' is not an objective"),
    ("text-missing-corpus", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--data.train", t / "none.txt",
                                          "--train.output_dir", t / "run"], "none.txt"),
    ("text-seq-len-short", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--data.seq_len", "4"],
     "data.seq_len: must be at least 8"),
    ("text-seq-len-long", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--data.seq_len", "4096",
                                        "--train.output_dir", t / "run"], "data.seq_len: 4096 exceeds"),
    ("text-vocab", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--tokenizer.vocab_size", "10"],
     "tokenizer.vocab_size"),
    ("text-tokenizer-path", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--tokenizer.path", "./no/tokenizer",
                                          "--train.output_dir", t / "run"], "tokenizer.path: ./no/tokenizer: no such"),
    ("text-model-path", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--model.name_or_path", "./no/model",
                                      "--train.output_dir", t / "run"], "model.name_or_path: ./no/model: no such"),
    ("text-heads", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--model.hidden_size", "30",
                                 "--model.num_heads", "4", "--train.output_dir", t / "run"], "not divisible"),
    ("text-output-is-file", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--train.output_dir", file(t)],
     "train.output_dir: "),
    ("text-resume-nothing", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--train.output_dir", t / "run",
                                          "--resume"], "holds no checkpoint"),
    ("text-dry-run-resume", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--dry-run", "--resume"],
     "--dry-run estimates a run from its start"),
    ("text-no-recipe", lambda t, m: ["pretrain", t / "none.yaml"], "no such recipe file"),
    ("text-bad-yaml", lambda t, m: ["pretrain", bad_recipe(t, "train:\n  lr: [1\n")], "not valid YAML (line"),
    ("text-unknown-section", lambda t, m: ["pretrain", bad_recipe(t, "trian:\n  lr: 1\n")], "did you mean 'train'"),
    ("text-decoder-for-mlm", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--model.arch", "llama",
                                           "--train.output_dir", t / "run"], "llama is not an encoder"),
    # pretrain, simcse (continuing from the shared tiny masked-LM export)
    ("text-simcse-pairs-missing-column", lambda t, m: [*SIMCSE(m), "--objective.pairs",
        rows(t, "pairs.jsonl", [{"anchor": "a", "pos": "b"}] * 8)], "has no column 'positive'"),
    ("text-simcse-pairs-empty-text", lambda t, m: [*SIMCSE(m), "--objective.pairs",
        rows(t, "pairs.jsonl", [{"anchor": "a", "positive": "b"}, {"anchor": "c", "positive": " "}] * 4)],
     "pairs.jsonl row 2: column 'positive' is empty"),
    ("text-simcse-batch-of-one", lambda t, m: [*SIMCSE(m), "--train.batch_size", "1"],
     "train.batch_size: contrastive learning needs at least 2 texts per batch"),
    ("text-simcse-temperature-zero", lambda t, m: [*SIMCSE(m), "--objective.temperature", "0"],
     "objective.temperature: must be positive"),
    ("text-simcse-cls-of-a-decoder", lambda t, m: [*SIMCSE(m), "--model.name_or_path", "", "--model.arch", "llama",
                                                   "--objective.pooling", "cls"],
     "objective.pooling: cls pools the first token, which in a causal model has read nothing"),
    ("text-simcse-no-dropout", lambda t, m: [*SIMCSE(m), "--model.dropout", "0"],
     "model.dropout: unsupervised SimCSE's two views of a text differ only by dropout"),
    ("text-simcse-packed", lambda t, m: [*SIMCSE(m), "--data.packing", "separator"],
     "data.packing: simcse embeds one text per sequence"),
    ("text-simcse-masking", lambda t, m: [*SIMCSE(m), "--masking.mask_rate_schedule", "[0.3, 0.1]",
                                          "--masking.mask_rate_milestones", "[0.5]"],
     "masking.mask_rate_schedule: objective.name simcse masks nothing"),
    ("text-simcse-setting-for-mlm", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--objective.pooling", "cls"],
     "objective.pooling: only objective.name simcse takes it; this recipe trains mlm"),
    ("clm-masking", lambda t, m: ["pretrain", "text/clm-tiny", *TEXT, "--masking.span_p", "0.5",
                                  "--train.output_dir", t / "run"], "masking.span_p: objective.name clm masks nothing"),
    ("clm-encoder", lambda t, m: ["pretrain", "text/clm-tiny", *TEXT, "--model.arch", "roberta",
                                  "--train.output_dir", t / "run"], "roberta is not a causal decoder"),
    ("text-warmup", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--train.warmup_ratio", "1.5"],
     "train.warmup_ratio"),
    ("text-validation-fraction", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--data.validation_fraction",
                                               "0"], "data.validation_fraction"),
    ("text-probe-every", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--train.probe_every", "-1"],
     "train.probe_every: must not be negative"),
    ("text-stream-epochs", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--data.streaming", "true",
                                         "--train.max_steps", "", "--train.epochs", "1",
                                         "--train.output_dir", t / "run"], "a streamed corpus has no known length"),
    ("text-earlier-run", lambda t, m: ["pretrain", "text/mlm-tiny", *TEXT, "--train.output_dir", m.text_run],
     "holds checkpoints of an earlier run"),
    # pretrain, speech
    ("speech-contrastive-arch", lambda t, m: ["pretrain", "speech/wav2vec2-tiny", *SPEECH, "--model.arch", "hubert",
                                              "--train.output_dir", t / "run"], "has no quantizer"),
    ("speech-codevector", lambda t, m: ["pretrain", "speech/wav2vec2-tiny", *SPEECH, "--objective.codevector_dim",
                                        "7", "--train.output_dir", t / "run"], "objective.codevector_dim: 7"),
    ("speech-negatives", lambda t, m: ["pretrain", "speech/wav2vec2-tiny", *SPEECH, "--objective.num_negatives",
                                       "0"], "objective.num_negatives"),
    ("speech-missing-audio", lambda t, m: ["pretrain", "speech/wav2vec2-tiny", *SPEECH, "--data.train",
                                           t / "no-audio", "--train.output_dir", t / "run"], "no-audio"),
    ("speech-batch-seconds", lambda t, m: ["pretrain", "speech/wav2vec2-tiny", *SPEECH, "--data.batch_seconds",
                                           "0.5"], "data.batch_seconds"),
    ("speech-sampling-rate", lambda t, m: ["pretrain", "speech/wav2vec2-tiny", *SPEECH, "--data.sampling_rate",
                                           "500"], "data.sampling_rate"),
    ("speech-mask-prob", lambda t, m: ["pretrain", "speech/wav2vec2-tiny", *SPEECH, "--masking.mask_prob", "1.5"],
     "masking.mask_prob"),
    ("speech-codebook", lambda t, m: ["pretrain", "speech/best-rq-tiny", *SPEECH, "--objective.mel_bins", "4",
                                      "--objective.codebook_dim", "16", "--train.output_dir", t / "run"],
     "objective.codebook_dim"),
    ("speech-hubert-stream", lambda t, m: ["pretrain", "speech/hubert-tiny", *SPEECH, "--data.streaming", "true",
                                           "--train.output_dir", t / "run"], "HuBERT's cluster targets"),
    ("speech-text-option", lambda t, m: ["pretrain", "speech/wav2vec2-tiny", *SPEECH, "--tokenizer.vocab_size",
                                         "300"], "tokenizer.vocab_size: only objective.name mlm, rtd, clm or simcse"),
    ("speech-gumbel", lambda t, m: ["pretrain", "speech/wav2vec2-tiny", *SPEECH, "--objective.gumbel_min", "3"],
     "objective.gumbel_min"),
    ("speech-layerdrop", lambda t, m: ["pretrain", "speech/wav2vec2-tiny", *SPEECH, "--model.layerdrop", "1.5"],
     "model.layerdrop"),
    ("speech-model-path", lambda t, m: ["pretrain", "speech/best-rq-tiny", *SPEECH, "--model.name_or_path",
                                        "./no/encoder", "--train.output_dir", t / "run"], "./no/encoder: no such"),
    # hubert-targets
    ("targets-contrastive", lambda t, m: ["hubert-targets", "speech/wav2vec2-tiny"], "trains on no cluster targets"),
    ("targets-hidden-no-model", lambda t, m: ["hubert-targets", "speech/hubert-tiny", "--targets.features", "hidden",
                                              "--targets.dir", t / "targets"], "targets.model"),
    ("targets-missing-model", lambda t, m: ["hubert-targets", "speech/hubert-tiny", "--targets.features", "hidden",
                                            "--targets.model", "./no/encoder", "--targets.dir", t / "targets"],
     "targets.model: ./no/encoder: no such directory"),
    ("targets-clusters", lambda t, m: ["hubert-targets", "speech/hubert-tiny", "--targets.clusters", "1"],
     "targets.clusters"),
    # tokenizer train
    ("tokenizer-out-file", lambda t, m: ["tokenizer", "train", "--data.synthetic_documents", "100", "--out",
                                         file(t)], "is a file; pass --overwrite"),
    ("tokenizer-kind", lambda t, m: ["tokenizer", "train", "--tokenizer.kind", "xyz", "--out", t / "tok"],
     "tokenizer.kind"),
    ("tokenizer-missing-corpus", lambda t, m: ["tokenizer", "train", "--data.train", t / "none.txt", "--out",
                                               t / "tok"], "none.txt"),
    ("tokenizer-out-under-file", lambda t, m: ["tokenizer", "train", "--data.synthetic_documents", "100", "--out",
                                               file(t) / "tok"], "a_file.txt, which is a file, not a directory"),
    ("tokenizer-no-out", lambda t, m: ["tokenizer", "train"], "--out"),
    ("tokenizer-out-not-writable", lambda t, m: ["tokenizer", "train", "--data.synthetic_documents", "100", "--out",
                                                 locked(t) / "tok"], "locked is not writable"),
    # export
    ("export-no-checkpoint", lambda t, m: ["export", t / "nothing", t / "out"], "holds no checkpoint"),
    ("export-into-files", lambda t, m: ["export", m.text_run, folder_with_files(t)], "pass --overwrite"),
    ("export-not-a-run", lambda t, m: ["export", m.foreign_checkpoint(t), t / "out"], "lacks config.yaml"),
    ("export-damaged", lambda t, m: ["export", m.damaged_run(t), t / "out"], "not readable weights"),
    ("export-not-finite", lambda t, m: ["export", m.poisoned_run(t), t / "out"], "weights are not finite"),
    ("export-under-a-file", lambda t, m: ["export", m.text_run, file(t) / "out"],
     "a_file.txt, which is a file, not a directory"),
    ("export-not-writable", lambda t, m: ["export", m.text_run, locked(t) / "out"], "locked is not writable"),
    ("export-onto-the-run", lambda t, m: ["export", m.run_copy(t), t / "run", "--overwrite"],
     "holds the checkpoint being exported"),
    ("export-onto-the-checkpoint", lambda t, m: ["export", next(m.run_copy(t).glob("checkpoints/step-*")),
                                                 t / "run", "--overwrite"], "holds the checkpoint being exported"),
    # finetune
    ("finetune-model-path", lambda t, m: ["finetune", "text/classify-tiny", "--model.name_or_path", "./no/model"],
     "no such directory"),
    ("finetune-text-model-audio-task", lambda t, m: ["finetune", "speech/keywords-tiny", "--model.name_or_path",
                                                     m.text_export, "--training.output_dir", t / "ft"],
     "is a text model (modernbert) and data.task is audio"),
    ("finetune-lr", lambda t, m: ["finetune", "text/classify-tiny", "--model.name_or_path", m.text_export,
                                  *DOWNSTREAM, "--training.learning_rate", "-1", "--training.output_dir", t / "ft"],
     "training.learning_rate: must be positive"),
    ("finetune-metric", lambda t, m: ["finetune", "text/classify-tiny", "--model.name_or_path", m.text_export,
                                      *DOWNSTREAM, "--training.metric_for_best_model", "auroc",
                                      "--training.output_dir", t / "ft"], "'auroc' is not a metric"),
    ("finetune-tracker", lambda t, m: ["finetune", "text/classify-tiny", "--model.name_or_path", m.text_export,
                                       *DOWNSTREAM, "--training.report_to", "neptune", "--training.output_dir",
                                       t / "ft"], "training.report_to: neptune is not installed"),
    ("finetune-push-checkpoints", lambda t, m: ["finetune", "text/classify-tiny", "--hub.push_checkpoints", "true",
                                                "--hub.repo_id", "someone/x"], "hub.push_checkpoints: pretraining"),
    ("finetune-fraction", lambda t, m: ["finetune", "text/classify-tiny", "--data.label_fraction", "0"],
     "data.label_fraction"),
    ("finetune-max-length", lambda t, m: ["finetune", "text/classify-tiny", "--model.name_or_path", m.text_export,
                                          *DOWNSTREAM, "--data.max_length", "100000", "--training.output_dir",
                                          t / "ft"], "data.max_length: 100000 exceeds"),
    ("finetune-output-file", lambda t, m: ["finetune", "text/classify-tiny", "--model.name_or_path", m.text_export,
                                           *DOWNSTREAM, "--training.output_dir", file(t)], "is a file"),
    ("finetune-missing-data", lambda t, m: ["finetune", "text/classify-tiny", "--model.name_or_path", m.text_export,
                                            "--data.train", t / "none.jsonl", "--training.output_dir", t / "ft"],
     "none.jsonl"),
    ("finetune-unknown-option", lambda t, m: ["finetune", "text/classify-tiny", "--training.lernin_rate", "1"],
     "--training.learning_rate?"),
    ("finetune-task", lambda t, m: ["finetune", "text/classify-tiny", "--data.task", "video"], "data.task"),
    ("finetune-earlier-output", lambda t, m: ["finetune", "text/classify-tiny", "--model.name_or_path",
                                              m.text_export, *DOWNSTREAM, "--training.output_dir", earlier_finetune(t)],
     "holds an earlier fine-tune (final); pass --overwrite"),
    ("finetune-nan-lr", lambda t, m: ["finetune", "text/classify-tiny", "--training.learning_rate", ".nan"],
     "training.learning_rate: expected a finite number, got nan"),
    ("finetune-batch-zero", lambda t, m: ["finetune", "text/classify-tiny", "--training.per_device_train_batch_size",
                                          "0"], "training.per_device_train_batch_size: must be positive, got 0"),
    ("finetune-negative-epochs", lambda t, m: ["finetune", "text/classify-tiny", "--training.num_train_epochs", "-1"],
     "training.num_train_epochs: must be positive"),
    ("finetune-negative-patience", lambda t, m: ["finetune", "text/classify-tiny",
                                                 "--finetune.early_stopping_patience", "-1"],
     "finetune.early_stopping_patience: must not be negative"),
    ("finetune-empty-text", lambda t, m: ["finetune", "text/classify-tiny", "--model.name_or_path", m.text_export,
                                          "--data.train", csv_with_empty_text(t), "--training.output_dir", t / "ft"],
     "labelled.csv row 4: column 'text' is empty"),
    ("finetune-empty-label", lambda t, m: ["finetune", "text/classify-tiny", "--model.name_or_path", m.text_export,
                                           "--data.train", rows(t, "train.jsonl", LABELS[:20] + [{"text": "x",
                                           "label": ""}] + LABELS[20:]), "--training.output_dir", t / "ft"],
     "row 21 has no label"),
    ("finetune-broken-jsonl", lambda t, m: ["finetune", "text/classify-tiny", "--model.name_or_path", m.text_export,
                                            "--data.train", jsonl_with_a_broken_row(t), "--training.output_dir",
                                            t / "ft"], "labelled.jsonl, line 4: not valid JSON"),
    ("finetune-no-labels", lambda t, m: ["finetune", "text/classify-tiny", "--model.name_or_path", m.text_export,
                                         "--data.train", rows(t, "train.jsonl", [{"text": r["text"], "label": None}
                                                                                  for r in LABELS]),
                                         "--training.output_dir", t / "ft"], "is empty in every row"),
    # probe
    ("probe-output-folder", lambda t, m: ["probe", "text/probe-tiny", "--model.name_or_path", m.text_export,
                                          "--probe.output", folder_with_files(t)], "is a directory"),
    ("probe-output-exists", lambda t, m: ["probe", "text/probe-tiny", "--model.name_or_path", m.text_export,
                                          "--probe.output", file(t, "p.json")], "p.json: is a file; pass --overwrite"),
    ("probe-empty-text", lambda t, m: ["probe", "text/probe-tiny", "--model.name_or_path", m.text_export,
                                       "--data.train", csv_with_empty_text(t), "--probe.output", t / "p.json"],
     "labelled.csv row 4: column 'text' is empty"),
    ("probe-l2", lambda t, m: ["probe", "text/probe-tiny", "--probe.l2", "-1"], "probe.l2"),
    ("probe-model-path", lambda t, m: ["probe", "text/probe-tiny", "--model.name_or_path", "./no/model",
                                       "--probe.output", t / "p.json"], "no such directory"),
    # a frozen probe trains no encoder: how one is trained is refused, not ignored
    ("probe-freeze-feature-encoder", lambda t, m: ["probe", "text/probe-tiny", "--model.freeze_feature_encoder",
                                                   "false"], "model.freeze_feature_encoder: the probe trains no"),
    ("probe-mask-time-prob", lambda t, m: ["probe", "text/probe-tiny", "--model.mask_time_prob", "0.05"],
     "model.mask_time_prob: the probe trains no encoder"),
    ("probe-mask-time-length", lambda t, m: ["probe", "text/probe-tiny", "--model.mask_time_length", "5"],
     "model.mask_time_length: the probe trains no encoder"),
    ("probe-mask-feature-prob", lambda t, m: ["probe", "text/probe-tiny", "--model.mask_feature_prob", "0.1"],
     "model.mask_feature_prob: the probe trains no encoder"),
    ("probe-few-label-validation", lambda t, m: ["probe", "text/probe-tiny", "--data.few_label_validation", "none"],
     "data.few_label_validation: the probe chooses no checkpoint"),
    ("probe-cls-pooling-audio", lambda t, m: ["probe", "text/probe-tiny", "--data.task", "audio", "--model.pooling",
                                              "cls"], "model.pooling: cls reads a text encoder's class token"),
    # label-efficiency
    ("sweep-fraction", lambda t, m: ["label-efficiency", "text/label-efficiency-tiny", "--sweep.fractions", "[0]"],
     "sweep.fractions[0]"),
    ("sweep-seeds", lambda t, m: ["label-efficiency", "text/label-efficiency-tiny", "--sweep.seeds", "[]"],
     "sweep.seeds"),
    # evaluate
    ("evaluate-suite", lambda t, m: ["evaluate", "text/evaluate-tiny", "--model.name_or_path", m.text_export,
                                     "--suite.name", "superglue", "--suite.output_dir", t / "ev"],
     "'superglue' is not a suite"),
    ("evaluate-output-is-file", lambda t, m: ["evaluate", "text/evaluate-tiny", "--model.name_or_path", m.text_export,
                                              "--suite.output_dir", file(t)], "suite.output_dir: "),
    ("evaluate-not-writable", lambda t, m: ["evaluate", "text/evaluate-tiny", "--model.name_or_path", m.text_export,
                                            "--suite.output_dir", locked(t) / "ev"], "locked is not writable"),
    ("evaluate-seeds", lambda t, m: ["evaluate", "text/evaluate-tiny", "--suite.seeds", "[]"], "suite.seeds"),
    ("evaluate-model-path", lambda t, m: ["evaluate", "text/evaluate-tiny", "--model.name_or_path", "./no/model",
                                          "--suite.output_dir", t / "ev"], "no such directory"),
    # push
    ("push-no-folder", lambda t, m: ["push", t / "none", "--repo-id", "someone/model"], "none"),
    ("push-bad-repo", lambda t, m: ["push", m.text_export, "--repo-id", "a/b/c"], "a/b/c"),
]  # fmt: skip


class Models:
    """The shared tiny exports and runs, and damaged copies made per case."""

    def __init__(self, mlm_export):
        self.text_export = mlm_export
        self.text_run = mlm_export.parent

    def foreign_checkpoint(self, tmp):
        checkpoint = tmp / "elsewhere" / "checkpoints" / "step-0000001"
        checkpoint.mkdir(parents=True)
        (checkpoint / "trainer_state.json").write_text('{"step": 1}')
        return checkpoint

    def damaged_run(self, tmp):
        import shutil

        run = tmp / "damaged"
        shutil.copytree(self.text_run, run, ignore=shutil.ignore_patterns("final", "logs"))
        for weights in run.glob("checkpoints/*/model.safetensors"):
            weights.write_bytes(weights.read_bytes()[:100])
        return run

    def run_copy(self, tmp):
        import shutil

        shutil.copytree(self.text_run, tmp / "run", ignore=shutil.ignore_patterns("final", "logs"))
        return tmp / "run"

    def tiny_pretrain(self, tmp, state: str | None = None, damaged: bool = False) -> list[str]:
        """The options that made the shared run, on a copy of it (its states replaced by `state`, its weights cut
        short if `damaged`) as the output."""
        from conftest import TINY_PRETRAIN

        run = self.run_copy(tmp)
        for saved in run.glob("checkpoints/*/trainer_state.json"):
            saved.write_text(state if state is not None else saved.read_text())
        for weights in run.glob("checkpoints/*/model.safetensors") if damaged else ():
            weights.write_bytes(weights.read_bytes()[:100])
        options = [item for key, value in TINY_PRETRAIN.items() for item in (f"--{key}", value)]
        return [*options, "--train.output_dir", str(run)]

    def poisoned_run(self, tmp):
        """A copy of the run whose checkpoints hold a NaN weight (written elsewhere: hfssl saves none)."""
        import shutil

        from safetensors.torch import load_file, save_file

        run = tmp / "poisoned"
        shutil.copytree(self.text_run, run, ignore=shutil.ignore_patterns("final", "logs"))
        for path in run.glob("checkpoints/*/model.safetensors"):
            weights = load_file(str(path))
            next(iter(weights.values())).fill_(float("nan"))
            save_file(weights, str(path))
        return run


@pytest.fixture(scope="module")
def models(mlm_export):
    return Models(mlm_export)


SUBCOMMANDS = {
    "text": "pretrain", "clm": "pretrain", "speech": "pretrain", "targets": "hubert-targets", "tokenizer": "tokenizer",
    "export": "export", "finetune": "finetune", "probe": "probe", "sweep": "label-efficiency", "push": "push",
    "evaluate": "evaluate",
}  # fmt: skip


def test_the_matrix_covers_every_subcommand():
    assert len(CASES) >= 60 and len({case for case, _, _ in CASES}) == len(CASES)
    from hfssl.__main__ import COMMANDS

    covered = {SUBCOMMANDS[case.split("-")[0]] for case, _, _ in CASES}
    assert covered == set(SUBCOMMANDS.values()) == {name.split()[0] for name in COMMANDS}


@pytest.mark.parametrize("case, build, expected", CASES, ids=[case for case, _, _ in CASES])
def test_bad_input_is_one_line(case, build, expected, models, tmp_path, capsys, monkeypatch):
    if case in CPU_ONLY and torch.cuda.is_available():
        pytest.skip("bad input only without a GPU")
    monkeypatch.chdir(tmp_path)  # relative outputs (runs/...) land here, where the snapshot sees them
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode, **kw: not (mode & os.W_OK and Path(p) in LOCKED) and real_access(p, mode, **kw)
    )
    argv = [str(a) for a in build(tmp_path, models)]
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2, err[-2000:]
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("hfssl: error")]
    assert len(lines) == 1, err[-2000:]
    assert expected in lines[0], lines[0]
    assert snapshot(tmp_path) == before, "the command wrote something"
