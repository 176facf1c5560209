"""The one schema: typed dataclasses, filled from a YAML recipe and `--section.field value` overrides.

Every setting is a dataclass field with a type, a default and a help string that doubles as `--help` text. Recipes
only set values. Loading checks every key and type and raises `UsageError` naming the key and what would be valid.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from hfssl.errors import UsageError, first_line


def arg(default: Any, help: str) -> Any:
    """A dataclass field with its help text (mutable defaults are copied per instance)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def _check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise UsageError(f"{key}: {message}")


@dataclass
class ModelArgs:
    arch: Literal["modernbert", "bert", "roberta", "electra", "llama", "modernbert-decoder", "gpt2"] = arg(
        "modernbert",
        "architecture built from scratch: encoders (mlm, rtd) pre-norm ModernBERT (sparse MLM head), post-norm BERT, "
        "RoBERTa, ELECTRA; decoders (clm) Llama, ModernBERT's decoder, GPT-2",
    )
    size: Literal["tiny", "mini", "small", "base"] = arg(
        "tiny", "size preset: tiny 2x128, mini 4x256, small 4x512, base 12x768 (layers x hidden)"
    )
    name_or_path: str | None = arg(
        None,
        "continue pretraining from this checkpoint (local directory or Hub name; an encoder for mlm and rtd, a causal "
        "LM for clm) instead of scratch",
    )
    num_layers: int | None = arg(None, "override the preset's number of layers")
    hidden_size: int | None = arg(None, "override the preset's hidden size")
    num_heads: int | None = arg(None, "override the preset's number of attention heads")
    intermediate_size: int | None = arg(None, "override the preset's feed-forward size")
    max_position_embeddings: int = arg(512, "positions the model can address (from scratch only)")
    dropout: float | None = arg(
        None,
        "dropout while pretraining (empty: 0 from scratch, as in Cramming and ModernBERT; a checkpoint's own when "
        "continuing from model.name_or_path)",
    )
    trust_remote_code: bool = arg(False, "allow custom model code from a Hub checkpoint (off unless you ask)")

    def __post_init__(self):
        for name in ("num_layers", "hidden_size", "num_heads", "intermediate_size"):
            value = getattr(self, name)
            _check(value is None or value > 0, f"model.{name}", f"must be positive, got {value}")
        _check(self.max_position_embeddings > 0, "model.max_position_embeddings", "must be positive")
        _check(
            self.dropout is None or 0.0 <= self.dropout < 1.0, "model.dropout", f"must be in [0, 1), got {self.dropout}"
        )


@dataclass
class TokenizerArgs:
    path: str | None = arg(
        None, "existing tokenizer (directory or Hub name); empty: train one on the corpus, or take the checkpoint's"
    )
    kind: Literal["wordpiece", "bpe", "unigram"] = arg(
        "wordpiece", "tokenizer to train: BERT WordPiece, byte-level BPE (RoBERTa), SentencePiece-style Unigram"
    )
    vocab_size: int = arg(8192, "vocabulary size of a trained tokenizer")
    min_frequency: int = arg(2, "minimum count for a merge or piece to enter the vocabulary")
    lowercase: bool = arg(True, "lowercase before tokenizing (WordPiece and Unigram)")
    max_documents: int | None = arg(None, "train the tokenizer on at most this many documents (empty: all)")

    def __post_init__(self):
        _check(self.vocab_size >= 100, "tokenizer.vocab_size", f"must be at least 100, got {self.vocab_size}")
        _check(self.min_frequency >= 1, "tokenizer.min_frequency", "must be at least 1")
        _check(self.max_documents is None or self.max_documents > 0, "tokenizer.max_documents", "must be positive")


@dataclass
class DataArgs:
    train: str = arg(
        "synthetic",
        "training corpus: a file (.txt .json .jsonl .csv .parquet), a glob, a directory, a Hub dataset name, "
        "or 'synthetic' for the embedded generated corpus",
    )
    validation: str | None = arg(None, "validation corpus (same forms as train); empty: hold out validation_fraction")
    validation_fraction: float = arg(0.02, "fraction of training documents held out when no validation corpus is set")
    validation_documents: int = arg(1000, "documents held out from the head of a streamed corpus with no validation")
    text_column: str = arg("text", "column holding the text in json/csv/parquet files and Hub datasets")
    hub_config: str | None = arg(None, "Hub dataset configuration name")
    hub_split: str = arg("train", "Hub dataset split to train on")
    hub_validation_split: str | None = arg(None, "Hub dataset split to validate on (empty: hold out a fraction)")
    hub_revision: str | None = arg(None, "Hub dataset revision (branch, tag or commit)")
    streaming: bool = arg(False, "stream the corpus instead of loading it (for corpora larger than memory)")
    seq_len: int = arg(128, "tokens per training sequence")
    packing: Literal["documents", "separator", "none", True, False] = arg(
        "documents",
        "documents: pack documents into full seq_len blocks, each token attending only to its own document, positions "
        "restarting at each (separator packing where the model cannot take the mask); separator: the same blocks, "
        "attention crossing documents; none: one (split) line per sequence; true / false (older recipes): documents "
        "/ none",
    )
    group_by_length: bool = arg(
        True,
        "packing none (mlm, rtd, clm): batch lines of similar length together (a seeded shuffle, sorted by length "
        "a few dozen batches at a time) so that less compute goes to padding; a streamed corpus stays in order",
    )
    num_proc: int | None = arg(None, "processes for tokenization (empty: all cores)")
    cache_dir: str | None = arg(None, "where datasets caches loaded and tokenized data (empty: the datasets default)")
    synthetic_documents: int = arg(20000, "documents in the embedded synthetic corpus")

    def __post_init__(self):
        _check(0.0 < self.validation_fraction < 1.0, "data.validation_fraction", "must be in (0, 1)")
        _check(self.validation_documents > 0, "data.validation_documents", "must be positive")
        _check(self.seq_len >= 8, "data.seq_len", f"must be at least 8, got {self.seq_len}")
        if isinstance(self.packing, bool):  # recipes from before the choice: packing meant blocks, now document ones
            self.packing = "documents" if self.packing else "none"
        _check(self.num_proc is None or self.num_proc > 0, "data.num_proc", "must be positive")
        _check(self.synthetic_documents > 0, "data.synthetic_documents", "must be positive")


