"""The node fast path of ``patching.run``: a writer whose every edge is removed is substituted
once in the residual stream, instead of corrected at every reader. It must give the same logits
and the same collected (true, not substituted) writer outputs as the edge-by-edge path, for
whole-row and partial removals mixed, every ablation, serial and parallel blocks."""

from __future__ import annotations

import pytest
import torch

import acdc_engine.patching.forward as patching  # the forward module: its switches
from acdc_engine.patching import ALL, LAST, NO_PATCH, Context, PatchPlan, run, run_with_writers
from acdc_engine.testing.numerics import assert_close_to_f64, float64


@pytest.fixture(params=["gpt2", "llama", "neox", "tracr"])
def model(request):
    return request.getfixturevalue(request.param)


def _inputs(model, seed: int, b: int = 3, p: int = 5):
    gen = torch.Generator().manual_seed(seed)
    vocab = model.hf.config.vocab_size
    clean = torch.randint(1, vocab, (b, p), generator=gen)
    corrupted = torch.randint(1, vocab, (b, p), generator=gen)
    return clean, corrupted, gen


def _ablated(model, corrupted, kind: str):
    """[W, b or 1, p, d] writer outputs of the corrupted run, their mean, or None (zero)."""
    if kind == "zero":
        return None
    with torch.no_grad():
        _, acts = run_with_writers(model.adapter, corrupted)
    return acts if kind == "corrupted" else acts.mean(1, keepdim=True)


def _mask(g, gen, whole: int, partial: int, fractional: bool = False) -> torch.Tensor:
    """Ones, with ``whole`` random writers' rows zero (every edge removed), ``partial`` others
    with some edges removed, random junk outside the valid entries (which every path ignores),
    and optionally one row of fractional entries."""
    mask = torch.ones(g.n_writers, g.n_readers)
    junk = torch.rand(g.n_writers, g.n_readers, generator=gen) < 0.5
    mask[~g.valid & junk] = 0
    writers = torch.randperm(g.n_writers, generator=gen).tolist()
    for w in writers[:whole]:
        mask[w, g.valid[w]] = 0
    for w in writers[whole : whole + partial]:
        cut = (torch.rand(g.n_readers, generator=gen) < 0.5) & g.valid[w]
        cut[g.valid[w].nonzero()[0, 0]] = False  # at least one edge kept: a partial row
        mask[w, cut] = 0
    if fractional:
        w = writers[whole + partial]
        mask[w, g.valid[w]] = 0.5
    return mask


SLOW = Context(node_fastpath=False)  # the edge-by-edge path everywhere


def _ref64(model, ids, mask=None, ablated=None, readout=ALL, keep=False):
    """The same run on the plain (edge-by-edge) path in float64: the inputs cast up exactly."""
    plan = PatchPlan(mask=None if mask is None else mask.double(),
                     ablated=None if ablated is None else ablated.double())
    with torch.no_grad(), float64(model):
        return (run_with_writers if keep else run)(model.adapter, ids, plan, readout, SLOW)


def _both(model, clean, mask, ablated, readout=ALL):
    """(fast, slow, float64) results of the same patched run, no gradient."""
    plan = PatchPlan(mask=mask, ablated=ablated)
    with torch.no_grad():
        fast = run_with_writers(model.adapter, clean, plan, readout)
        slow = run_with_writers(model.adapter, clean, plan, readout, SLOW)
    return fast, slow, _ref64(model, clean, mask, ablated, readout, keep=True)


def _close(fast, slow, ref64):
    """Two float32 runs of one patched forward: the fast one within 4x the plain one's own error
    against float64 + 16 eps max|value| (measured: tracr's logits ~400, plain error to 1.7e-3,
    fast/plain error ratio at most 2.4; GPT-2/Llama ~5e-7 at |logit| ~2)."""
    assert_close_to_f64(fast, slow, ref64, factor=4, ulps=16)


