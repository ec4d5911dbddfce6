"""MLP-neuron-group ablation over a task's examples, through the engine's one patched forward.

    res = neuron_ablation(problem, layer=1, groups=["top:8", "0:16", [3, 5, 7]], source="zero")
    res.effects[i]          # Interval: metric change (ablated - full), mean over examples
    res.of_mlp[i]           # the share of the whole MLP's effect the group carries
    d = neuron_direct_effects(problem, layer=1)   # [d_mlp]: first-order direct effect each

A *neuron group* of layer ``L`` is a set ``G`` of the hidden units of its MLP (the input of the
output projection, after the nonlinearity and any gating: :meth:`ModelAdapter.mlp_out_proj`).
Ablating it replaces ``h[G]`` by a source value, at every position: zero, the mean over the
task's corrupted prompts (per position, per prompt length, like mean ablation of a node), or the
corrupted run's own ``h[G]`` (same example). Groups are given as a list of indices, a ``slice``
or ``range``, or a string: ``"0:16"`` (a slice), ``"3,5,7"`` (indices), ``"top:8"`` (the 8
neurons with the largest ``|direct effect|``, see :func:`neuron_direct_effects`) or ``"all"``.
A string that selects no neuron (``""``, ``"5:2"``, ``"top:0"``) is refused; an explicit empty
list is the empty group (a check: it changes nothing).

How: the hidden activation ``h`` is *read* with a forward pre-hook on the output projection
during a plain :func:`~acdc_engine.patching.run` (the hook never changes it). Ablating ``G``
changes the MLP writer's output from ``out = f(h)`` to ``out' = out + f(h') - f(h)``, ``f`` =
:meth:`ModelAdapter.mlp_from_hidden` (for a linear projection ``W_out[:, G] @ (h_src[G] -
h[G])``). That is a change of one writer's output, so it goes through the patched forward like
any node ablation: the MLP's mask row is removed and its ``ablated`` row carries ``out'``. Every
reader above the MLP then reads exactly ``resid - out + out'``; nothing upstream of the MLP
changes, so ``h`` there is the clean run's. The empty group changes nothing, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import AcdcError
from ..graph import NodeKind
from ..patching import writer_outputs
from ..problem import Problem
from ..progress import progress_bar
from .uncertainty import Interval, bootstrap

__all__ = ["NEURON_SOURCES", "hidden_run", "parse_group", "neuron_sources",
           "neuron_direct_effects", "NeuronAblationResult", "neuron_ablation"]

NEURON_SOURCES = ("zero", "mean", "corrupted")
"""What an ablated neuron group's hidden activation is replaced by."""

# ----- reading the hidden activation ------------------------------------------------------------
def _check_layer(problem: Problem, layer: int) -> int:
    g = problem.graph
    if g.attn_only:
        raise AcdcError("the model is attention-only: it has no MLP neurons")
    if not 0 <= layer < g.n_layers:
        raise AcdcError(f"layer {layer} is not in a model of {g.n_layers} layers")
    w = g.writer_index(f"m{layer}")
    assert g.writers[w].kind is NodeKind.MLP
    return w


