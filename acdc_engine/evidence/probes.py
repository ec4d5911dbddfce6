"""Linear probes: is a label linearly decodable from the residual stream, layer by layer?

    res = probe_task(problem, data, label="template")     # .accuracy[layer], .control[layer]
    res = fit_probes(features, labels)                    # features [n_layers + 1, n, d]

Each layer gets a logistic-regression probe (scikit-learn) trained on a random ``train`` share
of the examples and scored on the rest. The **control** is the same probe trained and scored
on shuffled labels: it shows what a probe of this capacity reaches on labels that carry no
information (about chance), so a high accuracy is not overclaimed as the model "representing"
the label. A label is called *decodable* only when the best layer's probe beats the majority
class: the lower end of the 95% Wilson interval of its held-out accuracy is above the share of
the most common label among the test examples (what always guessing it would score).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import AcdcError
from ..problem import Problem
from ..tasks import TaskData
from .descriptive import residual_stream

__all__ = ["ProbeResult", "fit_probes", "probe_task", "task_labels", "LABELS", "check_split",
           "check_position", "wilson"]

LABELS = ("answer", "answer_first")
"""Labels every contrastive task has: the answer token, and whether the answer word comes
before the wrong answer in the clean prompt (IOI: ABBA vs BABA); any row column works too."""


@dataclass
class ProbeResult:
    """Held-out accuracy per layer (0 = embeddings), of the probe and of its shuffled-label
    control, and the majority-class rate (``chance``)."""

    label: str
    accuracy: list[float]
    control: list[float]
    chance: float
    n_train: int
    n_test: int
    position: int = -1

    @property
    def best(self) -> int | None:
        """The layer of the highest held-out accuracy (None when no layer could be fit)."""
        acc = np.asarray(self.accuracy, dtype=float)
        return None if np.isnan(acc).all() else int(np.nanargmax(acc))

    def interval(self, layer: int, level: float = 0.95) -> tuple[float, float]:
        """Wilson score interval of ``layer``'s held-out accuracy over :attr:`n_test`."""
        return wilson(self.accuracy[layer], self.n_test, level)

    def decodable(self, layer: int | None = None) -> bool:
        """True when the probe at ``layer`` (default: the best) beats the majority class: the
        lower end of its accuracy's 95% interval is above :attr:`chance`."""
        layer = self.best if layer is None else layer
        return layer is not None and self.interval(layer)[0] > self.chance

    def sentences(self) -> list[str]:
        best = self.best
        if best is None:
            return [f"Label {self.label!r} could not be probed: the training share holds one "
                    "value of it at every layer."]
        lo, hi = self.interval(best)
        numbers = (f"{self.accuracy[best]:.0%} held-out accuracy on {self.n_test} examples, "
                   f"95% interval [{lo:.0%}, {hi:.0%}]; majority class {self.chance:.0%}, "
                   f"shuffled-label control {self.control[best]:.0%}")
        if self.decodable(best):
            return [f"Label {self.label!r} is decodable best after layer {best} ({numbers})."]
        return [f"Label {self.label!r} is not decodable above the majority class at any layer: "
                f"the best probe, after layer {best}, has {numbers}."]

    def as_dict(self) -> dict:
        return {"label": self.label, "accuracy": self.accuracy, "control": self.control,
                "chance": self.chance, "n_train": self.n_train, "n_test": self.n_test,
                "position": self.position, "best_layer": self.best,
                "best_interval": None if self.best is None else list(self.interval(self.best)),
                "decodable": self.decodable()}


