"""Interventions on features: ablate (zero, mean, corrupted) or clamp a feature, at given
positions or everywhere, and see the metric and the predictions change.

    edit = FeatureEdit(layer=1, feature=7)                       # zero it everywhere
    edit = FeatureEdit(layer=1, feature=7, mode="clamp", value=5.0, positions=[9])
    out = intervene(model, transcoders, ids, [edit])             # a prompt (batch)
    out.delta_logits, out.top_before, out.top_after
    out = intervene_task(problem, transcoders, [FeatureEdit(1, 7, mode="corrupted")])
    out.metric_before, out.metric_after                          # the task's metric, means
    predicted_vs_actual(graph, features)                         # the graph's prediction
                                                                 # against the intervention

An intervention runs the transcoders spliced in (:func:`acdc_engine.features.splice.
spliced_run`) twice: once unedited, whose per-layer error terms are kept, then with the edit
applied to the layer's feature activations before they are decoded and the unedited run's
errors added back. The errors are fixed, so the change is the feature's alone: the residual
stream changes by ``(new - old activation) * decoder vector`` where the feature writes, and
that change propagates through the rest of the model (attention, norms, later features
re-encoding what they read). :func:`predicted_vs_actual` compares it with what an attribution
graph's linear edges predict.

Modes: ``zero``; ``clamp`` (to ``value``); ``mean`` (its mean activation over the clean
prompts' tokens); ``corrupted`` (its activation on the corrupted prompt at the same token;
tasks only) or a given ``source`` tensor ``[b, p]`` (``mode="source"``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from ..errors import AcdcError
from ..patching import ReadOut

__all__ = ["FeatureEdit", "MODES", "parse_edit", "edit_function", "Intervention", "intervene",
           "intervene_task", "mean_activation", "intervene_on_prompt", "prompt_ids",
           "predicted_vs_actual"]

MODES = ("zero", "clamp", "mean", "corrupted", "source")
"""What an edited feature's activation becomes."""


@dataclass(frozen=True)
class FeatureEdit:
    """Set feature ``feature`` of layer ``layer`` (see the module docstring for ``mode``) at
    ``positions`` (token indices; None: every position). ``value``: the clamp value, or the
    filled-in mean; ``source`` [b, p]: the activations a ``source`` edit copies."""

    layer: int
    feature: int
    mode: str = "zero"
    value: float | None = None
    positions: tuple[int, ...] | None = None
    source: torch.Tensor | None = field(default=None, compare=False)

    def __post_init__(self):
        if self.mode not in MODES:
            raise AcdcError(f"unknown feature edit mode {self.mode!r}; use one of "
                            f"{', '.join(MODES)}")
        if self.mode == "clamp" and self.value is None:
            raise AcdcError(f"a {self.mode} edit of L{self.layer} feature {self.feature} needs "
                            "its value")
        if self.mode == "source" and self.source is None:
            raise AcdcError(f"a source edit of L{self.layer} feature {self.feature} needs its "
                            "source activations [batch, pos]")
        if self.positions is not None:
            object.__setattr__(self, "positions", tuple(int(p) for p in self.positions))

    @property
    def name(self) -> str:
        """``L{layer}.f{feature}`` (``@p1,p2`` at given positions) and the mode."""
        at = "" if self.positions is None else "@" + ",".join(map(str, self.positions))
        how = self.mode if self.value is None or self.mode == "mean" else \
            f"{self.mode}={self.value:g}"
        return f"L{self.layer}.f{self.feature}{at} {how}"

    def apply(self, acts: torch.Tensor) -> torch.Tensor:
        """``acts`` [b, p, n] with this edit's feature changed (a new tensor)."""
        n, P = acts.shape[-1], acts.shape[-2]
        if not 0 <= self.feature < n:
            raise AcdcError(f"feature {self.feature} is not in layer {self.layer}'s {n} "
                            "features")
        pos = slice(None) if self.positions is None else list(self.positions)
        if self.positions is not None and any(not -P <= p < P for p in self.positions):
            raise AcdcError(f"positions {list(self.positions)} are outside the prompt's {P} "
                            "tokens")
        out = acts.clone()
        if self.mode == "zero":
            new = 0.0
        elif self.mode in ("clamp", "mean"):
            new = float(self.value)
        else:
            src = self.source.to(acts.device, acts.dtype)
            src = src.expand(acts.shape[:-1]) if src.dim() < 2 or src.shape[0] == 1 else src
            new = src[:, pos]
        out[:, pos, self.feature] = new
        return out


