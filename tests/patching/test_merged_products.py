"""A layer's heads (and the logits) form their edge products in one GEMM with the MLP before
them (``reads._Backward.mask_grad``, through ``Workspace.merged_rows``): ``mask.grad`` is the
one the groups give one by one, the merged path is the one taken in a sequential model, and a
parallel model never defers."""

from __future__ import annotations

import pytest
import torch

from acdc_engine.patching import LAST, Context, PatchPlan, Workspace, run, writer_outputs
from acdc_engine.testing.numerics import assert_close_to_f64, float64


def _mask_grad(model, seed=0, ws=None):
    """``mask.grad`` of one EAP-like run, with the weights frozen as ``attribute`` freezes
    them (the fused q/k/v backward, and its spare row, need that), in workspace ``ws``."""
    g = torch.Generator().manual_seed(seed)
    v = model.hf.config.vocab_size
    clean, corrupted = (torch.randint(1, v, (3, 6), generator=g) for _ in range(2))
    with torch.no_grad():
        ablated = writer_outputs(model.adapter, corrupted)
    with model.frozen():
        mask = model.graph.full_mask(1.0, dtype=model.dtype, requires_grad=True)
        logits = run(model.adapter, clean, PatchPlan(mask=mask, ablated=ablated), LAST,
                     Context(workspace=ws))
        (logits[:, -1] * torch.randn(logits.shape[-1], generator=g)).sum().backward()
    return mask.grad


@pytest.mark.parametrize("name, merges", [("gpt2", True), ("llama", True), ("neox", False)])
def test_merged_products_equal_the_products_one_group_at_a_time(name, merges, request,
                                                                 monkeypatch):
    model = request.getfixturevalue(name)
    seen = []
    real = Workspace.merged_rows
    monkeypatch.setattr(Workspace, "merged_rows", lambda self, a, b: seen.append(
        (len(a), len(b), (joint := real(self, a, b)) is not None)) or joint)
    ws = Workspace()
    got = _mask_grad(model, ws=ws)
    H, L = model.graph.n_heads, model.graph.n_layers
    if merges:  # the logits with the last MLP, every later layer's heads with the MLP before
        assert seen == [(1, 1, True)] + [(3 * H, 1, True)] * (L - 1)
        assert (ws.merged, ws.unmerged) == (L, 0)  # the workspace counts what the kernels did
    else:  # parallel blocks: the MLP and the heads of a layer read one stream, in either order
        assert seen == [] and (ws.merged, ws.unmerged) == (0, 0)
    monkeypatch.setattr(Workspace, "merged_rows", lambda self, a, b: None)  # one at a time
    want = _mask_grad(model)
    assert float(want.abs().max()) > 0
    with float64(model):
        ref = _mask_grad(model)
    # bound: 4x the one-group-at-a-time float32 gradient's error against float64 + 16 eps max|g|
    assert_close_to_f64(got, want, ref, factor=4, ulps=16)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_every_merge_is_taken_in_a_sequential_model(name, request):
    """Guards the storage contract between the fused q/k/v backward (patching.norms) and the
    reader node (patching.reads): a change to either that silently loses the merged GEMM (no
    spare row left, a buffer the workspace does not own) fails here, not only in a benchmark."""
    model = request.getfixturevalue(name)
    ws = Workspace()
    _mask_grad(model, ws=ws)
    assert ws.merged == model.graph.n_layers and ws.unmerged == 0


def test_spare_row_is_only_the_row_after_the_workspace_gradients(gpt2):
    """The MLP's gradient goes only into the row the fused q/k/v backward keeps free after its
    gradients: never into a tensor the workspace does not own, nor past its end."""
    w = Workspace()
    _mask_grad(gpt2, ws=w)  # a fused backward leaves the workspace's buffer cached
    buf = w.buffer(torch.zeros(1), w._buf[0][0])  # [3H + 1, b, p, d]
    H = gpt2.graph.n_heads
    assert len(buf) == 3 * H + 1
    spare = w.spare_after(buf[: 3 * H])
    assert spare is not None and spare.data_ptr() == buf[3 * H].data_ptr()
    assert w.spare_after(buf) is None  # no row after the last
    assert w.spare_after(buf[1 : 3 * H]) is None  # not the workspace's first rows
    assert w.spare_after(buf[: 3 * H].clone()) is None  # another tensor
    assert Workspace().spare_after(buf[: 3 * H]) is None  # another workspace's buffer
    w.release()
    assert w.spare_after(buf[: 3 * H]) is None


