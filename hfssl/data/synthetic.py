"""The embedded default text corpus: English-like documents about eight topics, generated from a small grammar.

Masked-LM pretraining needs something to learn, so the grammar has structure a model can only predict from context:
verbs select their objects (you slice an onion and boil soup), subjects agree with verbs across relative clauses and
prepositional phrases, articles agree with the next word (a/an), numbers agree with nouns, time phrases agree with
tense, and pronouns stay those of the document's protagonist. Most sentences keep to the document's topic, some come
from shared or other topics' vocabulary, so the topic label (kept with each document) makes the same corpus a
classification task that a pretrained encoder learns from fewer labels than a randomly initialised one.
"""

from __future__ import annotations

import bisect
import itertools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

TOPICS: tuple[str, ...] = ("cooking", "sports", "weather", "travel", "music", "computing", "farming", "medicine")

# --------------------------------------------------------------------------- inflection

_VOWELS = frozenset("aeiou")
_IRREGULAR_PLURALS = {
    "loaf": "loaves", "sheep": "sheep", "fish": "fish", "tooth": "teeth", "potato": "potatoes",
    "tomato": "tomatoes", "child": "children", "knife": "knives", "leaf": "leaves", "calf": "calves",
}  # fmt: skip
_IRREGULAR_PAST = {
    "win": "won", "lose": "lost", "catch": "caught", "throw": "threw", "take": "took", "write": "wrote",
    "read": "read", "send": "sent", "feel": "felt", "dig": "dug", "grow": "grew", "drive": "drove", "keep": "kept",
    "sell": "sold", "find": "found", "bring": "brought", "buy": "bought", "see": "saw", "choose": "chose",
    "sing": "sang", "give": "gave", "go": "went", "meet": "met", "say": "said", "think": "thought", "know": "knew",
    "wear": "wore", "begin": "began", "feed": "fed", "lend": "lent", "show": "showed", "make": "made",
    "leave": "left", "hold": "held", "teach": "taught", "tell": "told", "fly": "flew", "swim": "swam",
}  # fmt: skip
# Two-syllable verbs that double their last consonant (British spelling); one-syllable ones follow _SHORT.
_DOUBLED = frozenset({"debug", "label", "cancel", "shovel", "travel"})
_SHORT = re.compile(r"^[^aeiou]*[aeiou][bdgmnprt]$")


def article(word: str) -> str:
    """'a' or 'an' for the word that follows; the vocabulary avoids words where spelling misleads (hour, unit)."""
    return "an" if word[0] in _VOWELS else "a"


def _plural(noun: str) -> str:
    if noun in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[noun]
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in _VOWELS:
        return noun[:-1] + "ies"
    return noun + "s"


def _doubles(verb: str) -> bool:
    return verb in _DOUBLED or bool(_SHORT.match(verb))