@dataclass
class MaskingArgs:
    strategy: Literal["token", "whole_word", "span"] = arg(
        "token", "what is hidden: single tokens, whole words, or SpanBERT spans of whole words"
    )
    mask_rate: float = arg(0.3, "fraction of tokens predicted; 0.3 as in ModernBERT (BERT used 0.15)")
    replace_prob: float = arg(0.8, "of the predicted tokens, the fraction replaced by the mask token")
    random_prob: float = arg(0.1, "of the predicted tokens, the fraction replaced by a random token (rest kept)")
    span_p: float = arg(0.2, "span masking: geometric parameter of span lengths in words")
    max_span: int = arg(10, "span masking: longest span in words")
    mask_rate_schedule: list[float] = arg(
        [],
        "masking rates over training, e.g. [0.3, 0.15, 0.05] as mmBERT's phases; the first from the start, each next "
        "from its mask_rate_milestones entry on (empty: mask_rate throughout); evaluation keeps masking at mask_rate, "
        "so its losses compare across the run",
    )
    mask_rate_milestones: list[float] = arg(
        [],
        "mask_rate_schedule: where each rate after the first takes over, as fractions of the run's optimizer steps, "
        "increasing within (0, 1), e.g. [0.6, 0.9]",
    )
    mask_rate_shape: Literal["step", "linear"] = arg(
        "step", "mask_rate_schedule: step: each rate holds until the next milestone; linear: straight lines to it"
    )

    def __post_init__(self):
        _check(0.0 < self.mask_rate < 1.0, "masking.mask_rate", f"must be in (0, 1), got {self.mask_rate}")
        for i, rate in enumerate(self.mask_rate_schedule):
            _check(0.0 < rate < 1.0, f"masking.mask_rate_schedule[{i}]", f"must be in (0, 1), got {rate}")
        _check(
            len(self.mask_rate_milestones) == max(0, len(self.mask_rate_schedule) - 1),
            "masking.mask_rate_milestones",
            f"needs one fraction for each rate of mask_rate_schedule after the first "
            f"({max(0, len(self.mask_rate_schedule) - 1)}), got {len(self.mask_rate_milestones)}",
        )
        points = [0.0, *self.mask_rate_milestones, 1.0]
        _check(
            all(a < b for a, b in zip(points, points[1:], strict=False)),
            "masking.mask_rate_milestones",
            f"must increase strictly within (0, 1), got {self.mask_rate_milestones}",
        )
        _check(
            self.replace_prob >= 0 and self.random_prob >= 0 and self.replace_prob + self.random_prob <= 1.0,
            "masking.replace_prob",
            "replace_prob and random_prob must be non-negative and sum to at most 1",
        )
        _check(0.0 < self.span_p <= 1.0, "masking.span_p", "must be in (0, 1]")
        _check(self.max_span >= 1, "masking.max_span", "must be at least 1")


@dataclass
class TrainArgs:
    output_dir: str = arg("runs/mlm", "run directory: checkpoints, logs, metrics.json and the final export")
    seed: int = arg(0, "seed for initialisation, data order and masking")
    max_steps: int | None = arg(1000, "optimizer steps to train (empty: use epochs)")
    epochs: float | None = arg(None, "passes over the training data, used when max_steps is empty")
    batch_size: int = arg(64, "sequences per device per micro-batch")
    grad_accum: int = arg(1, "micro-batches accumulated per optimizer step")
    lr: float = arg(2e-3, "peak learning rate; small models at short budgets want it high (Cramming)")
    optimizer: Literal["adamw", "stable_adamw"] = arg(
        "adamw",
        "adamw: torch's (fused on a GPU); stable_adamw: torch-optimi's StableAdamW (AdamW with Adafactor-style "
        "update clipping, as ModernBERT trained; pip install 'hfssl[optimi]'), same betas, eps and weight decay",
    )
    weight_decay: float = arg(0.01, "AdamW weight decay, never applied to norms and biases")
    adam_beta1: float = arg(0.9, "AdamW beta1")
    adam_beta2: float = arg(0.98, "AdamW beta2; 0.98 is steadier than 0.999 at high learning rates")
    adam_eps: float = arg(1e-6, "AdamW epsilon")
    schedule: Literal["linear", "cosine", "constant", "wsd"] = arg(
        "linear",
        "learning-rate decay after warmup (linear and cosine reach zero at the last step); wsd: warmup, stable, "
        "then decay over the last decay_fraction of the steps (ModernBERT, MiniCPM)",
    )
    decay_fraction: float = arg(0.2, "wsd: the fraction of the steps spent decaying at the end")
    decay_shape: Literal["linear", "cosine", "1-sqrt"] = arg(
        "1-sqrt", "wsd: the decay's shape; 1-sqrt falls fast at first and ends at zero"
    )
    batch_warmup_start: int | None = arg(
        None,
        "batch-size warmup: micro-batches accumulated per optimizer step at the start, ramping linearly to grad_accum "
        "over batch_warmup_tokens (ModernBERT); empty: every step takes grad_accum",
    )
    batch_warmup_tokens: float | None = arg(
        None,
        "batch-size warmup: the data over which the batch grows to its full size, in the objective's unit (tokens; "
        "seconds of audio for speech), counted as full micro-batches (batch_size x data.seq_len tokens, or "
        "data.batch_seconds, per process)",
    )
    warmup_ratio: float = arg(0.06, "fraction of the steps spent warming up")
    warmup_steps: int | None = arg(None, "warmup steps (overrides warmup_ratio)")
    max_grad_norm: float | None = arg(1.0, "clip gradients to this norm (empty: no clipping)")
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = arg(
        "auto", "auto: bf16 where the GPU has it, else fp16 on a GPU, none on a CPU"
    )
    eval_every: int = arg(200, "evaluate every N steps (and at the end)")
    eval_batches: int | None = arg(50, "validation batches per evaluation (empty: all)")
    eval_batch_size: int | None = arg(None, "sequences per device in evaluation (empty: batch_size)")
    probe_every: int | None = arg(
        None, "every N steps, probe frozen features on labelled data and log its accuracy (empty or 0: never)"
    )
    probe_data: str = arg(
        "synthetic",
        "labelled data for probe_every: 'synthetic' (the embedded topic task; for simcse, hfssl's generated "
        "similarity and retrieval sets) or a file with text and label (for simcse: a similarity set, a file or Hub "
        "dataset with sentence1, sentence2 and score, its validation split)",
    )
    probe_examples: int = arg(
        1000, "examples of the embedded topic task used by probe_every (half to fit, half to score)"
    )
    save_every: int = arg(500, "checkpoint every N steps")
    keep_last: int = arg(2, "checkpoints kept; older ones are deleted")
    log_every: int = arg(10, "log training metrics every N steps")
    num_workers: int = arg(
        0, "DataLoader workers; a streamed corpus resumes exactly with any number, a loaded one only with 0"
    )
    compile: bool = arg(False, "torch.compile the model")
    report_to: list[str] = arg(
        ["tensorboard"],
        "experiment trackers Accelerate drives: tensorboard (in <output_dir>/logs), wandb, trackio, mlflow, comet_ml, "
        "aim, clearml, dvclive, swanlab, all (every one installed), or none; each tracker's own settings (project, "
        "offline mode, server) come from its environment variables",
    )

    def __post_init__(self):
        _check(self.max_steps is None or self.max_steps > 0, "train.max_steps", "must be positive")
        _check(self.epochs is None or self.epochs > 0, "train.epochs", "must be positive")
        _check(self.max_steps is not None or self.epochs is not None, "train.max_steps", "set max_steps or epochs")
        for name in ("batch_size", "grad_accum", "eval_every", "save_every", "keep_last", "log_every"):
            _check(getattr(self, name) > 0, f"train.{name}", f"must be positive, got {getattr(self, name)}")
        _check(self.probe_every is None or self.probe_every >= 0, "train.probe_every", "must not be negative")
        _check(self.probe_examples >= 20, "train.probe_examples", "must be at least 20")
        _check(self.lr > 0, "train.lr", "must be positive")
        _check(self.weight_decay >= 0, "train.weight_decay", "must be non-negative")
        _check(0.0 <= self.warmup_ratio < 1.0, "train.warmup_ratio", "must be in [0, 1)")
        _check(
            0.0 < self.decay_fraction <= 1.0, "train.decay_fraction", f"must be in (0, 1], got {self.decay_fraction}"
        )
        _check(self.warmup_steps is None or self.warmup_steps >= 0, "train.warmup_steps", "must be non-negative")
        _check(self.num_workers >= 0, "train.num_workers", "must be non-negative")
        if self.batch_warmup_start is not None or self.batch_warmup_tokens is not None:
            _check(
                self.batch_warmup_start is not None and self.batch_warmup_tokens is not None,
                "train.batch_warmup_start" if self.batch_warmup_start is None else "train.batch_warmup_tokens",
                "batch-size warmup needs both batch_warmup_start and batch_warmup_tokens",
            )
            _check(
                1 <= self.batch_warmup_start < self.grad_accum,
                "train.batch_warmup_start",
                f"must be at least 1 and below train.grad_accum ({self.grad_accum}): the batch grows by accumulating "
                f"more micro-batches, got {self.batch_warmup_start}",
            )
            _check(self.batch_warmup_tokens > 0, "train.batch_warmup_tokens", "must be positive")
            _check(
                self.max_steps is not None,
                "train.max_steps",
                "batch-size warmup changes how many steps an epoch takes; set max_steps",
            )
        _check(self.eval_batches is None or self.eval_batches > 0, "train.eval_batches", "must be positive")


