"""The embedded default text corpus: English-like documents about eight topics, generated from a small grammar.

Masked-LM pretraining needs something to learn, so the grammar has structure a model can only predict from context:
verbs select their objects (you slice an onion and boil soup), subjects agree with verbs across relative clauses and
prepositional phrases, articles agree with the next word (a/an), numbers agree with nouns, time phrases agree with
tense, and pronouns stay those of the document's protagonist. Most sentences keep to the document's topic, some come
from shared or other topics' vocabulary, so the topic label (kept with each document) makes the same corpus a
classification task that a pretrained encoder learns from fewer labels than a randomly initialised one. The words
and their inflections are `hfssl.data.synthetic_lexicon`.
"""

from __future__ import annotations

import random
import re
from typing import Any

from hfssl.data.synthetic_lexicon import (
    BUY_VERBS,
    CITIES,
    CONTAINERS,
    FEELINGS,
    FEMALE,
    GIVE_VERBS,
    GO,
    LEXICON,
    MALE,
    MONTHS,
    NUMBERS,
    PRONOUNS,
    RELATIONS,
    SAY_VERBS,
    SHARED_ADJECTIVES,
    SHARED_NOUNS,
    SHARED_VERBS,
    START,
    TALK,
    TIMES,
    VISIT_VERBS,
    WRITE,
    Noun,
    Pick,
    Topic,
    Verb,
    article,
    zipf,
)

TOPICS: tuple[str, ...] = ("cooking", "sports", "weather", "travel", "music", "computing", "farming", "medicine")
_OTHER_TOPICS = {topic: tuple(LEXICON[t] for t in TOPICS if t != topic) for topic in TOPICS}


# --------------------------------------------------------------------------- documents


def _cap(sentence: str) -> str:
    return sentence[0].upper() + sentence[1:]


