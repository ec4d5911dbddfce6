"""The undoable steps of a :class:`~acdc_engine.view.session.Session`: what one command pushed
onto the intervention stack, and how the page words each step once later steps or ``restore``
changed what it does."""

from __future__ import annotations

from dataclasses import dataclass

from ..interventions import Intervention, InterventionStack

__all__ = ["Step", "describe", "step_text"]


@dataclass
class Step:
    """One undoable step of a session: its description and the interventions it pushed (``whole``:
    as one unit)."""
    text: str
    items: list[Intervention]
    whole: bool = True
    """False once ``restore`` took some of its interventions away: ``text`` (e.g. a pattern,
    ``ablate a1.*``) then no longer says what the step does."""


def describe(items: list[Intervention]) -> str:
    """What ``items`` do, in one line: ``ablate a1.1, a1.2 zero`` when they share a verb and a
    source, else each in turn."""
    if len({(iv.verb, iv.source) for iv in items}) == 1:
        iv = items[0]
        return f"{iv.verb} {', '.join(i.target for i in items)} {iv.source}"
    return "; ".join(str(iv) for iv in items)


def step_text(steps: list[Step], i: int, stack: InterventionStack) -> str:
    """Step ``i`` of ``steps`` as the page lists it: its own words while all of it applies as
    pushed; after ``restore`` took part of it away, the interventions it has left; where a
    later step intervenes on the same writer, what of it that replaced (the removed edges of a
    writer all read the source pushed last). ``stack`` maps an intervention to its slots."""
    st = steps[i]
    later = [iv for s in steps[i + 1:] for iv in s.items]
    slots = {}
    for iv in [*st.items, *later]:
        if iv not in slots:
            w, sl = stack._slots(iv)
            slots[iv] = (w, set(sl))
    last_source = {slots[iv][0]: iv.source for iv in [*st.items, *later]}
    live, replaced, resourced = [], [], []
    for iv in st.items:
        w, mine = slots[iv]
        covered = set().union(*[slots[x][1] for x in later if slots[x][0] == w])
        if mine <= covered:
            replaced.append(iv.target)
        elif last_source[w] != iv.source:
            resourced.append(iv.target)
            live.append(Intervention(iv.verb, iv.target, last_source[w]))
        else:
            live.append(iv)
    text = st.text if st.whole else describe(st.items)
    if not live:
        return f"{text} (replaced by a later step)"
    if not (replaced or resourced):
        return text
    notes = []
    if replaced:
        notes.append(f"{', '.join(replaced)} replaced by a later step")
    if resourced:
        notes.append(f"{', '.join(resourced)} now read the source a later step set")
    return f"{describe(live)} (of '{text}': {'; '.join(notes)})"