def test_a_family_whose_prepare_predates_the_workspace_still_runs(gpt2, monkeypatch):
    """An adapter overriding ``prepare(input_ids)`` alone (written before the workspace was an
    argument) gets the workspace as an attribute and gives the same gradients."""
    adapter = gpt2.adapter
    calls = []

    class Old(type(adapter)):
        def prepare(self, input_ids):
            calls.append(input_ids.shape)

    monkeypatch.setattr(adapter, "__class__", Old)
    ws = Workspace()
    got = _mask_grad(gpt2, ws=ws)
    monkeypatch.undo()
    assert calls and ws.merged == gpt2.graph.n_layers  # the fused kernels still had it
    assert torch.equal(got, _mask_grad(gpt2, ws=Workspace()))


@pytest.fixture(scope="module")
def gpt2_3(tmp_path_factory):
    from acdc_engine.api import load_model
    from acdc_engine.testing import save_gpt2

    path = tmp_path_factory.mktemp("gpt2-3")
    save_gpt2(path, n_layer=3, seed=4)
    return load_model(str(path))


@pytest.mark.parametrize("detached", [0, 1, 2])
def test_a_pending_group_whose_partner_never_runs_backward_keeps_its_products(gpt2_3,
                                                                              monkeypatch,
                                                                              detached):
    """A hook point that detaches an MLP's output (so that its reader's backward never runs):
    the heads' products left pending for it are taken by the next group backward reaches, from
    rows no fused backward overwrote meanwhile (MLP 1: the heads of layer 2 wait in the
    workspace buffer while layer 1's fused backward runs, then layer 1's heads take them), or
    added to mask.grad when backward ends (MLP 0: layer 1's heads wait, and layer 0's heads
    never merge). The reference hands every reader's gradient to a sink and forms the products
    once (edge_grads): the same products, another order of summation."""
    from acdc_engine.patching import GradSink, edge_grads

    gpt2 = gpt2_3
    adapter = gpt2.adapter
    real = type(adapter).mlp
    monkeypatch.setattr(adapter, "mlp", lambda layer, x: real(adapter, layer, x).detach()
                        if layer == detached else real(adapter, layer, x))
    g = torch.Generator().manual_seed(7)
    v = gpt2.hf.config.vocab_size
    clean, corrupted = (torch.randint(1, v, (3, 6), generator=g) for _ in range(2))
    w = torch.randn(v, generator=g)
    with torch.no_grad():
        ablated = writer_outputs(adapter, corrupted)
        delta = writer_outputs(adapter, clean) - ablated
    ws = Workspace()
    with gpt2.frozen():
        mask = gpt2.graph.full_mask(1.0, requires_grad=True)
        logits = run(adapter, clean, PatchPlan(mask=mask, ablated=ablated), LAST,
                     Context(workspace=ws))
        (logits[:, -1] @ w).sum().backward()
        sink = GradSink(torch.zeros(gpt2.graph.n_readers, *clean.shape, adapter.d_model))
        ref_mask = gpt2.graph.full_mask(1.0, requires_grad=True)
        out = run(adapter, clean, PatchPlan(mask=ref_mask, ablated=ablated), LAST,
                  Context(grad_sink=sink))
        (out[:, -1] @ w).sum().backward()
    want = edge_grads(gpt2.graph, delta, sink)
    assert ws.unmerged >= 1  # the detached MLP's partner group was not merged
    scale = float(want.abs().max())
    assert scale > 0
    # two float32 sums of the same products over b*p*d terms: a few ulps of the largest term
    assert float((mask.grad - want).abs().max()) <= 64 * 1.2e-7 * scale
