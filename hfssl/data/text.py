"""Corpora -> tokenized, packed blocks: `load_corpus`, then `tokenize_corpus`, then `pack`.

A corpus is the embedded synthetic one, local files (.txt one document per line, .json/.jsonl, .csv, .parquet; a
glob; a directory), or a Hub dataset. Packing cuts the whole token stream into blocks, so unlike transformers'
`group_texts` it drops no tokens at map-batch boundaries, and a map-style corpus stays memory-mapped: blocks are sliced
out of zero-copy views of the Arrow column when the DataLoader asks for them.
"""

from __future__ import annotations

import codecs
import glob
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import datasets
import numpy as np
import torch
from datasets.distributed import split_dataset_by_node
from datasets.exceptions import DatasetGenerationError

from hfssl.config import DataArgs
from hfssl.data.stream import StreamPart
from hfssl.data.synthetic import synthetic_documents
from hfssl.errors import UsageError, first_line

BUILDERS = {".txt": "text", ".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
_TEXT_FILES = {".txt", ".json", ".jsonl", ".csv"}  # parquet is binary; Arrow validates its strings itself
_GLOB_CHARS = frozenset("*?[")
_SMALL_CORPUS = 10_000  # below this, starting tokenizer processes costs more than it saves
_CHUNK_BYTES = 1 << 20

Corpus = datasets.Dataset | datasets.IterableDataset


# --------------------------------------------------------------------------- loading


def load_corpus(data: DataArgs, seed: int = 0) -> tuple[Corpus, datasets.Dataset]:
    """Load the training and validation corpora named by `data`.

    Args:
        data: `data.train`/`data.validation` name the sources: "synthetic", a local file, glob or directory, or a
            Hub dataset name (with `data.hub_config`, `hub_split`, `hub_validation_split`, `hub_revision`).
        seed: seeds the synthetic corpus and the held-out validation split.

    Returns:
        `(train, validation)`, each with the single column "text" and no blank documents. `train` is an
        `IterableDataset` when `data.streaming`; `validation` is always a map-style `Dataset`. Without
        `data.validation` (or a Hub validation split) it is held out of the training corpus: a seeded
        `data.validation_fraction` of the documents, or the first `data.validation_documents` of a stream (which its
        training part then leaves out by their text, repeats of them included). A Hub
        name given as `data.validation` is read from `data.hub_validation_split`, else its "validation" split.

    Raises:
        UsageError: a missing, empty, blank, non-UTF-8 or unreadable source, or a missing text column.
    """
    train = _load(data.train, "data.train", data, data.streaming, data.hub_split, seed, data.synthetic_documents)
    if data.validation:
        count = max(1, round(data.synthetic_documents * data.validation_fraction))
        split = data.hub_validation_split or "validation"
        # seed + 1: a synthetic validation corpus must not repeat the training documents
        validation = _load(data.validation, "data.validation", data, False, split, seed + 1, count)
    elif data.hub_validation_split and _local_files(data.train, "data.train") is None and data.train != "synthetic":
        validation = _load(data.train, "data.hub_validation_split", data, False, data.hub_validation_split, seed, 0)
    elif isinstance(train, datasets.IterableDataset):
        train, validation = _hold_out_head(train, data)
    else:
        if len(train) < 2:
            raise UsageError(
                f"data.train: {data.train} has only {len(train)} document, too few to hold out a validation split; "
                "add documents or set data.validation"
            )
        split = train.train_test_split(test_size=data.validation_fraction, seed=seed)
        train, validation = split["train"], split["test"]
    return train, validation


def _hold_out_head(train: datasets.IterableDataset, data: DataArgs) -> tuple[Corpus, datasets.Dataset]:
    validation = datasets.Dataset.from_list(list(train.take(data.validation_documents)), features=train.features)
    # Filtered out by their text, not skipped by count: a stream split by shards across processes and DataLoader
    # workers would skip a share of the count in every part, training on held-out documents and dropping others.
    held_out = set(validation["text"])
    train = train.filter(_not_held_out, batched=True, fn_kwargs={"held_out": held_out})
    if next(iter(train), None) is None:
        raise UsageError(
            f"data.validation_documents: the streamed corpus {data.train} has only {len(validation)} documents, all "
            "held out for validation, leaving none to train on; lower data.validation_documents or set data.validation"
        )
    return train, validation


def _load(
    source: str, key: str, data: DataArgs, streaming: bool, hub_split: str, seed: int, synthetic_count: int
) -> Corpus:
    """One corpus with a single non-blank "text" column; `key` names the setting in error messages."""
    if source == "synthetic":
        corpus = datasets.Dataset.from_dict({"text": [d["text"] for d in synthetic_documents(synthetic_count, seed)]})
        # 64 shards: processes and DataLoader workers (any count dividing 64) then read whole shards of their own
        return corpus.to_iterable_dataset(num_shards=min(len(corpus), 64)) if streaming else corpus
    local = _local_files(source, key)
    if local is None:
        try:
            corpus = datasets.load_dataset(
                source,
                data.hub_config,
                split=hub_split,
                revision=data.hub_revision,
                streaming=streaming,
                cache_dir=data.cache_dir,
            )
        except Exception as err:  # offline, unknown name, bad config or split: all the user's to fix
            raise UsageError(f"{key}: could not load dataset {source!r} from the Hub: {_first_line(err)}") from err
        return _text_only(corpus, source, key, data)
    builder, files = local
    if all(os.path.getsize(f) == 0 for f in files):
        raise UsageError(f"{key}: {source} is empty")
    for file in files:
        if Path(file).suffix.lower() in _TEXT_FILES:
            _check_utf8(file, key)
    try:
        corpus = datasets.load_dataset(
            builder, data_files=files, split="train", streaming=streaming, cache_dir=data.cache_dir
        )
    except Exception as err:  # the builders' parse errors (malformed JSON, ragged CSV) come from the user's file
        raise UsageError(f"{key}: could not read {source}: {_read_error(files, err)}") from err
    if builder == "text":  # one document per line, always in the builder's "text" column
        return _text_only(corpus, source, key, data, column="text", blank="blank lines")
    return _text_only(corpus, source, key, data)


def _text_only(
    corpus: Corpus, source: str, key: str, data: DataArgs, column: str | None = None, blank: str = "blank documents"
) -> Corpus:
    """Keep only the text column, named "text", and drop blank documents; reject a corpus left empty."""
    column = column or data.text_column
    streaming = isinstance(corpus, datasets.IterableDataset)
    try:
        first = next(iter(corpus), None) if streaming else None
    except Exception as err:
        raise UsageError(f"{key}: could not read {source}: {_first_line(err)}") from err
    if (first is None) if streaming else len(corpus) == 0:
        raise UsageError(f"{key}: {source} is empty")
    columns = corpus.column_names or list(first)
    if column not in columns:
        raise UsageError(
            f"{key}: {source} has no column {column!r} (set data.text_column); its columns are: {', '.join(columns)}"
        )
    feature = (corpus.features or {}).get(column)
    if feature is not None and getattr(feature, "dtype", None) not in ("string", "large_string"):
        raise UsageError(f"{key}: column {column!r} of {source} holds {feature}, not text (set data.text_column)")
    corpus = corpus.select_columns([column])
    if column != "text":
        corpus = corpus.rename_column(column, "text")
    if streaming:
        corpus = corpus.filter(_has_text, batched=True)
        if next(iter(corpus), None) is None:
            raise UsageError(f"{key}: {source} holds only {blank}")
        return corpus
    corpus = corpus.filter(_has_text, batched=True, num_proc=_num_proc(data, len(corpus)), desc="Dropping blanks")
    if len(corpus) == 0:
        raise UsageError(f"{key}: {source} holds only {blank}")
    return corpus


def _not_held_out(batch: dict[str, list], held_out: set[str]) -> list[bool]:
    return [text not in held_out for text in batch["text"]]


def _has_text(batch: dict[str, list]) -> list[bool]:
    return [text is not None and not text.isspace() and text != "" for text in batch["text"]]


def _local_files(source: str, key: str) -> tuple[str, list[str]] | None:
    """(builder, sorted files) for a source naming local files; None for one that names a Hub dataset."""
    expanded = os.path.expanduser(source)
    path = Path(expanded)
    supported = ", ".join(BUILDERS)
    if _GLOB_CHARS & set(source):
        files = sorted(f for f in glob.glob(expanded, recursive=True) if Path(f).suffix.lower() in BUILDERS)
        files = [f for f in files if os.path.isfile(f)]
        if not files:
            raise UsageError(f"{key}: {source} matches no {supported} files")
    elif path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in BUILDERS and p.is_file())
        if not files:
            raise UsageError(f"{key}: directory {source} holds no {supported} files")
    elif path.is_file():
        if path.suffix.lower() not in BUILDERS:
            raise UsageError(f"{key}: {source} is not a supported file; use one of {supported}")
        files = [expanded]
    elif source.startswith((".", "/", "~")) or path.suffix.lower() in BUILDERS:
        raise UsageError(f"{key}: {source}: no such file or directory")
    else:
        return None
    suffixes = sorted({Path(f).suffix.lower() for f in files})
    builders = {BUILDERS[s] for s in suffixes}
    if len(builders) > 1:
        raise UsageError(f"{key}: {source} mixes file types ({', '.join(suffixes)}); give one type per corpus")
    return builders.pop(), files


