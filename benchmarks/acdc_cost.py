"""ACDC cost: the fast implementation against the naive reference, same model, task and tau.

    python benchmarks/acdc_cost.py                          # GPT-2-small shape, d_model 768
    python benchmarks/acdc_cost.py --d-model 192            # quicker on a small CPU
    python benchmarks/acdc_cost.py --profile                # + where the fast run's time goes
    python benchmarks/acdc_cost.py --device cuda --batch 32 # on a GPU
    python benchmarks/acdc_cost.py --guided                 # ACDC vs guided ACDC on tiny-ioi
    python benchmarks/acdc_cost.py --metric-cost            # one evaluation's unembedding + KL
    python benchmarks/acdc_cost.py --eval-cost --threads 2  # one evaluation, four ways

Builds a GPT-2-small-shaped model (12 layers x 12 heads, 32,491 edges; ``--d-model`` reduces the
width for CPUs) with random weights, saves it and loads it by path through acdc-engine, draws a
batch of random clean/corrupted pairs, and then, in one process:

  1. times one plain forward pass over the batch (the unit of "forward-pass equivalents");
  2. runs the fast ACDC (``acdc_engine.scoring.acdc.acdc``) over the whole graph, checkpointing
     after every node and keeping the checkpoint of node ``--deep-node`` (default: the middle);
  3. runs the naive reference (``acdc_naive``: one full patched forward per tested edge) for the
     first ``--naive-edges`` tested edges from the start, and again for as many edges resumed
     from the deep checkpoint (so its rate is not measured on the cheap logits edges only);
  4. prints edges tested per second for both, forward-pass equivalents per tested edge, the
     speed-up (fast full-run rate over the naive rate) and whether the decision sequences of
     the two agree on both stretches.

``--guided`` instead compares plain ACDC with attribution-guided ACDC (``acdc`` with a
``Guide`` of EAP-IG estimates) on the shipped tiny-ioi model and the ioi task, at several taus:
circuit size (after dead ends are pruned), normalized faithfulness (task metric, logit
difference), KL to the full model, edges decided by a test, candidate evaluations, accepted
group removals, edges kept untested, time (guided: including its EAP-IG pass) and the overlap
(Jaccard) of the circuits.

``--metric-cost`` instead times, interleaved in one process (so the machine's load hits all
alike), what one engine evaluation of ``--speculate`` stacked candidates spends after the model
work: the unembedding ``[candidates x batch, d_model] @ [d_model, vocab]``, the KL divergence as
the plain metric computes it on the repeated batch (two ``log_softmax``, ``exp``, sum: the form
before the prepared metrics), and the prepared KL the engine uses (clean side kept per batch).

``--eval-cost`` instead times, interleaved in one process, one engine evaluation of
``--speculate`` stacked candidates on the GPT-2-small-shaped model, the kind that dominates a
whole run (87% of its candidates): testing the query edges into head a11.5 whose only kept
write is the logits. Four ways: the logits as a fresh tensor from ``adapter.unembed`` and the
head re-run on c copies of its keys and values (before), the logits written into the engine's
reused buffer, then also unembedded at low rank, then also the candidates' queries as query
rows of one attention (the engine now); it prints the median times, their ratios and the
largest difference of the metric values.

tau: ``--tau auto`` (default) takes the median of the positive single-edge damages of the
logits' incoming edges (one batched evaluation), which prunes the graph to a sparse circuit as
ACDC does on real tasks; pass a number to fix it. Metric: KL divergence to the full model.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(device):
    sync(device)
    return time.perf_counter(), time.process_time()


def auto_tau(problem):
    """Median positive damage of removing each logits edge alone (one batched evaluation)."""
    import numpy as np

    from acdc_engine.scoring.acdc import visit_order
    from acdc_engine.scoring.acdc.engine import Engine

    g = problem.graph
    keep = np.ones((g.n_writers, g.n_readers), dtype=bool)
    eng = Engine(problem, keep)
    eng.reset()
    node, edges = visit_order(g)[0]
    eng.begin_node(node)
    full = eng.evaluate([[]])[0]
    values = []
    for i in range(0, len(edges), 32):
        values += eng.evaluate([[e] for e in edges[i : i + 32]])
    damages = sorted(v - full for v in values if v - full > 0)
    return damages[len(damages) // 2] if damages else 1e-3


def compare_guided(args):
    """ACDC vs attribution-guided ACDC on tiny-ioi / ioi (see the module docstring)."""
    from acdc_engine.api.setup import build_problem, load_model, load_task
    from acdc_engine.circuit import prune_dead
    from acdc_engine.plugins import registry
    from acdc_engine.scoring import IG_STEPS, attribute
    from acdc_engine.scoring.acdc import AcdcConfig, Guide, acdc

    task = load_task("ioi")
    lm = load_model(task.model, device=args.device, dtype=args.dtype)
    problem, data = build_problem(lm, task, metric=task.default_metric, ablation="corrupted",
                                  n_examples=args.examples, batch_size=32, seed=args.seed)
    g = lm.graph
    kl = problem.with_metric(registry().metric("kl_div"))  # the pruning metric
    t0 = time.perf_counter()
    est = attribute(kl, method="eap-ig", ig_steps=IG_STEPS, progress=False)
    t_est = time.perf_counter() - t0
    print(f"model tiny-ioi ({g.summary()}); task ioi, {len(data)} examples; metric kl_div; "
          f"ablation corrupted; EAP-IG estimates (5 steps) in {t_est:.2f}s")
    full_m, empty_m = problem.evaluate([None, problem.empty_mask()])
    head = (f"{'tau':>7} {'method':<12} {'edges':>5} {'faithful':>8} {'KL':>7} "
            f"{'decided':>7} {'evals':>6} {'groups':>6} {'untested':>8} {'time s':>7} "
            f"{'jaccard':>7}")
    print(head)
    print("-" * len(head))
    for tau in args.taus:
        rows = []
        for name in ("acdc", "acdc-guided"):
            t0 = time.perf_counter()
            guide = None if name == "acdc" else Guide(est)
            r = acdc(kl, AcdcConfig(tau, progress=False, guide=guide))
            secs = time.perf_counter() - t0 + (t_est if name != "acdc" else 0.0)
            keep = prune_dead(g, r.keep)
            (m,) = problem.evaluate([g.mask_from_edges(keep)])
            rows.append((name, r, keep, (m - empty_m) / (full_m - empty_m), secs))
        a, b = rows[0][2], rows[1][2]
        union = int((a | b).sum())
        jac = int((a & b).sum()) / union if union else 1.0
        for name, r, keep, faith, secs in rows:
            print(f"{tau:7.3g} {name:<12} {int(keep.sum()):5d} {faith:8.3f} "
                  f"{r.metric_final:7.4f} {r.n_tested:7d} {r.n_evaluations:6d} "
                  f"{r.info.get('group_removals', 0):6d} {r.info.get('kept_untested', 0):8d} "
                  f"{secs:7.2f} {jac:7.2f}")


def metric_cost(args):
    """Per-evaluation cost of the unembedding, the textbook KL and the prepared KL."""
    from acdc_engine.metrics import Metric
    from acdc_engine.plugins import registry
    from acdc_engine.tasks import Batch

    def textbook_kl(logits, batch):  # the kl_div formula before the prepared form
        logp = logits.float().log_softmax(-1)
        logq = batch.clean_logits.float().log_softmax(-1)
        return (logq.exp() * (logq - logp)).sum(-1)

    B, V, d, c = args.batch, args.vocab, args.d_model, args.speculate
    gen = torch.Generator().manual_seed(args.seed)
    ids = torch.zeros(B, args.pos, dtype=torch.long)
    clean = torch.randn(B, 1, V, generator=gen) * 3 - 80  # GPT-2's logits sit around -80
    batch = Batch(clean=ids, corrupted=ids, answers=ids[:, :1], wrongs=ids[:, :1],
                  rows=list(range(B)), clean_logits=clean)
    W = torch.randn(V, d, generator=gen) / d**0.5  # [vocab, d]
    h = torch.randn(c * B, 1, d, generator=gen)  # [c * B, 1, d] final residuals
    old = Metric("kl_textbook", textbook_kl).stacked(batch)
    new = registry().metric("kl_div").stacked(batch)
    z = torch.nn.functional.linear(h, W).view(c, B, 1, V)
    jobs = {"unembed": lambda: torch.nn.functional.linear(h, W),
            "KL textbook": lambda: old(z.clone()), "KL prepared": lambda: new(z.clone()),
            "(copy)": lambda: z.clone()}
    wall = {k: [] for k in jobs}
    for it in range(args.repeats + 1):
        for name, fn in jobs.items():
            t0 = time.perf_counter()
            fn()
            if it:  # the first round warms up
                wall[name].append(time.perf_counter() - t0)
    ms = {k: statistics.median(v) * 1000 for k, v in wall.items()}
    for k in ("KL textbook", "KL prepared"):
        ms[k] -= ms["(copy)"]  # both are handed a fresh copy of the logits
    err = (new(z.clone()) - old(z.clone())).abs().max().item()
    print(f"one evaluation of {c} candidates x {B} examples, d_model {d}, vocab {V}, "
          f"{torch.get_num_threads()} threads (median of {args.repeats}, ms):")
    for k in ("unembed", "KL textbook", "KL prepared"):
        print(f"  {k:12s} {ms[k]:8.1f}")
    print(f"  KL prepared / textbook: {ms['KL prepared'] / ms['KL textbook']:.2f}; "
          f"max |difference| {err:.2e}")


def eval_cost(args, problem):
    """One node's evaluation, three ways interleaved (see the module docstring)."""
    import numpy as np

    from acdc_engine.scoring.acdc import engine as engine_mod
    from acdc_engine.scoring.acdc import visit_order

    problem = problem.with_metric(problem.metric)
    g = problem.graph
    keep = np.ones((g.n_writers, g.n_readers), dtype=bool)
    v = next(i for i, n in enumerate(g.nodes) if n.name == f"a{g.n_layers - 1}.5")
    keep[v, g.mlp_slot(g.n_layers - 1)] = False  # the head writes into the logits only
    eng = engine_mod.Engine(problem, keep)
    eng.reset()
    edges = dict(visit_order(g))[v]
    eng.begin_node(v, expected=len(edges))
    st, into = eng.states[0], eng.unembed.into
    low = st.low
    sets = [edges[: j + 1] for j in range(args.speculate)]

    rows_ok = eng.multi_query_ok

    def way(fresh, low_rank, query_rows):
        def fn():
            st.low = low if low_rank else None
            eng.unembed.into = None if fresh else into
            eng.multi_query_ok = rows_ok and query_rows
            try:
                return eng.evaluate(sets)
            finally:
                eng.unembed.into, eng.multi_query_ok = into, rows_ok
        return fn

    jobs = {"fresh logits (before)": way(True, False, False),
            "reused buffer": way(False, False, False),
            "+ low rank": way(False, True, False),
            "+ query rows (now)": way(False, True, True)}
    values = {k: f() for k, f in jobs.items()}  # the first round warms up
    wall = {k: [] for k in jobs}
    for _ in range(args.repeats):
        for name, fn in jobs.items():
            t0 = time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
    ms = {k: statistics.median(w) * 1000 for k, w in wall.items()}
    ref = values["fresh logits (before)"]
    print(f"one evaluation of {len(sets)} candidates x {len(problem.batches[0])} examples "
          f"(testing {g.nodes[v].name}'s query edges, low rank available: {low is not None}, "
          f"query rows: {rows_ok}), "
          f"{torch.get_num_threads()} threads, median of {args.repeats} (ms):")
    for k in jobs:
        err = max(abs(a - b) for a, b in zip(values[k], ref))
        print(f"  {k:22s} {ms[k]:8.1f}  x{ms[k] / ms['fresh logits (before)']:.2f}  "
              f"max |metric difference| {err:.2e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--d-model", type=int, default=768, help="width (768 = GPT-2 small)")
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--batch", type=int, default=8, help="clean/corrupted pairs")
    ap.add_argument("--pos", type=int, default=16, help="tokens per prompt")
    ap.add_argument("--tau", default="auto", help="ACDC threshold, or 'auto' (see above)")
    ap.add_argument("--naive-edges", type=int, default=20,
                    help="tested edges per naive stretch (two stretches)")
    ap.add_argument("--deep-node", type=int, default=None,
                    help="node position of the second naive stretch (default: the middle)")
    ap.add_argument("--speculate", type=int, default=32)
    ap.add_argument("--device", default=None,
                    help="cpu, cuda or cuda:N (default: cuda when torch sees one, else cpu)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="cProfile the fast run")
    ap.add_argument("--guided", action="store_true",
                    help="compare ACDC with guided ACDC on tiny-ioi instead")
    ap.add_argument("--examples", type=int, default=64, help="--guided: ioi examples")
    ap.add_argument("--metric-cost", action="store_true",
                    help="time one evaluation's unembedding and KL instead (see above)")
    ap.add_argument("--eval-cost", action="store_true",
                    help="time one engine evaluation three ways instead (see above)")
    ap.add_argument("--repeats", type=int, default=5,
                    help="--metric-cost, --eval-cost: timed rounds")
    ap.add_argument("--taus", type=float, nargs="+", default=[0.001, 0.003, 0.01, 0.03],
                    help="--guided: thresholds")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.guided:
        return compare_guided(args)
    if args.metric_cost:
        return metric_cost(args)

    from transformers import GPT2Config, GPT2LMHeadModel

    from acdc_engine.api.setup import load_model
    from acdc_engine.patching import LAST, NO_PATCH, run
    from acdc_engine.plugins import registry
    from acdc_engine.problem import Problem
    from acdc_engine.scoring.acdc import AcdcConfig, acdc, acdc_naive, visit_order
    from acdc_engine.tasks import TaskData

    torch.manual_seed(args.seed)
    cfg = GPT2Config(n_layer=args.layers, n_head=args.heads, n_embd=args.d_model,
                     vocab_size=args.vocab, n_positions=max(64, args.pos),
                     bos_token_id=0, eos_token_id=0)
    tmp = Path(tempfile.mkdtemp(prefix="acdc-cost-"))
    try:
        GPT2LMHeadModel(cfg).save_pretrained(tmp / "model")
        lm = load_model(str(tmp / "model"), device=args.device, dtype=args.dtype)
        dev, g = lm.device, lm.graph
        B, P = args.batch, args.pos
        gen = torch.Generator().manual_seed(args.seed + 1)
        ids = lambda *shape: torch.randint(0, args.vocab, shape, generator=gen).tolist()  # noqa
        clean, corrupted, answer, wrong = ids(B, P), ids(B, P), ids(B), ids(B)
        data = TaskData(task="random", rows=[{} for _ in range(B)], clean=clean,
                        corrupted=corrupted, answers=[[a] for a in answer],
                        wrongs=[[w] for w in wrong])
        metric = registry().metric("kl_div")
        problem = Problem.build(lm, data, metric, "corrupted", batch_size=B)  # one batch
        batch = problem.batches[0]
        if args.eval_cost:
            return eval_cost(args, problem)

        with torch.no_grad():
            run(lm.adapter, batch.clean, NO_PATCH, LAST)
            times = []
            for _ in range(5):
                t0, _ = clock(dev)
                run(lm.adapter, batch.clean, NO_PATCH, LAST)
                times.append(clock(dev)[0] - t0)
        fwd = statistics.median(times)
        tau = auto_tau(problem) if args.tau == "auto" else float(args.tau)
        order = visit_order(g)
        deep = args.deep_node if args.deep_node is not None else len(order) // 2
        print(f"model: GPT-2 shape {args.layers}x{args.heads}, d_model {args.d_model}, vocab "
              f"{args.vocab}; {g.n_edges} edges; batch {B} x {P} tokens; device {dev}; "
              f"{torch.get_num_threads()} CPU threads; dtype "
              f"{str(lm.dtype).replace('torch.', '')}")
        print(f"one plain forward pass over the batch: {fwd * 1000:.1f} ms; metric kl_div; "
              f"tau {tau:.4g}" + (" (auto)" if args.tau == "auto" else ""))

        # -- fast, the whole graph --------------------------------------------------------
        ckpt, deep_ckpt = tmp / "run.ckpt", tmp / "deep.ckpt"
        seen = {}

        def keep_deep(done):
            if done.position == deep:
                shutil.copy(ckpt, deep_ckpt)
                seen["decisions"] = done.n_tested
            if done.position % 20 == 0:
                print(f"  fast: {done.position}/{done.total} nodes, {done.n_tested} tested, "
                      f"{time.perf_counter() - t_fast:.1f}s", file=sys.stderr)

        prof = cProfile.Profile() if args.profile else None
        t_fast, c_fast = clock(dev)
        if prof:
            prof.enable()
        fast = acdc(problem, AcdcConfig(tau, speculate=args.speculate, checkpoint=ckpt,
                                        checkpoint_every=1, callback=keep_deep, progress=False))
        if prof:
            prof.disable()
        t1, c1 = clock(dev)
        fast_s, fast_cpu = t1 - t_fast, c1 - c_fast
        n_fast = fast.n_tested
        print(f"fast:  {n_fast} edges tested ({fast.n_evaluations} candidate evaluations, "
              f"{fast.node_evaluations / max(1, fast.n_evaluations):.1f} nodes re-run each, "
              f"{fast.info.get('low_rank_evaluations', 0)} unembedded at low rank), "
              f"{fast.n_kept} kept of {g.n_edges}, in {fast_s:.1f}s")

        # -- naive: two stretches ------------------------------------------------------------
        K = args.naive_edges
        t0, c0 = clock(dev)
        head = acdc_naive(problem, AcdcConfig(tau, max_tested=K, progress=False))
        t1, c1 = clock(dev)
        mid = None
        if deep_ckpt.exists():
            mid = acdc_naive(problem, AcdcConfig(tau, max_tested=K, checkpoint=deep_ckpt,
                                                 progress=False))
        t2, c2 = clock(dev)
        n_naive = head.n_tested + (0 if mid is None else mid.n_tested - seen["decisions"])
        naive_s, naive_cpu = t2 - t0, c2 - c0
        same_head = head.decisions == fast.decisions[: head.n_tested]
        same_mid = True
        if mid is not None:
            n0 = seen["decisions"]
            same_mid = mid.decisions[n0:] == fast.decisions[n0 : mid.n_tested]
        print(f"naive: {n_naive} edges tested (first {head.n_tested}, and "
              f"{0 if mid is None else mid.n_tested - seen['decisions']} from node {deep} of "
              f"{len(order)}) in {naive_s:.1f}s")

        # -- summary -------------------------------------------------------------------------
        r_fast, r_naive = n_fast / fast_s, n_naive / naive_s
        print()
        print(f"{'':8s} {'edges/s':>9s} {'fwd-equiv/edge':>15s} {'CPU s/edge':>11s}")
        print(f"{'naive':8s} {r_naive:9.2f} {naive_s / n_naive / fwd:15.3f} "
              f"{naive_cpu / n_naive:11.4f}")
        print(f"{'fast':8s} {r_fast:9.2f} {fast_s / n_fast / fwd:15.3f} "
              f"{fast_cpu / n_fast:11.4f}")
        print(f"speed-up: {r_fast / r_naive:.1f}x (edges tested per second, fast whole run vs "
              f"naive); by CPU time {(naive_cpu / n_naive) / (fast_cpu / n_fast):.1f}x")
        print(f"identical decisions: {same_head and same_mid} (first {head.n_tested} edges: "
              f"{same_head}; {0 if mid is None else mid.n_tested - seen['decisions']} edges "
              f"from node {deep}: {same_mid})")

        if prof:
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(20)
            print("\nfast run profile (top 20 by own time):")
            print(s.getvalue())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