@dataclass
class ExportArgs:
    license: str = arg("apache-2.0", "license in the model card metadata")
    language: list[str] = arg(["en"], "languages in the model card metadata")
    tags: list[str] = arg([], "extra model card tags")
    datasets: list[str] = arg(
        [], "training datasets named in the model card metadata, Hub ids (empty: the data sources that are Hub ids)"
    )
    model_name: str | None = arg(None, "model name in the card title (empty: the run directory's name)")
    base_model: str | None = arg(
        None, "Hub id of the model this one starts from, for the card (empty: model.name_or_path if it is a Hub id)"
    )


@dataclass
class HubArgs:
    push_to_hub: bool = arg(False, "upload the final export to the Hub when the run succeeds (main process only)")
    repo_id: str | None = arg(None, "Hub repository to push to, owner/name or name (required with push_to_hub)")
    private: bool = arg(False, "create the repository private (an existing one keeps its visibility)")
    revision: str | None = arg(None, "branch to commit to, created from main if missing (empty: main)")
    commit_message: str | None = arg(None, "commit summary (empty: 'Upload <model> with hfssl')")
    push_checkpoints: bool = arg(
        False,
        "pretraining: push the export of every saved checkpoint (train.save_every) to branch step-N of repo_id, in "
        "the background while training goes on, so from_pretrained(repo_id, revision='step-N') loads it; the final "
        "card lists the branches",
    )

    def __post_init__(self):
        _check(not self.push_to_hub or bool(self.repo_id), "hub.repo_id", "must be set when hub.push_to_hub is true")
        _check(
            not self.push_checkpoints or bool(self.repo_id),
            "hub.repo_id",
            "must be set when hub.push_checkpoints is true",
        )
        if self.repo_id:
            from huggingface_hub.errors import HFValidationError
            from huggingface_hub.utils import validate_repo_id

            try:
                validate_repo_id(self.repo_id)
            except HFValidationError as err:
                raise UsageError(f"hub.repo_id: {first_line(err)}") from None


@dataclass
class TextObjectiveArgs:
    name: Literal["mlm", "rtd", "clm", "simcse"] = arg(
        "mlm",
        "mlm: masked language modelling (predict the tokens the masking section hides, an encoder); rtd: replaced-"
        "token detection as in ELECTRA (a small generator fills the masked tokens, the encoder tells every token "
        "original or replaced); clm: next-word prediction (every token from the ones before it, a decoder); simcse: "
        "contrastive sentence embeddings (two dropout views of a text, or a pair from objective.pairs, pulled "
        "together against the rest of the batch), continuing from model.name_or_path",
    )
    generator_size: float = arg(
        0.5,
        "rtd: the generator's depth as a fraction of the discriminator's (at least one layer), at the same width so "
        "they share token embeddings; DeBERTa-v3 used half",
    )
    rtd_weight: float = arg(50.0, "rtd: weight of the discriminator's loss beside the generator's (ELECTRA: 50)")
    embedding_sharing: Literal["shared", "gdes"] = arg(
        "shared",
        "rtd: shared: generator and discriminator train one token-embedding table (ELECTRA); gdes: the "
        "discriminator adds its own correction to the generator's embeddings and its gradient stops there "
        "(DeBERTa-v3's gradient-disentangled sharing)",
    )
    export_generator: bool = arg(
        False, "rtd: also export the generator, a fill-mask model, into the export's generator/ folder"
    )
    temperature: float = arg(
        0.05, "simcse: the softmax temperature of the cosine similarities (SimCSE: 0.05; lower is sharper)"
    )
    pooling: Literal["mean", "cls", "last"] = arg(
        "mean",
        "simcse: the sentence embedding: the mean of the last layer's token states, the first (CLS) token's, or the "
        "last token's (for a causal model, the only one that has read the whole text)",
    )
    pairs: str | None = arg(
        None,
        "simcse: supervised pairs, a .jsonl/.json/.csv/.parquet file or a Hub dataset (data.hub_config and "
        "data.hub_split choose its part) with columns anchor, positive and optionally negative (a hard negative); "
        "empty: unsupervised, two dropout views of each text of the data section's corpus",
    )
    pairs_validation: str | None = arg(
        None,
        "simcse: validation pairs in the same form (empty: data.hub_validation_split of a Hub dataset, else "
        "data.validation_fraction of the pairs held out)",
    )

    def __post_init__(self):
        _check(
            0.0 < self.generator_size <= 1.0,
            "objective.generator_size",
            f"must be in (0, 1]: the generator may not be larger than the discriminator, got {self.generator_size}",
        )
        _check(self.rtd_weight > 0, "objective.rtd_weight", f"must be positive, got {self.rtd_weight}")
        _check(self.temperature > 0, "objective.temperature", f"must be positive, got {self.temperature}")
        for f in dataclasses.fields(self):
            owner = _OBJECTIVE_FIELDS.get(f.name)
            if owner not in (None, self.name) and getattr(self, f.name) != f.default:
                raise UsageError(f"objective.{f.name}: only objective.name {owner} uses it")