def _check_utf8(file: str, key: str) -> None:
    """Fail with the file's name up front, rather than deep inside a builder or a tokenizer process."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(file, "rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                raise UsageError(
                    f"{key}: {file} is not UTF-8 text (invalid byte near offset {offset + err.start}); "
                    "re-encode it as UTF-8"
                ) from None
            offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise UsageError(
            f"{key}: {file} is not UTF-8 text (it ends inside a character); re-encode it as UTF-8"
        ) from None


def _read_error(files: list[str], err: BaseException) -> str:
    """Why a local source did not read: for JSON lines, the file and line of the first row that is not a JSON
    object (the JSON builder reports only a byte position inside a block of the file), else the builder's words."""
    for file in files:
        if Path(file).suffix.lower() not in (".jsonl", ".json"):
            continue
        with open(file, encoding="utf-8") as f:
            head = f.read(1).lstrip() or f.readline().lstrip()[:1]
            if head != "{":  # a JSON document (a list, say), not JSON lines
                continue
            f.seek(0)
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line.strip())
                except json.JSONDecodeError as bad:
                    return f"{file}, line {number}: not valid JSON ({bad.msg}, column {bad.colno})"
                if not isinstance(row, dict):
                    return f"{file}, line {number}: a JSON {type(row).__name__}, not an object of columns"
    return _first_line(err)


