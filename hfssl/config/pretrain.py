"""The pretraining sections every objective shares, text and speech, and the two base schemas.

An objective's own settings are a dataclass in its module (`hfssl.objectives`), extending `ObjectiveSection` (text)
or `SpeechObjectiveSection` (speech), and its schema is `PretrainConfig` or `SpeechPretrainConfig` with that
dataclass as the `objective` section (and any section of its own, as HuBERT's `targets`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from hfssl.config.loader import arg, check
from hfssl.errors import UsageError, first_line


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
    attention: Literal["auto", "flash", "dense"] = arg(
        "auto",
        "attention under document packing: auto skips the scores no document reaches, in tiles of 64 queries, for "
        "each layer type where that leaves at most half of them (long blocks of short documents, sliding layers), and "
        "masks the full score matrix elsewhere; flash runs packed blocks padding-free through flash-attention 2's "
        "sequence lengths (CUDA, flash_attn installed; else auto, with a warning); dense always masks the full matrix",
    )

    def __post_init__(self):
        for name in ("num_layers", "hidden_size", "num_heads", "intermediate_size"):
            value = getattr(self, name)
            check(value is None or value > 0, f"model.{name}", f"must be positive, got {value}")
        check(self.max_position_embeddings > 0, "model.max_position_embeddings", "must be positive")
        check(
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
        check(self.vocab_size >= 100, "tokenizer.vocab_size", f"must be at least 100, got {self.vocab_size}")
        check(self.min_frequency >= 1, "tokenizer.min_frequency", "must be at least 1")
        check(self.max_documents is None or self.max_documents > 0, "tokenizer.max_documents", "must be positive")


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
        check(0.0 < self.validation_fraction < 1.0, "data.validation_fraction", "must be in (0, 1)")
        check(self.validation_documents > 0, "data.validation_documents", "must be positive")
        check(self.seq_len >= 8, "data.seq_len", f"must be at least 8, got {self.seq_len}")
        if isinstance(self.packing, bool):  # recipes from before the choice: packing meant blocks, now document ones
            self.packing = "documents" if self.packing else "none"
        check(self.num_proc is None or self.num_proc > 0, "data.num_proc", "must be positive")
        check(self.synthetic_documents > 0, "data.synthetic_documents", "must be positive")


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
        check(0.0 < self.mask_rate < 1.0, "masking.mask_rate", f"must be in (0, 1), got {self.mask_rate}")
        for i, rate in enumerate(self.mask_rate_schedule):
            check(0.0 < rate < 1.0, f"masking.mask_rate_schedule[{i}]", f"must be in (0, 1), got {rate}")
        check(
            len(self.mask_rate_milestones) == max(0, len(self.mask_rate_schedule) - 1),
            "masking.mask_rate_milestones",
            f"needs one fraction for each rate of mask_rate_schedule after the first "
            f"({max(0, len(self.mask_rate_schedule) - 1)}), got {len(self.mask_rate_milestones)}",
        )
        points = [0.0, *self.mask_rate_milestones, 1.0]
        check(
            all(a < b for a, b in zip(points, points[1:], strict=False)),
            "masking.mask_rate_milestones",
            f"must increase strictly within (0, 1), got {self.mask_rate_milestones}",
        )
        check(
            self.replace_prob >= 0 and self.random_prob >= 0 and self.replace_prob + self.random_prob <= 1.0,
            "masking.replace_prob",
            "replace_prob and random_prob must be non-negative and sum to at most 1",
        )
        check(0.0 < self.span_p <= 1.0, "masking.span_p", "must be in (0, 1]")
        check(self.max_span >= 1, "masking.max_span", "must be at least 1")


@dataclass
class TrainArgs:
    output_dir: str = arg("runs/mlm", "run directory: checkpoints, logs, metrics.json and the final export")
    seed: int = arg(0, "seed for initialisation, data order and masking")
    max_steps: int | None = arg(1000, "optimizer steps to train (empty: use epochs)")
    epochs: float | None = arg(None, "passes over the training data, used when max_steps is empty")
    time_budget: str | None = arg(
        None,
        "wall time for the whole run, e.g. 90s, 30m, 6h, 1h30m (Cramming): a few timed steps plan the run once, its "
        "setup, evaluations and export included, and the plan replaces max_steps and epochs; warmup and decay stay "
        "fractions of the plan, which checkpoints keep, so --resume follows it. --dry-run prints the plan for each "
        "model size and vocabulary size",
    )
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
    cpu_heap: bool = arg(
        True,
        "on a CPU with glibc, serve large blocks from the heap and keep freed memory for the next step instead of "
        "mapping them from the kernel every step: 1.07-1.75x faster steps at large batches, up to 1.28x the resident "
        "memory (bench/cpu_allocator.py); false: glibc's defaults. Set for the rest of the process",
    )
    report_to: list[str] = arg(
        ["tensorboard"],
        "experiment trackers Accelerate drives: tensorboard (in <output_dir>/logs), wandb, trackio, mlflow, comet_ml, "
        "aim, clearml, dvclive, swanlab, all (every one installed), or none; each tracker's own settings (project, "
        "offline mode, server) come from its environment variables",
    )

    def __post_init__(self):
        check(self.max_steps is None or self.max_steps > 0, "train.max_steps", "must be positive")
        check(self.epochs is None or self.epochs > 0, "train.epochs", "must be positive")
        check(self.max_steps is not None or self.epochs is not None, "train.max_steps", "set max_steps or epochs")
        for name in ("batch_size", "grad_accum", "eval_every", "save_every", "keep_last", "log_every"):
            check(getattr(self, name) > 0, f"train.{name}", f"must be positive, got {getattr(self, name)}")
        check(self.probe_every is None or self.probe_every >= 0, "train.probe_every", "must not be negative")
        check(self.probe_examples >= 20, "train.probe_examples", "must be at least 20")
        check(self.lr > 0, "train.lr", "must be positive")
        check(self.seed >= 0, "train.seed", f"must not be negative, got {self.seed}")
        for name in ("adam_beta1", "adam_beta2"):
            check(0.0 <= getattr(self, name) < 1.0, f"train.{name}", f"must be in [0, 1), got {getattr(self, name)}")
        check(self.adam_eps > 0, "train.adam_eps", "must be positive")
        check(
            self.max_grad_norm is None or self.max_grad_norm > 0,
            "train.max_grad_norm",
            f"must be positive (empty: no clipping), got {self.max_grad_norm}",
        )
        check(self.weight_decay >= 0, "train.weight_decay", "must be non-negative")
        check(0.0 <= self.warmup_ratio < 1.0, "train.warmup_ratio", "must be in [0, 1)")
        check(0.0 < self.decay_fraction <= 1.0, "train.decay_fraction", f"must be in (0, 1], got {self.decay_fraction}")
        check(self.warmup_steps is None or self.warmup_steps >= 0, "train.warmup_steps", "must be non-negative")
        check(self.num_workers >= 0, "train.num_workers", "must be non-negative")
        if self.batch_warmup_start is not None or self.batch_warmup_tokens is not None:
            check(
                self.batch_warmup_start is not None and self.batch_warmup_tokens is not None,
                "train.batch_warmup_start" if self.batch_warmup_start is None else "train.batch_warmup_tokens",
                "batch-size warmup needs both batch_warmup_start and batch_warmup_tokens",
            )
            check(
                1 <= self.batch_warmup_start < self.grad_accum,
                "train.batch_warmup_start",
                f"must be at least 1 and below train.grad_accum ({self.grad_accum}): the batch grows by accumulating "
                f"more micro-batches, got {self.batch_warmup_start}",
            )
            check(self.batch_warmup_tokens > 0, "train.batch_warmup_tokens", "must be positive")
            check(
                self.max_steps is not None,
                "train.max_steps",
                "batch-size warmup changes how many steps an epoch takes; set max_steps",
            )
        check(self.eval_batches is None or self.eval_batches > 0, "train.eval_batches", "must be positive")
        if self.time_budget is not None:
            budget_seconds(self.time_budget)
            check(
                self.warmup_steps is None,
                "train.warmup_steps",
                "a time budget plans the steps; give the warmup as train.warmup_ratio, a fraction of the plan",
            )

    @property
    def budget_seconds(self) -> float | None:
        return None if self.time_budget is None else budget_seconds(self.time_budget)


DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def budget_seconds(text: str) -> float:
    """`train.time_budget`'s seconds: hours, minutes and seconds in that order, each optional (`6h`, `1h30m`, `90s`);
    a bare number is minutes."""
    spoken = str(text).strip().lower().replace(" ", "")
    match = DURATION.fullmatch(spoken)
    if re.fullmatch(r"\d+(?:\.\d+)?", spoken):
        seconds = float(spoken) * 60
    elif spoken and match:
        hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    else:
        raise UsageError(f"train.time_budget: {text!r} is not a duration such as 90s, 30m, 6h or 1h30m")
    check(seconds > 0, "train.time_budget", f"must be positive, got {text!r}")
    return seconds


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
        check(not self.push_to_hub or bool(self.repo_id), "hub.repo_id", "must be set when hub.push_to_hub is true")
        check(
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
class ObjectiveSection:
    """The `objective` section of every text objective: which one the run trains. Each objective extends it with its
    own settings (`hfssl.objectives.OBJECTIVES` maps the name to the module that declares them)."""

    name: str = arg("", "the objective the run trains (`hfssl pretrain --help` lists them)")


@dataclass
class PretrainConfig:
    """What every text pretraining recipe holds; an objective's schema narrows `objective` to its own settings."""

    model: ModelArgs = field(default_factory=ModelArgs)
    objective: ObjectiveSection = field(default_factory=ObjectiveSection)
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
            check(value is None or value > 0, f"model.{name}", f"must be positive, got {value}")
        check(0.0 <= self.dropout < 1.0, "model.dropout", f"must be in [0, 1), got {self.dropout}")
        check(0.0 <= self.layerdrop < 1.0, "model.layerdrop", f"must be in [0, 1), got {self.layerdrop}")


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
        check(0.0 < self.validation_fraction < 1.0, "data.validation_fraction", "must be in (0, 1)")
        check(self.validation_clips > 0, "data.validation_clips", "must be positive")
        check(self.sampling_rate >= 1000, "data.sampling_rate", f"must be at least 1000 Hz, got {self.sampling_rate}")
        check(self.min_seconds > 0, "data.min_seconds", "must be positive")
        check(self.max_seconds >= self.min_seconds, "data.max_seconds", "must be at least data.min_seconds")
        check(
            self.batch_seconds >= self.max_seconds,
            "data.batch_seconds",
            f"must hold at least one clip of data.max_seconds ({self.max_seconds} s)",
        )
        check(self.num_proc is None or self.num_proc > 0, "data.num_proc", "must be positive")
        check(self.synthetic_utterances >= 10, "data.synthetic_utterances", "must be at least 10")