# The objective each of `TextObjectiveArgs`' settings belongs to; any other objective refuses a changed value.
_OBJECTIVE_FIELDS = {
    "generator_size": "rtd",
    "rtd_weight": "rtd",
    "embedding_sharing": "rtd",
    "export_generator": "rtd",
    "temperature": "simcse",
    "pooling": "simcse",
    "pairs": "simcse",
    "pairs_validation": "simcse",
}


@dataclass
class PretrainConfig:
    model: ModelArgs = field(default_factory=ModelArgs)
    objective: TextObjectiveArgs = field(default_factory=TextObjectiveArgs)
    tokenizer: TokenizerArgs = field(default_factory=TokenizerArgs)
    data: DataArgs = field(default_factory=DataArgs)
    masking: MaskingArgs = field(default_factory=MaskingArgs)
    train: TrainArgs = field(default_factory=TrainArgs)
    export: ExportArgs = field(default_factory=ExportArgs)
    hub: HubArgs = field(default_factory=HubArgs)


SPEECH_ARCHS = ("wav2vec2", "wav2vec2-conformer", "hubert", "wavlm", "data2vec-audio", "wav2vec2-bert")
FILTERBANK_ARCHS = ("wav2vec2-bert",)
"""Speech encoders that read log-mel filterbank frames from their feature extractor instead of the raw waveform."""


@dataclass
class SpeechModelArgs:
    arch: Literal["wav2vec2", "wav2vec2-conformer", "hubert", "wavlm", "data2vec-audio", "wav2vec2-bert"] = arg(
        "wav2vec2",
        "speech encoder built from scratch: wav2vec2, wav2vec2-conformer (both for every objective), hubert, wavlm, "
        "data2vec-audio (raw waveform, for the masked-prediction objectives: hubert, best-rq, reconstruction), "
        "wav2vec2-bert (a conformer over 80-bin log-mel frames, for the masked-prediction objectives)",
    )
    size: Literal["tiny", "small", "base"] = arg(
        "tiny", "size preset: tiny 2x64, small 4x256, base 12x768 (layers x hidden); the conv encoder scales too"
    )
    name_or_path: str | None = arg(
        None, "continue pretraining from this checkpoint (local directory or Hub name) instead of from scratch"
    )
    num_layers: int | None = arg(None, "override the preset's number of layers")
    hidden_size: int | None = arg(None, "override the preset's hidden size")
    num_heads: int | None = arg(None, "override the preset's number of attention heads")
    intermediate_size: int | None = arg(None, "override the preset's feed-forward size")
    conv_dim: int | None = arg(None, "override the channels of every convolution of the feature encoder")
    dropout: float = arg(0.1, "dropout in the transformer while pretraining (wav2vec 2.0 used 0.1)")
    layerdrop: float = arg(0.0, "probability of skipping a whole transformer layer in training")
    trust_remote_code: bool = arg(False, "allow custom model code from a Hub checkpoint (off unless you ask)")

    def __post_init__(self):
        for name in ("num_layers", "hidden_size", "num_heads", "intermediate_size", "conv_dim"):
            value = getattr(self, name)
            _check(value is None or value > 0, f"model.{name}", f"must be positive, got {value}")
        _check(0.0 <= self.dropout < 1.0, "model.dropout", f"must be in [0, 1), got {self.dropout}")
        _check(0.0 <= self.layerdrop < 1.0, "model.layerdrop", f"must be in [0, 1), got {self.layerdrop}")


@dataclass
class AudioDataArgs:
    train: str = arg(
        "synthetic",
        "training audio: a folder of audio files, a .csv/.jsonl/.parquet list with a path column, a glob, a Hub "
        "dataset name with an audio column, or 'synthetic' for the embedded generated speech",
    )
    validation: str | None = arg(None, "validation audio (same forms as train); empty: hold out validation_fraction")
    validation_fraction: float = arg(0.05, "fraction of training clips held out when no validation audio is set")
    validation_clips: int = arg(200, "clips held out from the head of a streamed corpus with no validation")
    audio_column: str = arg("audio", "column holding the audio in Hub datasets and parquet files")
    path_column: str = arg("path", "column holding file paths in .csv/.jsonl lists (relative to the list's folder)")
    hub_config: str | None = arg(None, "Hub dataset configuration name")
    hub_split: str = arg("train", "Hub dataset split to train on")
    hub_validation_split: str | None = arg(None, "Hub dataset split to validate on (empty: hold out a fraction)")
    hub_revision: str | None = arg(None, "Hub dataset revision (branch, tag or commit)")
    streaming: bool = arg(False, "stream the audio instead of scanning it first (for corpora larger than the disk)")
    sampling_rate: int = arg(16000, "rate the model hears; audio at other rates is resampled")
    max_seconds: float = arg(15.0, "longer clips are cropped at random to this duration")
    min_seconds: float = arg(0.5, "shorter clips are skipped (and counted in the log)")
    batch_seconds: float = arg(
        160.0, "audio per device per micro-batch, padding included: batches are built by duration, not by count"
    )
    num_proc: int | None = arg(None, "processes for scanning audio headers (empty: all cores)")
    cache_dir: str | None = arg(None, "where datasets caches scanned data (empty: the datasets default)")
    synthetic_utterances: int = arg(2000, "utterances in the embedded synthetic speech corpus")

    def __post_init__(self):
        _check(0.0 < self.validation_fraction < 1.0, "data.validation_fraction", "must be in (0, 1)")
        _check(self.validation_clips > 0, "data.validation_clips", "must be positive")
        _check(self.sampling_rate >= 1000, "data.sampling_rate", f"must be at least 1000 Hz, got {self.sampling_rate}")
        _check(self.min_seconds > 0, "data.min_seconds", "must be positive")
        _check(self.max_seconds >= self.min_seconds, "data.max_seconds", "must be at least data.min_seconds")
        _check(
            self.batch_seconds >= self.max_seconds,
            "data.batch_seconds",
            f"must hold at least one clip of data.max_seconds ({self.max_seconds} s)",
        )
        _check(self.num_proc is None or self.num_proc > 0, "data.num_proc", "must be positive")
        _check(self.synthetic_utterances >= 10, "data.synthetic_utterances", "must be at least 10")


