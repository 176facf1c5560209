"""The text corpus's lexicon: English inflection, each topic's words and the shared word lists, Zipf-weighted."""

from __future__ import annotations

import bisect
import itertools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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


class Pick:
    """Draws items with given weights; `zipf` weights them 1/rank, so the first listed is the most frequent."""

    def __init__(self, items: Sequence[Any], weights: Sequence[float]):
        self.items = tuple(items)
        self.cum = list(itertools.accumulate(weights))
        self.total = self.cum[-1]

    def __call__(self, rng: random.Random) -> Any:
        return self.items[bisect.bisect(self.cum, rng.random() * self.total)]


def zipf(items: Sequence[Any] | str) -> Pick:
    items = items.split() if isinstance(items, str) else items
    return Pick(items, [1.0 / rank for rank in range(1, len(items) + 1)])


# --------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class Topic:
    people: Pick  # nouns: who does this topic's work
    places: Pick  # strings, used as "in the <place>"
    events: Pick  # strings, singular: "the <event> started at ..."
    adjectives: Pick
    frames: Pick  # (verbs, nouns) pairs: each verb takes each noun of its frame as object


def _topic(people: str, places: str, events: str, adjectives: str, frames: list[tuple[str, str]]) -> Topic:
    return Topic(
        people=zipf(_nouns(people)),
        places=zipf(places),
        events=zipf(events),
        adjectives=zipf(adjectives),
        frames=zipf([(zipf(_verbs(v)), zipf(_nouns(n))) for v, n in frames]),
    )


LEXICON = {
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

FEMALE = zipf(
    "Anna Maria Sofia Lena Grace Emma Nora Julia Clara Ruth Priya Mei Fatima Olga Ines Hana Leila Zoe Rosa Ada"
)
MALE = zipf("Omar David Lucas Ivan Tom Ben Samuel Kenji Raj Pedro Felix Hugo Marco Yusuf Leo Arjun Tariq Karl Noah Eli")
CITIES = zipf(
    "Lisbon Oslo Cairo Lima Dublin Vienna Prague Nairobi Seoul Quito Madrid Athens Riga Tunis Hanoi Porto Bergen Turin"
)
MONTHS = zipf("May June March April July October January September August November February December")
RELATIONS = zipf(_nouns("friend sister brother cousin neighbour aunt uncle colleague mother father"))
SHARED_NOUNS = zipf(_nouns("plan idea problem question story picture gift list box key door window letter note"))
SHARED_ADJECTIVES = zipf("good new old small big large nice great little cheap strange")
FEELINGS = zipf("tired happy busy calm hungry worried excited nervous proud relaxed")
SHARED_VERBS = zipf(_verbs("see like want need find bring buy keep sell share choose order"))
VISIT_VERBS = zipf(_verbs("visit call meet help"))
BUY_VERBS = zipf(_verbs("buy need order bring sell"))
SAY_VERBS = zipf(_verbs("say think know believe"))
GIVE_VERBS = zipf(_verbs("give show bring send lend"))
TALK = _verbs("talk")[0]
GO = _verbs("go")[0]
START = _verbs("start")[0]
WRITE = _verbs("write")[0]
CONTAINERS = zipf(_nouns("bag box bottle jar cup basket"))
NUMBERS = zipf(list(enumerate("one two three four five six seven eight nine ten eleven twelve".split(), 1)))
TIMES = {
    "past": zipf(
        "yesterday|last week|last night|on Monday|two days ago|that morning|last summer|on Friday|at noon|"
        "on Sunday|last month|in the evening".split("|")
    ),
    "present": zipf(
        "every morning|every day|on weekends|each evening|twice a week|in the afternoon|every Monday|"
        "most days|in winter|after work".split("|")
    ),
    "future": zipf("tomorrow|next week|next month|on Saturday|later today|soon|next year".split("|")),
    "progressive": zipf("right now|at the moment|today|this morning".split("|")),
}
PRONOUNS = {"she": ("she", "her", "her"), "he": ("he", "him", "his"), "they": ("they", "them", "their")}