_EDIT = re.compile(r"^(\d+):(\d+)(?:@(\d+(?:,\d+)*))?(?:=(-?[\d.eE+-]+))?$")


def parse_edit(text: str) -> FeatureEdit:
    """``LAYER:FEATURE[@POS[,POS..]][=VALUE]`` -> a :class:`FeatureEdit` (no value, or 0:
    zero it; another value: clamp to it; no position: everywhere)."""
    m = _EDIT.match(text.strip())
    if m is None:
        raise AcdcError(f"expected LAYER:FEATURE[@POS,..][=VALUE] (e.g. 2:17@9=0), got "
                        f"{text!r}")
    pos = None if m.group(3) is None else tuple(int(p) for p in m.group(3).split(","))
    try:
        value = None if m.group(4) is None else float(m.group(4))
    except ValueError:
        raise AcdcError(f"{text!r}: {m.group(4)!r} is not a number") from None
    if not value:
        return FeatureEdit(int(m.group(1)), int(m.group(2)), "zero", None, pos)
    return FeatureEdit(int(m.group(1)), int(m.group(2)), "clamp", value, pos)


def edit_function(edits):
    """``edit(layer, acts) -> acts`` applying every edit of ``edits`` on its layer (the
    splice's ``edit`` hook)."""
    by_layer: dict[int, list[FeatureEdit]] = {}
    for e in edits:
        by_layer.setdefault(e.layer, []).append(e)

    def edit(layer: int, acts: torch.Tensor) -> torch.Tensor:
        for e in by_layer.get(layer, ()):
            acts = e.apply(acts)
        return acts

    return edit


def _check_layers(transcoders, edits) -> None:
    for e in edits:
        if not 0 <= e.layer < transcoders.n_layers:
            raise AcdcError(f"edit {e.name}: layer {e.layer} is not one of the transcoders' "
                            f"layers 0..{transcoders.n_layers - 1}")


@dataclass
class Intervention:
    """What an intervention did: the ``edits``; ``logits_before`` / ``logits_after`` at the
    read positions [b, k, vocab] (of the spliced model with its errors: the model's own
    logits before); each example's top ``(token, prob)`` before and after at its first read
    position; ``metric_before`` / ``metric_after`` (means; None without a metric) and the
    per-example values."""

    edits: list[FeatureEdit]
    logits_before: torch.Tensor
    logits_after: torch.Tensor
    top_before: list[list[tuple[str, float]]]
    top_after: list[list[tuple[str, float]]]
    metric_before: float | None = None
    metric_after: float | None = None
    per_example: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def delta_logits(self) -> torch.Tensor:
        """``logits_after - logits_before`` [b, k, vocab]."""
        return self.logits_after - self.logits_before

    @property
    def changed(self) -> list[int]:
        """The examples whose top prediction changed."""
        return [i for i, (a, b) in enumerate(zip(self.top_before, self.top_after))
                if a[:1] != b[:1]]

    def to_dict(self) -> dict:
        """JSON-ready summary (the viewer's and the console's)."""
        return {"edits": [e.name for e in self.edits], "metric_before": self.metric_before,
                "metric_after": self.metric_after, "top_before": self.top_before,
                "top_after": self.top_after, "changed": self.changed}

    def summary(self) -> str:
        """A few readable lines."""
        lines = [", ".join(e.name for e in self.edits)]
        if self.metric_before is not None:
            lines.append(f"metric {self.metric_before:.4g} -> {self.metric_after:.4g} "
                         f"({self.metric_after - self.metric_before:+.4g})")
        for i, (a, b) in enumerate(zip(self.top_before[:4], self.top_after[:4])):
            show = lambda t: ", ".join(f"{s!r} {p:.2f}" for s, p in t[:3])  # noqa: E731
            lines.append(f"  example {i}: {show(a)}  ->  {show(b)}")
        return "\n".join(lines)