class _Writer:
    """Writes one document: a topic, a protagonist with fixed pronouns, and a dominant tense."""

    def __init__(self, rng: random.Random, topic: str):
        self.rng = rng
        self.topic = LEXICON[topic]
        self.others = _OTHER_TOPICS[topic]
        self.tense = "past" if rng.random() < 0.55 else "present"
        r = rng.random()
        if r < 0.75:
            pronoun = "she" if rng.random() < 0.5 else "he"
            self.name = (FEMALE if pronoun == "she" else MALE)(rng)
            self.names = (self.name,)
        elif r < 0.87:
            pronoun = "she" if rng.random() < 0.5 else "he"
            self.name = "the " + self.topic.people(rng)[0]
            self.names = ()
        else:
            pronoun = "they"
            first, second = FEMALE(rng), MALE(rng)
            self.name = f"{first} and {second}" if rng.random() < 0.5 else f"{second} and {first}"
            self.names = (first, second)
        self.plural = pronoun == "they"
        self.subj, self.obj, self.poss = PRONOUNS[pronoun]
        self.mentioned = False
        # How often this writer runs two clauses into one sentence, so document lengths vary widely.
        self.run_on = rng.random() ** 2 * 0.9

    # ----- pieces

    def subject(self) -> str:
        if self.mentioned and self.rng.random() < 0.65:
            return self.subj
        self.mentioned = True
        return self.name

    def other_name(self) -> str:
        while True:
            name = (FEMALE if self.rng.random() < 0.5 else MALE)(self.rng)
            if name not in self.names:
                return name

    def pick_tense(self) -> str:
        r = self.rng.random()
        return self.tense if r < 0.8 else ("future" if r < 0.9 else "progressive")

    def conj(self, verb: Verb, plural: bool, tense: str) -> str:
        if tense == "present":
            return verb[0] if plural else verb[1]
        if tense == "past":
            return verb[2]
        if tense == "future":
            return "will " + verb[0]
        return self.be(plural, self.tense) + " " + verb[3]

    @staticmethod
    def be(plural: bool, tense: str) -> str:
        if tense == "past":
            return "were" if plural else "was"
        if tense == "future":
            return "will be"
        return "are" if plural else "is"

    def do(self, plural: bool) -> str:
        return "did" if self.tense == "past" else ("do" if plural else "does")

    def time(self, tense: str, p: float = 0.35) -> str:
        if self.rng.random() >= p:
            return ""
        if tense == "progressive":
            tense = "progressive" if self.tense == "present" else "past"
        return " " + TIMES[tense](self.rng)

    def adjective(self, t: Topic) -> str:
        return (t.adjectives if self.rng.random() < 0.75 else SHARED_ADJECTIVES)(self.rng)

    def noun_phrase(self, noun: Noun, t: Topic) -> str:
        rng = self.rng
        singular, plural_form, mass = noun
        head = f"{self.adjective(t)} " if rng.random() < 0.4 else ""
        r = rng.random()
        if mass:
            head += singular
            det = "the" if r < 0.4 else "some" if r < 0.65 else self.poss if r < 0.85 else ""
        elif rng.random() < 0.35:
            head += plural_form
            det = "the" if r < 0.4 else "some" if r < 0.6 else self.poss if r < 0.8 else ""
        else:
            head += singular
            det = article(head) if r < 0.45 else "the" if r < 0.85 else self.poss
        return f"{det} {head}" if det else head

    def the_noun(self, noun: Noun) -> tuple[str, bool]:
        """'the tomato' or 'the tomatoes', and whether it is plural."""
        plural = not noun[2] and self.rng.random() < 0.4
        return "the " + (noun[1] if plural else noun[0]), plural

    # ----- sentences about a topic (the document's, or another one as a distractor)

    def action(self, t: Topic) -> str:
        rng = self.rng
        verbs, nouns = t.frames(rng)
        verb = verbs(rng) if rng.random() < 0.7 else SHARED_VERBS(rng)
        tense = self.pick_tense()
        s = f"{self.subject()} {self.conj(verb, self.plural, tense)} {self.noun_phrase(nouns(rng), t)}"
        r = rng.random()
        if r < 0.3:
            s += f" in the {t.places(rng)}"
        elif r < 0.4:
            s += f" with {self.poss} {RELATIONS(rng)[0]}"
        return s + self.time(tense) + "."

    def coordination(self, t: Topic) -> str:
        rng = self.rng
        verbs, nouns = t.frames(rng)
        first = f"{self.subject()} {self.conj(verbs(rng), self.plural, self.tense)} {self.noun_phrase(nouns(rng), t)}"
        verbs, nouns = t.frames(rng)
        if rng.random() < 0.6:
            return f"{first} and {self.conj(verbs(rng), self.plural, self.tense)} {self.noun_phrase(nouns(rng), t)}."
        negated = f"{self.do(self.plural)} not {verbs(rng)[0]}"
        return f"{first}, but {self.subj} {negated} {self.noun_phrase(nouns(rng), t)}."

    def description(self, t: Topic) -> str:
        rng = self.rng
        _, nouns = t.frames(rng)
        subject, plural = self.the_noun(nouns(rng))
        if rng.random() < 0.4:
            subject += f" in the {t.places(rng)}"
        adjective = self.adjective(t)
        s = f"{subject} {self.be(plural, self.tense)} {adjective}"
        other = t.adjectives(rng)
        if rng.random() < 0.35 and other != adjective:
            s += f" and {other}"
        return s + "."

    def question(self, t: Topic) -> str:
        rng = self.rng
        verbs, nouns = t.frames(rng)
        r = rng.random()
        if r < 0.55:
            subject = self.subject()
            return f"{self.do(self.plural)} {subject} {verbs(rng)[0]} {self.noun_phrase(nouns(rng), t)}?"
        if r < 0.8:
            subject, plural = self.the_noun(nouns(rng))
            return f"where {self.be(plural, self.tense)} {subject}?"
        subject = self.subject()
        return f"why {self.do(self.plural)} {subject} {verbs(rng)[0]} {self.the_noun(nouns(rng))[0]}?"

    def subject_relative(self, t: Topic) -> str:
        rng = self.rng
        verbs, nouns = t.frames(rng)
        plural = rng.random() < 0.3
        who = t.people(rng)[1 if plural else 0]
        relation = RELATIONS(rng)[1 if plural else 0]
        does = self.conj(verbs(rng), plural, self.tense)
        be = self.be(plural, self.tense)
        return f"the {who} who {does} {self.noun_phrase(nouns(rng), t)} {be} {self.poss} {relation}."

    def object_relative(self, t: Topic) -> str:
        rng = self.rng
        verbs, nouns = t.frames(rng)
        obj, _ = self.the_noun(nouns(rng))
        main = self.conj(SHARED_VERBS(rng), self.plural, self.tense)
        s = f"{self.subject()} {main} {obj} that the {t.people(rng)[0]} {self.conj(verbs(rng), False, self.tense)}"
        if rng.random() < 0.4:
            s += f" in the {t.places(rng)}"
        return s + "."

    def because(self, t: Topic) -> str:
        rng = self.rng
        _, nouns = t.frames(rng)
        cause, plural = self.the_noun(nouns(rng))
        verbs, nouns = t.frames(rng)
        effect = f"{self.conj(verbs(rng), self.plural, self.tense)} {self.noun_phrase(nouns(rng), t)}"
        return f"because {cause} {self.be(plural, self.tense)} {self.adjective(t)}, {self.subject()} {effect}."

    def quantity(self, t: Topic) -> str:
        rng = self.rng
        _, nouns = t.frames(rng)
        singular, plural_form, mass = nouns(rng)
        value, word = NUMBERS(rng)
        if mass:
            container = CONTAINERS(rng)
            things = f"{word} {container[0] if value == 1 else container[1]} of {singular}"
        else:
            things = f"{word} {singular if value == 1 else plural_form}"
        tense = self.pick_tense()
        s = f"{self.subject()} {self.conj(BUY_VERBS(rng), self.plural, tense)} {things}"
        if rng.random() < 0.5:
            s += f" for {rng.randint(2, 99)} dollars"
        return s + self.time(tense, 0.25) + "."

    def date(self, t: Topic) -> str:
        rng = self.rng
        when = f"{MONTHS(rng)} {rng.randint(1, 28)}"
        if rng.random() < 0.5:
            start = self.conj(START, False, self.tense)
            return f"the {t.events(rng)} {start} at {rng.randint(1, 12)} o'clock on {when}."
        return f"on {when}, {self.subject()} {self.conj(GO, self.plural, self.tense)} to the {t.places(rng)}."

    def opinion(self, t: Topic) -> str:
        rng = self.rng
        _, nouns = t.frames(rng)
        thing, plural = self.the_noun(nouns(rng))
        says = self.conj(SAY_VERBS(rng), self.plural, self.tense)
        return f"{self.subject()} {says} that {thing} {self.be(plural, self.tense)} {self.adjective(t)}."

    def gift(self, t: Topic) -> str:
        rng = self.rng
        _, nouns = t.frames(rng)
        giver = f"{self.poss} {RELATIONS(rng)[0]}" if rng.random() < 0.6 else f"the {t.people(rng)[0]}"
        tense = self.pick_tense()
        gives = self.conj(GIVE_VERBS(rng), False, tense)
        return f"{giver} {gives} {self.obj} {self.noun_phrase(nouns(rng), t)}{self.time(tense, 0.25)}."

    # ----- sentences with no topic

    def visit(self) -> str:
        tense = self.pick_tense()
        verb = self.conj(VISIT_VERBS(self.rng), self.plural, tense)
        whom = f"{self.poss} {RELATIONS(self.rng)[0]}"
        return f"{self.subject()} {verb} {whom} in {CITIES(self.rng)}{self.time(tense)}."

    def day(self) -> str:
        adjective = SHARED_ADJECTIVES(self.rng)
        return f"it {self.be(False, self.tense)} {article(adjective)} {adjective} day in {CITIES(self.rng)}."

    def feeling(self) -> str:
        tense = self.tense
        return f"{self.subject()} {self.be(self.plural, tense)} {FEELINGS(self.rng)}{self.time(tense)}."

    def home(self) -> str:
        return f"after that, {self.subject()} {self.conj(GO, self.plural, self.tense)} home."

    def talk(self) -> str:
        talks = self.conj(TALK, self.plural, self.tense)
        noun = SHARED_NOUNS(self.rng)[0]
        return f"{self.subject()} {talks} with {self.poss} {RELATIONS(self.rng)[0]} about the {noun}."

    def letter(self) -> str:
        thing = SHARED_NOUNS(self.rng)[0]
        writes = self.conj(WRITE, False, self.tense)
        return f"{self.other_name()} {writes} {self.obj} {article(thing)} {thing}."

    # ----- the document

    def document(self) -> str:
        rng = self.rng
        sentences = [_cap(self.action(self.topic))]
        words = sentences[0].count(" ") + 1
        target = rng.randint(2, 8)
        while (len(sentences) < target or words < 20) and words < 130:
            r = rng.random()
            if r < 0.72:
                sentence = _TOPIC_SENTENCES(rng)(self, self.topic)
            elif r < 0.87:
                sentence = _PLAIN_SENTENCES(rng)(self)
            else:
                sentence = _TOPIC_SENTENCES(rng)(self, rng.choice(self.others))
            if sentence.endswith(".") and rng.random() < self.run_on:
                sentence = sentence[:-1] + _JOINERS(rng) + _CLAUSES(rng)(self, self.topic)
            sentences.append(_cap(sentence))
            words += sentence.count(" ") + 1
        return " ".join(sentences)


