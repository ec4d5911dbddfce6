"""Conformance kit for plugin authors: run these against your own task, metric or model family.

    from acdc_engine.testing import check_task, check_metric, check_model

    def test_my_task():
        check_task(my_plugin.MY_TASK, tokenizer=load_model("tiny-ioi").tokenizer)

    def test_my_family(tmp_path):
        check_model(acdc_engine.load_model(str(path_to_a_small_random_model_of_my_family)))

Each check raises :class:`ConformanceError` (an ``AssertionError``, so test runners report it as
a failure) with a message that says which rule failed. ``check_model`` runs the model-family
invariants of the architecture: the full circuit reproduces the model's own logits (traced
through nnsight), the empty circuit reproduces the ablated run, cutting every edge into the
logits gives the ablated run's logits, ``attn_out`` and ``attn_write`` are the sum of
``attn_heads``, and EAP matches exact single-edge patching to first order.

``check_model``'s tolerances are not fixed numbers: each comparison of two computations in the
model's dtype is held to a bound derived at run time from the same computation in float64 (the
model cast up, exactly, and back; :mod:`acdc_engine.testing.numerics`)::

    |ours - ref64| <= 4 x |model's own - ref64| + 16 eps x max|value|

(``eps`` of the model's dtype): the patched forward is not materially worse than the model's own
forward. A model that cannot run in float64 is checked against ``tol`` x max(|value|, 1)
instead, with a warning; pass ``tol`` to use that fixed relative bound throughout.
"""

from __future__ import annotations

import os
import warnings

import torch

from ..metrics import Metric
from ..models import LoadedModel
from ..patching import ABLATIONS, Ablation, PatchPlan, run, writer_outputs
from ..problem import Problem
from ..tasks import Batch, Task, prepare

__all__ = ["check_task", "check_metric", "check_model", "first_order_error", "ConformanceError"]

FACTOR, ULPS = 4.0, 16.0  # ours <= 4x the model's own error against float64 + 16 eps x max|value|


class ConformanceError(AssertionError):
    """A plugin broke a rule of the conformance kit; the message names the rule."""


def _require(ok, message: str) -> None:
    if not ok:
        raise ConformanceError(message)


def check_task(task: Task, tokenizer, n: int = 8) -> None:
    """Rows have the required fields, honour ``n`` and the seed, and tokenize cleanly."""
    from ..plugins import registry

    rows = task.load_rows(n, 0, tokenizer)
    _require(isinstance(rows, list) and rows, f"task {task.name!r} returned no rows")
    _require(len(rows) <= n, f"task {task.name!r} returned {len(rows)} rows for n={n}")
    for i, r in enumerate(rows):
        for key in ("clean", "corrupted"):
            _require(isinstance(r.get(key), str) and r[key],
                     f"row {i + 1} lacks a string {key!r}")
        _require(r.get("answer") or r.get("answer_set"),
                 f"row {i + 1} has no answer or answer_set")
    _require(task.load_rows(n, 0, tokenizer) == rows,
             f"task {task.name!r} is not deterministic for a fixed seed")
    prepare(task, tokenizer, rows)  # raises TaskDataError naming every bad row
    reg = registry()
    _require(task.default_metric in reg.metrics,
             f"default metric {task.default_metric!r} of task {task.name!r} is not registered")
    _require(task.default_ablation in ABLATIONS, f"unknown ablation {task.default_ablation!r}")