@dataclass
class AudioMaskingArgs:
    mask_prob: float = arg(
        0.65, "chance of each feature frame starting a masked span (wav2vec 2.0: 0.65, about half the frames masked)"
    )
    mask_length: int = arg(10, "feature frames per masked span (10 frames = 200 ms at 50 Hz)")
    min_masks: int = arg(2, "spans masked in every clip at least")

    def __post_init__(self):
        check(0.0 < self.mask_prob < 1.0, "masking.mask_prob", f"must be in (0, 1), got {self.mask_prob}")
        check(self.mask_length >= 1, "masking.mask_length", "must be at least 1")
        check(self.min_masks >= 0, "masking.min_masks", "must not be negative")


@dataclass
class SpeechObjectiveSection:
    """The `objective` section of every speech objective: which one the run trains, and the SpecAugment channel
    masks they all take. Each objective extends it with its own settings."""

    name: str = arg("", "the objective the run trains (`hfssl pretrain --help` lists them)")
    feature_mask_prob: float = arg(
        0.0,
        "chance of masking each encoder feature channel too (SpecAugment's frequency masks, on the projected features)",
    )

    def __post_init__(self):
        check(0.0 <= self.feature_mask_prob < 1.0, "objective.feature_mask_prob", "must be in [0, 1)")


