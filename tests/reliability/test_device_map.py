"""Models larger than one device: loading with an accelerate device map. Tested on CPU: a plan
made on the meta device (no weights loaded) splits a model across devices without splitting a
block; a model loaded through a per-module device map still passes the load-time self-check
and the invariants (all edges kept = the model's logits, none = the ablated run); a map that
offloads weights (disk) is refused with one line, not a meta-tensor traceback."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("accelerate")

from acdc_engine import load_model  # noqa: E402
from acdc_engine.loading import plan_device_map  # noqa: E402
from acdc_engine.patching import PatchPlan, run, run_with_writers  # noqa: E402


def test_a_plan_on_the_meta_device_splits_the_model_by_blocks(gpt2_path):
    total = sum(p.numel() * 4 for p in load_model(str(gpt2_path), device="cpu").hf.parameters())
    plan = plan_device_map(str(gpt2_path),
                           max_memory={"cpu": int(total * 0.8), "disk": 10 * total})
    assert set(plan.values()) == {"cpu", "disk"}  # what does not fit the first goes on
    assert plan["transformer.wte"] == "cpu"
    blocks = [k for k in plan if k.startswith("transformer.h")]
    assert blocks and all(k.count(".") <= 2 for k in blocks)  # whole blocks, never split


def test_a_model_loaded_through_a_device_map_keeps_the_invariants(gpt2_path):
    plan = plan_device_map(str(gpt2_path), max_memory={"cpu": 2**30})
    assert set(plan.values()) == {"cpu"}
    per_block = {"transformer.wte": "cpu", "transformer.wpe": "cpu", "transformer.h": "cpu",
                 "transformer.ln_f": "cpu", "lm_head": "cpu"}
    model = load_model(str(gpt2_path), device=per_block)  # self-checked at load time
    plain = load_model(str(gpt2_path), device="cpu")
    g = model.graph
    ids, corrupt = torch.tensor([[1, 5, 9, 3, 7]]), torch.tensor([[2, 6, 8, 4, 7]])  # [b, p]
    with torch.no_grad():
        ref = plain.reference_logits(ids)  # [batch, pos, vocab]
        full = run(model.adapter, ids, PatchPlan(mask=torch.ones(g.n_writers, g.n_readers)))
        _, acts = run_with_writers(model.adapter, corrupt)  # [n_writers, b, p, d_model]
        empty = run(model.adapter, ids,
                    PatchPlan(mask=torch.zeros(g.n_writers, g.n_readers), ablated=acts))
        corrupted = run(plain.adapter, corrupt)
    assert (full - ref).abs().max() < 1e-4
    assert (empty - corrupted).abs().max() < 1e-4


def test_a_device_map_that_offloads_weights_is_refused(gpt2_path, tmp_path):
    from acdc_engine.errors import AcdcError

    offload = {"transformer.wte": "cpu", "transformer.wpe": "cpu", "transformer.h.0": "cpu",
               "transformer.h.1": "disk", "transformer.ln_f": "cpu", "lm_head": "cpu"}
    with pytest.raises(AcdcError, match="the device_map offloads weights"):
        load_model(str(gpt2_path), device=offload)
