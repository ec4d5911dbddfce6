"""A float64 audit of the patched forward's float32 shortcuts (issue 22).

Each shortcut runs in float32 and is compared with the plain path (every shortcut off) in float32
and in float64, on the same inputs: its error against float64 must stay within 4x the plain
float32 path's own error + 16 eps x the largest value (``assert_close_to_f64``), i.e. not
materially worse than float32 itself. The shortcuts and their switches (docs/numerics.md):

    node fast path          Context(node_fastpath=) (also the no-grad row reads and the prefix)
    fused norm backward     Context(fuse=) (norm_project, the factor records, the spare row)
    reader-factor records   Context(fuse=) (EAP-IG's q/k/v gradients formed once per batch)
    spare-row merged GEMM   Workspace.merged_rows (the MLP's edge products in the heads' GEMM)
    attn_write / attn_out   the generic ModelAdapter forms (per-head writes, then their sum)
    clean-prefix reuse      Context(prefix=) (runs resume from the clean residual stream)
    position groups         the per-token products into groups vs the unsplit graph
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager

import pytest
import torch

from acdc_engine.models.adapter import ModelAdapter
from acdc_engine.patching import (ALL, LAST, NO_PATCH, Context, PatchPlan, Prefix, Workspace,
                                  run, run_with_writers)
from acdc_engine.plugins import registry
from acdc_engine.problem import Problem
from acdc_engine.scoring import attribute
from acdc_engine.tasks import prepare
from acdc_engine.testing import random_pairs
from acdc_engine.testing.numerics import assert_close_to_f64, float64

SHORTCUTS = ("node_fastpath", "fused_norm", "merge", "attn_write")

FACTOR, ULPS = 4, 16  # fast error <= 4x plain float32's error + 16 eps x max|value|


@contextmanager
def only(model, *keep):
    """Every shortcut off except ``keep``: () is the plain path. Yields the runs' Context."""
    unknown = set(keep) - set(SHORTCUTS)
    assert not unknown, unknown
    adapter = model.adapter
    with ExitStack() as st:
        mp = st.enter_context(pytest.MonkeyPatch.context())
        context = Context(node_fastpath="node_fastpath" in keep, fuse="fused_norm" in keep)
        if "merge" not in keep:
            mp.setattr(Workspace, "merged_rows", lambda self, first, then: None)
        if "attn_write" not in keep:
            mp.setattr(adapter, "attn_write", lambda layer, q, k, v, out:
                       ModelAdapter.attn_write(adapter, layer, q, k, v, out))
            mp.setattr(adapter, "attn_out", lambda layer, q, k, v:
                       ModelAdapter.attn_out(adapter, layer, q, k, v))
        yield context


def _data(model, n=6, seed=2):
    return prepare("t", model.tokenizer, random_pairs(n, seed=seed))


def _problem(model, data, metric="logit_diff", ablation="corrupted", **kw):
    return Problem.build(model, data, registry().metric(metric), ablation, batch_size=3, **kw)


def _scores(model, data, method, keep, metric="logit_diff", ablation="corrupted", **kw):
    p = _problem(model, data, metric, ablation, **kw)
    with only(model, *keep) as context:
        return attribute(p.with_context(context), method, ig_steps=3, progress=False)


def _audit(model, data, method, keep, **kw):
    """(fast32, plain32, plain64) scores, and the measured errors."""
    fast = _scores(model, data, method, keep, **kw)
    plain = _scores(model, data, method, (), **kw)
    with float64(model):
        ref = _scores(model, data, method, (), **kw)
    # attribute stores scores in float32: the float64 run's own rounding (the batch sum and the
    # cast, 2 ulps of each score) is inside the 16 ulps of the bound
    assert float(ref.abs().max()) > 0
    return assert_close_to_f64(fast, plain, ref, factor=FACTOR, ulps=ULPS,
                               what=f"{method} with {keep}")


# ----- the gradient path: EAP and EAP-IG scores ---------------------------------------------
@pytest.mark.parametrize("name", ["gpt2", "llama", "qwen2", "neox", "tracr"])
def test_every_shortcut_together(name, request):
    """The engine's default (every shortcut on) against the plain path in float64."""
    model = request.getfixturevalue(name)
    data = _data(model)
    for method in ("eap", "eap-ig"):
        # bound: 4x plain float32's error + 16 eps max|score| (measured: fast ~ plain)
        _audit(model, data, method, SHORTCUTS)


@pytest.mark.parametrize("name", ["gpt2", "llama", "qwen2"])  # layer norm, RMS norm, GQA
def test_fused_norm_backward(name, request):
    """norm_project's fused backward (one GEMM + the xhat term), alone."""
    model = request.getfixturevalue(name)
    # bound: 4x plain float32's error + 16 eps max|score|
    _audit(model, _data(model), "eap", ("fused_norm",))


@pytest.mark.parametrize("name", ["gpt2", "llama", "qwen2"])
def test_reader_factor_records(name, request):
    """EAP-IG's q/k/v reader gradients as factors formed once per batch (needs the fused norm)."""
    model = request.getfixturevalue(name)
    # bound: 4x plain float32's error + 16 eps max|score|
    _audit(model, _data(model), "eap-ig", ("fused_norm",))


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_spare_row_merged_gemm(name, request, monkeypatch):
    """The MLP's edge products in the heads' GEMM through the spare row (and the logits' copy)."""
    model = request.getfixturevalue(name)
    used = []
    real = Workspace.spare_after
    monkeypatch.setattr(Workspace, "spare_after",
                        lambda self, t: used.append(real(self, t)) or used[-1])
    # bound: 4x plain float32's error + 16 eps max|score|
    _audit(model, _data(model), "eap", ("fused_norm", "merge"))
    assert any(s is not None for s in used)  # the merge through the spare row ran


