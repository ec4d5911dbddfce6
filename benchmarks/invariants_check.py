"""The model-family invariants in a given dtype and device, as JSON: how far from exact they are.

    python benchmarks/invariants_check.py                                   # CPU, float32
    python benchmarks/invariants_check.py --device cuda --dtype bfloat16 float32 --json inv.json

On a random GPT-2 and a random Llama (grouped-query attention) from :mod:`acdc_engine.testing`'s
builders, in each ``--dtype``, it measures on random clean/corrupted token ids:

  full    every edge kept vs the model's own logits (traced through nnsight)
  empty   no edge kept vs the corrupted run's own logits
  cut     every edge into the logits cut vs the corrupted run
  eap     EAP scores of every edge (corrupted ablation, metric: the first logit) against the
          same model's float32 EAP scores: Spearman, relative error, top-10 overlap

(the logits errors are relative to the largest clean logit, as
:func:`acdc_engine.testing.check_model` measures them), then runs the conformance kit itself
(``check_model``, which adds EAP against exact patching to first order) with the dtype's
tolerance. Pass: the three logits errors under ``TOLERANCES[dtype]`` (float32: the kit's own
1e-4; bfloat16, 8-bit mantissa, 2^-8 = 3.9e-3 per rounding accumulated over the layers and
the patched forward's different order of sums: 3e-2), EAP's rank correlation with float32 at
least the dtype's minimum, and in float32 the kit. In bfloat16 the kit's first-order check
(exact effects of an ablation 1% of the way to corrupted, within 10%) is below the dtype's
resolution and is reported, not required. Prints the JSON; exit status 1 if a figure misses.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

import torch
from _common import DTYPES, write_json

#: dtype -> (relative logits error, minimum EAP-vs-exact Spearman). Float32: the kit's
#: tolerance; bfloat16 and float16: what their rounding needs (see the module docstring).
TOLERANCES = {"float32": (1e-4, 0.99), "bfloat16": (3e-2, 0.9), "float16": (1e-2, 0.95)}


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra = a.double().argsort().argsort().double()
    rb = b.double().argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra @ rb) / (ra.norm() * rb.norm()).clamp(min=1e-30))


def invariant_errors(lm, batch: int = 2, length: int = 6, seed: int = 0) -> dict:
    """The figures of the module docstring for one loaded model."""
    from acdc_engine.patching import PatchPlan, run, run_with_writers

    g, dev, adapter = lm.graph, lm.device, lm.adapter
    vocab = lm.hf.config.get_text_config().vocab_size
    gen = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, vocab, (batch, length), generator=gen).to(dev)
    corrupted = torch.randint(0, vocab, (batch, length), generator=gen).to(dev)
    with torch.no_grad():
        ref = lm.reference_logits(clean).float()  # [b, p, vocab]
        ref_k = lm.reference_logits(corrupted).float()
        _, acts = run_with_writers(adapter, corrupted)  # [n_writers, b, p, d]
        ones = torch.ones(g.n_writers, g.n_readers, device=dev)
        full = run(adapter, clean, PatchPlan(mask=ones, ablated=acts)).float()
        empty = run(adapter, clean, PatchPlan(mask=torch.zeros_like(ones), ablated=acts)).float()
        cut = ones.clone()
        cut[:, g.logits_slot] = 0
        cut_logits = run(adapter, clean, PatchPlan(mask=cut, ablated=acts)).float()
    scale = ref.abs().max().clamp(min=1.0)
    rel = lambda x, y: float((x - y).abs().max() / scale)  # noqa: E731
    out = {"full": rel(full, ref), "empty": rel(empty, ref_k), "cut": rel(cut_logits, ref_k),
           "logit_scale": float(scale)}

    out["eap"] = eap_scores(lm, clean, corrupted)
    return out


def eap_scores(lm, clean, corrupted) -> torch.Tensor:
    """EAP scores (float32, CPU) of every edge, corrupted ablation, metric: the first logit."""
    from acdc_engine.metrics import Metric
    from acdc_engine.patching import Ablation
    from acdc_engine.problem import Problem
    from acdc_engine.scoring import attribute
    from acdc_engine.tasks import Batch

    metric = Metric("first_logit", lambda lg, b: lg[:, 0].float())
    n = len(clean)
    b = Batch(clean=clean, corrupted=corrupted,
              answers=torch.zeros(n, 1, dtype=torch.long, device=lm.device), rows=list(range(n)))
    return attribute(Problem(lm, [b], metric, Ablation("corrupted")), "eap",
                     progress=False).float().cpu()


def compare_scores(scores: torch.Tensor, ref: torch.Tensor) -> dict:
    """``scores`` in a low precision against the float32 ``ref``: rank correlation, relative
    error (to the largest reference score) and overlap of the 10 largest."""
    k = min(10, len(ref))
    top = set(scores.abs().topk(k).indices.tolist())
    top_ref = set(ref.abs().topk(k).indices.tolist())
    return {"eap_spearman_vs_float32": spearman(scores, ref),
            "eap_rel_error_vs_float32": float((scores - ref).abs().max()
                                              / ref.abs().max().clamp(min=1e-30)),
            "eap_top10_overlap_vs_float32": len(top & top_ref) / k}


def kit(lm, tol: float) -> dict:
    """The conformance kit's ``check_model`` at tolerance ``tol``: passed, or its message."""
    from acdc_engine.testing import check_model

    try:
        check_model(lm, tol=tol)
        return {"passed": True}
    except AssertionError as e:
        return {"passed": False, "message": str(e)}


def build(family: str, path: str) -> str:
    from acdc_engine.testing import save_gpt2, save_llama

    if family == "gpt2":
        return str(save_gpt2(path, n_layer=2, n_head=4, n_embd=32))
    return str(save_llama(path, n_layer=2, n_head=4, n_kv=2, d=32))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if any)")
    ap.add_argument("--dtype", nargs="+", default=["float32"], choices=DTYPES)
    ap.add_argument("--families", nargs="+", default=["gpt2", "llama"],
                    choices=["gpt2", "llama"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from acdc_engine import load_model

    results, ok = [], True
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families:
            path = build(family, f"{tmp}/{family}")
            ref = None  # float32 EAP scores of this model, for the other dtypes
            for dtype in ["float32", *[d for d in args.dtype if d != "float32"]]:
                t0 = time.perf_counter()
                lm = load_model(path, device=args.device, dtype=dtype)
                tol, min_rho = TOLERANCES[dtype]
                errs = invariant_errors(lm)
                scores = errs.pop("eap")
                if ref is None:
                    ref = scores
                if dtype not in args.dtype:
                    continue  # float32 only measured as the reference
                row = {"family": family, "dtype": dtype, "device": str(lm.device), **errs,
                       **compare_scores(scores, ref), "tolerance": tol,
                       "min_spearman": min_rho, "kit": kit(lm, tol)}
                row["passed"] = (max(errs["full"], errs["empty"], errs["cut"]) < tol
                                 and row["eap_spearman_vs_float32"] >= min_rho
                                 and (dtype != "float32" or row["kit"]["passed"]))
                row["seconds"] = time.perf_counter() - t0
                ok &= row["passed"]
                results.append(row)
    out = {"benchmark": "invariants", "torch": torch.__version__, "passed": ok,
           "results": results}
    print(json.dumps(out, indent=1))
    if args.json:
        write_json(args.json, out)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
