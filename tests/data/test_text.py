import json

import datasets
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hfssl.config import DataArgs
from hfssl.data import text as text_data
from hfssl.data.synthetic import synthetic_documents
from hfssl.data.text import (
    DocumentChunks,
    PackedBlocks,
    StreamedBlocks,
    estimate_tokens,
    load_corpus,
    pack,
    tokenize_corpus,
)
from hfssl.errors import UsageError
from hfssl.tokenizer import train_tokenizer

DOCS = [doc["text"] for doc in synthetic_documents(300, seed=3)]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(DOCS, vocab_size=600, model_max_length=64)


def args(tmp_path, train, **kwargs) -> DataArgs:
    return DataArgs(train=str(train), cache_dir=str(tmp_path / "cache"), **kwargs)


def write(path, docs, column="text"):
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"id": range(len(docs)), column: docs})
    suffix = path.suffix
    if suffix == ".txt":
        path.write_text("\n".join(docs) + "\n", encoding="utf-8")
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps({"id": i, column: d}) + "\n" for i, d in enumerate(docs)))
    elif suffix == ".json":
        path.write_text(json.dumps([{"id": i, column: d} for i, d in enumerate(docs)]))
    elif suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".parquet":
        frame.to_parquet(path)
    return path


def all_texts(tmp_path, data) -> list[str]:
    train, validation = load_corpus(data)
    assert train.column_names == validation.column_names == ["text"]
    return list(train["text"]) + list(validation["text"])


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".json", ".csv", ".parquet"])
def test_every_file_format_gives_every_document(tmp_path, suffix):
    path = write(tmp_path / f"corpus{suffix}", DOCS)
    texts = all_texts(tmp_path, args(tmp_path, path, validation_fraction=0.1))
    assert sorted(texts) == sorted(DOCS)


def test_glob_and_directory_read_every_file(tmp_path):
    write(tmp_path / "corpus" / "a.jsonl", DOCS[:100])
    write(tmp_path / "corpus" / "nested" / "b.jsonl", DOCS[100:])
    (tmp_path / "corpus" / "notes.md").write_text("not a corpus file")
    for source in (tmp_path / "corpus", f"{tmp_path}/corpus/**/*.jsonl"):
        assert sorted(all_texts(tmp_path, args(tmp_path, source))) == sorted(DOCS)


def test_text_column_is_chosen_and_renamed(tmp_path):
    path = write(tmp_path / "corpus.csv", DOCS, column="body")
    assert sorted(all_texts(tmp_path, args(tmp_path, path, text_column="body"))) == sorted(DOCS)
    with pytest.raises(UsageError, match=r"no column 'text'.*set data.text_column.*id, body"):
        load_corpus(args(tmp_path, path))


def test_blank_documents_are_dropped(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("first document\n\n   \nsecond document\n\t\nthird document\n")
    texts = all_texts(tmp_path, args(tmp_path, path, validation_fraction=0.34))
    assert sorted(texts) == ["first document", "second document", "third document"]


def test_validation_file_is_used_whole(tmp_path):
    train = write(tmp_path / "train.txt", DOCS[:250])
    validation = write(tmp_path / "valid.txt", DOCS[250:])
    train_set, validation_set = load_corpus(args(tmp_path, train, validation=str(validation)))
    assert list(train_set["text"]) == DOCS[:250]
    assert list(validation_set["text"]) == DOCS[250:]


def test_held_out_fraction_is_seeded_and_disjoint(tmp_path):
    path = write(tmp_path / "corpus.txt", DOCS)
    first = load_corpus(args(tmp_path, path, validation_fraction=0.2), seed=1)
    again = load_corpus(args(tmp_path, path, validation_fraction=0.2), seed=1)
    other = load_corpus(args(tmp_path, path, validation_fraction=0.2), seed=2)
    assert len(first[1]) == 60 and not set(first[0]["text"]) & set(first[1]["text"])
    assert list(first[1]["text"]) == list(again[1]["text"])
    assert list(first[1]["text"]) != list(other[1]["text"])


def test_streamed_corpus_holds_out_its_head(tmp_path):
    path = write(tmp_path / "corpus.jsonl", DOCS)
    train, validation = load_corpus(args(tmp_path, path, streaming=True, validation_documents=20))
    assert isinstance(train, datasets.IterableDataset)
    assert list(validation["text"]) == DOCS[:20]
    assert [row["text"] for row in train] == DOCS[20:]


def test_hub_dataset_path_reads_named_splits(tmp_path, monkeypatch):
    # The Hub branch is `datasets.load_dataset(name, config, split=...)`; a local dataset repository takes the same
    # call, with splits named by its files, once hfssl does not treat the directory as plain files.
    repo = tmp_path / "repo"
    write(repo / "data" / "train.jsonl", DOCS[:200])
    write(repo / "data" / "validation.jsonl", DOCS[200:])
    monkeypatch.setattr(text_data, "_local_files", lambda source, key: None)
    train, validation = load_corpus(args(tmp_path, repo, hub_validation_split="validation"))
    assert list(train["text"]) == DOCS[:200]
    assert list(validation["text"]) == DOCS[200:]


def test_unreachable_hub_dataset_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UsageError, match="data.train: could not load dataset 'someone/no-such-corpus'"):
        load_corpus(args(tmp_path, "someone/no-such-corpus"))


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.jsonl", '{"text": "fine"}\n{"text": broken\n', "could not read"),
        ("numbers.jsonl", '{"text": 1}\n{"text": 2}\n', "not text"),
        ("empty.csv", "", "is empty"),
        ("table.tsv", "a\tb\n", "not a supported file"),
    ],
)
def test_bad_files_name_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(UsageError, match=message) as error:
        load_corpus(args(tmp_path, path))
    assert name in str(error.value)