def check_metric(metric: Metric, vocab: int = 11, batch: int = 4) -> None:
    """One finite value per example, on a batch that reads the last position and on one that
    reads three positions with per-position answers (and token sets); gradients flow when the
    metric says it is differentiable."""
    g = torch.Generator().manual_seed(0)
    for k in (1, 3):
        answers, wrongs = (torch.randint(0, vocab, (batch, k), generator=g) for _ in "aw")
        sets = torch.randint(0, vocab, (batch, 3), generator=g)
        sets[0, -1] = -1  # padding, as in a real batch of unequal sets
        b = Batch(clean=torch.zeros(batch, 4, dtype=torch.long),
                  corrupted=torch.zeros(batch, 4, dtype=torch.long),
                  answers=answers, wrongs=wrongs, rows=list(range(batch)),
                  clean_logits=torch.randn(batch, k, vocab, generator=g),
                  positions=torch.arange(4 - k, 4).repeat(batch, 1),
                  answer_set=sets, wrong_set=(sets + 1) % vocab)
        logits = torch.randn(batch, k, vocab, generator=g, requires_grad=True)
        values = metric.score(logits, b)  # checks shape and finiteness
        _require(values.shape == (batch,), f"metric {metric.name!r} gave shape {values.shape}")
        if metric.differentiable:
            values.sum().backward()
            _require(logits.grad is not None and torch.isfinite(logits.grad).all(),
                     f"metric {metric.name!r} claims to be differentiable but gives no finite "
                     f"gradient")


class _Bounds:
    """``check_model``'s comparisons: each held to a bound from a float64 run of the same
    inputs (module docstring), or to ``tol`` x max(|value|, 1) where that run is impossible."""

    def __init__(self, model: LoadedModel, tol: float | None):
        self.model, self.tol = model, tol
        dtype = model.dtype if model.dtype.is_floating_point else torch.float32
        self.eps = float(torch.finfo(dtype).eps)

    def float64(self, fn):
        """``fn()`` with the model in float64 (its inputs cast up by ``fn``), or None: with
        ``tol`` given, or when the model cannot run in float64 (then ``tol`` = 1e-4, warned)."""
        from .numerics import float64

        if self.tol is not None:
            return None
        try:
            with torch.no_grad(), float64(self.model):
                return fn()
        except (RuntimeError, NotImplementedError, TypeError, ValueError) as e:
            warnings.warn(f"check_model: the model cannot run in float64 ({e}); its comparisons "
                          "are held to 1e-4 x max(|value|, 1) instead of a float64-derived "
                          "bound", stacklevel=3)
            self.tol = 1e-4
            return None

    def check(self, ours, own, ref64, rule: str) -> None:
        """``ours`` (through the adapter) against ``own`` (the model's, or the adapter's plain
        form) and ``ref64`` (``own``'s computation in float64, or None)."""
        from .numerics import EPS32, f32_bound, magnitude, max_error

        if ref64 is None:
            tol = 1e-4 if self.tol is None else self.tol
            err = max_error(ours, own) / max(magnitude(own), 1.0)
            _require(err < tol, f"{rule}: differs by {err:.2e} relative to max|value| "
                     f"(allowed {tol:g})")
            return
        err, own_err = max_error(ours, ref64), max_error(own, ref64)
        ulps = ULPS * self.eps / EPS32  # 16 eps of the model's dtype
        bound = f32_bound(ref64, plain=own, factor=FACTOR, ulps=ulps)
        if os.environ.get("ACDC_NUMERICS_REPORT"):  # as assert_close_to_f64 prints them
            print(f"\n[numerics] check_model {rule.split(' ', 3)[:3]}: ours {err:.3g} own "
                  f"{own_err:.3g} bound {bound:.3g} scale {magnitude(ref64):.3g}")
        _require(err <= bound, f"{rule}: {err:.2e} from the same computation in float64, where "
                 f"{FACTOR:g} x the model's own error {own_err:.2e} + {ULPS:g} eps x "
                 f"{magnitude(ref64):.3g} = {bound:.2e} is allowed")