@pytest.mark.parametrize("name", ["gpt2", "llama", "neox"])
def test_attn_write_head_writes(name, request):
    """Heads' writes formed in the writer buffer, their sum's dense backward; EAP-IG's dense
    output projection (attn_out)."""
    model = request.getfixturevalue(name)
    data = _data(model)
    for method in ("eap", "eap-ig"):
        # bound: 4x plain float32's error + 16 eps max|score|
        _audit(model, data, method, ("attn_write",))


# ----- the forward path without gradients ---------------------------------------------------
def _ids(model, seed, b=3, p=5):
    gen = torch.Generator().manual_seed(seed)
    vocab = model.hf.config.vocab_size
    return (torch.randint(1, vocab, (b, p), generator=gen),
            torch.randint(1, vocab, (b, p), generator=gen), gen)


def _node_mask(g, gen, whole=3, partial=2):
    mask = torch.ones(g.n_writers, g.n_readers)
    writers = torch.randperm(g.n_writers, generator=gen).tolist()
    for w in writers[:whole]:
        mask[w, g.valid[w]] = 0
    for w in writers[whole:whole + partial]:
        mask[w, (torch.rand(g.n_readers, generator=gen) < 0.5) & g.valid[w]] = 0
    return mask


def _run64(model, ids, mask, ablated, readout=ALL, keep=False):
    plan = PatchPlan(mask=mask.double(), ablated=ablated.double())
    with torch.no_grad(), float64(model), only(model) as plain:
        return (run_with_writers if keep else run)(model.adapter, ids, plan, readout, plain)


@pytest.mark.parametrize("name", ["gpt2", "llama", "neox", "tracr"])
def test_node_fast_path(name, request):
    """Removed writers substituted once in the stream, the no-grad row reads."""
    model = request.getfixturevalue(name)
    clean, corrupted, gen = _ids(model, 0)
    with torch.no_grad():
        _, ablated = run_with_writers(model.adapter, corrupted)
    for kind in ("corrupted", "mean"):
        abl = ablated if kind == "corrupted" else ablated.mean(1, keepdim=True)
        mask = _node_mask(model.graph, gen)
        with torch.no_grad():
            plan = PatchPlan(mask=mask, ablated=abl)
            with only(model, "node_fastpath") as ctx:
                fast = run_with_writers(model.adapter, clean, plan, ALL, ctx)
            with only(model) as ctx:
                plain = run_with_writers(model.adapter, clean, plan, ALL, ctx)
        ref = _run64(model, clean, mask, abl, keep=True)
        # bound: 4x plain float32's error + 16 eps max|logit or activation| (tracr: logits to
        # ~400, plain float32's own error to ~2e-3)
        assert_close_to_f64(list(fast), list(plain), list(ref), factor=FACTOR, ulps=ULPS)


@pytest.mark.parametrize("name", ["gpt2", "neox", "tracr"])
def test_clean_prefix_reuse(name, request):
    """Runs resume at their first intervened layer from the clean run's stored stream."""
    model = request.getfixturevalue(name)
    g = model.graph
    clean, corrupted, gen = _ids(model, 1)
    with torch.no_grad():
        _, ablated = run_with_writers(model.adapter, corrupted)
    prefix = Prefix(model.adapter)
    for layer in range(g.n_layers):
        mask = torch.ones(g.n_writers, g.n_readers)
        w = g.attn_upstream(layer)  # the layer's first head: every edge removed
        mask[w, g.valid[w]] = 0
        with torch.no_grad():
            plan, reuse = PatchPlan(mask=mask, ablated=ablated), Context(prefix=prefix)
            run(model.adapter, clean, NO_PATCH, LAST, reuse)  # records the clean stream
            fast = run(model.adapter, clean, plan, LAST, reuse)
            with only(model) as ctx:
                plain = run(model.adapter, clean, plan, LAST, ctx)
        ref = _run64(model, clean, mask, ablated, LAST)
        # bound: 4x plain float32's error + 16 eps max|logit|
        assert_close_to_f64(fast, plain, ref, factor=FACTOR, ulps=ULPS, what=f"layer {layer}")
    assert len(prefix) == 1


# ----- position groups ----------------------------------------------------------------------
@pytest.mark.parametrize("method", ["eap", "eap-ig"])
def test_position_groups(gpt2, method):
    """Per-token products added into their groups: the split scores in float32 against the
    same split scores in float64, and their sum over groups against the unsplit float64 score
    (the same quantity summed another way)."""
    data = _data(gpt2, n=6)
    kw = dict(positions="tokens")
    fast = _scores(gpt2, data, method, SHORTCUTS, **kw)
    plain = _scores(gpt2, data, method, (), **kw)
    with float64(gpt2):
        ref = _scores(gpt2, data, method, (), **kw)
        unsplit64 = _scores(gpt2, data, method, ())
    # bound: 4x plain float32's error + 16 eps max|score|
    assert_close_to_f64(fast, plain, ref, factor=FACTOR, ulps=ULPS)
    g = _problem(gpt2, data, positions="tokens").graph
    summed = fast.view(g.n_groups, g.base.n_edges).sum(0)
    plain_sum = plain.view(g.n_groups, g.base.n_edges).sum(0)
    # bound: 4x the plain split sum's error + 16 eps max|score| x n_groups (a sum of that many)
    assert_close_to_f64(summed, plain_sum, unsplit64, factor=FACTOR, ulps=ULPS * g.n_groups)