_TOPIC_SENTENCES = Pick(
    [
        _Writer.action, _Writer.coordination, _Writer.description, _Writer.question, _Writer.subject_relative,
        _Writer.object_relative, _Writer.because, _Writer.quantity, _Writer.date, _Writer.opinion, _Writer.gift,
    ],
    [28, 10, 10, 8, 7, 8, 6, 8, 5, 5, 5],
)  # fmt: skip
_CLAUSES = Pick(
    [_Writer.action, _Writer.coordination, _Writer.description, _Writer.opinion, _Writer.quantity], [4, 2, 2, 1, 1]
)
_JOINERS = zipf([", and ", ", so ", " because ", ", but ", " while ", ", and then "])
_PLAIN_SENTENCES = Pick(
    [_Writer.visit, _Writer.day, _Writer.feeling, _Writer.home, _Writer.talk, _Writer.letter], [3, 2, 2, 1, 2, 2]
)


def synthetic_documents(num_documents: int, seed: int = 0) -> list[dict[str, str]]:
    """Generate English-like documents, each mostly about one of `TOPICS`.

    Args:
        num_documents: how many documents.
        seed: the same seed always gives the same documents (a private `random.Random`; the global RNG is untouched).

    Returns:
        `[{"text": ..., "topic": ...}, ...]`; documents have 2-8 sentences, roughly 20-150 words, and topics are drawn
        uniformly.
    """
    rng = random.Random(seed)
    docs = []
    for _ in range(num_documents):
        topic = TOPICS[rng.randrange(len(TOPICS))]
        docs.append({"text": _Writer(rng, topic).document(), "topic": topic})
    return docs