def _third_person(verb: str) -> str:
    if verb.endswith(("s", "x", "z", "ch", "sh", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2] not in _VOWELS:
        return verb[:-1] + "ies"
    return verb + "s"


def _past(verb: str) -> str:
    if verb in _IRREGULAR_PAST:
        return _IRREGULAR_PAST[verb]
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and verb[-2] not in _VOWELS:
        return verb[:-1] + "ied"
    return verb + verb[-1] + "ed" if _doubles(verb) else verb + "ed"


def _gerund(verb: str) -> str:
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")):
        return verb[:-1] + "ing"
    return verb + verb[-1] + "ing" if _doubles(verb) else verb + "ing"


# A noun is (singular, plural, mass); a mass noun ("flour") takes no "a" and agrees like a singular.
# A verb is (base, third person singular, past, gerund).
Noun = tuple[str, str, bool]
Verb = tuple[str, str, str, str]


def _nouns(words: str) -> list[Noun]:
    """'onion flour~' -> nouns; a trailing ~ marks a mass noun."""
    out = []
    for word in words.split():
        mass = word.endswith("~")
        word = word.rstrip("~")
        out.append((word, word if mass else _plural(word), mass))
    return out


def _verbs(words: str) -> list[Verb]:
    return [(w, _third_person(w), _past(w), _gerund(w)) for w in words.split()]


class _Pick:
    """Draws items with given weights; `_zipf` weights them 1/rank, so the first listed is the most frequent."""

    def __init__(self, items: Sequence[Any], weights: Sequence[float]):
        self.items = tuple(items)
        self.cum = list(itertools.accumulate(weights))
        self.total = self.cum[-1]

    def __call__(self, rng: random.Random) -> Any:
        return self.items[bisect.bisect(self.cum, rng.random() * self.total)]


def _zipf(items: Sequence[Any] | str) -> _Pick:
    items = items.split() if isinstance(items, str) else items
    return _Pick(items, [1.0 / rank for rank in range(1, len(items) + 1)])


# --------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class _Topic:
    people: _Pick  # nouns: who does this topic's work
    places: _Pick  # strings, used as "in the <place>"
    events: _Pick  # strings, singular: "the <event> started at ..."
    adjectives: _Pick
    frames: _Pick  # (verbs, nouns) pairs: each verb takes each noun of its frame as object


def _topic(people: str, places: str, events: str, adjectives: str, frames: list[tuple[str, str]]) -> _Topic:
    return _Topic(
        people=_zipf(_nouns(people)),
        places=_zipf(places),
        events=_zipf(events),
        adjectives=_zipf(adjectives),
        frames=_zipf([(_zipf(_verbs(v)), _zipf(_nouns(n))) for v, n in frames]),
    )


_LEXICON = {
    "cooking": _topic(
        "chef cook baker waiter butcher",
        "kitchen restaurant bakery market cafe",
        "dinner lunch breakfast feast picnic",
        "fresh hot sweet spicy ripe crispy salty tender delicious warm sour bitter juicy golden raw",
        [
            ("slice chop peel dice wash", "onion carrot potato tomato apple pepper cucumber lemon"),
            ("bake decorate", "bread~ cake pie cookie muffin loaf pastry"),
            ("boil stir simmer taste season", "soup sauce pasta~ rice~ stew broth~ porridge~"),
            ("fry grill roast", "egg fish chicken~ steak sausage"),
            ("mix whisk pour measure", "flour~ sugar~ butter~ milk~ cream~ batter~"),
        ],
    ),
    "sports": _topic(
        "coach player referee captain goalkeeper athlete",
        "stadium court gym track pool field",
        "match game race tournament final",
        "fast strong quick fit tough brave lucky agile fierce skilled close fair heavy loud famous",
        [
            ("kick pass catch throw bounce", "ball puck frisbee"),
            ("win lose play watch", "match game race tournament final"),
            ("score miss block save", "goal point basket penalty shot"),
            ("lift carry drop", "weight dumbbell bar kettlebell"),
            ("lace tie clean", "shoe boot helmet glove jersey racket"),
        ],
    ),
    "weather": _topic(
        "forecaster sailor skier lifeguard",
        "coast valley mountain island hill",
        "storm forecast drought flood heatwave",
        "cloudy windy sunny rainy foggy humid cold mild dry wet icy grey stormy bright chilly",
        [
            ("watch predict track record", "storm cloud wind~ temperature rainfall~ tornado"),
            ("feel notice expect", "breeze frost~ drizzle~ hail~ chill"),
            ("check read", "thermometer barometer forecast radar"),
            ("wear open", "umbrella coat raincoat scarf jacket"),
            ("shovel clear", "snow~ ice~ puddle"),
        ],
    ),
    "travel": _topic(
        "traveller tourist guide pilot driver passenger",
        "airport station hotel museum beach border",
        "trip journey holiday flight tour voyage",
        "long short cheap expensive crowded quiet foreign exciting comfortable late scenic historic remote busy",
        [
            ("book cancel change", "ticket flight seat room reservation"),
            ("pack unpack lose", "bag suitcase passport map camera"),
            ("visit photograph explore", "castle temple bridge cathedral ruin tower"),
            ("rent drive park", "car bicycle scooter van boat"),
            ("show stamp", "passport visa ticket"),
        ],
    ),
    "music": _topic(
        "singer drummer pianist violinist composer conductor",
        "studio hall theatre club stage",
        "concert rehearsal festival recital performance",
        "loud soft slow beautiful catchy gentle melodic rhythmic sharp classical electric acoustic lively sad",
        [
            ("play tune practise", "guitar piano violin drum flute trumpet cello"),
            ("sing hum whistle write", "song melody tune chorus lullaby"),
            ("record mix release", "album track single demo"),
            ("compose arrange study", "symphony piece sonata opera"),
            ("tap count keep", "rhythm beat tempo"),
        ],
    ),
    "computing": _topic(
        "programmer engineer designer analyst tester",
        "office lab startup workshop datacenter",
        "meeting deadline update launch hackathon",
        "digital online broken secure complex simple stable buggy modern virtual compact efficient fast slow open",
        [
            ("write debug test compile fix", "program function script module app"),
            ("install update upgrade restart", "server laptop printer router system"),
            ("download upload save delete copy", "file folder photo document backup"),
            ("type send read", "email message password command"),
            ("query sort index", "database table record list"),
        ],
    ),
    "farming": _topic(
        "farmer gardener shepherd farmhand beekeeper",
        "farm barn orchard meadow greenhouse field",
        "harvest fair auction planting",
        "green muddy fertile organic rural wild young healthy dusty lush tall sturdy ripe early",
        [
            ("feed milk herd", "cow goat sheep pig horse calf"),
            ("plant water harvest grow", "wheat~ corn~ barley~ bean seedling"),
            ("pick collect gather", "berry plum pear egg apple"),
            ("drive fix repair oil", "tractor plough trailer fence gate"),
            ("dig rake weed", "soil~ row ditch bed patch"),
        ],
    ),
    "medicine": _topic(
        "doctor nurse surgeon patient pharmacist dentist",
        "hospital clinic pharmacy ward surgery",
        "appointment operation examination vaccination consultation",
        "sick painful sterile chronic serious swollen medical careful gentle mild severe acute",
        [
            ("prescribe take swallow", "pill tablet medicine~ antibiotic vitamin"),
            ("check measure monitor", "pulse temperature blood~ pressure~ heartbeat"),
            ("bandage clean treat", "wound cut burn bruise injury"),
            ("examine scan", "lung knee ankle wrist tooth"),
            ("fill sterilise label", "syringe bottle prescription vial"),
        ],
    ),
}
_OTHER_TOPICS = {topic: tuple(_LEXICON[t] for t in TOPICS if t != topic) for topic in TOPICS}

_FEMALE = _zipf(
    "Anna Maria Sofia Lena Grace Emma Nora Julia Clara Ruth Priya Mei Fatima Olga Ines Hana Leila Zoe Rosa Ada"
)
_MALE = _zipf(
    "Omar David Lucas Ivan Tom Ben Samuel Kenji Raj Pedro Felix Hugo Marco Yusuf Leo Arjun Tariq Karl Noah Eli"
)
_CITIES = _zipf(
    "Lisbon Oslo Cairo Lima Dublin Vienna Prague Nairobi Seoul Quito Madrid Athens Riga Tunis Hanoi Porto Bergen Turin"
)
_MONTHS = _zipf("May June March April July October January September August November February December")
_RELATIONS = _zipf(_nouns("friend sister brother cousin neighbour aunt uncle colleague mother father"))
_SHARED_NOUNS = _zipf(_nouns("plan idea problem question story picture gift list box key door window letter note"))
_SHARED_ADJECTIVES = _zipf("good new old small big large nice great little cheap strange")
_FEELINGS = _zipf("tired happy busy calm hungry worried excited nervous proud relaxed")
_SHARED_VERBS = _zipf(_verbs("see like want need find bring buy keep sell share choose order"))
_VISIT_VERBS = _zipf(_verbs("visit call meet help"))
_BUY_VERBS = _zipf(_verbs("buy need order bring sell"))
_SAY_VERBS = _zipf(_verbs("say think know believe"))
_GIVE_VERBS = _zipf(_verbs("give show bring send lend"))
_TALK = _verbs("talk")[0]
_GO = _verbs("go")[0]
_START = _verbs("start")[0]
_WRITE = _verbs("write")[0]
_CONTAINERS = _zipf(_nouns("bag box bottle jar cup basket"))
_NUMBERS = _zipf(list(enumerate("one two three four five six seven eight nine ten eleven twelve".split(), 1)))
_TIMES = {
    "past": _zipf(
        "yesterday|last week|last night|on Monday|two days ago|that morning|last summer|on Friday|at noon|"
        "on Sunday|last month|in the evening".split("|")
    ),
    "present": _zipf(
        "every morning|every day|on weekends|each evening|twice a week|in the afternoon|every Monday|"
        "most days|in winter|after work".split("|")
    ),
    "future": _zipf("tomorrow|next week|next month|on Saturday|later today|soon|next year".split("|")),
    "progressive": _zipf("right now|at the moment|today|this morning".split("|")),
}
_PRONOUNS = {"she": ("she", "her", "her"), "he": ("he", "him", "his"), "they": ("they", "them", "their")}


# --------------------------------------------------------------------------- documents


def _cap(sentence: str) -> str:
    return sentence[0].upper() + sentence[1:]


class _Writer:
    """Writes one document: a topic, a protagonist with fixed pronouns, and a dominant tense."""

    def __init__(self, rng: random.Random, topic: str):
        self.rng = rng
        self.topic = _LEXICON[topic]
        self.others = _OTHER_TOPICS[topic]
        self.tense = "past" if rng.random() < 0.55 else "present"
        r = rng.random()
        if r < 0.75:
            pronoun = "she" if rng.random() < 0.5 else "he"
            self.name = (_FEMALE if pronoun == "she" else _MALE)(rng)
            self.names = (self.name,)
        elif r < 0.87:
            pronoun = "she" if rng.random() < 0.5 else "he"
            self.name = "the " + self.topic.people(rng)[0]
            self.names = ()
        else:
            pronoun = "they"
            first, second = _FEMALE(rng), _MALE(rng)
            self.name = f"{first} and {second}" if rng.random() < 0.5 else f"{second} and {first}"
            self.names = (first, second)
        self.plural = pronoun == "they"
        self.subj, self.obj, self.poss = _PRONOUNS[pronoun]
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
            name = (_FEMALE if self.rng.random() < 0.5 else _MALE)(self.rng)
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
        return " " + _TIMES[tense](self.rng)

    def adjective(self, t: _Topic) -> str:
        return (t.adjectives if self.rng.random() < 0.75 else _SHARED_ADJECTIVES)(self.rng)

    def noun_phrase(self, noun: Noun, t: _Topic) -> str:
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

    def action(self, t: _Topic) -> str:
        rng = self.rng
        verbs, nouns = t.frames(rng)
        verb = verbs(rng) if rng.random() < 0.7 else _SHARED_VERBS(rng)
        tense = self.pick_tense()
        s = f"{self.subject()} {self.conj(verb, self.plural, tense)} {self.noun_phrase(nouns(rng), t)}"
        r = rng.random()
        if r < 0.3:
            s += f" in the {t.places(rng)}"
        elif r < 0.4:
            s += f" with {self.poss} {_RELATIONS(rng)[0]}"
        return s + self.time(tense) + "."

    def coordination(self, t: _Topic) -> str:
        rng = self.rng
        verbs, nouns = t.frames(rng)
        first = f"{self.subject()} {self.conj(verbs(rng), self.plural, self.tense)} {self.noun_phrase(nouns(rng), t)}"
        verbs, nouns = t.frames(rng)
        if rng.random() < 0.6:
            return f"{first} and {self.conj(verbs(rng), self.plural, self.tense)} {self.noun_phrase(nouns(rng), t)}."
        negated = f"{self.do(self.plural)} not {verbs(rng)[0]}"
        return f"{first}, but {self.subj} {negated} {self.noun_phrase(nouns(rng), t)}."

    def description(self, t: _Topic) -> str:
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

    def question(self, t: _Topic) -> str:
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

    def subject_relative(self, t: _Topic) -> str:
        rng = self.rng
        verbs, nouns = t.frames(rng)
        plural = rng.random() < 0.3
        who = t.people(rng)[1 if plural else 0]
        relation = _RELATIONS(rng)[1 if plural else 0]
        does = self.conj(verbs(rng), plural, self.tense)
        be = self.be(plural, self.tense)
        return f"the {who} who {does} {self.noun_phrase(nouns(rng), t)} {be} {self.poss} {relation}."

    def object_relative(self, t: _Topic) -> str:
        rng = self.rng
        verbs, nouns = t.frames(rng)
        obj, _ = self.the_noun(nouns(rng))
        main = self.conj(_SHARED_VERBS(rng), self.plural, self.tense)
        s = f"{self.subject()} {main} {obj} that the {t.people(rng)[0]} {self.conj(verbs(rng), False, self.tense)}"
        if rng.random() < 0.4:
            s += f" in the {t.places(rng)}"
        return s + "."

    def because(self, t: _Topic) -> str:
        rng = self.rng
        _, nouns = t.frames(rng)
        cause, plural = self.the_noun(nouns(rng))
        verbs, nouns = t.frames(rng)
        effect = f"{self.conj(verbs(rng), self.plural, self.tense)} {self.noun_phrase(nouns(rng), t)}"
        return f"because {cause} {self.be(plural, self.tense)} {self.adjective(t)}, {self.subject()} {effect}."

    def quantity(self, t: _Topic) -> str:
        rng = self.rng
        _, nouns = t.frames(rng)
        singular, plural_form, mass = nouns(rng)
        value, word = _NUMBERS(rng)
        if mass:
            container = _CONTAINERS(rng)
            things = f"{word} {container[0] if value == 1 else container[1]} of {singular}"
        else:
            things = f"{word} {singular if value == 1 else plural_form}"
        tense = self.pick_tense()
        s = f"{self.subject()} {self.conj(_BUY_VERBS(rng), self.plural, tense)} {things}"
        if rng.random() < 0.5:
            s += f" for {rng.randint(2, 99)} dollars"
        return s + self.time(tense, 0.25) + "."

    def date(self, t: _Topic) -> str:
        rng = self.rng
        when = f"{_MONTHS(rng)} {rng.randint(1, 28)}"
        if rng.random() < 0.5:
            start = self.conj(_START, False, self.tense)
            return f"the {t.events(rng)} {start} at {rng.randint(1, 12)} o'clock on {when}."
        return f"on {when}, {self.subject()} {self.conj(_GO, self.plural, self.tense)} to the {t.places(rng)}."

    def opinion(self, t: _Topic) -> str:
        rng = self.rng
        _, nouns = t.frames(rng)
        thing, plural = self.the_noun(nouns(rng))
        says = self.conj(_SAY_VERBS(rng), self.plural, self.tense)
        return f"{self.subject()} {says} that {thing} {self.be(plural, self.tense)} {self.adjective(t)}."

    def gift(self, t: _Topic) -> str:
        rng = self.rng
        _, nouns = t.frames(rng)
        giver = f"{self.poss} {_RELATIONS(rng)[0]}" if rng.random() < 0.6 else f"the {t.people(rng)[0]}"
        tense = self.pick_tense()
        gives = self.conj(_GIVE_VERBS(rng), False, tense)
        return f"{giver} {gives} {self.obj} {self.noun_phrase(nouns(rng), t)}{self.time(tense, 0.25)}."

    # ----- sentences with no topic

    def visit(self) -> str:
        tense = self.pick_tense()
        verb = self.conj(_VISIT_VERBS(self.rng), self.plural, tense)
        whom = f"{self.poss} {_RELATIONS(self.rng)[0]}"
        return f"{self.subject()} {verb} {whom} in {_CITIES(self.rng)}{self.time(tense)}."

    def day(self) -> str:
        adjective = _SHARED_ADJECTIVES(self.rng)
        return f"it {self.be(False, self.tense)} {article(adjective)} {adjective} day in {_CITIES(self.rng)}."

    def feeling(self) -> str:
        tense = self.tense
        return f"{self.subject()} {self.be(self.plural, tense)} {_FEELINGS(self.rng)}{self.time(tense)}."

    def home(self) -> str:
        return f"after that, {self.subject()} {self.conj(_GO, self.plural, self.tense)} home."

    def talk(self) -> str:
        talks = self.conj(_TALK, self.plural, self.tense)
        noun = _SHARED_NOUNS(self.rng)[0]
        return f"{self.subject()} {talks} with {self.poss} {_RELATIONS(self.rng)[0]} about the {noun}."

    def letter(self) -> str:
        thing = _SHARED_NOUNS(self.rng)[0]
        writes = self.conj(_WRITE, False, self.tense)
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


_TOPIC_SENTENCES = _Pick(
    [
        _Writer.action, _Writer.coordination, _Writer.description, _Writer.question, _Writer.subject_relative,
        _Writer.object_relative, _Writer.because, _Writer.quantity, _Writer.date, _Writer.opinion, _Writer.gift,
    ],
    [28, 10, 10, 8, 7, 8, 6, 8, 5, 5, 5],
)  # fmt: skip
_CLAUSES = _Pick(
    [_Writer.action, _Writer.coordination, _Writer.description, _Writer.opinion, _Writer.quantity], [4, 2, 2, 1, 1]
)
_JOINERS = _zipf([", and ", ", so ", " because ", ", but ", " while ", ", and then "])
_PLAIN_SENTENCES = _Pick(
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