@pytest.mark.parametrize("kind", ["zero", "mean", "corrupted"])
def test_fast_path_equals_edge_by_edge(model, kind):
    g = model.graph
    for seed, (whole, partial) in enumerate([(1, 0), (3, 2), (g.n_writers // 3, 3)]):
        clean, corrupted, gen = _inputs(model, seed)
        ablated = _ablated(model, corrupted, kind)
        mask = _mask(g, gen, whole, partial, fractional=seed == 2)
        (lf, bf), (ls, bs), (lr, br) = _both(model, clean, mask, ablated)
        _close(lf, ls, lr)
        _close(bf, bs, br)  # collected outputs are the writers' true outputs on both paths
        # and the removal did something: the full model's logits differ
        with torch.no_grad():
            full = run(model.adapter, clean)
        assert (lf - full).abs().max() > 1e-4


def test_fast_path_is_taken_and_collects_true_outputs(gpt2, monkeypatch):
    """A removed node's collected output is what it computed, not its ablated value, and the
    substitution happens (once per substituted block)."""
    g = gpt2.graph
    clean, corrupted, _ = _inputs(gpt2, 7)
    ablated = _ablated(gpt2, corrupted, "corrupted")
    calls = []
    real = patching._substitute
    monkeypatch.setattr(patching, "_substitute",
                        lambda out, w0, *a: calls.append(w0) or real(out, w0, *a))
    w = g.writer_index("a0.1")
    mask = torch.ones(g.n_writers, g.n_readers)
    mask[w] = 0
    with torch.no_grad():
        logits, acts = run_with_writers(gpt2.adapter, clean, PatchPlan(mask=mask, ablated=ablated))
        _, clean_acts = run_with_writers(gpt2.adapter, clean)
    assert calls  # the fast path ran
    # a0.1 reads only the input, which is untouched: its true output is the clean run's
    assert torch.equal(acts[w], clean_acts[w])  # the same computation on the same input
    assert (acts[w] - ablated[w]).abs().max() > 1e-3
    # and the run equals the edge-by-edge one
    (lf, _), (ls, _), (lr, _) = _both(gpt2, clean, mask, ablated)
    _close(lf, ls, lr)


def test_input_row_and_last_only(llama):
    """Removing the embeddings' every edge (writer 0) and unembedding the last position."""
    g = llama.graph
    clean, corrupted, gen = _inputs(llama, 11)
    ablated = _ablated(llama, corrupted, "corrupted")
    mask = _mask(g, gen, 0, 2)
    mask[0, g.valid[0]] = 0
    (lf, bf), (ls, bs), (lr, br) = _both(llama, clean, mask, ablated, LAST)
    assert lf.shape[1] == 1
    _close(lf, ls, lr)
    _close(bf, bs, br)


def test_gradients_keep_the_edge_path(gpt2):
    """A mask that requires grad never takes the fast path: mask.grad is unchanged."""
    g = gpt2.graph
    clean, corrupted, gen = _inputs(gpt2, 5)
    ablated = _ablated(gpt2, corrupted, "corrupted")
    base = _mask(g, gen, 2, 2)
    grads = []
    for flag in (True, False):
        mask = base.clone().requires_grad_(True)
        run(gpt2.adapter, clean, PatchPlan(mask=mask, ablated=ablated), ALL,
            Context(node_fastpath=flag))[:, -1].sum().backward()
        grads.append(mask.grad)
    assert torch.equal(grads[0], grads[1])  # the same computation: bit for bit
    assert grads[0].abs().max() > 0


def _layer_mask(g, gen, layer: int) -> torch.Tensor:
    """A random mask removing every edge of one writer of ``layer`` or later and some edges of
    another (or of the same one's neighbour in the last layer); nothing upstream."""
    mask = torch.ones(g.n_writers, g.n_readers)
    lo = g.attn_upstream(layer)
    w, u = (lo + torch.randperm(g.n_writers - lo, generator=gen)[:2]).tolist()
    mask[w, g.valid[w]] = 0
    cut = (torch.rand(g.n_readers, generator=gen) < 0.5) & g.valid[u]
    mask[u, cut] = 0
    return mask


@pytest.mark.parametrize("name", ["gpt2", "neox"])
def test_prefix_resumes_exactly(name, request, monkeypatch):
    """With a prefix, runs start at the first layer with a removal, from the clean run's
    residual stream, and give what full runs give; a clean run is only its unembedding."""
    from acdc_engine.patching import Prefix

    model = request.getfixturevalue(name)
    g, adapter = model.graph, model.adapter
    clean, corrupted, gen = _inputs(model, 3)
    ablated = _ablated(model, corrupted, "corrupted")
    layers = []
    for name in ("attn_heads", "attn_write"):  # the layers that run their heads
        real = getattr(adapter, name)
        monkeypatch.setattr(adapter, name, lambda layer, *a, real=real: layers.append(layer)
                            or real(layer, *a))
    prefix = Prefix(adapter)
    reuse = Context(prefix=prefix)
    with torch.no_grad():
        full = run(adapter, clean, NO_PATCH, LAST)
        assert torch.equal(run(adapter, clean, NO_PATCH, LAST, reuse), full)  # records
        layers.clear()
        assert torch.equal(run(adapter, clean, NO_PATCH, LAST, reuse), full)
        assert layers == []  # only the unembedding
        assert sorted(prefix.states(clean)) == list(range(g.n_layers + 1))
        for layer in range(g.n_layers):
            mask = _layer_mask(g, gen, layer)
            want = run(adapter, clean, PatchPlan(mask=mask, ablated=ablated), LAST)
            ref = _ref64(model, clean, mask, ablated, LAST)
            layers.clear()
            got = run(adapter, clean, PatchPlan(mask=mask, ablated=ablated), LAST, reuse)
            _close(got, want, ref)
            assert layers[0] >= layer and layers[-1] == g.n_layers - 1
        # other inputs are not mixed up with these
        _close(run(adapter, corrupted, NO_PATCH, LAST, reuse), run(adapter, corrupted)[:, -1:],
               _ref64(model, corrupted, readout=LAST))
    assert len(prefix) == 2


def test_prefix_is_filled_by_masked_runs_and_skips_what_it_cannot_reuse(gpt2):
    """A masked run records the clean layers before its first removal (not a substituted
    input); collecting or gradient runs never resume."""
    from acdc_engine.patching import Prefix

    g, adapter = gpt2.graph, gpt2.adapter
    clean, corrupted, gen = _inputs(gpt2, 4)
    ablated = _ablated(gpt2, corrupted, "mean")
    prefix = Prefix(adapter)
    mask = torch.ones(g.n_writers, g.n_readers)
    mask[g.writer_index("a1.0")] = 0
    inp = torch.ones(g.n_writers, g.n_readers)
    inp[0] = 0  # the input's every edge: layer 0 is not the clean stream
    reuse = Context(prefix=prefix)
    with torch.no_grad():
        run(adapter, clean, PatchPlan(mask=inp, ablated=ablated), ALL, reuse)
        assert prefix.states(clean) == {}
        run(adapter, clean, PatchPlan(mask=mask, ablated=ablated), ALL, reuse)
        assert sorted(prefix.states(clean)) == [0, 1]
        logits, acts = run_with_writers(adapter, clean, PatchPlan(mask=mask, ablated=ablated),
                                        ALL, reuse)
    want, want_acts = run_with_writers(adapter, clean, PatchPlan(mask=mask, ablated=ablated))
    ref_logits, ref_acts = _ref64(gpt2, clean, mask, ablated, keep=True)
    _close(logits, want, ref_logits)
    _close(acts, want_acts, ref_acts)  # collected from layer 0 on, not from a resumed run
    grad_mask = mask.clone().requires_grad_(True)
    run(adapter, clean, PatchPlan(mask=grad_mask, ablated=ablated), ALL,
        reuse)[:, -1].sum().backward()
    ref = mask.clone().requires_grad_(True)
    run(adapter, clean, PatchPlan(mask=ref, ablated=ablated))[:, -1].sum().backward()
    assert torch.equal(grad_mask.grad, ref.grad)  # a gradient run never resumes: bit for bit