def check_model(model: LoadedModel, tol: float | None = None, length: int = 5) -> None:
    """The model-family invariants on random token ids. ``tol``: None derives every bound from
    a float64 run of the same inputs (the module docstring); a number holds each comparison to
    ``tol`` x max(|value|, 1) instead."""
    g = model.graph
    vocab = model.hf.config.get_text_config().vocab_size
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(0, vocab, (2, length), generator=gen).to(model.device)
    corrupted = torch.randint(0, vocab, (2, length), generator=gen).to(model.device)
    adapter = model.adapter
    bounds = _Bounds(model, tol)
    with torch.no_grad():
        ref_clean = model.reference_logits(clean)
        ref_corr = model.reference_logits(corrupted)
        acts = writer_outputs(adapter, corrupted)
        ones = torch.ones(g.n_writers, g.n_readers, device=model.device)
        full = run(adapter, clean, PatchPlan(mask=ones, ablated=acts))
        empty = run(adapter, clean, PatchPlan(mask=torch.zeros_like(ones), ablated=acts))
        cut = ones.clone()
        cut[:, g.logits_slot] = 0
        cut_logits = run(adapter, clean, PatchPlan(mask=cut, ablated=acts))
    # the model's own logits in float64: the references of all three comparisons
    ref64 = bounds.float64(lambda: (model.reference_logits(clean),
                                    model.reference_logits(corrupted)))
    clean64, corr64 = (None, None) if ref64 is None else ref64
    bounds.check(full, ref_clean, clean64, "full circuit differs from the model's own logits")
    bounds.check(empty, ref_corr, corr64, "empty circuit differs from the corrupted run")
    bounds.check(cut_logits, ref_corr, corr64,
                 "cutting every edge into the logits is not the corrupted run")
    _check_mlp_neurons(model, clean, bounds)
    _check_attn_out(model, clean, bounds)
    _check_first_order(model, clean, corrupted)


def _check_attn_out(model: LoadedModel, ids, bounds: _Bounds) -> None:
    """``attn_out`` and ``attn_write`` are the heads' writes added up, and ``attn_write`` leaves
    every head's write in its buffer, for one shared stream and for per-head inputs, at every
    layer."""
    adapter, H = model.adapter, model.graph.n_heads
    gen = torch.Generator().manual_seed(1)
    # weights frozen, as in attribution: a family's attn_write may form the writes in place
    # only then (with weight gradients wanted it takes the per-head path)
    with model.frozen():
        _check_sums(adapter, H, ids, gen, model.graph.n_layers, bounds)


def _check_sums(adapter, H: int, ids, gen, n_layers: int, bounds: _Bounds) -> None:
    """:func:`_check_attn_out`'s comparisons, layer by layer: each against ``attn_heads`` (and
    their sum) in float64 on the same inputs."""
    with torch.no_grad():
        adapter.prepare(ids)
        x = adapter.embed(ids)  # [b, p, d]
        noise = torch.randn((3, H, *x.shape), generator=gen).to(x)
        per_head = [x[None] + 0.1 * x.float().std().to(x.dtype) * n for n in noise]
        for layer in range(n_layers):
            for q, k, v in ((x, x, x), per_head):
                heads = adapter.attn_heads(layer, q, k, v)
                want = heads.sum(0)
                out = torch.full_like(heads, float("nan"))
                got = [("attn_out", adapter.attn_out(layer, q, k, v)),
                       ("attn_write", adapter.attn_write(layer, q, k, v, out))]

                def heads64(layer=layer, q=q, k=k, v=v):
                    adapter.prepare(ids)  # tables in float64
                    return adapter.attn_heads(layer, q.double(), k.double(), v.double())

                h64 = bounds.float64(heads64)
                adapter.prepare(ids)  # back to the model's dtype
                for name, value in got:
                    bounds.check(value, want, None if h64 is None else h64.sum(0),
                                 f"{name} of layer {layer} is not the sum of attn_heads")
                bounds.check(out, heads, h64, f"attn_write of layer {layer} does not leave "
                             "each head's write of attn_heads in its buffer")


def _check_mlp_neurons(model: LoadedModel, ids, bounds: _Bounds) -> None:
    """Where the adapter declares the MLP-neuron hook point (``mlp_out_proj``), the hidden
    activation read there gives the MLP node's output back through ``mlp_from_hidden``."""
    from ..errors import UnsupportedModelError

    g, adapter = model.graph, model.adapter
    if g.attn_only:
        return
    try:
        proj = adapter.mlp_out_proj(0)
    except UnsupportedModelError:
        return  # not declared: the neuron tools refuse this family with the reason
    seen = []
    handle = proj.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            x = adapter.embed(ids)
            out = adapter.mlp(0, x)
    finally:
        handle.remove()
    _require(len(seen) == 1, f"mlp_out_proj(0) ran {len(seen)} times in one mlp() call; it "
             "must run once, with the hidden activation as its input")
    with torch.no_grad():
        back = adapter.mlp_from_hidden(0, seen[0])
    out64 = bounds.float64(lambda: adapter.mlp(0, x.double()))
    bounds.check(back, out, out64, "mlp_from_hidden(0, hidden) differs from mlp(0, x)")