@dataclass
class SpeechPretrainConfig:
    """What every speech pretraining recipe holds; an objective's schema narrows `objective` to its own settings and
    may add sections of its own."""

    model: SpeechModelArgs = field(default_factory=SpeechModelArgs)
    data: AudioDataArgs = field(default_factory=AudioDataArgs)
    masking: AudioMaskingArgs = field(default_factory=AudioMaskingArgs)
    objective: SpeechObjectiveSection = field(default_factory=SpeechObjectiveSection)
    train: TrainArgs = field(default_factory=TrainArgs)
    export: ExportArgs = field(default_factory=ExportArgs)
    hub: HubArgs = field(default_factory=HubArgs)

    def __post_init__(self):
        if self.model.arch in FILTERBANK_ARCHS:
            check(
                self.model.conv_dim is None,
                "model.conv_dim",
                f"{self.model.arch} reads log-mel filterbank frames and has no convolutional feature encoder to size",
            )
            # SeamlessM4TFeatureExtractor's 25 ms windows and 10 ms hops are 400 and 160 samples in its code.
            check(
                self.data.sampling_rate == 16000,
                "data.sampling_rate",
                f"{self.model.arch}'s feature extractor computes its filterbanks at 16000 Hz only, got "
                f"{self.data.sampling_rate}",
            )


@dataclass
class TokenizerTrainConfig:
    """`hfssl tokenizer train`: a corpus and a tokenizer to train on it."""

    data: DataArgs = field(default_factory=DataArgs)
    tokenizer: TokenizerArgs = field(default_factory=TokenizerArgs)