@dataclass
class AudioMaskingArgs:
    mask_prob: float = arg(
        0.65, "chance of each feature frame starting a masked span (wav2vec 2.0: 0.65, about half the frames masked)"
    )
    mask_length: int = arg(10, "feature frames per masked span (10 frames = 200 ms at 50 Hz)")
    min_masks: int = arg(2, "spans masked in every clip at least")

    def __post_init__(self):
        _check(0.0 < self.mask_prob < 1.0, "masking.mask_prob", f"must be in (0, 1), got {self.mask_prob}")
        _check(self.mask_length >= 1, "masking.mask_length", "must be at least 1")
        _check(self.min_masks >= 0, "masking.min_masks", "must not be negative")


@dataclass
class ObjectiveArgs:
    name: Literal["contrastive", "hubert", "best-rq", "reconstruction", "data2vec"] = arg(
        "contrastive",
        "contrastive: wav2vec 2.0 (pick the true quantized frame among distractors); hubert: predict k-means cluster "
        "targets (see the targets section); best-rq: predict a frozen random quantizer's codes of log-mel frames; "
        "reconstruction: regress the masked log-mel frames (L1); data2vec: regress an EMA teacher's averaged top "
        "layers at the masked frames",
    )
    num_negatives: int = arg(100, "contrastive: distractors per masked frame, from other masked frames of the clip")
    logits_temperature: float = arg(0.1, "contrastive: temperature of the cosine-similarity logits")
    diversity_weight: float = arg(0.1, "contrastive: weight of the codebook diversity loss")
    codevector_groups: int = arg(2, "contrastive: codebooks (groups) of the quantizer")
    codevectors_per_group: int = arg(320, "contrastive: entries per codebook")
    codevector_dim: int | None = arg(None, "contrastive: size of a quantized vector (empty: the preset's)")
    gumbel_max: float = arg(2.0, "contrastive: Gumbel-softmax temperature at step 0")
    gumbel_min: float = arg(0.5, "contrastive: the temperature never decays below this")
    gumbel_decay: float = arg(0.999995, "contrastive: temperature factor per optimizer step")
    collapse_patience: int = arg(
        3, "log windows of collapse (contrastive loss near 0, codebook perplexity near 2) tolerated before stopping"
    )
    unmasked_weight: float = arg(
        0.0, "hubert, best-rq, reconstruction: weight of the loss on unmasked frames (masked frames weigh 1)"
    )
    label_dim: int = arg(256, "hubert: size of the projected frames and of the cluster embeddings they are scored on")
    codebook_size: int = arg(8192, "best-rq: entries of the frozen random codebook (the classes predicted)")
    codebook_dim: int = arg(16, "best-rq: size of the random projection and of each (l2-normalised) codebook entry")
    codebook_seed: int = arg(0, "best-rq: seed of the frozen random projection and codebook")
    mel_bins: int = arg(80, "best-rq, reconstruction: log-mel bins per 10 ms frame (stacked to the encoder's rate)")
    feature_mask_prob: float = arg(
        0.0,
        "any objective: chance of masking each encoder feature channel too (SpecAugment's frequency masks, on the "
        "projected features)",
    )
    ema_decay: float = arg(
        0.999, "data2vec: the teacher's EMA decay at step 0 (teacher = d * teacher + (1 - d) * student)"
    )
    ema_end_decay: float = arg(0.9999, "data2vec: the decay reached after ema_anneal_steps, linearly, and kept")
    ema_anneal_steps: int = arg(30000, "data2vec: optimizer steps over which the decay rises to ema_end_decay")
    top_k_layers: int = arg(8, "data2vec: the teacher's top layers averaged (each instance-normalised) into targets")
    mask_copies: int = arg(
        1, "data2vec: differently masked copies of each clip per batch, sharing one teacher pass (data2vec 2.0: 8)"
    )

    def __post_init__(self):
        _check(self.num_negatives >= 1, "objective.num_negatives", "must be at least 1")
        _check(self.logits_temperature > 0, "objective.logits_temperature", "must be positive")
        _check(self.diversity_weight >= 0, "objective.diversity_weight", "must not be negative")
        _check(self.codevector_groups >= 1, "objective.codevector_groups", "must be at least 1")
        _check(self.codevectors_per_group >= 2, "objective.codevectors_per_group", "must be at least 2")
        _check(self.codevector_dim is None or self.codevector_dim > 0, "objective.codevector_dim", "must be positive")
        _check(0 < self.gumbel_min <= self.gumbel_max, "objective.gumbel_min", "must be positive and <= gumbel_max")
        _check(0 < self.gumbel_decay <= 1, "objective.gumbel_decay", "must be in (0, 1]")
        _check(self.collapse_patience >= 1, "objective.collapse_patience", "must be at least 1")
        _check(self.unmasked_weight >= 0, "objective.unmasked_weight", "must not be negative")
        _check(self.label_dim >= 1, "objective.label_dim", "must be positive")
        _check(self.codebook_size >= 2, "objective.codebook_size", "must be at least 2")
        _check(self.codebook_dim >= 1, "objective.codebook_dim", "must be positive")
        _check(self.mel_bins >= 1, "objective.mel_bins", "must be positive")
        _check(0.0 <= self.feature_mask_prob < 1.0, "objective.feature_mask_prob", "must be in [0, 1)")
        for name in ("ema_decay", "ema_end_decay"):
            value = getattr(self, name)
            _check(0.0 < value < 1.0, f"objective.{name}", f"must be in (0, 1), got {value}")
        _check(self.ema_anneal_steps >= 0, "objective.ema_anneal_steps", "must not be negative")
        _check(self.top_k_layers >= 1, "objective.top_k_layers", "must be at least 1")
        _check(self.mask_copies >= 1, "objective.mask_copies", "must be at least 1")


@dataclass
class TargetArgs:
    dir: str | None = arg(
        None,
        "hubert: the target cache (built by `hfssl hubert-targets`, or by pretrain when missing); empty: "
        "<train.output_dir>/targets",
    )
    features: Literal["mfcc", "hidden"] = arg(
        "mfcc",
        "what is clustered: mfcc (iteration 1: 13 MFCCs + deltas + delta-deltas) or hidden (iteration 2+: "
        "a layer of the previous model)",
    )
    model: str | None = arg(None, "hidden: the previous iteration's export (local directory or Hub name)")
    layer: int = arg(6, "hidden: the hidden layer clustered (0 is the projected conv features)")
    clusters: int = arg(100, "k-means clusters: the classes predicted (HuBERT: 100 from MFCCs, then 500)")
    fit_frames: int = arg(1_000_000, "frames sampled (seeded) from the training clips to fit k-means on")
    batch_frames: int = arg(10_000, "frames per mini-batch k-means update")
    max_iter: int = arg(100, "mini-batch k-means passes over the fitting frames at most")
    seed: int = arg(0, "seed of the frame sample, the initial centroids and the mini-batches")

    def __post_init__(self):
        _check(self.clusters >= 2, "targets.clusters", "must be at least 2")
        _check(self.layer >= 0, "targets.layer", "must not be negative")
        _check(self.fit_frames >= 1, "targets.fit_frames", "must be positive")
        _check(self.batch_frames >= 1, "targets.batch_frames", "must be positive")
        _check(self.max_iter >= 1, "targets.max_iter", "must be at least 1")


