"""A layer's heads (and the logits) form their edge products in one GEMM with the MLP before
them (``reads._Backward.mask_grad``): ``mask.grad`` is the one the groups give one by one,
the merged path is the one taken in a sequential model, and a parallel model never defers."""

from __future__ import annotations

import pytest
import torch

from acdc_engine import patching
from acdc_engine.patching import reads
from acdc_engine.patching import run
from acdc_engine.testing.numerics import assert_close_to_f64, float64


def _mask_grad(model, seed=0):
    """``mask.grad`` of one EAP-like run, with the weights frozen as ``attribute`` freezes
    them (the fused q/k/v backward, and its spare row, need that)."""
    g = torch.Generator().manual_seed(seed)
    v = model.hf.config.vocab_size
    clean, corrupted = (torch.randint(1, v, (3, 6), generator=g) for _ in range(2))
    with torch.no_grad():
        ablated = patching.writer_outputs(model.adapter, corrupted)
    with model.frozen():
        mask = model.graph.full_mask(1.0, dtype=model.dtype, requires_grad=True)
        logits = run(model.adapter, clean, mask=mask, ablated=ablated, last_only=True)
        (logits[:, -1] * torch.randn(logits.shape[-1], generator=g)).sum().backward()
    return mask.grad


@pytest.mark.parametrize("name, merges", [("gpt2", True), ("llama", True), ("neox", False)])
def test_merged_products_equal_the_products_one_group_at_a_time(name, merges, request,
                                                                 monkeypatch):
    model = request.getfixturevalue(name)
    seen = []
    real = reads._adjacent
    monkeypatch.setattr(reads, "_adjacent", lambda a, b: seen.append(
        (len(a), len(b), (joint := real(a, b)) is not None)) or joint)
    got = _mask_grad(model)
    H = model.graph.n_heads
    if merges:  # the logits with the last MLP, every later layer's heads with the MLP before
        assert seen == [(1, 1, True)] + [(3 * H, 1, True)] * (model.graph.n_layers - 1)
    else:  # parallel blocks: the MLP and the heads of a layer read one stream, in either order
        assert seen == []
    monkeypatch.setattr(reads, "_adjacent", lambda a, b: None)  # one group at a time
    want = _mask_grad(model)
    assert float(want.abs().max()) > 0
    with float64(model):
        ref = _mask_grad(model)
    # bound: 4x the one-group-at-a-time float32 gradient's error against float64 + 16 eps max|g|
    assert_close_to_f64(got, want, ref, factor=4, ulps=16)


def test_spare_row_is_only_the_row_after_the_workspace_gradients(gpt2):
    """The MLP's gradient goes only into the row the fused q/k/v backward keeps free after its
    gradients: never into a tensor the workspace does not own, nor past its end."""
    from acdc_engine.models import norms

    _mask_grad(gpt2)  # a fused backward leaves this thread's workspace cached
    ws = norms._LOCAL.buf[1]  # [3H + 1, b, p, d]
    H = gpt2.graph.n_heads
    assert len(ws) == 3 * H + 1
    spare = norms.spare_row(ws[: 3 * H])
    assert spare is not None and spare.data_ptr() == ws[3 * H].data_ptr()
    assert norms.spare_row(ws) is None  # no row after the last
    assert norms.spare_row(ws[1 : 3 * H]) is None  # not the workspace's first rows
    assert norms.spare_row(ws[: 3 * H].clone()) is None  # another tensor
    norms.release_workspace()
    assert norms.spare_row(ws[: 3 * H]) is None