def _check_first_order(model: LoadedModel, clean, corrupted, eps: float = 1e-2) -> None:
    """EAP scores equal exact single-edge effects / eps as the ablation approaches clean."""
    from ..scoring.attribution import attribute

    g, adapter = model.graph, model.adapter
    with torch.no_grad():
        c = writer_outputs(adapter, clean)
        k = writer_outputs(adapter, corrupted)
    near = c + eps * (k - c)

    class Near(Ablation):
        def activations(self, adapter, batch):
            return near

    metric = Metric("first_logit", lambda lg, b: lg[:, 0].float())
    batch = Batch(clean=clean, corrupted=corrupted,
                  answers=torch.zeros(len(clean), 1, dtype=torch.long),
                  rows=list(range(len(clean))))
    problem = Problem(model, [batch], metric, Near("corrupted"))
    eap = attribute(problem, "eap", progress=False)
    edges = torch.topk(eap.abs(), min(10, g.n_edges)).indices.tolist()
    w, r = g.coords
    with torch.no_grad():
        base = problem.score(batch).mean()
        for e in edges:
            mask = torch.ones(g.n_writers, g.n_readers, device=model.device)
            mask[w[e], r[e]] = 0
            exact = float(problem.score(batch, mask, near).mean() - base)
            est = float(eap[e])
            # first order: the second-order term is O(eps) of the effect (10% at eps 1e-2),
            # not a rounding bound
            _require(abs(exact - est) <= 0.1 * abs(est) + 1e-4 * eps,
                     f"edge {g.edges[e].name}: EAP {est:.3e} vs exact {exact:.3e} at eps={eps}")


def first_order_error(model: LoadedModel, clean: torch.Tensor, corrupted: torch.Tensor,
                      eps: float = 1e-4, logit: int = 7, metric: Metric | None = None,
                      batch: Batch | None = None) -> tuple[float, float]:
    """EAP against exact single-edge patching on every edge, with the ablation ``eps`` of the
    way from the clean run to the corrupted one: ``(max |exact/eps - EAP/eps| / scale, scale)``
    with ``scale = max |exact/eps|``. Run it in float64 (``model.hf.double()``) to see the
    first-order agreement rather than rounding.

    The metric defaults to the logit of token ``logit`` at the last position; ``metric`` and
    ``batch`` (of ``clean``/``corrupted``, e.g. reading several positions with per-position
    answers) check any metric on any read positions."""
    from ..scoring.attribution import attribute

    g = model.graph
    with torch.no_grad():
        c_acts = writer_outputs(model.adapter, clean)
        k_acts = writer_outputs(model.adapter, corrupted)
    near = c_acts + eps * (k_acts - c_acts)  # an ablation a hair away from clean

    class Near(Ablation):
        def activations(self, adapter, batch):
            return near

    metric = metric or Metric("logit", lambda lg, b: lg[:, logit])
    if batch is None:
        batch = Batch(clean=clean, corrupted=corrupted,
                      answers=torch.zeros(len(clean), 1, dtype=torch.long),
                      rows=list(range(len(clean))))
    problem = Problem(model, [batch], metric, Near("corrupted")).with_metric(metric)
    batch = problem.batches[0]  # with the clean logits if the metric needs them
    eap = attribute(problem, "eap", progress=False).double().cpu()
    base = problem.score(batch, ids=clean).mean()
    w, r = g.coords
    exact = torch.empty(g.n_edges, dtype=torch.float64)
    with torch.no_grad():
        for e in range(g.n_edges):
            mask = torch.ones(g.n_writers, g.n_readers, dtype=torch.float64,
                              device=model.device)
            mask[w[e], r[e]] = 0
            exact[e] = float(problem.score(batch, mask, near, ids=clean).mean() - base)
    scale = float((exact / eps).abs().max())
    return float((exact / eps - eap / eps).abs().max()) / max(scale, 1e-30), scale
