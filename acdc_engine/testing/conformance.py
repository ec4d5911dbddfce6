"""Conformance kit for plugin authors: run these against your own task, metric or model family.

    from acdc_engine.testing import check_task, check_metric, check_model

    def test_my_task():
        check_task(my_plugin.MY_TASK, tokenizer=load_model("tiny-ioi").tokenizer)

    def test_my_family(tmp_path):
        check_model(acdc_engine.load_model(str(path_to_a_small_random_model_of_my_family)))

Each check raises ``AssertionError`` with a message that says which rule failed. ``check_model``
runs the model-family invariants of the architecture: the full circuit reproduces the model's
own logits (traced through nnsight), the empty circuit reproduces the ablated run, cutting every
edge into the logits gives the ablated run's logits, ``attn_out`` and ``attn_write`` are the sum
of ``attn_heads``, and EAP matches exact single-edge patching to first order.
"""

from __future__ import annotations

import torch

from ..metrics import Metric
from ..models import LoadedModel
from ..patching import ABLATIONS, Ablation, run
from ..problem import Problem
from ..tasks import Batch, Task, prepare

__all__ = ["check_task", "check_metric", "check_model", "first_order_error"]


def check_task(task: Task, tokenizer, n: int = 8) -> None:
    """Rows have the required fields, honour ``n`` and the seed, and tokenize cleanly."""
    from ..plugins import registry

    rows = task.load_rows(n, 0, tokenizer)
    assert isinstance(rows, list) and rows, f"task {task.name!r} returned no rows"
    assert len(rows) <= n, f"task {task.name!r} returned {len(rows)} rows for n={n}"
    for i, r in enumerate(rows):
        for key in ("clean", "corrupted"):
            assert isinstance(r.get(key), str) and r[key], f"row {i + 1} lacks a string {key!r}"
        assert r.get("answer") or r.get("answer_set"), f"row {i + 1} has no answer or answer_set"
    assert task.load_rows(n, 0, tokenizer) == rows, (
        f"task {task.name!r} is not deterministic for a fixed seed")
    prepare(task, tokenizer, rows)  # raises TaskDataError naming every bad row
    reg = registry()
    assert task.default_metric in reg.metrics, (
        f"default metric {task.default_metric!r} of task {task.name!r} is not registered"
    )
    assert task.default_ablation in ABLATIONS, f"unknown ablation {task.default_ablation!r}"


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
                  answer=answers[:, -1], wrong=wrongs[:, -1], rows=list(range(batch)),
                  clean_logits=torch.randn(batch, k, vocab, generator=g),
                  positions=torch.arange(4 - k, 4).repeat(batch, 1), answers=answers,
                  wrongs=wrongs, answer_set=sets, wrong_set=(sets + 1) % vocab)
        logits = torch.randn(batch, k, vocab, generator=g, requires_grad=True)
        values = metric.score(logits, b)  # checks shape and finiteness
        assert values.shape == (batch,), f"metric {metric.name!r} gave shape {values.shape}"
        if metric.differentiable:
            values.sum().backward()
            assert logits.grad is not None and torch.isfinite(logits.grad).all(), (
                f"metric {metric.name!r} claims to be differentiable but gives no finite "
                f"gradient")


def check_model(model: LoadedModel, tol: float = 1e-4, length: int = 5) -> None:
    """The model-family invariants on random token ids."""
    g = model.graph
    vocab = model.hf.config.get_text_config().vocab_size
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(0, vocab, (2, length), generator=gen).to(model.device)
    corrupted = torch.randint(0, vocab, (2, length), generator=gen).to(model.device)
    adapter = model.adapter
    with torch.no_grad():
        ref_clean = model.reference_logits(clean).float()
        ref_corr = model.reference_logits(corrupted).float()
        _, acts = run(adapter, corrupted, collect=True)
        ones = torch.ones(g.n_writers, g.n_readers, device=model.device)
        full = run(adapter, clean, mask=ones, ablated=acts).float()
        empty = run(adapter, clean, mask=torch.zeros_like(ones), ablated=acts).float()
        cut = ones.clone()
        cut[:, g.logits_slot] = 0
        cut_logits = run(adapter, clean, mask=cut, ablated=acts).float()
    scale = ref_clean.abs().max().clamp(min=1.0)
    err = (full - ref_clean).abs().max() / scale
    assert err < tol, f"full circuit differs from the model's own logits by {err:.2e} (relative)"
    err = (empty - ref_corr).abs().max() / scale
    assert err < tol, f"empty circuit differs from the corrupted run by {err:.2e} (relative)"
    err = (cut_logits - ref_corr).abs().max() / scale
    assert err < tol, f"cutting every edge into the logits is not the corrupted run ({err:.2e})"
    _check_mlp_neurons(model, clean, tol)
    _check_attn_out(model, clean, tol)
    _check_first_order(model, clean, corrupted)


def _check_attn_out(model: LoadedModel, ids, tol: float) -> None:
    """``attn_out`` and ``attn_write`` are the heads' writes added up, and ``attn_write`` leaves
    every head's write in its buffer, for one shared stream and for per-head inputs, at every
    layer."""
    adapter, H = model.adapter, model.graph.n_heads
    gen = torch.Generator().manual_seed(1)
    # weights frozen, as in attribution: a family's attn_write may form the writes in place
    # only then (with weight gradients wanted it takes the per-head path)
    with model.frozen():
        _check_sums(adapter, H, ids, gen, model.graph.n_layers, tol)