def test_mixed_file_types_are_refused(tmp_path):
    write(tmp_path / "corpus" / "a.txt", DOCS[:10])
    write(tmp_path / "corpus" / "b.jsonl", DOCS[10:20])
    with pytest.raises(UsageError, match="mixes file types"):
        load_corpus(args(tmp_path, tmp_path / "corpus"))


# --------------------------------------------------------------------------- packing


def tokenized(tokenizer, docs, tmp_path, **kwargs):
    data = DataArgs(cache_dir=str(tmp_path / "cache"), **kwargs)
    return tokenize_corpus(datasets.Dataset.from_dict({"text": docs}), tokenizer, data), data


def expected_stream(tokenizer, docs) -> list[int]:
    stream = []
    for doc in docs:
        stream += tokenizer(doc, add_special_tokens=False)["input_ids"] + [tokenizer.sep_token_id]
    return stream


def items(dataset) -> list[list[int]]:
    return [item["input_ids"].tolist() for item in dataset]


@pytest.mark.parametrize("seq_len", [16, 64, 127])
def test_packing_keeps_every_token_in_order(tokenizer, tmp_path, seq_len):
    data_set, data = tokenized(tokenizer, DOCS, tmp_path, seq_len=seq_len)
    blocks = items(pack(data_set, tokenizer, data))
    assert all(block[0] == tokenizer.cls_token_id for block in blocks)
    assert all(len(block) == seq_len for block in blocks[:-1]) and 1 < len(blocks[-1]) <= seq_len
    assert [t for block in blocks for t in block[1:]] == expected_stream(tokenizer, DOCS)


def test_packing_across_arrow_chunks_and_map_batches(tokenizer, tmp_path):
    # Many documents in several Arrow chunks (as datasets.map writes with num_proc or >1000-row batches): the stream
    # continues across every boundary, where transformers' group_texts drops the tail of each map batch.
    docs = [doc["text"] for doc in synthetic_documents(2500, seed=4)]
    parts = [tokenized(tokenizer, docs[i : i + 900], tmp_path / str(i))[0] for i in range(0, 2500, 900)]
    joined = datasets.concatenate_datasets(parts)
    assert joined.data.column("input_ids").num_chunks > 1
    blocks = PackedBlocks(joined, 64, tokenizer.cls_token_id, tokenizer.sep_token_id)
    assert [t for item in items(blocks) for t in item[1:]] == expected_stream(tokenizer, docs)


def test_packing_a_shuffled_view(tokenizer, tmp_path):
    data_set, data = tokenized(tokenizer, DOCS, tmp_path, seq_len=32)
    view = data_set.shuffle(seed=0)
    order = [DOCS[i] for i in view._indices.column(0).to_pylist()]
    blocks = items(pack(view, tokenizer, data))
    assert [t for block in blocks for t in block[1:]] == expected_stream(tokenizer, order)


def test_line_by_line_keeps_every_token_within_each_line(tokenizer, tmp_path):
    data_set, data = tokenized(tokenizer, DOCS, tmp_path, seq_len=24, packing=False)
    chunks = pack(data_set, tokenizer, data)
    assert isinstance(chunks, DocumentChunks)
    got = items(chunks)
    assert all(c[0] == tokenizer.cls_token_id and c[-1] == tokenizer.sep_token_id and len(c) <= 24 for c in got)
    rebuilt, position = [], 0
    for doc in DOCS:
        ids = tokenizer(doc, add_special_tokens=False)["input_ids"]
        pieces = []
        while sum(map(len, pieces)) < len(ids):
            pieces.append(got[position][1:-1])
            position += 1
        rebuilt.append([t for piece in pieces for t in piece])
        assert rebuilt[-1] == ids
    assert position == len(got)


def test_line_by_line_lengths_without_reading_items(tokenizer, tmp_path):
    data_set, data = tokenized(tokenizer, DOCS, tmp_path, seq_len=24, packing=False)
    chunks = pack(data_set, tokenizer, data)
    lengths = chunks.lengths().tolist()
    assert lengths == [len(item) for item in items(chunks)]
    assert min(lengths) < 24 == max(lengths)  # split documents and short ones both