def _top(logits: torch.Tensor, tok, k: int) -> list[list[tuple[str, float]]]:
    """Each example's top ``k`` ``(token, prob)`` at its first read position."""
    p = logits[:, 0].float().softmax(-1)
    v, i = p.topk(min(k, p.shape[-1]), -1)
    dec = (lambda t: tok.decode([t])) if tok is not None else (lambda t: f"<{t}>")
    return [[(dec(int(t)), float(x)) for t, x in zip(ti, vi)] for ti, vi in zip(i, v)]


@torch.no_grad()
def _pair(adapter, ids, transcoders, edits, readout: ReadOut):
    """(logits before, logits after) of one batch: the edited run adds the unedited one's
    errors."""
    from .splice import spliced_run

    base = spliced_run(adapter, ids, transcoders, readout=readout)
    after = spliced_run(adapter, ids, transcoders, errors=base.errors, edit=edit_function(edits),
                        readout=readout)
    return base.logits, after.logits


def intervene(model, transcoders, ids: torch.Tensor, edits, *, read: int = -1,
              k: int = 5) -> Intervention:
    """Apply ``edits`` (:class:`FeatureEdit`) to the prompts ``ids`` [b, p] (or one prompt
    [p]; ``mean``/``corrupted`` edits need their value or source given): logits at position
    ``read`` before and after, and the top ``k`` predictions there."""
    adapter, tok = getattr(model, "adapter", model), getattr(model, "tokenizer", None)
    edits = list(edits)
    _check_layers(transcoders, edits)
    if any(e.mode == "corrupted" or (e.mode == "mean" and e.value is None) for e in edits):
        raise AcdcError("a corrupted edit, or a mean edit without its value, needs a task's "
                        "prompts: use intervene_task")
    ids = (ids[None] if ids.dim() == 1 else ids).to(adapter.device)
    P = ids.shape[1]
    if not -P <= read < P:
        raise AcdcError(f"read position {read} is outside the prompt's {P} tokens")
    readout = ReadOut.at(torch.full((ids.shape[0], 1), read % P, dtype=torch.long))
    before, after = _pair(adapter, ids, transcoders, edits, readout)
    return Intervention(edits, before.cpu(), after.cpu(), _top(before, tok, k),
                        _top(after, tok, k))


@torch.no_grad()
def _resolve(problem, transcoders, edits, i: int, batch) -> list[FeatureEdit]:
    """This batch's edits: ``corrupted`` becomes a ``source`` edit with the corrupted prompts'
    activations, ``mean`` without a value takes the mean over the clean prompts' tokens."""
    from dataclasses import replace

    from .splice import spliced_run

    out, corrupted = [], None
    for e in edits:
        if e.mode == "corrupted":
            if corrupted is None:
                corrupted = spliced_run(problem.model.adapter, batch.corrupted, transcoders).acts
            e = replace(e, mode="source", source=corrupted[e.layer][..., e.feature])
        out.append(e)
    return out


@torch.no_grad()
def mean_activation(problem, transcoders, layer: int, feature: int) -> float:
    """A feature's mean activation over every token of the problem's clean prompts."""
    from .splice import spliced_run

    total, n = 0.0, 0
    for b in problem.batches:
        a = spliced_run(problem.model.adapter, b.clean, transcoders).acts[layer][..., feature]
        total, n = total + float(a.sum()), n + a.numel()
    return total / max(1, n)


def intervene_task(problem, transcoders, edits, *, k: int = 5) -> Intervention:
    """Apply ``edits`` to every clean prompt of ``problem`` (a
    :class:`~acdc_engine.problem.Problem`): its metric (mean over examples) before and after,
    the logits at its read positions, the top ``k`` predictions there. A ``mean`` edit with no
    value takes the feature's mean over the clean prompts' tokens."""
    from dataclasses import replace

    edits = [replace(e, value=mean_activation(problem, transcoders, e.layer, e.feature))
             if e.mode == "mean" and e.value is None else e for e in edits]
    _check_layers(transcoders, edits)
    adapter, tok = problem.model.adapter, problem.model.tokenizer
    logits_b, logits_a, mb, ma = [], [], [], []
    for i, batch in enumerate(problem.batches):
        readout = ReadOut.of(batch)
        before, after = _pair(adapter, batch.clean, transcoders,
                              _resolve(problem, transcoders, edits, i, batch), readout)
        mb.append(problem.metric.score(before, batch).float().cpu())
        ma.append(problem.metric.score(after, batch).float().cpu())
        logits_b.append(before[:, :1].cpu())
        logits_a.append(after[:, :1].cpu())
    before, after = torch.cat(logits_b), torch.cat(logits_a)
    vb, va = torch.cat(mb), torch.cat(ma)
    return Intervention(list(edits), before, after, _top(before, tok, k), _top(after, tok, k),
                        float(vb.mean()), float(va.mean()), (vb, va))


