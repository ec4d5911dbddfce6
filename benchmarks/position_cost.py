"""What position-aware edges cost: EAP (and EAP-IG) with every edge split by position, against
the same method without positions, on the same model and batch, side by side in one run.

    python benchmarks/position_cost.py                 # GPT-2-small shape, 8 x 32 tokens
    python benchmarks/position_cost.py --layers 4 --d-model 256 --repeats 5 --threads 1

Rows (interleaved round by round, median of ``--repeats``):

  eap                 EAP on the unsplit graph (32,491 edges for GPT-2 small)
  eap tokens          EAP with one position group per token (x pos edges)
  eap named           EAP with 4 named positions (IO, S1, S2, END: random tokens of each row,
                      END the last) and 'other' (x 5 edges)
  eap-ig(5) [tokens]  the same for EAP-IG, with ``--ig`` (slower)

Each split run's scores, summed over positions, are compared with the unsplit run's (the
invariant: they are equal up to float32 rounding); the largest relative difference is printed.
Target (issue 14): EAP with positions within 1.2x of EAP without.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import (Shape, add_device_args, add_shape_args, build_model,  # noqa: E402
                     load_in_memory, random_batch)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_shape_args(ap)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--ig", action="store_true", help="also EAP-IG (5 steps), plain and tokens")
    add_device_args(ap)
    args = ap.parse_args()

    from acdc_engine.patching import Ablation
    from acdc_engine.plugins import registry
    from acdc_engine.positions import PositionSplit
    from acdc_engine.problem import Problem
    from acdc_engine.resources import set_threads, synchronize
    from acdc_engine.scoring import IG_STEPS, attribute

    set_threads(args.threads)
    shape = Shape("gpt2", "gpt2", args.layers, args.heads, args.d_model, 4 * args.d_model,
                  args.vocab)
    lm = load_in_memory(build_model(shape, device=args.device), args.device, args.dtype)
    batch = random_batch(args.vocab, args.batch, args.pos, lm.device)
    gen = torch.Generator().manual_seed(1)
    picks = torch.stack([torch.randperm(args.pos - 1, generator=gen)[:3]
                         for _ in range(args.batch)])  # [b, 3] distinct non-final tokens
    batch.extra.update(io_pos=picks[:, 0], s1_pos=picks[:, 1], s2_pos=picks[:, 2],
                       end_pos=torch.full((args.batch,), args.pos - 1))
    metric = registry().metric("logit_diff")
    splits = {
        "": None,
        " tokens": PositionSplit("tokens", tuple(str(i) for i in range(args.pos))),
        " named": PositionSplit("named", ("IO", "S1", "S2", "END", "other"),
                                ("io_pos", "s1_pos", "s2_pos", "end_pos")),
    }
    rows = [("eap", "eap", s) for s in splits]
    if args.ig:
        rows += [("eap-ig(5)", "eap-ig", s) for s in ("", " tokens")]
    g = lm.graph
    print(f"model: GPT-2 shape {args.layers}x{args.heads}, d_model {args.d_model}, vocab "
          f"{args.vocab}; {g.n_edges} edges; batch {args.batch} x {args.pos} tokens; device "
          f"{lm.device}; {torch.get_num_threads()} threads; {args.repeats} interleaved rounds")

    def step(method, split):
        problem = Problem(lm, [batch], metric, Ablation("corrupted"), positions=split)
        return attribute(problem, method, ig_steps=IG_STEPS, progress=False)

    times = {r: [] for r in rows}
    cpu = {r: [] for r in rows}
    scores = {}
    for r in rows:  # warm-up, and the scores for the invariant check
        scores[r] = step(r[1], splits[r[2]])
    for _ in range(args.repeats):
        for r in rows:
            synchronize(lm.device)
            t0, c0 = time.perf_counter(), time.process_time()
            step(r[1], splits[r[2]])
            synchronize(lm.device)
            times[r].append(time.perf_counter() - t0)
            cpu[r].append(time.process_time() - c0)
    print(f"\n{'run':<20}{'edges':>10}{'seconds':>10}{'x unsplit':>11}{'CPU x':>8}"
          f"{'sum-over-positions error':>27}")
    for r in rows:
        label, method, key = r
        base = (label, method, "")
        split = splits[key]
        n_groups = 1 if split is None else len(split.names)
        ratio = statistics.median(times[r]) / statistics.median(times[base])
        cratio = statistics.median(cpu[r]) / statistics.median(cpu[base])
        err = ""
        if split is not None:
            summed = scores[r].view(n_groups, -1).sum(0)
            ref = scores[base]
            err = f"{float((summed - ref).abs().max() / ref.abs().max()):.2e}"
        print(f"{label + key:<20}{g.n_edges * n_groups:>10,}{statistics.median(times[r]):>10.2f}"
              f"{ratio:>10.2f}x{cratio:>7.2f}x{err:>27}")
    print("\ntarget: EAP with positions <= 1.2x EAP without (issue 14)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