@dataclass
class SpeechPretrainConfig:
    model: SpeechModelArgs = field(default_factory=SpeechModelArgs)
    data: AudioDataArgs = field(default_factory=AudioDataArgs)
    masking: AudioMaskingArgs = field(default_factory=AudioMaskingArgs)
    objective: ObjectiveArgs = field(default_factory=ObjectiveArgs)
    targets: TargetArgs = field(default_factory=TargetArgs)
    train: TrainArgs = field(default_factory=TrainArgs)
    export: ExportArgs = field(default_factory=ExportArgs)
    hub: HubArgs = field(default_factory=HubArgs)

    def __post_init__(self):
        if self.model.arch in FILTERBANK_ARCHS:
            _check(
                self.model.conv_dim is None,
                "model.conv_dim",
                f"{self.model.arch} reads log-mel filterbank frames and has no convolutional feature encoder to size",
            )
            # SeamlessM4TFeatureExtractor's 25 ms windows and 10 ms hops are 400 and 160 samples in its code.
            _check(
                self.data.sampling_rate == 16000,
                "data.sampling_rate",
                f"{self.model.arch}'s feature extractor computes its filterbanks at 16000 Hz only, got "
                f"{self.data.sampling_rate}",
            )


@dataclass
class ClassifierModelArgs:
    name_or_path: str = arg(
        "runs/mlm-tiny/final", "model to fine-tune: an hfssl export, a local model directory or a Hub name"
    )
    from_scratch: bool = arg(False, "random initialisation with the same architecture (the no-pretraining baseline)")
    pooling: Literal["mean", "cls"] = arg(
        "mean", "how ModernBERT pools tokens for the classifier (mean suits packed MLM pretraining)"
    )
    freeze_feature_encoder: bool = arg(
        True, "audio: keep a pretrained encoder's convolutional feature encoder frozen (wav2vec 2.0 fine-tuning)"
    )
    mask_time_prob: float | None = arg(
        None,
        "audio: SpecAugment while fine-tuning, the chance of each frame starting a masked span (empty: the "
        "checkpoint's own, 0.05 in hfssl's exports)",
    )
    mask_time_length: int | None = arg(None, "audio: frames per SpecAugment time span (empty: the checkpoint's own)")
    mask_feature_prob: float | None = arg(
        None, "audio: SpecAugment while fine-tuning, the chance of each feature channel starting a masked run"
    )
    revision: str | None = arg(None, "Hub revision of the model (branch, tag or commit)")
    trust_remote_code: bool = arg(False, "allow custom model code from a Hub checkpoint (off unless you ask)")

    def __post_init__(self):
        for name in ("mask_time_prob", "mask_feature_prob"):
            value = getattr(self, name)
            _check(value is None or 0.0 <= value < 1.0, f"model.{name}", f"must be in [0, 1), got {value}")
        _check(
            self.mask_time_length is None or self.mask_time_length >= 1, "model.mask_time_length", "must be at least 1"
        )

    def spec_augment(self) -> dict:
        """The SpecAugment fields the recipe sets, as config changes."""
        names = ("mask_time_prob", "mask_time_length", "mask_feature_prob")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclass
class LabelledDataArgs:
    task: Literal["text", "audio"] = arg("text", "what is classified: text (or text pairs), or audio clips")
    train: str = arg(
        "synthetic",
        "labelled training data: 'synthetic' (the embedded topic task), a .json/.jsonl/.csv/.parquet file, a glob, "
        "a directory, or a Hub dataset name",
    )
    validation: str | None = arg(None, "validation data (same forms); empty: a Hub split or a held-out fraction")
    test: str | None = arg(None, "test data (same forms); empty: a Hub split or a held-out fraction")
    text_column: str = arg("text", "column with the text (the first text of a pair)")
    text_pair_column: str | None = arg(None, "column with the second text of a pair (empty: single texts)")
    label_column: str = arg("label", "column with the labels (strings or integers)")
    regression: bool = arg(
        False,
        "the labels are real-valued scores (STS-B's similarity): a one-output regression head, squared-error loss, "
        "Pearson and Spearman correlation",
    )
    hub_config: str | None = arg(
        None,
        "Hub dataset configuration name; with it, a local folder in data.train is a copy of the dataset's Hub "
        "repository",
    )
    hub_split: str = arg("train", "Hub split to train on")
    hub_validation_split: str | None = arg(None, "Hub split to validate on (empty: hold out validation_fraction)")
    hub_test_split: str | None = arg(None, "Hub split to test on (empty: hold out test_fraction)")
    hub_revision: str | None = arg(None, "Hub dataset revision")
    validation_fraction: float = arg(0.1, "fraction of training examples held out for validation when none is given")
    test_fraction: float = arg(0.1, "fraction of training examples held out for testing when none is given (0: none)")
    label_fraction: float = arg(1.0, "train on this fraction of the training labels (stratified, seeded), in (0, 1]")
    few_label_validation: Literal["fraction", "none", "full"] = arg(
        "fraction",
        "with label_fraction below 1, what chooses the checkpoint and stops early: 'fraction' validates on the same "
        "fraction of the validation split (stratified, seeded), as a user with that few labels would; 'none' trains "
        "every epoch and keeps the last, with no validation; 'full' the whole validation split (more labels than "
        "the run trains on: its scores flatter few-label training)",
    )
    max_length: int = arg(128, "tokens per example; longer texts are truncated")
    audio_column: str = arg("audio", "audio: column holding the audio in Hub datasets and parquet files")
    path_column: str = arg("path", "audio: column holding file paths in .csv/.jsonl lists")
    max_seconds: float = arg(10.0, "audio: seconds per example; longer clips are cut to their start")
    synthetic_examples: int = arg(
        3000, "examples in the embedded task (before the splits): topics for text, spoken keywords for audio"
    )
    synthetic_task: Literal["topics", "same_topic", "word_order"] = arg(
        "topics",
        "text: which embedded task; topics (a document's topic, 8 classes), same_topic (whether two passages share "
        "a topic, a pair task), word_order (whether a sentence is as written or has two neighbouring words swapped, "
        "an acceptability task)",
    )
    cache_dir: str | None = arg(None, "where datasets caches loaded data (empty: the datasets default)")

    def __post_init__(self):
        _check(0.0 < self.label_fraction <= 1.0, "data.label_fraction", f"must be in (0, 1], got {self.label_fraction}")
        for name in ("validation_fraction", "test_fraction"):
            value = getattr(self, name)
            _check(0.0 <= value < 1.0, f"data.{name}", f"must be in [0, 1), got {value}")
        _check(self.max_length > 1, "data.max_length", "must be at least 2")
        _check(self.max_seconds > 0, "data.max_seconds", "must be positive")
        _check(self.synthetic_examples >= 20, "data.synthetic_examples", "must be at least 20")