class _Perturbed(random.Random):
    """A random stream that follows `seed`'s, except that each draw is, with probability `rate`, replaced by an
    unrelated one. The stream stays in step with `seed`'s (it draws the replaced value too), so a writer fed by it
    makes the text `seed` makes with about `rate` of its choices (words, names, sentence kinds) made again."""

    def __init__(self, seed: int, noise_seed: int, rate: float):
        self.base, self.noise, self.rate = random.Random(seed), random.Random(noise_seed), rate
        super().__init__(seed)

    def random(self) -> float:
        value = self.base.random()
        return self.noise.random() if self.noise.random() < self.rate else value


# The grades of `graded_pairs`: (score, share of the writer's choices made again; None: an unrelated passage).
_GRADES = ((4.0, 0.04), (3.0, 0.12), (2.0, 0.3), (1.0, None), (0.0, None))


def graded_pairs(num_pairs: int, seed: int = 0, sentences: int = 2) -> list[dict[str, Any]]:
    """Passage pairs whose similarity is known by construction, for semantic-similarity scores (Spearman) with no
    downloads. Early choices steer later ones (a redrawn sentence kind rewrites its sentence), so even score 4
    shares only about a third of its words with its anchor, and the scores rank pairs by how much of one text was
    written again rather than by word overlap alone.

    Each pair's first passage is the start (`sentences` sentences) of a generated document; the second is the same
    document written again with a share of its random choices (which sentence, which word, which name) redrawn:
    4% (score 4), 12% (3) or 30% (2); or a passage of another document on the same topic (1) or on another topic (0).
    Scores are drawn uniformly.

    Returns:
        `[{"sentence1": ..., "sentence2": ..., "score": ..., "topic": ...}, ...]`; the same seed gives the same pairs.
    """
    rng = random.Random(seed)
    pairs = []
    while len(pairs) < num_pairs:
        topic, doc_seed = TOPICS[rng.randrange(len(TOPICS))], rng.getrandbits(48)
        anchor = _start(_Writer(random.Random(doc_seed), topic).document(), sentences)
        score, rate = _GRADES[rng.randrange(len(_GRADES))]
        if rate is not None:
            text = _Writer(_Perturbed(doc_seed, rng.getrandbits(48), rate), topic).document()
        else:
            other = topic if score else rng.choice([t for t in TOPICS if t != topic])
            text = _Writer(random.Random(rng.getrandbits(48)), other).document()
        second = _start(text, sentences)
        if second != anchor:  # a redraw that changed nothing within the passage is no pair of that grade
            pairs.append({"sentence1": anchor, "sentence2": second, "score": score, "topic": topic})
    return pairs


def _start(text: str, sentences: int) -> str:
    return " ".join(re.split(r"(?<=[.!?]) ", text)[:sentences])