def _first_line(err: BaseException) -> str:
    if isinstance(err, DatasetGenerationError) and err.__cause__ is not None:
        err = err.__cause__  # its own message only says that generation failed
    return first_line(err)


def _num_proc(data: DataArgs, documents: int) -> int:
    if data.num_proc is not None:
        return data.num_proc
    if documents < _SMALL_CORPUS:
        return 1
    return min(os.cpu_count() or 1, 8)


def estimate_tokens(corpus: datasets.IterableDataset, tokenizer, data: DataArgs, sample: int = 1000):
    """An estimate of a streamed training corpus's tokens (with a separator per document) from its first `sample`
    documents: tokens per document times the documents it holds, or tokens per byte times its files' bytes.

    Returns:
        `(tokens or None when the source does not say how large it is, how the number was found)`.
    """
    texts = [example["text"] for example in corpus.take(sample)]
    tokens = sum(len(ids) + 1 for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"])
    per_document = tokens / len(texts)
    seen = f"in the first {len(texts):,} documents"
    held_out = 0 if data.validation else data.validation_documents
    if data.train == "synthetic":
        documents = data.synthetic_documents - held_out
        return per_document * documents, f"estimate: {per_document:,.1f} tokens per document {seen} x {documents:,}"
    local = _local_files(data.train, "data.train")
    if local is not None:  # file bytes count markup too (JSON keys, quotes): an estimate on the high side
        size = sum(os.path.getsize(f) for f in local[1])
        per_byte = tokens / sum(len(text.encode()) + 1 for text in texts)
        return per_byte * size, f"estimate: {per_byte:.3f} tokens per byte {seen} x {size:,} bytes of files"
    split = (corpus.info.splits or {}).get(data.hub_split)
    if split is not None and split.num_examples:
        documents = split.num_examples - held_out
        return per_document * documents, f"estimate: {per_document:,.1f} tokens per document {seen} x {documents:,}"
    return None, f"unknown: the stream does not say its size ({per_document:,.1f} tokens per document {seen})"


# --------------------------------------------------------------------------- tokenizing


def tokenize_corpus(corpus: Corpus, tokenizer, data: DataArgs) -> Corpus:
    """Replace the "text" column by "input_ids" (no special tokens; `pack` adds them).

    A corpus read from files is tokenized once: datasets caches the result next to the loaded data and reuses it
    while the corpus and tokenizer are unchanged. A map-style corpus is tokenized with `data.num_proc` processes
    (empty: up to 8, or 1 for fewer than 10,000 documents); a streamed one lazily as it is read.
    """
    kwargs = {"batched": True, "remove_columns": ["text"], "fn_kwargs": {"tokenizer": tokenizer}}
    if isinstance(corpus, datasets.IterableDataset):
        return corpus.map(_tokenize, **kwargs)
    return corpus.map(_tokenize, num_proc=_num_proc(data, len(corpus)), desc="Tokenizing", **kwargs)


def _tokenize(batch: dict[str, list], tokenizer) -> dict[str, list]:
    # verbose=False: documents longer than model_max_length are expected here; packing cuts them
    encoded = tokenizer(
        batch["text"],
        add_special_tokens=False,
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=False,
    )
    return {"input_ids": encoded["input_ids"]}


# --------------------------------------------------------------------------- packing


def special_ids(tokenizer) -> tuple[int | None, int]:
    """(prefix, separator): the token that starts each sequence (cls, else bos, else none) and the one that ends
    each document (sep, else eos)."""
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if sep is None:
        raise UsageError(
            f"tokenizer: {tokenizer.name_or_path or 'the tokenizer'} has neither a sep_token nor an eos_token "
            "to end documents with; add one to the tokenizer"
        )
    cls = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    return cls, sep


def pack(tokenized: Corpus, tokenizer, data: DataArgs) -> torch.utils.data.Dataset | torch.utils.data.IterableDataset:
    """Turn tokenized documents into training sequences; every item is `{"input_ids": 1-D LongTensor}`.

    With `data.packing` "documents" or "separator", all documents, each followed by the separator, form one token
    stream cut into blocks of `data.seq_len`: the prefix token then `seq_len - 1` stream tokens (`seq_len` when the
    tokenizer has no prefix token). Only the last block is shorter. The two give the same blocks: which tokens attend
    to which is the collator's and the model's business. With "none", each document is one item `[prefix] doc [sep]`,
    split into consecutive items of at most `seq_len` tokens when longer. No token is dropped either way.

    A map-style `tokenized` gives a map-style dataset (`PackedBlocks` or `DocumentChunks`); a streamed one gives a
    `StreamedBlocks` iterable.
    """
    cls, sep = special_ids(tokenizer)
    packing = data.packing != "none"
    if isinstance(tokenized, datasets.IterableDataset):
        return StreamedBlocks(tokenized, data.seq_len, cls, sep, packing)
    if packing:
        return PackedBlocks(tokenized, data.seq_len, cls, sep)
    return DocumentChunks(tokenized, data.seq_len, cls, sep)


class _TokenColumn:
    """The `input_ids` of a tokenized dataset as one flat token array, without copying it out of Arrow.

    Keeps a zero-copy numpy view of each Arrow chunk's values (memory-mapped when the dataset is on disk) and the
    offset of every document in the flat array.
    """

    def __init__(self, dataset: datasets.Dataset):
        if dataset._indices is not None:  # a select/shuffle view: write the rows out in order first
            dataset = dataset.flatten_indices()
        column = dataset.data.column("input_ids")
        self.chunks = [_token_values(chunk) for chunk in column.chunks]
        self.chunk_starts = np.cumsum([0] + [len(c) for c in self.chunks])
        lengths = [np.diff(chunk.offsets.to_numpy()) for chunk in column.chunks]
        self.doc_offsets = np.concatenate([[0], np.cumsum(np.concatenate(lengths or [[]]), dtype=np.int64)])

    @property
    def num_tokens(self) -> int:
        return int(self.doc_offsets[-1])

    def slice(self, start: int, stop: int) -> np.ndarray:
        """Tokens `[start, stop)` of the flat array, as int64."""
        parts = []
        i = int(np.searchsorted(self.chunk_starts, start, side="right")) - 1
        while start < stop:
            base = self.chunk_starts[i]
            end = min(stop, base + len(self.chunks[i]))
            parts.append(self.chunks[i][start - base : end - base])
            start, i = end, i + 1
        return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, dtype=np.int64)