def _check_sums(adapter, H: int, ids, gen, n_layers: int, tol: float) -> None:
    """:func:`_check_attn_out`'s comparisons, layer by layer."""
    with torch.no_grad():
        adapter.prepare(ids)
        x = adapter.embed(ids)  # [b, p, d]
        noise = torch.randn((3, H, *x.shape), generator=gen).to(x)
        per_head = [x[None] + 0.1 * x.float().std().to(x.dtype) * n for n in noise]
        for layer in range(n_layers):
            for q, k, v in ((x, x, x), per_head):
                heads = adapter.attn_heads(layer, q, k, v)
                want = heads.float().sum(0)
                out = torch.full_like(heads, float("nan"))
                for name, got in (("attn_out", adapter.attn_out(layer, q, k, v)),
                                  ("attn_write", adapter.attn_write(layer, q, k, v, out))):
                    err = (got.float() - want).abs().max() / want.abs().max().clamp(min=1.0)
                    assert err < tol, (f"{name} of layer {layer} is not the sum of attn_heads "
                                       f"({err:.2e}, relative)")
                err = (out.float() - heads.float()).abs().max() / heads.abs().max().clamp(min=1.0)
                assert err < tol, (f"attn_write of layer {layer} does not leave each head's "
                                   f"write of attn_heads in its buffer ({err:.2e}, relative)")


def _check_mlp_neurons(model: LoadedModel, ids, tol: float) -> None:
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
    assert len(seen) == 1, (f"mlp_out_proj(0) ran {len(seen)} times in one mlp() call; it must "
                            "run once, with the hidden activation as its input")
    with torch.no_grad():
        back = adapter.mlp_from_hidden(0, seen[0])
    err = (back.float() - out.float()).abs().max() / out.float().abs().max().clamp(min=1.0)
    assert err < tol, f"mlp_from_hidden(0, hidden) differs from mlp(0, x) by {err:.2e}"


def _check_first_order(model: LoadedModel, clean, corrupted, eps: float = 1e-2) -> None:
    """EAP scores equal exact single-edge effects / eps as the ablation approaches clean."""
    from ..scoring.attribution import attribute

    g, adapter = model.graph, model.adapter
    with torch.no_grad():
        _, c = run(adapter, clean, collect=True)
        _, k = run(adapter, corrupted, collect=True)
    near = c + eps * (k - c)

    class Near(Ablation):
        def activations(self, adapter, batch):
            return near

    metric = Metric("first_logit", lambda lg, b: lg[:, 0].float())
    batch = Batch(clean, corrupted, torch.zeros(len(clean), dtype=torch.long), None,
                  list(range(len(clean))))
    eap = attribute(Problem(model, [batch], metric, Near("corrupted")), "eap", progress=False)
    edges = torch.topk(eap.abs(), min(10, g.n_edges)).indices.tolist()
    w, r = g.coords
    with torch.no_grad():
        base = metric.score(run(adapter, clean, last_only=True), batch).mean()
        for e in edges:
            mask = torch.ones(g.n_writers, g.n_readers, device=model.device)
            mask[w[e], r[e]] = 0
            lg = run(adapter, clean, mask=mask, ablated=near, last_only=True)
            exact = float(metric.score(lg, batch).mean() - base)
            est = float(eap[e])
            assert abs(exact - est) <= 0.1 * abs(est) + 1e-4 * eps, (
                f"edge {g.edges[e].name}: EAP {est:.3e} vs exact {exact:.3e} at eps={eps}"
            )


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
        _, c_acts = run(model.adapter, clean, collect=True)
        _, k_acts = run(model.adapter, corrupted, collect=True)
    near = c_acts + eps * (k_acts - c_acts)  # an ablation a hair away from clean

    class Near(Ablation):
        def activations(self, adapter, batch):
            return near

    metric = metric or Metric("logit", lambda lg, b: lg[:, logit])
    if batch is None:
        batch = Batch(clean, corrupted, torch.zeros(len(clean), dtype=torch.long), None,
                      list(range(len(clean))))
    problem = Problem(model, [batch], metric, Near("corrupted")).with_metric(metric)
    batch = problem.batches[0]  # with the clean logits if the metric needs them
    eap = attribute(problem, "eap", progress=False).double().cpu()
    pos = batch.read_positions
    base = metric.score(run(model.adapter, clean, last_only=True, positions=pos), batch).mean()
    w, r = g.coords
    exact = torch.empty(g.n_edges, dtype=torch.float64)
    with torch.no_grad():
        for e in range(g.n_edges):
            mask = torch.ones(g.n_writers, g.n_readers, dtype=torch.float64,
                              device=model.device)
            mask[w[e], r[e]] = 0
            lg = run(model.adapter, clean, mask=mask, ablated=near, last_only=True,
                     positions=pos)
            exact[e] = float(metric.score(lg, batch).mean() - base)
    scale = float((exact / eps).abs().max())
    return float((exact / eps - eap / eps).abs().max()) / max(scale, 1e-30), scale
