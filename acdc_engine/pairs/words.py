"""The entities the swap strategies know: common first names, places and objects.

A word counts as an entity of its kind when it is in these lists and is **one token** for the
model's tokenizer with its leading space (``" Mary"``); a swap replaces it by another word of the
same kind that is one token too, so the corrupted prompt keeps the clean prompt's length.
Pass ``entities={"names": [...], ...}`` to :func:`acdc_engine.pairs.make_pairs` for others.
"""

from __future__ import annotations

__all__ = ["ENTITIES"]

# fmt: off
_NAMES = (
    "Mary", "John", "Alice", "Bob", "Tom", "Sarah", "James", "Emma", "David", "Lisa", "Michael",
    "Anna", "Daniel", "Kate", "Paul", "Laura", "Mark", "Julia", "Peter", "Rose", "Robert",
    "Linda", "William", "Susan", "Richard", "Karen", "Joseph", "Nancy", "Thomas", "Betty",
    "Charles", "Helen", "Chris", "Sandra", "George", "Donna", "Steven", "Carol", "Edward", "Ruth",
    "Brian", "Sharon", "Kevin", "Michelle", "Jason", "Amy", "Jeff", "Angela", "Ryan", "Melissa",
    "Gary", "Rebecca", "Eric", "Stephanie", "Jacob", "Kelly", "Frank", "Nicole", "Scott",
    "Emily", "Justin", "Rachel", "Brandon", "Jessica", "Adam", "Amanda", "Nathan", "Jennifer",
    "Henry", "Grace", "Jack", "Hannah", "Samuel", "Olivia", "Luke", "Sophie", "Max", "Chloe",
    "Ben", "Lucy", "Sam", "Ellie", "Alex", "Jane", "Matt", "Claire", "Dan", "Katie", "Joe",
    "Sara", "Tim", "Amber", "Andrew", "Victoria", "Martin", "Diana", "Carl", "Maria", "Ian",
    "Alan",
)
_PLACES = (
    "store", "garden", "restaurant", "school", "hospital", "office", "house", "station", "park",
    "beach", "library", "market", "museum", "church", "airport", "hotel", "bank", "cafe",
    "theater", "zoo", "farm", "city", "river", "lake", "bar", "gym", "shop",
)
_OBJECTS = (
    "ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack", "ball",
    "book", "gift", "letter", "ticket", "basket", "bottle", "camera", "cake", "phone", "hat",
    "key", "pen", "cup", "bag", "box", "card", "flower", "map", "coin", "toy", "apple",
)
# fmt: on

ENTITIES: dict[str, tuple[str, ...]] = {"names": _NAMES, "places": _PLACES,
                                         "objects": _OBJECTS}
"""kind -> words (without the leading space); a swap stays within a kind."""