def prompt_ids(model, prompt: str, bos: bool = True) -> torch.Tensor:
    """A prompt's token ids [1, p] as an attribution graph reads it
    (:func:`acdc_engine.features.graph_nodes.prompt_ids`: a special token first;
    ``bos=False``: the tokenizer's ids alone)."""
    from .graph_nodes import prompt_ids as graph_ids

    tok = getattr(model, "tokenizer", None)
    if tok is None:
        raise AcdcError("a text prompt needs the model's tokenizer: pass the LoadedModel")
    if bos:
        return graph_ids(getattr(model, "adapter", model), tok, prompt)[None].cpu()
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    if not ids:
        raise AcdcError("the prompt is empty")
    return torch.tensor([ids])


def intervene_on_prompt(model, transcoders, prompt: str, features, value: float = 0.0,
                        bos: bool = True) -> dict:
    """Set each feature ``(layer, feature, position)`` of ``features`` to ``value`` (0:
    ablate) on ``prompt`` (tokenized by :func:`prompt_ids`): the top predictions at the last
    position before and after, and the changed logits (the viewer's graph page calls it)."""
    edits = [FeatureEdit(int(layer), int(f), mode="zero" if value == 0 else "clamp",
                         value=None if value == 0 else float(value), positions=(int(pos),))
             for layer, f, pos in features]
    out = intervene(model, transcoders, prompt_ids(model, prompt, bos), edits, k=10)
    delta = out.delta_logits[0, 0]
    tok = getattr(model, "tokenizer", None)
    moved = delta.abs().topk(min(10, delta.numel())).indices.tolist()
    return {"before": [{"token": t, "prob": p} for t, p in out.top_before[0]],
            "after": [{"token": t, "prob": p} for t, p in out.top_after[0]],
            "logit_changes": [{"token": tok.decode([i]) if tok is not None else f"<{i}>",
                               "delta": float(delta[i])} for i in moved],
            "edits": [e.name for e in edits]}


def predicted_vs_actual(graph, features=None, *, model, transcoders, target: int = 0,
                        top: int = 8):
    """What an attribution graph predicts ablating each of ``features`` (feature node indices;
    default the ``top`` with the largest predicted effect) does to its target logit, against
    what the intervention does (:mod:`acdc_engine.features.graph_check` says how): a
    :class:`~acdc_engine.features.graph_check.PredictedActual` table."""
    from .graph_check import PredictedActual, Row, graph_effects

    direct, total = graph_effects(graph, target)
    if features is None:
        features = total.abs().argsort(descending=True)[:top].tolist()
    ids = graph.input_tokens[None].long()
    tid = int(graph.logit_ids[target])
    rows = []
    for i in features:
        kind, layer, pos, feat = graph.node(int(i))
        if kind != "feature":
            raise AcdcError(f"node {i} of the graph is a {kind} node, not a feature")
        out = intervene(model, transcoders, ids,
                        [FeatureEdit(int(layer), int(feat), positions=(int(pos),))], k=1)
        before, after = out.logits_before[0, 0].double(), out.logits_after[0, 0].double()
        actual = float((after[tid] - after.mean()) - (before[tid] - before.mean()))
        rows.append(Row(int(layer), int(pos), int(feat),
                        float(graph.activation_values[graph.selected_features[int(i)]]),
                        float(direct[int(i)]), float(total[int(i)]), actual))
    tok = getattr(model, "tokenizer", None)
    target_text = graph.logit_tokens[target] if graph.logit_tokens else \
        (tok.decode([tid]) if tok is not None else str(tid))
    return PredictedActual(graph.input_string, str(target_text), rows)