def _token_values(chunk) -> np.ndarray:
    """A list<int> Arrow chunk's values as numpy, zero-copy; a chunk of empty lists may be typed list<null>."""
    values = chunk.flatten()
    if len(values) == 0:
        return np.empty(0, dtype=np.int64)
    return values.to_numpy(zero_copy_only=True)


class PackedBlocks(torch.utils.data.Dataset):
    """A map-style tokenized corpus as one stream (each document, then the separator) cut into blocks.

    Block k is the prefix token (if any) and stream tokens `[k * body, (k + 1) * body)`, `body` being `seq_len`
    less the prefix; the stream exists only as views of the Arrow column, so memory stays memory-mapped. Pickling
    (spawned DataLoader workers) sends the dataset, which datasets pickles as file paths, not the tokens.
    """

    def __init__(self, tokenized: datasets.Dataset, seq_len: int, cls: int | None, sep: int):
        self.tokenized, self.seq_len, self.cls, self.sep = tokenized, seq_len, cls, sep
        self.tokens = _TokenColumn(tokenized)
        documents = len(self.tokens.doc_offsets) - 1
        # In the stream, document i starts at doc_offsets[i] + i: after i separators.
        self.separators = self.tokens.doc_offsets[1:] + np.arange(documents)
        self.stream_length = self.tokens.num_tokens + documents
        self.body = seq_len - (cls is not None)

    def __reduce__(self):
        return type(self), (self.tokenized, self.seq_len, self.cls, self.sep)

    def __len__(self) -> int:
        return -(-self.stream_length // self.body)

    @property
    def num_tokens(self) -> int:
        """Tokens in all blocks: the stream's and each block's prefix."""
        return self.stream_length + len(self) * (self.cls is not None)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = _check_index(index, len(self))
        start = index * self.body
        stop = min(start + self.body, self.stream_length)
        before_start, before_stop = np.searchsorted(self.separators, [start, stop])
        tokens = self.tokens.slice(start - before_start, stop - before_stop)
        # np.insert places each separator before the token it preceded in the stream
        where = self.separators[before_start:before_stop] - start - np.arange(before_stop - before_start)
        block = np.insert(tokens, where, self.sep)
        if self.cls is not None:
            block = np.concatenate([[self.cls], block])
        return {"input_ids": torch.from_numpy(block)}


class DocumentChunks(torch.utils.data.Dataset):
    """A map-style tokenized corpus, one `[prefix] document [sep]` per item; longer documents are split into
    consecutive items of at most `seq_len` tokens each (empty documents give none)."""

    def __init__(self, tokenized: datasets.Dataset, seq_len: int, cls: int | None, sep: int):
        self.tokenized, self.seq_len, self.cls, self.sep = tokenized, seq_len, cls, sep
        self.tokens = _TokenColumn(tokenized)
        self.body = seq_len - 1 - (cls is not None)
        pieces = -(-np.diff(self.tokens.doc_offsets) // self.body)
        self.first_item = np.concatenate([[0], np.cumsum(pieces)])  # index of each document's first item

    def __reduce__(self):
        return type(self), (self.tokenized, self.seq_len, self.cls, self.sep)

    def __len__(self) -> int:
        return int(self.first_item[-1])

    @property
    def num_tokens(self) -> int:
        """Tokens in all items: the documents' and each item's prefix and separator."""
        return self.tokens.num_tokens + len(self) * (1 + (self.cls is not None))

    def document_frequencies(self, vocab_size: int, tokens_at_once: int = 1 << 22) -> tuple[np.ndarray, int]:
        """How many documents each token id is in (the prefix and separator of every item count as in every
        document), read `tokens_at_once` tokens of whole documents at a time; and how many documents there are."""
        offsets = self.tokens.doc_offsets
        documents = len(offsets) - 1
        counts = np.zeros(vocab_size, dtype=np.int64)
        first = 0
        while first < documents:
            last = max(first + 1, int(np.searchsorted(offsets, offsets[first] + tokens_at_once, side="right")) - 1)
            last = min(last, documents)
            ids = self.tokens.slice(int(offsets[first]), int(offsets[last]))
            doc = np.repeat(np.arange(last - first, dtype=np.int64), np.diff(offsets[first : last + 1]))
            counts += np.bincount(np.unique(doc * vocab_size + ids) % vocab_size, minlength=vocab_size)
            first = last
        for special in (self.cls, self.sep):
            if special is not None:
                counts[special] = documents
        return counts, documents

    def lengths(self) -> np.ndarray:
        """Every item's length in tokens, from the document offsets alone (no item is read)."""
        pieces = np.diff(self.first_item)
        doc = np.repeat(np.arange(len(pieces)), pieces)
        left = np.diff(self.tokens.doc_offsets)[doc] - (np.arange(len(self)) - self.first_item[doc]) * self.body
        return np.minimum(left, self.body) + 1 + (self.cls is not None)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = _check_index(index, len(self))
        doc = int(np.searchsorted(self.first_item, index, side="right")) - 1
        start = self.tokens.doc_offsets[doc] + (index - self.first_item[doc]) * self.body
        stop = min(start + self.body, self.tokens.doc_offsets[doc + 1])
        prefix = [] if self.cls is None else [self.cls]
        block = np.concatenate([prefix, self.tokens.slice(int(start), int(stop)), [self.sep]]).astype(np.int64)
        return {"input_ids": torch.from_numpy(block)}


def _check_index(index: int, length: int) -> int:
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise IndexError(f"index {index} out of range for {length} items")
    return index


class StreamedBlocks(torch.utils.data.IterableDataset):
    """A streamed tokenized corpus packed (or split into document chunks) as it is read, with the same items, in
    the same order, as `PackedBlocks` (or `DocumentChunks`) would give for the same documents.

    Training reads it through `batches` (see `hfssl.data.stream`): each process and DataLoader worker packs its own
    part of the documents, and every batch says where its part stands, so that a run resumes at the next block.
    Iterated as it is, inside DataLoader workers, the datasets stream shards itself across them (workers beyond
    `tokenized.num_shards` stay idle); `blocks.split_by_node(rank, world_size)` gives a rank its own part.
    """

    def __init__(self, tokenized: datasets.IterableDataset, seq_len: int, cls: int | None, sep: int, packing: bool):
        self.tokenized, self.seq_len, self.cls, self.sep, self.packing = tokenized, seq_len, cls, sep, packing

    def split_by_node(self, rank: int, world_size: int) -> StreamedBlocks:
        """This rank's part of the stream (`datasets.distributed.split_dataset_by_node`): whole shards when the
        stream has a multiple of `world_size` shards, else every `world_size`-th document."""
        part = split_dataset_by_node(self.tokenized, rank=rank, world_size=world_size)
        return StreamedBlocks(part, self.seq_len, self.cls, self.sep, self.packing)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        documents = (example["input_ids"] for example in self.tokenized)
        for block in _Cutter(self.seq_len, self.cls, self.sep, self.packing).blocks(documents):
            yield {"input_ids": torch.tensor(block, dtype=torch.long)}

    def batches(self, batch_size: int, part: int, parts: int, state: dict | None = None) -> Iterator[tuple[list, dict]]:
        """Part `part` of `parts` of the stream in batches of `batch_size` items (the last may be shorter), each with
        the state after it: where the documents stand, and the tokens read but not yet cut into blocks. Given that
        state, it goes on with the next block."""
        documents = StreamPart(self.tokenized, part, parts, state["documents"] if state else None)
        cutter = _Cutter(self.seq_len, self.cls, self.sep, self.packing, state["pending"] if state else ())
        batch = []
        for block in cutter.blocks(example["input_ids"] for example in documents):
            batch.append({"input_ids": torch.tensor(block, dtype=torch.long)})
            if len(batch) == batch_size:
                yield batch, {"documents": documents.state_dict(), "pending": cutter.pending()}
                batch = []
        if batch:
            yield batch, {"documents": documents.state_dict(), "pending": cutter.pending()}


class _Cutter:
    """Cuts documents into the blocks `PackedBlocks` (packing) or `DocumentChunks` would give, as they are read;
    `pending()` is always what has been read but not yet cut, so cutting can stop after any block and resume."""

    def __init__(self, seq_len: int, cls: int | None, sep: int, packing: bool, pending: Iterable[int] = ()):
        self.prefix = [] if cls is None else [cls]
        self.sep, self.packing = sep, packing
        self.body = seq_len - len(self.prefix) - (0 if packing else 1)
        self.buffer, self.start = list(pending), 0

    def pending(self) -> list[int]:
        return self.buffer[self.start :]

    def _ready(self) -> bool:
        left = len(self.buffer) - self.start
        return left >= self.body if self.packing else left > 0

    def blocks(self, documents: Iterable[list[int]]) -> Iterator[list[int]]:
        documents = iter(documents)
        while True:
            while self._ready():
                piece = self.buffer[self.start : self.start + self.body]
                self.start += len(piece)
                yield self.prefix + piece if self.packing else self.prefix + piece + [self.sep]
            ids = next(documents, None)
            if ids is None:
                break
            del self.buffer[: self.start]  # the remainder carries over to the next document
            self.start = 0
            self.buffer.extend(ids)
            if self.packing:
                self.buffer.append(self.sep)
        if self.packing and self.pending():
            last = self.prefix + self.pending()
            self.buffer, self.start = [], 0
            yield last


def _pack_stream(documents: Iterable[list[int]], seq_len: int, cls: int | None, sep: int) -> Iterator[list[int]]:
    return _Cutter(seq_len, cls, sep, packing=True).blocks(documents)