def fit_probes(features: torch.Tensor, labels, train: float = 0.7, seed: int = 0,
               label: str = "label", c: float = 1.0) -> ProbeResult:
    """Logistic-regression probes on ``features`` ``[n_layers + 1, n, d]`` for ``labels``
    ``[n]`` (any hashable values), with a shuffled-label control."""
    from ..extras import require

    require("sklearn", "tracking", "linear probes")
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(labels)
    n = len(y)
    if len(set(y.tolist())) < 2:
        raise AcdcError(f"label {label!r} has one value on every example: nothing to probe")
    k = check_split(train, n)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    tr, te = order[:k], order[k:]
    shuffled = y[rng.permutation(n)]
    acc, ctl = [], []
    for x in features.detach().float().cpu().numpy():  # [n, d] per layer
        scaler = StandardScaler().fit(x[tr])
        xs = scaler.transform(x)
        for target, out in ((y, acc), (shuffled, ctl)):
            if len(set(target[tr].tolist())) < 2:
                out.append(float("nan"))
                continue
            clf = LogisticRegression(C=c, max_iter=2000).fit(xs[tr], target[tr])
            out.append(float((clf.predict(xs[te]) == target[te]).mean()))
    _, counts = np.unique(y[te], return_counts=True)
    return ProbeResult(label, acc, ctl, float(counts.max() / len(te)), len(tr), len(te))


MIN_SIDE = 2
"""Examples each side of the split needs at least (to train on, and to test on)."""


def check_split(train: float, n: int) -> int:
    """The number of training examples of a ``train`` share of ``n`` (rounded); refused unless
    both sides get at least :data:`MIN_SIDE` examples."""
    if not (isinstance(train, (int, float)) and math.isfinite(train) and 0 < train < 1):
        raise AcdcError(f"the training share must be a number in (0, 1) (the rest is held out "
                        f"to test on), got {train!r}")
    k = round(train * n)
    if n < 2 * MIN_SIDE:
        raise AcdcError(f"{n} examples are too few to probe: {MIN_SIDE} to train on and "
                        f"{MIN_SIDE} to test on at least")
    if not MIN_SIDE <= k <= n - MIN_SIDE:
        raise AcdcError(f"a training share of {train:g} of {n} examples trains on {k} and tests "
                        f"on {n - k}; each side needs at least {MIN_SIDE}: use a share from "
                        f"{MIN_SIDE / n:.3g} to {(n - MIN_SIDE) / n:.3g}, or more examples")
    return k


def wilson(p: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` observed on ``n`` trials."""
    if n == 0 or p != p:
        return math.nan, math.nan
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + level / 2)
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, mid - half), min(1.0, mid + half)


def check_position(position: int, shortest: int) -> None:
    """Refuse a token ``position`` outside prompts of ``shortest`` tokens."""
    if not -shortest <= position < shortest:
        raise AcdcError(f"position {position} is outside the prompts: the shortest is "
                        f"{shortest} tokens, so positions run from 0 to {shortest - 1} (or "
                        f"-{shortest} to -1 from the end)")


def task_labels(data: TaskData, label: str) -> list:
    """Per row of ``data``: the answer token, whether the answer word comes first, or the
    value of the row column ``label``."""
    if label == "answer":
        return list(data.answer)
    if label == "answer_first":
        out = []
        for r in data.rows:
            a, w = r["answer"].strip(), (r.get("wrong_answer") or "").strip()
            words = r["clean"].split()
            ia = words.index(a) if a in words else len(words)
            iw = words.index(w) if w in words else len(words)
            out.append(int(ia < iw))
        return out
    missing = [i for i, r in enumerate(data.rows) if label not in r]
    if missing:
        raise AcdcError(f"rows have no column {label!r} (row {missing[0] + 1}); labels are "
                        f"{', '.join(LABELS)} or a column: {', '.join(sorted(data.rows[0]))}")
    return [r[label] for r in data.rows]


@torch.no_grad()
def probe_task(problem: Problem, data: TaskData, label: str = "answer_first",
               position: int = -1, train: float = 0.7, seed: int = 0) -> ProbeResult:
    """Probe every layer's residual stream at ``position`` of the clean prompts for
    ``label`` (see :func:`task_labels`)."""
    values = task_labels(data, label)
    check_position(position, min(b.clean.shape[1] for b in problem.batches))
    check_split(train, problem.n_examples)
    feats, ys = [], []
    for b in problem.batches:
        feats.append(residual_stream(problem.model, b.clean)[:, :, position])  # [L+1, b, d]
        ys += [values[r] for r in b.rows]
    res = fit_probes(torch.cat(feats, 1), ys, train, seed, label)
    res.position = position
    return res