@dataclass
class FinetuneArgs:
    early_stopping_patience: int | None = arg(
        3, "stop after this many evaluations without improvement of training.metric_for_best_model (empty: never)"
    )
    head_learning_rate: float | None = arg(
        None,
        "learning rate of the new classification head, which starts from random (empty: training.learning_rate, "
        "which the pretrained encoder gets)",
    )
    freeze_encoder: bool = arg(
        False, "train the classification head only, on the frozen encoder's features: a probe, for the fewest labels"
    )

    def __post_init__(self):
        _check(
            self.head_learning_rate is None or self.head_learning_rate > 0,
            "finetune.head_learning_rate",
            f"must be positive, got {self.head_learning_rate}",
        )


def _training_section() -> type:
    """A section with every `TrainingArguments` field (its help, its default unless hfssl sets one), so that a
    recipe's `training:` block maps one-to-one onto `TrainingArguments`."""
    from transformers import TrainingArguments

    hfssl_defaults = {
        "output_dir": "runs/finetune",
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "logging_strategy": "epoch",
        "load_best_model_at_end": True,
        "metric_for_best_model": "f1",
        "greater_is_better": True,
        "save_total_limit": 2,
        "num_train_epochs": 10.0,
        # for the tiny and mini encoders short pretraining budgets make (the tiny one wants 2e-3: bench/README.md);
        # a base-size checkpoint from the Hub wants 2e-5 to 5e-5
        "learning_rate": 1e-3,
        "warmup_steps": 0.1,
        "per_device_train_batch_size": 32,
        "per_device_eval_batch_size": 64,
        "report_to": "tensorboard",  # in <output_dir>/runs; any tracker the Trainer drives, or none
        "seed": 0,
        # the model card reports how much data the classifier saw (text tokens, audio samples)
        "include_num_input_tokens_seen": "non_padding",
    }
    hints = typing.get_type_hints(TrainingArguments)
    simple = {bool, int, float, str}
    fields = []
    for f in dataclasses.fields(TrainingArguments):
        if not f.init:
            continue
        tp = hints[f.name]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if tp in simple:
            pass
        elif typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1 and args[0] in simple:
            pass
        elif str in args and all(isinstance(a, type) and (a is str or issubclass(a, str)) for a in args):
            tp = str | None if type(None) in typing.get_args(tp) else str  # an Enum of strings, or a string
        else:
            tp = Any
        if f.name in hfssl_defaults:
            default = hfssl_defaults[f.name]
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        default = default.value if hasattr(default, "value") and isinstance(default, str) else default
        help = " ".join((f.metadata.get("help") or "TrainingArguments." + f.name).split())
        fields.append((f.name, tp, arg(default, help)))
    return dataclasses.make_dataclass("TrainingSection", fields)


TrainingSection = _training_section()


@dataclass
class FinetuneConfig:
    model: ClassifierModelArgs = field(default_factory=ClassifierModelArgs)
    data: LabelledDataArgs = field(default_factory=LabelledDataArgs)
    finetune: FinetuneArgs = field(default_factory=FinetuneArgs)
    training: TrainingSection = field(default_factory=TrainingSection)
    export: ExportArgs = field(default_factory=ExportArgs)
    hub: HubArgs = field(default_factory=HubArgs)


@dataclass
class ProbeArgs:
    layer: str = arg(
        "weighted", "'weighted' (a learned softmax mix of all layers), 'last', or a layer number (0: embeddings)"
    )
    l2: float = arg(1e-3, "L2 penalty on the classifier weights (features are standardised)")
    batch_size: int = arg(64, "examples per forward pass when extracting features")
    output: str = arg("runs/probe/probe.json", "where the probe's scores are written")

    def __post_init__(self):
        _check(self.l2 >= 0, "probe.l2", "must not be negative")
        _check(self.batch_size > 0, "probe.batch_size", "must be positive")


@dataclass
class ProbeConfig:
    model: ClassifierModelArgs = field(default_factory=ClassifierModelArgs)
    data: LabelledDataArgs = field(default_factory=LabelledDataArgs)
    probe: ProbeArgs = field(default_factory=ProbeArgs)


@dataclass
class SweepArgs:
    fractions: list[float] = arg([0.01, 0.1, 1.0], "fractions of the training labels to train on, each in (0, 1]")
    seeds: list[int] = arg([0, 1, 2], "seeds per fraction (label subsample, initialisation, data order)")
    method: Literal["finetune", "probe"] = arg("finetune", "fine-tune the whole model, or probe frozen features")
    min_steps: int = arg(40, "fine-tuning steps at least, however few the labels (fine-tuning only)")
    output_dir: str = arg("runs/label-efficiency", "where the table, the plot and the card section are written")
    update_card: bool = arg(True, "add the results as a section of the model's card (a local model directory)")
    baseline: bool = arg(
        True,
        "audio: also fit the classic pipeline on the same subsamples (MFCC statistics + logistic regression), so the "
        "table says whether pretraining beat it",
    )

    def __post_init__(self):
        _check(bool(self.fractions), "sweep.fractions", "needs at least one fraction")
        for i, fraction in enumerate(self.fractions):
            _check(0.0 < fraction <= 1.0, f"sweep.fractions[{i}]", f"must be in (0, 1], got {fraction}")
        _check(bool(self.seeds), "sweep.seeds", "needs at least one seed")
        _check(self.min_steps >= 1, "sweep.min_steps", "must be at least 1")


@dataclass
class LabelEfficiencyConfig:
    model: ClassifierModelArgs = field(default_factory=ClassifierModelArgs)
    data: LabelledDataArgs = field(default_factory=LabelledDataArgs)
    finetune: FinetuneArgs = field(default_factory=FinetuneArgs)
    training: TrainingSection = field(default_factory=TrainingSection)
    probe: ProbeArgs = field(default_factory=ProbeArgs)
    sweep: SweepArgs = field(default_factory=SweepArgs)
    export: ExportArgs = field(default_factory=ExportArgs)