@pytest.mark.parametrize("tokens_at_once", [1, 7, 1 << 22])
def test_document_frequencies_count_each_document_once_however_it_is_cut(tokenizer, tmp_path, tokens_at_once):
    """Counted in slices of any size, each token's documents are those of the texts themselves, not of the items a
    long document is cut into; the prefix and separator are in every document."""
    data_set, data = tokenized(tokenizer, DOCS, tmp_path, seq_len=12, packing=False)
    chunks = pack(data_set, tokenizer, data)
    assert len(chunks) > len(DOCS)  # some documents are cut
    vocab = len(tokenizer)
    counts, documents = chunks.document_frequencies(vocab, tokens_at_once=tokens_at_once)
    expected = np.zeros(vocab, dtype=np.int64)
    for doc in DOCS:
        expected[sorted(set(tokenizer(doc, add_special_tokens=False)["input_ids"]))] += 1
    expected[[tokenizer.cls_token_id, tokenizer.sep_token_id]] = len(DOCS)
    assert documents == len(DOCS) and counts.tolist() == expected.tolist()


@pytest.mark.parametrize("packing", [True, False])
def test_streaming_gives_the_same_items_as_map_style(tokenizer, tmp_path, packing):
    data_set, data = tokenized(tokenizer, DOCS, tmp_path, seq_len=40, packing=packing)
    stream_set = tokenize_corpus(datasets.Dataset.from_dict({"text": DOCS}).to_iterable_dataset(3), tokenizer, data)
    streamed = pack(stream_set, tokenizer, data)
    assert isinstance(streamed, StreamedBlocks)
    assert items(streamed) == items(pack(data_set, tokenizer, data))


def test_streamed_parts_split_by_node_cover_the_corpus_once(tokenizer, tmp_path):
    data = DataArgs(seq_len=1000, packing=False)  # one item per document, to count documents
    stream_set = tokenize_corpus(datasets.Dataset.from_dict({"text": DOCS}).to_iterable_dataset(4), tokenizer, data)
    whole = pack(stream_set, tokenizer, data)
    parts = [items(whole.split_by_node(rank, 2)) for rank in range(2)]
    assert len(parts[0]) and len(parts[1])
    assert sorted(parts[0] + parts[1]) == sorted(items(whole))


def test_packed_blocks_pickle_without_their_tokens(tokenizer, tmp_path):
    import pickle

    data_set, data = tokenized(tokenizer, DOCS, tmp_path, seq_len=32)
    blocks = pack(data_set, tokenizer, data)
    copy = pickle.loads(pickle.dumps(blocks))
    assert items(copy) == items(blocks)
    assert blocks[-1]["input_ids"].tolist() == items(blocks)[-1]
    with pytest.raises(IndexError):
        blocks[len(blocks)]


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 30), min_size=1, max_size=25),
    seq_len=st.integers(3, 20),
    with_cls=st.booleans(),
)
def test_packing_property(lengths, seq_len, with_cls):
    docs = [list(range(100 * i, 100 * i + n)) for i, n in enumerate(lengths)]
    data_set = datasets.Dataset.from_dict({"input_ids": docs})
    cls = 7 if with_cls else None
    blocks = items(PackedBlocks(data_set, seq_len, cls, -1))
    streamed = [list(b) for b in text_data._pack_stream(docs, seq_len, cls, -1)]
    assert blocks == streamed
    body = [block[1:] if with_cls else block for block in blocks]
    assert [t for b in body for t in b] == [t for doc in docs for t in [*doc, -1]]
    assert all(len(block) == seq_len for block in blocks[:-1])


def test_corpus_to_blocks_end_to_end(tokenizer, tmp_path):
    path = write(tmp_path / "corpus.txt", DOCS)
    data = args(tmp_path, path, seq_len=32, validation_fraction=0.1)
    train, validation = (pack(tokenize_corpus(split, tokenizer, data), tokenizer, data) for split in load_corpus(data))
    assert isinstance(train, PackedBlocks) and isinstance(validation, PackedBlocks)
    n_tokens = sum(len(item) - 1 for item in items(train)) + sum(len(item) - 1 for item in items(validation))
    assert n_tokens == len(expected_stream(tokenizer, DOCS))
    assert train[0]["input_ids"].dtype == torch.long


def test_streamed_corpus_tokens_are_estimated_from_a_sample(tmp_path, tokenizer):
    """`--dry-run` on a stream: tokens per byte of the first documents times the files' bytes, which count the
    held-out head too, so the estimate errs high by about its share."""
    path = write(tmp_path / "corpus.txt", DOCS)
    data = args(tmp_path, path, streaming=True, validation_documents=20)
    train, _ = load_corpus(data)
    exact = sum(len(tokenizer(row["text"], add_special_tokens=False)["input_ids"]) + 1 for row in train)
    tokens, how = estimate_tokens(train, tokenizer, data, sample=100)
    assert how.startswith("estimate: ") and "bytes of files" in how
    assert exact < tokens < 1.2 * exact
    synthetic = DataArgs(streaming=True, synthetic_documents=300, validation_documents=20)
    tokens, how = estimate_tokens(load_corpus(synthetic)[0], tokenizer, synthetic, sample=100)
    assert "x 280" in how and tokens > 0
