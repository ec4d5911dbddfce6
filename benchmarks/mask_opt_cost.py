"""Cost of one mask-optimization step relative to a plain forward+backward of the same model.

    python benchmarks/mask_opt_cost.py                        # GPT-2-small shape, 1 thread
    python benchmarks/mask_opt_cost.py --layers 4 --d-model 256 --vocab 5000 --repeats 7
    python benchmarks/mask_opt_cost.py --method ugs --device cuda
    python benchmarks/mask_opt_cost.py --layers 4 --vocab 5000 --ab   # before/after, one run

Builds a GPT-2-small-shaped model (12 layers, 12 heads, d_model 768, vocab 50257) with random
weights in memory (``benchmarks/_common.py``: ``build_model``, ``load_in_memory``), one random
batch, and times, interleaved (each repeat runs both rows once, so a machine whose speed drifts
slows both alike):

  baseline   the Hugging Face model's own forward + backward (logit difference at the last
             position, logits for that position only; gradient to the input embeddings only)
  mask step  one step of ``--method`` (edge-pruning or ugs;
             ``acdc_engine.scoring.mask_opt.train_step``): a mask sampled for every edge, the
             patched forward with that fractional mask, the backward to the mask parameters
             through it, the Lagrangian/penalty and the Adam steps. The corrupted run the
             removed edges are patched from is cached by the Problem (computed once per batch
             over a whole optimization), so it is not part of a step.

  EAP's pass the same patched forward + backward with the mask all ones (what EAP computes
             per batch besides the corrupted run): the fractional mask's extra cost is the
             difference between this row and the mask step

``--ab`` adds a fourth row, the same step with the patched forward's fused kernels off
(``Context(fuse=False)``: the reader-input correction as a separate product and sum, as before
the fused form, ``patching.reads._corrected``), so before and after are timed side by side.

``--floor`` times (instead of the table; after it with ``--ab``) what a fractional mask adds
to the plain forward+backward and cannot avoid, each piece alone on tensors of the run's
shapes (:func:`floor_pieces`): per
reader group, the forward correction GEMM ``resid + (m - 1)^T @ delta`` and the backward
edge-product GEMM ``delta @ grad^T`` (heads and the MLP after them in one, as the backward
merges them), the per-reader layer norms forward and backward (3H inputs per layer where the
plain run normalizes one) and the sum of the reader gradients into the residual stream;
``floor = (baseline + pieces) / baseline``.

It prints, for wall-clock and CPU time (a shared machine's contention shows in the first,
not the second, with one thread), the median of each round's ratio to that round's baseline.
Goal (issue 23): a step <= 1.3x the baseline.
"""

from __future__ import annotations

import argparse
import sys
import statistics
import time
from pathlib import Path

import torch


