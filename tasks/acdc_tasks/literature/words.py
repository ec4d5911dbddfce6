"""The literature tasks' word lists, as module-level constants.

Written by hand for this package (no downloads). They are importable on their own (no torch), so
that a tokenizer corpus can be built from them (see :mod:`acdc_tasks.literature.corpus`). Every
entry is one word without spaces; the tasks put a space in front where the word follows one.
"""

from __future__ import annotations

__all__ = ["FIRST_NAMES", "PLACES", "OBJECTS", "GT_NOUNS", "PARAM_NAMES", "FUNCTION_NAMES",
           "DOC_WORDS", "FEMALE_PROFESSIONS", "MALE_PROFESSIONS", "NEUTRAL_NOUNS", "FILLER"]

# fmt: off
# 100 common English first names (IOI: Wang et al. 2022 used the most frequent names).
FIRST_NAMES: tuple[str, ...] = (
    "Mary", "John", "Alice", "Bob", "Tom", "Sarah", "James", "Emma", "David", "Lisa",
    "Michael", "Anna", "Daniel", "Kate", "Paul", "Laura", "Mark", "Julia", "Peter", "Rose",
    "Robert", "Linda", "William", "Susan", "Richard", "Karen", "Joseph", "Nancy", "Thomas",
    "Betty", "Charles", "Helen", "Chris", "Sandra", "George", "Donna", "Steven", "Carol",
    "Edward", "Ruth", "Brian", "Sharon", "Kevin", "Michelle", "Jason", "Amy", "Jeff", "Angela",
    "Ryan", "Melissa", "Gary", "Rebecca", "Eric", "Stephanie", "Jacob", "Kelly", "Frank",
    "Nicole", "Scott", "Emily", "Justin", "Rachel", "Brandon", "Jessica", "Adam", "Amanda",
    "Nathan", "Jennifer", "Henry", "Grace", "Jack", "Hannah", "Samuel", "Olivia", "Luke",
    "Sophie", "Max", "Chloe", "Ben", "Lucy", "Sam", "Ellie", "Alex", "Jane", "Matt", "Claire",
    "Dan", "Katie", "Joe", "Sara", "Tim", "Amber", "Andrew", "Victoria", "Martin", "Diana",
    "Carl", "Maria", "Ian", "Alan",
)

# Places and objects of the IOI templates (after Wang et al.'s lists, extended).
PLACES: tuple[str, ...] = (
    "store", "garden", "restaurant", "school", "hospital", "office", "house", "station",
    "park", "beach", "library", "market", "museum", "church", "airport", "hotel",
)
OBJECTS: tuple[str, ...] = (
    "ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack", "ball",
    "book", "gift", "letter", "ticket", "basket", "bottle", "camera",
)

# Greater-than (Hanna et al. 2023): nouns of events that last, after the paper's list.
GT_NOUNS: tuple[str, ...] = (
    "abduction", "accord", "affair", "agreement", "appraisal", "assessment", "attack",
    "campaign", "captivity", "case", "challenge", "chaos", "clash", "collaboration", "coma",
    "competition", "confrontation", "conspiracy", "construction", "consultation", "contract",
    "convention", "cooperation", "custody", "deal", "decline", "development", "dispute",
    "dynasty", "effort", "employment", "engagement", "epidemic", "evaluation", "exchange",
    "existence", "expansion", "expedition", "fall", "fame", "friendship", "growth", "hardship",
    "illness", "impact", "imprisonment", "improvement", "increase", "insurgency", "invasion",
    "investigation", "journey", "kingdom", "marriage", "negotiation", "operation", "order",
    "outbreak", "pilgrimage", "plague", "plan", "practice", "process", "program", "project",
    "pursuit", "quest", "reign", "relationship", "riot", "rise", "rivalry", "romance", "rule",
    "siege", "slump", "study", "test", "therapy", "tour", "tradition", "treaty", "trial",
    "trip", "voyage", "war", "work",
)

# Docstring (Heimersheim & Janiak 2023): parameter names, function names, description words.
PARAM_NAMES: tuple[str, ...] = (
    "load", "size", "files", "last", "data", "name", "path", "value", "key", "item", "count",
    "index", "user", "file", "text", "line", "node", "mode", "type", "state", "target",
    "source", "result", "config", "label", "model", "shape", "color", "width", "height",
    "start", "end", "step", "limit", "port", "host", "url", "token", "page", "query", "table",
    "field", "group", "order", "level", "time", "date", "code", "error", "message", "content",
    "parent", "child", "root", "base", "input", "output", "buffer", "stream", "block", "chunk",
    "offset", "length", "number", "option", "flag", "context", "request", "response", "header",
    "body", "title", "score", "weight", "rate", "scale", "seed", "task", "job", "event",
    "action", "client", "server", "session", "module", "version", "format", "pattern",
    "filter", "default", "image", "frame", "row", "column", "vector", "matrix", "point",
)
FUNCTION_NAMES: tuple[str, ...] = (
    "port", "run", "check", "update", "load", "parse", "build", "create", "process", "handle",
    "send", "read", "write", "render", "fetch", "apply", "merge", "split", "resolve", "init",
)
DOC_WORDS: tuple[str, ...] = (
    "oil", "column", "piece", "crime", "population", "unit", "dark", "river", "simple",
    "fresh", "glass", "market", "paper", "light", "stone", "heavy", "green", "storm", "quiet",
    "bright", "cold", "field", "house", "music", "night", "plant", "round", "short", "train",
    "water", "world", "young", "voice", "table", "small", "sound", "sharp", "steel", "sugar",
)

# Gender bias: professions with a (US labour statistics style) gender stereotype, and neutral
# nouns for the corruption.
FEMALE_PROFESSIONS: tuple[str, ...] = (
    "nurse", "secretary", "receptionist", "librarian", "hairdresser", "dancer", "housekeeper",
    "nanny", "teacher", "stylist", "cashier", "maid", "baker", "designer", "therapist",
    "assistant",
)
MALE_PROFESSIONS: tuple[str, ...] = (
    "doctor", "engineer", "mechanic", "carpenter", "plumber", "pilot", "firefighter",
    "programmer", "farmer", "soldier", "surgeon", "janitor", "lawyer", "driver", "guard",
    "builder",
)
NEUTRAL_NOUNS: tuple[str, ...] = (
    "person", "individual", "adult", "resident", "guest", "customer", "visitor", "stranger",
    "neighbor", "citizen", "member", "someone",
)
# fmt: on

# Plain filler text for tokenizer corpora (so a trained vocabulary has ordinary words too).
FILLER: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "It was a bright cold day in April, and the clocks were striking thirteen.",
    "She said that he would come back later, because the weather was bad.",
    "They went to the market in the morning and bought bread, milk and apples.",
    "In the year 1850 the city grew quickly; by 1900 it had doubled in size.",
    "The meeting lasted from noon to the evening, and nobody was happy with it.",
    "He told her that the book was on the table next to the window.",
    "After the storm the river was high and the fields were under water.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 20 30 40 50 60 70 80 90 100.",
    "def main():\n    \"\"\"Run the program.\"\"\"\n    return 0\n",
)
