import random

import pytest
from transformers import AutoTokenizer

from hfssl.errors import UsageError
from hfssl.tokenizer import KINDS, train_tokenizer

SYLLABLES = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "be", "du", "gan", "tor", "vel", "shi", "qua", "xo"]


def make_corpus(n_sentences: int = 1500, n_words: int = 2000, seed: int = 0) -> list[str]:
    """Sentences over invented words, many more words than a small vocabulary holds, so words split into pieces."""
    rng = random.Random(seed)
    words = ["".join(rng.choices(SYLLABLES, k=rng.randint(1, 4))) for _ in range(n_words)]
    sentences = []
    for _ in range(n_sentences):
        sentence = " ".join(rng.choices(words, k=rng.randint(3, 20)))
        sentences.append(sentence[0].upper() + sentence[1:] + rng.choice([".", "!", "?", ""]))
    return sentences


CORPUS = make_corpus()
VOCAB_SIZE = {"wordpiece": 400, "bpe": 500, "unigram": 400}


@pytest.fixture(scope="module", params=KINDS)
def reloaded(request, tmp_path_factory):
    kind = request.param
    tokenizer = train_tokenizer(CORPUS, kind=kind, vocab_size=VOCAB_SIZE[kind], model_max_length=128)
    path = tmp_path_factory.mktemp(kind)
    tokenizer.save_pretrained(path)
    return kind, tokenizer, AutoTokenizer.from_pretrained(path)


def test_reloads_as_fast_tokenizer_with_specials(reloaded):
    kind, trained, tokenizer = reloaded
    assert tokenizer.is_fast
    assert tokenizer.model_max_length == 128
    for name in ("cls_token", "sep_token", "pad_token", "mask_token", "unk_token"):
        token = getattr(tokenizer, name)
        assert token is not None, name
        assert tokenizer.convert_tokens_to_ids(token) != tokenizer.unk_token_id or name == "unk_token"
    assert len({tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id, tokenizer.mask_token_id}) == 4
    assert len(tokenizer) == len(trained)
    assert len(tokenizer) <= VOCAB_SIZE[kind]
    # The trained tokenizer and its reloaded copy tokenize alike.
    assert tokenizer(CORPUS[:20])["input_ids"] == trained(CORPUS[:20])["input_ids"]


def test_specials_frame_single_and_pair(reloaded):
    _, _, tokenizer = reloaded
    ids = tokenizer(CORPUS[0])["input_ids"]
    assert ids[0] == tokenizer.cls_token_id
    assert ids[-1] == tokenizer.sep_token_id
    assert tokenizer.unk_token_id not in ids
    specials = set(tokenizer.all_special_ids)
    assert not specials & set(ids[1:-1])
    pair = tokenizer(CORPUS[1], CORPUS[2])["input_ids"]
    assert pair[0] == tokenizer.cls_token_id and pair[-1] == tokenizer.sep_token_id
    assert sum(i in specials for i in pair) in (3, 4)  # BERT: [CLS] A [SEP] B [SEP]; RoBERTa: <s> A </s></s> B </s>


def test_words_split_into_pieces(reloaded):
    _, _, tokenizer = reloaded
    encoding = tokenizer(CORPUS[:50])
    n_words = sum(len(set(w for w in encoding.word_ids(i) if w is not None)) for i in range(50))
    n_tokens = sum(len(ids) - 2 for ids in encoding["input_ids"])
    assert n_tokens > 1.2 * n_words  # a small vocabulary cannot hold 2000 invented words whole


def test_decode_round_trips(reloaded):
    kind, _, tokenizer = reloaded
    for text in CORPUS[:50]:
        decoded = tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True)
        # The default lowercases; WordPiece's decoder may also space out punctuation.
        expected, got = " ".join(text.lower().split()), " ".join(decoded.split())
        if kind == "wordpiece":
            expected, got = expected.replace(" ", ""), got.replace(" ", "")
        assert got == expected


@pytest.mark.parametrize("reloaded", ["bpe"], indirect=True)
def test_bpe_mask_token_takes_the_space_before_it(reloaded):
    _, _, tokenizer = reloaded
    with_mask = tokenizer("kalo <mask> mine")["input_ids"]
    # " <mask>" stands where " su" would: the space is not left behind as a token of its own.
    expected = tokenizer("kalo")["input_ids"][:-1] + [tokenizer.mask_token_id] + tokenizer("mine")["input_ids"][1:]
    assert with_mask == expected


@pytest.mark.parametrize("kind", KINDS)
def test_case_is_kept_when_asked(kind):
    tokenizer = train_tokenizer(CORPUS[:300], kind=kind, vocab_size=VOCAB_SIZE[kind], lowercase=False)
    text = CORPUS[0]
    decoded = tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True)
    assert decoded.replace(" ", "")[0] == text[0]
    assert text[0].isupper()


def test_unknown_kind_names_the_choices():
    with pytest.raises(UsageError, match="wordpiece.*bpe.*unigram"):
        train_tokenizer(CORPUS, kind="sentencepiece")


@pytest.mark.parametrize("texts", [[], ["", "   ", "\n"], iter(["\t"])])
def test_blank_corpus_is_refused(texts):
    with pytest.raises(UsageError, match="corpus has no text"):
        train_tokenizer(texts)


def test_generator_corpus_is_consumed_once():
    tokenizer = train_tokenizer((text for text in CORPUS[:300]), kind="wordpiece", vocab_size=300)
    assert len(tokenizer) > 50


@pytest.mark.parametrize("kind", KINDS)
def test_training_twice_gives_the_same_tokenizer(kind):
    # Small, tie-heavy input: plain WordPieceTrainer learns different pieces on some of these repeats.
    texts = ["Wel come to the Tok en izers libr ary.", "to kens and tok ens"] * 3 + CORPUS[:40]
    probe = texts[:8] + CORPUS[-20:]
    trained = [train_tokenizer(texts, kind=kind, vocab_size=VOCAB_SIZE[kind], min_frequency=1) for _ in range(12)]
    assert len({tuple(t.tokenize(" ".join(probe))) for t in trained}) == 1
    if kind != "unigram":
        # The Unigram trainer numbers the characters it appends last in hash-map order (an upstream limitation),
        # so only its pieces, not their ids, repeat.
        assert len({tuple(sorted(t.get_vocab().items())) for t in trained}) == 1


@pytest.mark.parametrize("kind, vocab_size", [("wordpiece", 10), ("unigram", 10), ("bpe", 200)])
def test_tiny_vocabulary_is_refused(kind, vocab_size):
    with pytest.raises(UsageError, match="vocab_size"):
        train_tokenizer(CORPUS[:10], kind=kind, vocab_size=vocab_size)


def test_tokenizer_train_does_not_replace_a_file_unless_told(tmp_path, capsys):
    from hfssl.__main__ import main

    out = tmp_path / "notes.txt"
    out.write_text("keep me")
    args = ["tokenizer", "train", "--data.synthetic_documents", "200", "--tokenizer.vocab_size", "300", "--out"]
    with pytest.raises(SystemExit) as stop:
        main([*args, str(out)])
    assert stop.value.code == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("notes.txt: is a file; pass --overwrite to replace it, or choose another output")
    )
    assert out.read_text() == "keep me"
    main([*args, str(out), "--overwrite"])
    assert (out / "tokenizer.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no hidden .notes.txt.old left beside it