@torch.no_grad()
def hidden_run(adapter, layer: int, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A plain patched-forward run of ``ids`` [b, p] that also reads layer ``layer``'s MLP
    hidden activation: ``(writer outputs [W, b, p, d], h [b, p, d_mlp])``."""
    seen = []

    def hook(module, args):
        seen.append(args[0].detach())

    handle = adapter.mlp_out_proj(layer).register_forward_pre_hook(hook)
    try:
        acts = writer_outputs(adapter, ids)
    finally:
        handle.remove()
    if len(seen) != 1:
        raise AcdcError(f"the MLP output projection of layer {layer} ran {len(seen)} times in one "
                        "forward pass (expected once): the family's mlp_out_proj is wrong")
    return acts, seen[0]


# ----- groups and sources --------------------------------------------------------------------
def parse_group(spec, d_mlp: int, direct: torch.Tensor | None = None) -> tuple[str, list[int]]:
    """``(name, sorted indices)`` of one group spec (see the module docstring); ``"top:k"``
    needs ``direct`` ([d_mlp], from :func:`neuron_direct_effects`)."""
    if isinstance(spec, torch.Tensor):
        spec = spec.tolist()
    if isinstance(spec, (slice, range)):
        idx = list(range(d_mlp))[spec] if isinstance(spec, slice) else list(spec)
        name = f"{spec.start or 0}:{spec.stop if spec.stop is not None else d_mlp}"
    elif isinstance(spec, str):
        text = spec.strip().replace(" ", "")
        name = text
        if text == "all":
            idx = list(range(d_mlp))
        elif text.startswith("top:"):
            if direct is None:
                raise AcdcError(f"group {spec!r} needs the neurons' direct effects")
            k = _int(text[4:], spec)
            if not 1 <= k <= d_mlp:
                raise AcdcError(f"group {spec!r}: k must be in 1..{d_mlp} (the MLP has {d_mlp} "
                                "neurons)")
            idx = direct.abs().argsort(descending=True)[:k].tolist()
        elif ":" in text:
            a, b = (_int(t, spec) if t else None for t in text.split(":", 1))
            out = [x for x in (a, b) if x is not None and not -d_mlp <= x <= d_mlp]
            if out:
                raise AcdcError(f"group {spec!r}: {out[0]} is outside an MLP of {d_mlp} "
                                f"neurons (a slice START:STOP runs within -{d_mlp}..{d_mlp})")
            idx = list(range(d_mlp))[slice(a, b)]
            if not idx:
                raise AcdcError(f"group {spec!r} selects no neurons: a slice START:STOP takes "
                                f"START up to, not including, STOP (e.g. '0:16'), in an MLP of "
                                f"{d_mlp} neurons")
        else:
            idx = [_int(t, spec) for t in text.split(",") if t]
            if not idx:
                raise AcdcError(f"group {spec!r} is empty: give indices '3,5,7', a slice "
                                "'0:16', 'top:K' or 'all'")
    else:
        idx = [int(i) for i in spec]
        name = ",".join(map(str, idx)) if len(idx) <= 6 else f"{len(idx)} neurons"
    bad = [i for i in idx if not -d_mlp <= i < d_mlp]
    if bad:
        raise AcdcError(f"group {name!r}: neuron {bad[0]} is not in an MLP of {d_mlp} neurons")
    return name, sorted({i % d_mlp for i in idx})


def _int(text: str, spec) -> int:
    try:
        return int(text)
    except ValueError:
        raise AcdcError(f"bad neuron group {spec!r}: use indices '3,5,7', a slice '0:16', "
                        "'top:K' or 'all'") from None


@torch.no_grad()
def neuron_sources(problem: Problem, layer: int, source: str) -> list[torch.Tensor | None]:
    """Per batch, the values that replace ablated neurons: ``[b or 1, p, d_mlp]`` (None for
    zero). ``mean`` averages the hidden activation over every corrupted prompt of the same
    length, per position; ``corrupted`` is each example's corrupted run."""
    if source not in NEURON_SOURCES:
        raise AcdcError(f"unknown neuron source {source!r} (use {', '.join(NEURON_SOURCES)})")
    _check_layer(problem, layer)
    if source == "zero":
        return [None] * len(problem.batches)
    adapter = problem.model.adapter
    hs = [hidden_run(adapter, layer, b.corrupted)[1] for b in problem.batches]
    if source == "corrupted":
        return hs
    sums: dict[int, tuple[torch.Tensor, int]] = {}
    for h in hs:
        s, n = sums.get(h.shape[1], (0, 0))
        sums[h.shape[1]] = (s + h.sum(0, keepdim=True), n + len(h))
    return [sums[h.shape[1]][0] / sums[h.shape[1]][1] for h in hs]  # each [1, p, d_mlp]


def _replaced(h: torch.Tensor, src: torch.Tensor | None, idx: list[int]) -> torch.Tensor:
    """``h`` with the neurons ``idx`` taken from ``src`` (zero when None): [b, p, d_mlp]."""
    out = h.clone()
    if idx:
        cols = torch.tensor(idx, device=h.device)
        out[..., cols] = 0 if src is None else src.expand_as(h)[..., cols]
    return out


# ----- direct effects ---------------------------------------------------------------------------
def neuron_direct_effects(problem: Problem, layer: int, source: str = "zero",
                          sources: list | None = None) -> torch.Tensor:
    """Each neuron's first-order direct effect on the metric, mean over examples: ``[d_mlp]``.

    ``direct[i] = sum_pos (h_src[i] - h[i]) * d(g . f(h)) / dh[i]``, where ``g`` is the
    gradient of the metric with respect to what the final norm and head read (the clean run's
    final residual stream) and ``f`` the MLP's output from its hidden activation: the change of
    the metric through the path ``neuron -> logits`` alone, to first order (the neuron-level
    analogue of direct logit attribution)."""
    _check_layer(problem, layer)
    adapter, g = problem.model.adapter, problem.graph
    sources = sources if sources is not None else neuron_sources(problem, layer, source)
    biases = [b for b in (adapter.attn_bias(i) for i in range(g.n_layers)) if b is not None]
    total = None
    for batch, src in zip(problem.batches, sources):
        acts, h = hidden_run(adapter, layer, batch.clean)
        final = acts.sum(0)  # [b, p, d]: the residual stream the final norm and head read
        for b in biases:
            final = final + b.detach()
        final = final.detach().requires_grad_(True)
        at = batch.positions.to(final.device)[:, :, None].expand(-1, -1, final.shape[-1])
        logits = adapter.unembed(final.gather(1, at))  # [b, k, vocab] at the read positions
        (grad,) = torch.autograd.grad(problem.metric.score(logits, batch).sum(), final)
        hh = h.detach().requires_grad_(True)
        (gh,) = torch.autograd.grad((adapter.mlp_from_hidden(layer, hh) * grad).sum(), hh)
        diff = (torch.zeros_like(h) if src is None else src.expand_as(h)) - h  # [b, p, d_mlp]
        part = (diff * gh).sum((0, 1)).double().cpu()
        total = part if total is None else total + part
    return (total / problem.n_examples).float()


# ----- ablation -------------------------------------------------------------------------------
@dataclass
class NeuronAblationResult:
    """Per group of layer ``layer``'s MLP neurons: the metric change when the group is replaced
    by ``source`` (ablated - full, mean over examples, with its bootstrap interval), and
    ``of_mlp``: that change over the change when *every* neuron of the MLP is replaced
    (``mlp_effect``), i.e. the share of the MLP's effect the group carries. ``direct`` holds the
    neurons' first-order direct effects ([d_mlp]) when they were computed."""

    layer: int
    groups: list[str]
    indices: list[list[int]]
    effects: list[Interval]
    mlp_effect: Interval
    source: str
    full: float
    d_mlp: int
    direct: torch.Tensor | None = None

    @property
    def of_mlp(self) -> list[float]:
        m = self.mlp_effect.point
        return [e.point / m if m else float("nan") for e in self.effects]

    def significant(self) -> list[str]:
        """Groups whose interval excludes zero."""
        return [n for n, e in zip(self.groups, self.effects) if e.excludes_zero()]

    def as_dict(self) -> dict:
        return {"layer": self.layer, "groups": self.groups, "indices": self.indices,
                "effects": [e.as_dict() for e in self.effects], "of_mlp": self.of_mlp,
                "mlp_effect": self.mlp_effect.as_dict(), "source": self.source,
                "full": self.full, "d_mlp": self.d_mlp,
                "direct": None if self.direct is None else self.direct.tolist()}


@torch.no_grad()
def neuron_ablation(problem: Problem, layer: int, groups: list, source: str = "zero",
                    n_boot: int = 1000, progress: bool = False) -> NeuronAblationResult:
    """Ablate each group of layer ``layer``'s MLP neurons alone from ``source`` (zero, mean,
    corrupted) over all the problem's examples; effects with bootstrap intervals (see the
    module docstring for the group specs and how it runs through the patched forward)."""
    w = _check_layer(problem, layer)
    model, g = problem.model, problem.graph
    adapter = model.adapter
    d_mlp = hidden_run(adapter, layer, problem.batches[0].clean[:1])[1].shape[-1]
    for s in groups:  # a bad group is refused before any work
        if not (isinstance(s, str) and s.strip().startswith("top:")):
            parse_group(s, d_mlp)
    sources = neuron_sources(problem, layer, source)
    direct = None
    if any(isinstance(s, str) and s.strip().startswith("top:") for s in groups):
        with torch.enable_grad():
            direct = neuron_direct_effects(problem, layer, source, sources)
    parsed = [parse_group(s, d_mlp, direct) for s in groups]
    sets = [idx for _, idx in parsed] + [list(range(d_mlp))]  # the last: the whole MLP
    mask = torch.ones(g.n_writers, g.n_readers, device=model.device, dtype=model.dtype)
    mask[w, g.valid[w]] = 0  # the MLP's readers read its ablated row
    full, values = [], [[] for _ in sets]
    for batch, src in zip(progress_bar(problem.batches, desc="neuron ablation",
                                       enabled=progress), sources):
        acts, h = hidden_run(adapter, layer, batch.clean)  # [W, b, p, d], [b, p, d_mlp]
        full.append(problem.score(batch).float())
        out = adapter.mlp_from_hidden(layer, h)  # [b, p, d]
        clean_out = acts[w].clone()
        ablated = acts  # only the MLP's row differs from this run's outputs
        for k, idx in enumerate(sets):
            new = adapter.mlp_from_hidden(layer, _replaced(h, src, idx))
            ablated[w] = clean_out + (new - out)
            values[k].append(problem.score(batch, mask, ablated).float())
    full_t = torch.cat(full).cpu()  # [n]
    effects = [bootstrap(torch.cat(v).cpu() - full_t, n_boot=n_boot) for v in values]
    return NeuronAblationResult(layer, [n for n, _ in parsed], [i for _, i in parsed],
                                effects[:-1], effects[-1], source, float(full_t.mean()), d_mlp,
                                direct)
