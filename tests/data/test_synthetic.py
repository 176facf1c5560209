import itertools
import re
from collections import Counter

from hfssl.data.synthetic import TOPICS, synthetic_documents

DOCS = synthetic_documents(2000, seed=0)


def test_same_seed_same_documents_other_seed_other_documents():
    assert synthetic_documents(50, seed=0) == DOCS[:50]
    other = synthetic_documents(50, seed=1)
    assert sum(a == b for a, b in zip(other, DOCS[:50], strict=True)) < 5


def test_every_topic_is_well_represented():
    counts = Counter(doc["topic"] for doc in DOCS)
    assert set(counts) == set(TOPICS)
    expected = len(DOCS) / len(TOPICS)
    assert all(0.7 * expected < n < 1.3 * expected for n in counts.values()), counts


def test_documents_are_sentences_of_plain_words():
    for doc in DOCS:
        text = doc["text"]
        assert text.strip() == text and text
        assert re.fullmatch(r"[A-Za-z0-9 ,.?'!]+", text), text
        assert text[-1] in ".?!"
        assert all(sentence[0].isupper() for sentence in re.split(r"(?<=[.?!]) ", text))


def test_articles_agree_with_the_next_word():
    words = " ".join(doc["text"] for doc in DOCS).lower().replace(",", "").replace(".", "").split()
    pairs = list(itertools.pairwise(words))
    assert not [b for a, b in pairs if a == "a" and b[0] in "aeiou"]
    assert not [b for a, b in pairs if a == "an" and b[0] not in "aeiou"]


def test_vocabulary_is_rich_but_learnable():
    words = Counter(" ".join(doc["text"] for doc in DOCS).lower().split())
    lengths = [len(doc["text"].split()) for doc in DOCS]
    assert 1000 < len(words) < 20000
    assert 10 < sum(lengths) / len(lengths) < 200
    # Zipf-like: the commonest words are far more frequent than the median word
    ranked = [n for _, n in words.most_common()]
    assert ranked[0] > 50 * ranked[len(ranked) // 2]


def test_topic_is_predictable_from_the_words():
    # A bag-of-words nearest-centroid classifier fit on half the documents must beat chance by far on the rest;
    # the downstream demo relies on topic being learnable, but not trivially from one word.
    def bag(text):
        return Counter(text.lower().replace(",", "").replace(".", "").split())

    train, test = DOCS[:1000], DOCS[1000:]
    centroids = {topic: Counter() for topic in TOPICS}
    for doc in train:
        centroids[doc["topic"]].update(bag(doc["text"]))
    totals = {topic: sum(c.values()) for topic, c in centroids.items()}

    def predict(text):
        words = bag(text)
        return max(TOPICS, key=lambda t: sum(n * (centroids[t][w] + 0.1) / totals[t] for w, n in words.items()))

    accuracy = sum(predict(doc["text"]) == doc["topic"] for doc in test) / len(test)
    assert accuracy > 3 / len(TOPICS)
