"""Data-parallel scaling: EAP, EAP-IG and ACDC on 1, 2, ... ranks with one thread each.

    python benchmarks/parallel_cost.py                        # GPT-2-small shape, ranks 1,2
    python benchmarks/parallel_cost.py --ranks 1,2,4          # where the cores allow
    python benchmarks/parallel_cost.py --d-model 64 --layers 2 --heads 2 --vocab 500 \\
        --examples 8 --acdc-tests 20                          # a quick check that it works

Builds a GPT-2-small-shaped model (12 layers x 12 heads, 32,491 edges) with random weights,
saves it once, and for each number of ranks W launches W processes with torchrun's launcher
(``acdc_engine.distributed.launch``: gloo, ``OMP_NUM_THREADS=1``). Every rank loads the model,
builds the problem over ``--examples`` random clean/corrupted pairs (``--pos`` tokens, batches
of ``--batch``), keeps its shard and runs, between barriers:

  * EAP and EAP-IG (``--ig-steps``) over every example (KL divergence: the pruning metric's
    cost; logit difference would be cheaper per example but scales alike);
  * ACDC for its first ``--acdc-tests`` edge tests (``max_tested``; tau: the median positive
    damage of the logits' edges, as benchmarks/acdc_cost.py's ``auto``).

Each method runs once untimed (warm-up), then ``--repeats`` times; a run's time is the slowest
rank's wall time, and the median run is printed; *communication* is the time the ranks spent
inside collectives (all-reduce of the sums; it includes waiting for a slower rank, so load
imbalance shows up there). Printed per method and W: time, communication, speed-up ``T1 / TW``
and efficiency ``T1 / (W TW)``. Goal (issue 26): efficiency >= 0.85 at 2 ranks on 2 cores for
EAP-IG and ACDC. Time it on a quiet machine: other processes on the cores count against the
ranks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from acdc_engine.distributed import Ranks


@dataclass(frozen=True)
class TimedRanks(Ranks):
    """:class:`Ranks` whose all-reduces add their wall time to ``spent[0]``."""

    spent: list = field(default_factory=lambda: [0.0], compare=False)

    def sum(self, x):
        t0 = time.perf_counter()
        out = super().sum(x)
        self.spent[0] += time.perf_counter() - t0
        return out


def _args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", default="1,2", help="numbers of ranks, e.g. 1,2,4")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--examples", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--pos", type=int, default=16)
    ap.add_argument("--ig-steps", type=int, default=5)
    ap.add_argument("--acdc-tests", type=int, default=300)
    ap.add_argument("--methods", default="eap,eap-ig,acdc")
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed runs per method after one warm-up; the median is printed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the table as JSON here")
    ap.add_argument("--rank-job", type=Path, help=argparse.SUPPRESS)  # internal: a rank
    ap.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def rank_job(args) -> None:
    """One rank: load, shard, time each method; rank 0 writes ``args.rank_job``."""
    import warnings

    from acdc_engine.api.setup import load_model
    from acdc_engine.distributed import init_from_env, shutdown
    from acdc_engine.plugins import registry
    from acdc_engine.problem import Problem
    from acdc_engine.scoring.acdc import AcdcConfig, PruneWarning, acdc
    from acdc_engine.scoring.attribution import attribute
    from acdc_engine.tasks import TaskData

    sys.path.insert(0, str(Path(__file__).parent))
    from acdc_cost import auto_tau

    torch.set_num_threads(1)
    base = init_from_env()
    ranks = TimedRanks(base.rank, base.world, base.backend)
    lm = load_model(str(args.model_dir), device="cpu")
    gen = torch.Generator().manual_seed(args.seed + 1)
    n, p = args.examples, args.pos
    ids = lambda *shape: torch.randint(0, args.vocab, shape, generator=gen).tolist()  # noqa
    data = TaskData(task="random", rows=[{} for _ in range(n)], clean=ids(n, p),
                    corrupted=ids(n, p), answers=[[a] for a in ids(n)],
                    wrongs=[[w] for w in ids(n)])
    whole = Problem.build(lm, data, registry().metric("kl_div"), "corrupted", args.batch)
    problem = whole.shard(ranks)  # one rank: the whole problem, no collective
    for i in range(len(problem.batches)):  # the corrupted runs, cached before any timing
        problem.ablated(i)
    out = {"n_local": problem.n_examples}

    def phase(name, fn, warmup):
        warmup()  # first-call costs (allocations, lazy set-up) are not the method's
        runs = []
        for _ in range(args.repeats):
            base.barrier()
            ranks.spent[0] = 0.0
            t0 = time.perf_counter()
            extra = fn()
            wall = time.perf_counter() - t0
            every = base.gather((wall, ranks.spent[0]))
            runs.append((max(w for w, _ in every), sum(c for _, c in every) / len(every)))
        t, c = sorted(runs)[len(runs) // 2]  # the median repeat (by its slowest rank)
        out[name] = {"time": t, "comm": c, **(extra or {})}

    methods = args.methods.split(",")
    for m in ("eap", "eap-ig"):
        if m in methods:
            fn = lambda m=m: {"max_score": float(attribute(  # noqa: E731
                problem, m, ig_steps=args.ig_steps, progress=False).abs().max())}
            phase(m, fn, fn)
    if "acdc" in methods:
        tau = auto_tau(problem)

        def run_acdc(tests=args.acdc_tests):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", PruneWarning)
                r = acdc(problem, AcdcConfig(tau, max_tested=tests, progress=False))
            return {"tests": len(r.decisions), "removed": sum(d for _, d in r.decisions)}

        phase("acdc", run_acdc, lambda: run_acdc(min(5, args.acdc_tests)))
    if ranks.main:
        args.rank_job.write_text(json.dumps(out))
    shutdown(base)


def main(argv=None) -> int:
    args = _args(argv)
    if args.rank_job is not None:
        rank_job(args)
        return 0
    from transformers import GPT2Config, GPT2LMHeadModel

    from acdc_engine.distributed.launch import launch

    counts = [int(x) for x in args.ranks.split(",")]
    if counts[0] != 1 or min(counts) < 1:
        raise SystemExit("--ranks must start with 1 (the speed-ups are against one rank)")
    tmp = Path(tempfile.mkdtemp(prefix="acdc-parallel-"))
    torch.manual_seed(args.seed)
    cfg = GPT2Config(n_layer=args.layers, n_head=args.heads, n_embd=args.d_model,
                     vocab_size=args.vocab, n_positions=max(64, args.pos), bos_token_id=0,
                     eos_token_id=0)
    GPT2LMHeadModel(cfg).save_pretrained(tmp / "model")
    print(f"model: GPT-2 shape {args.layers}x{args.heads}, d_model {args.d_model}, vocab "
          f"{args.vocab}; {args.examples} examples x {args.pos} tokens, batches of "
          f"{args.batch}; one thread per rank; {os.cpu_count()} cores; torch {torch.__version__}")
    results = {}
    for w in counts:
        job = tmp / f"ranks{w}.json"
        own = [a for a in (argv if argv is not None else sys.argv[1:])]
        code = launch([__file__, *own, "--rank-job", str(job), "--model-dir",
                       str(tmp / "model")], w, module=False)
        if code != 0:
            return code
        results[w] = json.loads(job.read_text())
    rows = []
    print(f"{'method':>7} {'ranks':>5} {'time s':>8} {'comm s':>7} {'speed-up':>8} "
          f"{'efficiency':>10}")
    for m in args.methods.split(","):
        t1 = results[1][m]["time"]
        for w in counts:
            r = results[w][m]
            speed = t1 / r["time"]
            rows.append({"method": m, "ranks": w, **r, "speedup": speed,
                         "efficiency": speed / w})
            print(f"{m:>7} {w:>5} {r['time']:>8.3f} {r['comm']:>7.3f} {speed:>8.2f} "
                  f"{speed / w:>10.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
