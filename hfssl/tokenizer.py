"""Tokenizer training: a corpus of strings -> a fast transformers tokenizer that `AutoTokenizer` reloads."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from hfssl.config import TokenizerArgs
from hfssl.errors import UsageError

KINDS = ("wordpiece", "bpe", "unigram")

# Below this many ordinary pieces a tokenizer is too small to be of any use; byte-level BPE needs its whole
# 256-symbol byte alphabet on top, since every byte must stay representable.
_MIN_PIECES = 16
_BYTE_ALPHABET = 256


def train_tokenizer(
    texts: Iterable[str],
    kind: str = "wordpiece",
    vocab_size: int = 8000,
    min_frequency: int = 2,
    lowercase: bool = True,
    model_max_length: int = 512,
) -> PreTrainedTokenizerFast:
    """Train a subword tokenizer on `texts` with the `tokenizers` library.

    Args:
        texts: the training corpus, one string per document or line; blank strings are skipped.
        kind: "wordpiece" (BERT-style, `##` continues a word), "bpe" (RoBERTa-style byte-level BPE, `Ġ` starts a
            word) or "unigram" (SentencePiece-style Unigram, `▁` starts a word).
        vocab_size: the largest vocabulary to learn, special tokens included.
        min_frequency: how often a merge must occur to be learned (WordPiece and BPE; Unigram has no such knob).
        lowercase: lowercase (and, for WordPiece, strip accents from) the text before tokenizing.
        model_max_length: the longest input the model takes, stored in the saved tokenizer config.

    Returns:
        A fast tokenizer with its special tokens set and a post-processor that adds them; `save_pretrained` then
        `AutoTokenizer.from_pretrained` gives it back.
    """
    if kind not in KINDS:
        raise UsageError(f"unknown tokenizer kind {kind!r}; choose one of {', '.join(KINDS)}")
    if min_frequency < 1:
        raise UsageError(f"min_frequency must be at least 1, got {min_frequency}")
    if model_max_length < 1:
        raise UsageError(f"model_max_length must be at least 1, got {model_max_length}")
    if iter(texts) is texts:  # a one-shot iterator; WordPiece training reads the corpus twice
        texts = list(texts)
    corpus = _Nonblank(texts)
    build = {"wordpiece": _wordpiece, "bpe": _bpe, "unigram": _unigram}[kind]
    return build(corpus, vocab_size, min_frequency, lowercase, model_max_length)


class _Nonblank:
    """The non-blank texts, re-iterable; fails before any training starts if there are none."""

    def __init__(self, texts: Iterable[str]):
        self.texts = texts
        if next(iter(self), None) is None:
            raise UsageError("the tokenizer corpus has no text: every line is empty or blank")

    def __iter__(self) -> Iterator[str]:
        return (text for text in self.texts if text and not text.isspace())


def _check_vocab_size(vocab_size: int, kind: str, n_specials: int, floor: int) -> None:
    smallest = n_specials + floor
    if vocab_size < smallest:
        raise UsageError(f"vocab_size {vocab_size} is too small for a {kind} tokenizer; use at least {smallest}")


def _template(cls: str, sep: str, tokenizer: Tokenizer) -> processors.TemplateProcessing:
    return processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, tokenizer.token_to_id(cls)), (sep, tokenizer.token_to_id(sep))],
    )


def _wordpiece(
    corpus: Iterable[str], vocab_size: int, min_frequency: int, lowercase: bool, model_max_length: int
) -> PreTrainedTokenizerFast:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    _check_vocab_size(vocab_size, "wordpiece", len(specials), _MIN_PIECES)

    def fit(vocab_size: int, reserved: list[str]) -> Tokenizer:
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=specials + reserved,
            continuing_subword_prefix="##",
            show_progress=False,
        )
        tokenizer.train_from_iterator(corpus, trainer=trainer)
        return tokenizer

    # The trainer numbers the "##x" pieces in hash-map order, which changes from process to process, and breaks ties
    # between equally frequent merges by those numbers, so two trainings on the same text can learn different
    # vocabularies (tokenizers#1794). A cheap first pass (no merges) finds those pieces; reserving them in sorted
    # order fixes their numbers, and with them the whole result.
    continuations = sorted(
        token for token in fit(1, []).get_vocab(with_added_tokens=False) if token.startswith("##") and len(token) > 2
    )
    vocab = fit(vocab_size, continuations).get_vocab(with_added_tokens=False)
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.add_special_tokens(specials)
    tokenizer.post_processor = _template("[CLS]", "[SEP]", tokenizer)
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
    )


def _bpe(
    corpus: Iterable[str], vocab_size: int, min_frequency: int, lowercase: bool, model_max_length: int
) -> PreTrainedTokenizerFast:
    # lstrip lets "a <mask> b" put the mask where " b" would have been, as fill-mask expects of RoBERTa.
    mask = AddedToken("<mask>", lstrip=True, rstrip=False, special=True)
    specials = ["<s>", "<pad>", "</s>", "<unk>", mask]
    _check_vocab_size(vocab_size, "bpe", len(specials), _BYTE_ALPHABET)
    tokenizer = Tokenizer(models.BPE())
    if lowercase:
        tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    tokenizer.post_processor = processors.RobertaProcessing(
        ("</s>", tokenizer.token_to_id("</s>")), ("<s>", tokenizer.token_to_id("<s>")), add_prefix_space=True
    )
    tokenizer.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token=mask,
        model_max_length=model_max_length,
    )


def _unigram(
    corpus: Iterable[str], vocab_size: int, min_frequency: int, lowercase: bool, model_max_length: int
) -> PreTrainedTokenizerFast:
    del min_frequency  # Unigram prunes by likelihood, not by count
    specials = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    _check_vocab_size(vocab_size, "unigram", len(specials), _MIN_PIECES)
    tokenizer = Tokenizer(models.Unigram())
    steps = [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    if lowercase:
        steps.append(normalizers.Lowercase())
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>", show_progress=False
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    tokenizer.post_processor = _template("[CLS]", "[SEP]", tokenizer)
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        unk_token="<unk>",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
    )


class CorpusTexts:
    """The corpus' "text" column, at most `limit` documents, iterable more than once (tokenizer training reads
    it twice)."""

    def __init__(self, corpus, limit: int | None):
        self.corpus, self.limit = corpus, limit

    def __iter__(self):
        for i, example in enumerate(self.corpus):
            if self.limit is not None and i >= self.limit:
                return
            yield example["text"]


def train_on_corpus(corpus, args: TokenizerArgs, model_max_length: int) -> PreTrainedTokenizerFast:
    """A tokenizer trained as `args` says on the "text" column of `corpus` (at most `args.max_documents`)."""
    return train_tokenizer(
        CorpusTexts(corpus, args.max_documents),
        kind=args.kind,
        vocab_size=args.vocab_size,
        min_frequency=args.min_frequency,
        lowercase=args.lowercase,
        model_max_length=model_max_length,
    )


def for_generation(tokenizer: PreTrainedTokenizerFast) -> None:
    """Make `tokenizer` encode a prompt as a causal LM continues it: the sequence-start token (cls, else bos) before
    it and no separator after it, which would tell the model the document has ended. In place; training reads
    tokens without specials, so only prompts change."""
    start = tokenizer.cls_token if tokenizer.cls_token is not None else tokenizer.bos_token
    if start is None:
        tokenizer.backend_tokenizer.post_processor = None
        return
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{start} $A", pair=f"{start} $A $B:1", special_tokens=[(start, tokenizer.convert_tokens_to_ids(start))]
    )
