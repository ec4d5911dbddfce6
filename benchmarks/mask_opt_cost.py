"""Cost of one mask-optimization step relative to a plain forward+backward of the same model.

    python benchmarks/mask_opt_cost.py                        # GPT-2-small shape, 1 thread
    python benchmarks/mask_opt_cost.py --layers 4 --d-model 256 --vocab 5000 --repeats 7
    python benchmarks/mask_opt_cost.py --method ugs --device cuda

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

and prints, for wall-clock and CPU time (a shared machine's contention shows in the first,
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
    add_device_args(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from _common import Shape, baseline_step, build_model, load_in_memory, random_batch

    from acdc_engine.patching import Ablation
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

    def eap_pass():  # the gradient pass EAP makes: the mask all ones (no product forward)
        with lm.frozen():
            mask = problem.graph.full_mask(1.0, device=dev, dtype=lm.dtype, requires_grad=True)
            problem.score(batch, mask, problem.ablated(0)).sum().backward()

    step_name = f"{args.method} step"
    rows = [("baseline fwd+bwd", baseline), (step_name, mask_step),
            ("EAP's gradient pass", eap_pass)]
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

if __name__ == "__main__":
    main()
