"""Linear probes: is a label linearly decodable from the residual stream, layer by layer?

    res = probe_task(problem, data, label="template")     # .accuracy[layer], .control[layer]
    res = fit_probes(features, labels)                    # features [n_layers + 1, n, d]

Each layer gets a logistic-regression probe (scikit-learn) trained on a random ``train`` share
of the examples and scored on the rest. The **control** is the same probe trained and scored
on shuffled labels: it shows what a probe of this capacity reaches on labels that carry no
information (about chance), so a high accuracy is not overclaimed as the model "representing"
the label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import AcdcError
from ..problem import Problem
from ..tasks import TaskData
from .descriptive import residual_stream

__all__ = ["ProbeResult", "fit_probes", "probe_task", "task_labels", "LABELS"]

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

    def sentences(self) -> list[str]:
        best = int(np.argmax(self.accuracy))
        return [f"Label {self.label!r} is decodable best after layer {best} "
                f"({self.accuracy[best]:.0%} held-out accuracy on {self.n_test} examples; "
                f"shuffled-label control {self.control[best]:.0%}, majority class "
                f"{self.chance:.0%})."]

    def as_dict(self) -> dict:
        return {"label": self.label, "accuracy": self.accuracy, "control": self.control,
                "chance": self.chance, "n_train": self.n_train, "n_test": self.n_test,
                "position": self.position}


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
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    k = max(2, min(n - 2, round(train * n)))
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
    feats, ys = [], []
    for b in problem.batches:
        feats.append(residual_stream(problem.model, b.clean)[:, :, position])  # [L+1, b, d]
        ys += [values[r] for r in b.rows]
    res = fit_probes(torch.cat(feats, 1), ys, train, seed, label)
    res.position = position
    return res