def main():
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import add_device_args, add_shape_args

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="edge-pruning", choices=["edge-pruning", "ugs"])
    add_shape_args(ap)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    ap.add_argument("--floor", action="store_true",
                    help="time the unavoidable extra work of a fractional mask instead")
    ap.add_argument("--ab", action="store_true",
                    help="also time the step with the fused kernels off (before/after)")
    add_device_args(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from _common import Shape, baseline_step, build_model, load_in_memory, random_batch

    from acdc_engine.patching import Ablation, Context
    from acdc_engine.plugins import registry
    from acdc_engine.problem import Problem
    from acdc_engine.resources import synchronize
    from acdc_engine.scoring.mask_opt import MaskOptConfig, MaskState, train_step

    shape = Shape("bench", "gpt2", args.layers, args.heads, args.d_model, 4 * args.d_model,
                  args.vocab)
    lm = load_in_memory(build_model(shape, n_pos=max(64, args.pos), device=args.device,
                                    dtype=args.dtype), args.device, args.dtype)
    dev = lm.device
    batch = random_batch(args.vocab, args.batch, args.pos, dev)
    metric = registry().metric("logit_diff")
    problem = Problem(lm, [batch], metric, Ablation("corrupted"))
    problem.ablated(0)  # the cached corrupted run: once per batch, not per step
    config = MaskOptConfig(kind=args.method, target_sparsity=0.5, steps=10**9, progress=False)
    state = MaskState(config, problem.graph.n_edges, dev)
    baseline = baseline_step(lm, batch, metric)

    def mask_step():
        for p in lm.hf.parameters():
            p.requires_grad_(False)
        with lm.frozen():
            train_step(problem, config, state)

    unfused = Problem(lm, [batch], metric, Ablation("corrupted"), context=Context(fuse=False))
    unfused.ablated(0)
    state_u = MaskState(config, problem.graph.n_edges, dev)

    def mask_step_unfused():
        with lm.frozen():
            train_step(unfused, config, state_u)

    def eap_pass():  # the gradient pass EAP makes: the mask all ones (no product forward)
        with lm.frozen():
            mask = problem.graph.full_mask(1.0, device=dev, dtype=lm.dtype, requires_grad=True)
            problem.score(batch, mask, problem.ablated(0)).sum().backward()

    if args.floor and not args.ab:  # the floor alone (with --ab: after the table)
        return print_floor(lm, baseline, args.repeats, args.batch, args.pos)

    step_name = f"{args.method} step"
    rows = [("baseline fwd+bwd", baseline), (step_name, mask_step),
            ("EAP's gradient pass", eap_pass)]
    if args.ab:
        rows.append((f"{step_name}, unfused", mask_step_unfused))
    for _, fn in rows:  # warm-up
        fn()
    wall = {name: [] for name, _ in rows}
    cpu = {name: [] for name, _ in rows}
    for _ in range(args.repeats):
        for name, fn in rows:
            synchronize(dev)
            t, c = time.perf_counter(), time.process_time()
            fn()
            synchronize(dev)
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    print(f"model: gpt2 {args.layers}x{args.heads}, d_model {args.d_model}, vocab {args.vocab}; "
          f"{problem.graph.n_edges} edges; batch {args.batch} x {args.pos} tokens; device {dev}; "
          f"dtype {str(lm.dtype).replace('torch.', '')}; {args.threads} thread(s); "
          f"{args.repeats} interleaved repeats")
    base = rows[0][0]
    for label, times in (("wall-clock", wall), ("CPU time", cpu)):
        print(f"{label} (median; ratio = median of each round's ratio to its baseline):")
        for name, ts in times.items():
            r = statistics.median(t / b for t, b in zip(ts, times[base]))
            print(f"  {name:22s} {statistics.median(ts):8.4f} s {r:6.2f}x   rounds: "
                  + " ".join(f"{t:.3f}" for t in ts))
    ratio = statistics.median(t / b for t, b in zip(wall[step_name], wall[base]))
    ratio_cpu = statistics.median(t / b for t, b in zip(cpu[step_name], cpu[base]))
    print(f"{step_name} / baseline: {ratio:.2f}x wall-clock, {ratio_cpu:.2f}x CPU time "
          f"(goal <= 1.3x)")
    if args.ab:  # one fractional mask, both paths: the metric and the mask's gradient
        z = torch.rand(problem.graph.n_edges, generator=torch.Generator().manual_seed(1))
        got = []
        for pr in (problem, unfused):
            with lm.frozen():
                mask = pr.graph.to_dense(z.to(dev, lm.dtype), fill=1.0).requires_grad_(True)
                value = pr.score(batch, mask, pr.ablated(0)).sum()
                value.backward()
            got.append((value.detach(), mask.grad))
        (v1, g1), (v2, g2) = got
        print(f"fused against unfused, one fractional mask: metric {float(v1):.6g} vs "
              f"{float(v2):.6g}; mask gradient max difference "
              f"{float((g1 - g2).abs().max() / g2.abs().max()):.1e} of its largest entry")
    if args.floor:
        print_floor(lm, baseline, args.repeats, args.batch, args.pos)

def _cpu(repeats: int, fn, *args) -> float:
    """Median process CPU time of ``fn(*args)`` over ``repeats`` runs (after one warm-up)."""
    fn(*args)
    out = []
    for _ in range(repeats):
        c = time.process_time()
        fn(*args)
        out.append(time.process_time() - c)
    return statistics.median(out)


def _norm_grad(ln, x, gy):
    """The layer norm's forward and its input gradient."""
    return torch.autograd.grad(ln(x), x, gy)


def floor_pieces(lm, b: int, p: int, repeats: int) -> dict:
    """CPU seconds of each piece of work a fractional-mask step adds to a plain
    forward+backward (see the module docstring), summed over the model's reader groups."""
    g, d, dt = lm.graph, lm.hf.config.n_embd, lm.dtype
    H = g.n_heads
    ln = torch.nn.LayerNorm(d, dtype=dt)
    for t in ln.parameters():
        t.requires_grad_(False)
    resid = torch.randn(b, p, d, dtype=dt)
    delta = torch.randn(g.n_writers, b, p, d, dtype=dt)
    N = b * p * d
    out = {"correction GEMMs (forward)": 0.0, "edge-product GEMMs (backward)": 0.0,
           "per-reader norms (fwd+bwd, extra)": 0.0, "reader-gradient sums": 0.0}
    groups = []
    for layer in range(g.n_layers):
        groups.append((g.attn_upstream(layer), 3 * H, not g.attn_only))
        if not g.attn_only:
            groups.append((g.mlp_upstream(layer), 1, False))
    groups.append((g.n_writers, 1, False))
    for n, s, merged_with_next in groups:
        mt = torch.rand(s, n, dtype=dt) - 1
        src = delta[:n].reshape(n, -1)
        out["correction GEMMs (forward)"] += _cpu(repeats, torch.addmm, resid.reshape(1, -1),
                                                  mt, src)
        # the heads' products are formed with the MLP's before them: one GEMM of s + 1 rows
        # over the MLP's upstream writers (n - 1 would be the MLP's; n is an upper bound)
        if s > 1 or not merged_with_next:
            grad = torch.randn(s + (1 if s > 1 and merged_with_next else 0), N, dtype=dt)
            out["edge-product GEMMs (backward)"] += _cpu(repeats, torch.mm, src, grad.T)
        if s > 1:
            x = torch.randn(s, b, p, d, dtype=dt, requires_grad=True)
            x1 = torch.randn(b, p, d, dtype=dt, requires_grad=True)
            gy, gy1 = torch.randn(s, b, p, d, dtype=dt), torch.randn(b, p, d, dtype=dt)
            per_reader = _cpu(repeats, _norm_grad, ln, x, gy)
            plain = _cpu(repeats, _norm_grad, ln, x1, gy1)
            out["per-reader norms (fwd+bwd, extra)"] += per_reader - plain
            gr = torch.randn(s, N, dtype=dt)
            out["reader-gradient sums"] += _cpu(repeats, torch.mv, gr.T, gr.new_ones(s))
    return out


def print_floor(lm, baseline, repeats: int, b: int, p: int) -> None:
    """The floor: (baseline + :func:`floor_pieces`) / baseline, each piece's share."""
    base = _cpu(repeats, baseline)
    pieces = floor_pieces(lm, b, p, repeats)
    print(f"baseline fwd+bwd: {base:.4f} s CPU ({lm.graph.n_edges} edges)")
    for name, t in pieces.items():
        print(f"  + {name:36s} {t:.4f} s  ({t / base:.2f}x)")
    total = base + sum(pieces.values())
    print(f"floor: {total / base:.2f}x the baseline (goal <= 1.3x)")


if __name__ == "__main__":
    main()