@dataclass
class SuiteArgs:
    name: str = arg(
        "embedded",
        "the suite: embedded (hfssl's generated text tasks, no downloads), keywords (speech: the embedded keyword "
        "task, probed SUPERB-style and fine-tuned), glue (nyu-mll/glue), embeddings (sentence embeddings as they "
        "are on hfssl's generated similarity and retrieval sets), sts (STS-B), mteb-sts (MTEB's STS tasks, with the "
        "mteb package), or a YAML file that lists tasks",
    )
    tasks: list[str] = arg([], "run only these of the suite's tasks (empty: all)")
    seeds: list[int] = arg([0, 1, 2], "seeds per task (initialisation, data order; the probe's start)")
    data_dir: str | None = arg(
        None,
        "a local copy of the Hub dataset the suite's tasks name (hf download nyu-mll/glue --repo-type dataset "
        "--local-dir DIR), read instead of the Hub",
    )
    output_dir: str = arg("runs/evaluate", "where results.json, results.csv and the table (results.md) are written")
    update_card: bool = arg(True, "add the table to the model's card, and its scores as model-index entries")

    def __post_init__(self):
        _check(bool(self.seeds), "suite.seeds", "needs at least one seed")


@dataclass
class EvaluateConfig:
    """`hfssl evaluate`: one export, one set of hyperparameters, every task of a suite, several seeds. The data
    section's settings (those a recipe or the command line sets) apply to every task, over the task's own."""

    model: ClassifierModelArgs = field(default_factory=ClassifierModelArgs)
    data: LabelledDataArgs = field(default_factory=LabelledDataArgs)
    finetune: FinetuneArgs = field(default_factory=FinetuneArgs)
    training: TrainingSection = field(default_factory=TrainingSection)
    probe: ProbeArgs = field(default_factory=ProbeArgs)
    suite: SuiteArgs = field(default_factory=SuiteArgs)


@dataclass
class TokenizerTrainConfig:
    data: DataArgs = field(default_factory=DataArgs)
    tokenizer: TokenizerArgs = field(default_factory=TokenizerArgs)


# --------------------------------------------------------------------------- loading and validation


def sections(schema: type) -> dict[str, type]:
    """Section name -> section dataclass of a top-level schema."""
    hints = typing.get_type_hints(schema)
    return {f.name: hints[f.name] for f in dataclasses.fields(schema)}


def section_fields(section: type) -> dict[str, tuple[Any, dataclasses.Field]]:
    hints = typing.get_type_hints(section)
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(section)}


def describe(tp: Any) -> str:
    """Human-readable form of a field type, for help text and errors."""
    if tp is Any:
        return "any YAML value"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        inner = [describe(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(inner) + " or empty"
    if origin is list:
        return f"a list of {describe(typing.get_args(tp)[0])}"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the field type `tp`; return it converted (int -> float) or raise UsageError."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return coerce(value, inner, key)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise UsageError(f"{key}: {value!r} is not valid; choose {describe(tp)[7:]}")
        return value
    if origin is list:
        if not isinstance(value, list):
            value = [value]
        (inner,) = typing.get_args(tp)
        return [coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, str):
        # YAML 1.1 reads 3e-4 (no dot) as a string; it plainly means a number.
        try:
            value = float(value)
        except ValueError:
            pass
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[tp]
    if not ok:
        raise UsageError(f"{key}: expected {describe(tp)}, got {value!r}")
    return float(value) if tp is float else value


def _unknown(key: str, valid: list[str]) -> UsageError:
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return UsageError(f"unknown key {key!r}{hint}; valid keys: {', '.join(valid)}")


def build(schema: type, values: dict[str, Any], source: str = "recipe") -> Any:
    """Validate a nested dict of values against `schema` and build the dataclasses."""
    secs = sections(schema)
    if not isinstance(values, dict):
        raise UsageError(f"{source}: expected a mapping of sections ({', '.join(secs)}), got {type(values).__name__}")
    built = {}
    for name in values:
        if name not in secs:
            raise UsageError(f"{source}: " + str(_unknown(name, list(secs))))
    for name, section in secs.items():
        given = values.get(name) or {}
        if not isinstance(given, dict):
            raise UsageError(f"{source}: section {name!r} must be a mapping of keys, got {given!r}")
        fields = section_fields(section)
        kwargs = {}
        for key, value in given.items():
            if key not in fields:
                raise UsageError(f"{source}: " + str(_unknown(f"{name}.{key}", list(fields))))
            kwargs[key] = coerce(value, fields[key][0], f"{name}.{key}")
        try:
            built[name] = section(**kwargs)
        except UsageError as err:
            raise UsageError(f"{source}: {err}") from None
    return schema(**built)


def read_recipe(path: str | Path) -> dict[str, Any]:
    """Read a YAML recipe into a nested dict, with clear errors for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        packaged = Path(__file__).parent / "recipes" / path
        if packaged.suffix == "":
            packaged = packaged.with_suffix(".yaml")
        if not packaged.is_file():
            raise UsageError(f"{path}: no such recipe file")
        path = packaged
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or first_line(err)
        raise UsageError(f"{path}: not valid YAML ({where}{problem})") from None
    return values or {}


def apply_override(values: dict[str, Any], schema: type, dotted: str, raw: str) -> None:
    """Set `section.key` in `values` from a command-line string, parsed as YAML unless the field is a string."""
    secs = sections(schema)
    name, _, key = dotted.partition(".")
    if name not in secs or not key:
        raise _unknown(dotted, [f"{s}.{k}" for s, sec in secs.items() for k in section_fields(sec)])
    fields = section_fields(secs[name])
    if key not in fields:
        raise _unknown(dotted, list(fields))
    tp = fields[key][0]
    choices = typing.get_args(tp) if typing.get_origin(tp) is Literal else ()
    plain_string = (
        tp is str
        or (typing.get_origin(tp) in (typing.Union, types.UnionType) and str in typing.get_args(tp))
        or (choices and all(isinstance(c, str) for c in choices))  # "no" is a choice here, not YAML's false
    )
    if plain_string and raw not in ("", "null", "None", "~"):
        value: Any = raw
    else:
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
    values.setdefault(name, {})
    if values[name] is None:
        values[name] = {}
    values[name][key] = value


def load(schema: type, recipe: str | Path | None, overrides: dict[str, str] | None = None) -> Any:
    """Recipe file + `section.key -> string` overrides -> validated config of type `schema`."""
    values = read_recipe(recipe) if recipe is not None else {}
    source = str(recipe) if recipe is not None else "command line"
    if not isinstance(values, dict):
        raise UsageError(f"{source}: expected a mapping of sections, got {type(values).__name__}")
    for dotted, raw in (overrides or {}).items():
        apply_override(values, schema, dotted, raw)
    return build(schema, values, source)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def dump(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
