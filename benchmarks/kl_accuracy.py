"""The KL that ACDC prunes by: its error against float64, its cost, and the decisions it changes.

    python benchmarks/kl_accuracy.py                         # error table (a few seconds)
    python benchmarks/kl_accuracy.py --cost --threads 1      # one evaluation's KL, before/now
    python benchmarks/kl_accuracy.py --decisions --layers 4  # ACDC before/now, same tau

Three forms of ``KL(q || p)`` from the same float32 logits:

* **textbook**: ``sum q (log q - log p)`` with two float32 ``log_softmax`` (the form before the
  prepared metrics);
* **before**: the rewrite ``kl_div`` used until issue 22, ``sum q log q - sum q y + sum q *
  log sum exp y`` (``y = z - max z``; the clean side per batch);
* **now**: ``plugins/acdc_builtins/kl.py``, ``log1p(E_q[expm1 v]) - E_q[v]`` over centred
  logit differences.

The default prints, per vocabulary size and size of KL, the largest relative error of each
against float64 computed from the same float32 logits (clean logits ``3 N(0,1) - 80``, as
GPT-2's sit around -80; patched = clean + ``scale`` N(0,1)). ``--cost`` times, interleaved,
one engine evaluation's unembedding ``[c B, d] @ [d, V]`` and the prepared KL before and now
on the same ``[c, B, V]`` logits. ``--decisions`` runs fast ACDC twice on a GPT-2-shaped model
with random weights (``--layers``, ``--d-model``) or on the shipped tiny-ioi model with the
ioi task (``--model tiny-ioi``), once pruning by the KL before and once by the KL now, at the
same tau (``auto``: the median positive single-edge damage of the logits' edges, measured
with the KL now), and prints how many of the tested edges were decided differently and how
the kept sets differ.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def textbook(z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    logq, logp = c.float().log_softmax(-1), z.float().log_softmax(-1)
    return (logq.exp() * (logq - logp)).sum(-1)


def before_clean(c: torch.Tensor):
    logq = c.float().log_softmax(-1)
    q = logq.exp()
    return q, (q * logq).sum(-1), q.sum(-1)


def before_patched(z, q, qlogq, mass):
    """The pre-issue-22 kl_div, as it was (the clean side from :func:`before_clean`)."""
    z = z.float()
    y = z - z.amax(-1, keepdim=True)
    return qlogq - torch.linalg.vecdot(y, q) + mass * y.exp().sum(-1).log()


def before_metric():
    """The pre-issue-22 kl_div as a Metric with its prepared form (for --decisions)."""
    from acdc_engine.metrics import Metric

    def fn(z, batch):
        return before_patched(z, *before_clean(batch.clean_logits))

    def prepare(batch):
        clean = before_clean(batch.clean_logits)
        return lambda z: before_patched(z, *clean)

    return Metric("kl_div_before", fn, higher_is_better=False, needs=("clean_logits",),
                  prepare=prepare)


def kl64(z, c):
    logq, logp = c.double().log_softmax(-1), z.double().log_softmax(-1)
    return (logq.exp() * (logq - logp)).sum(-1)


def error_table(args):
    from acdc_builtins.kl import KlClean, kl_to_clean

    gen = torch.Generator().manual_seed(args.seed)
    print(f"largest relative error against float64 of the same float32 logits ({args.rows} "
          f"rows per cell; clean logits 3 N(0,1) + {args.offset:g})")
    head = (f"{'vocab':>7} {'scale':>7} {'KL (median)':>12} {'textbook':>10} {'before':>10} "
            f"{'now':>10}")
    print(head)
    print("-" * len(head))
    for vocab in args.vocabs:
        c = torch.randn(args.rows, vocab, generator=gen) * 3 + args.offset
        for scale in args.scales:
            z = c + scale * torch.randn(c.shape, generator=gen)
            want = kl64(z, c)
            forms = (textbook(z, c), before_patched(z, *before_clean(c)),
                     kl_to_clean(z, KlClean(c)))
            rels = [((f.double() - want).abs() / want).max().item() for f in forms]
            print(f"{vocab:7d} {scale:7.0e} {want.median().item():12.2e} "
                  + " ".join(f"{r:10.1e}" for r in rels))


def cost(args):
    from acdc_builtins.kl import KlClean, kl_to_clean

    B, V, d, c = args.batch, args.vocab, args.d_model, args.speculate
    gen = torch.Generator().manual_seed(args.seed)
    clean = torch.randn(B, V, generator=gen) * 3 - 80
    W = torch.randn(V, d, generator=gen) / d**0.5
    h = torch.randn(c * B, d, generator=gen)
    z = (clean + 0.01 * torch.randn(c, B, V, generator=gen)).contiguous()
    old, new = before_clean(clean), KlClean(clean)
    spare = [torch.empty_like(z) for _ in range(3)]  # fresh copies without page faults
    jobs = {"unembed": lambda: torch.nn.functional.linear(h, W),
            "(copy)": lambda: spare[0].copy_(z),
            "KL before": lambda: before_patched(spare[1].copy_(z), *old),
            "KL now": lambda: kl_to_clean(spare[2].copy_(z), new, overwrite=True)}
    wall = {k: [] for k in jobs}
    for it in range(args.repeats + 1):
        for name, fn in jobs.items():
            t0 = time.perf_counter()
            fn()
            if it:
                wall[name].append(time.perf_counter() - t0)
    ms = {k: statistics.median(v) * 1000 for k, v in wall.items()}
    for k in ("KL before", "KL now"):
        ms[k] -= ms["(copy)"]
    print(f"one evaluation of {c} candidates x {B} examples, vocab {V}, d_model {d}, "
          f"{torch.get_num_threads()} threads (median of {args.repeats} interleaved rounds, ms):")
    for k in ("unembed", "KL before", "KL now"):
        print(f"  {k:10s} {ms[k]:8.1f}")
    print(f"  KL now / before: {ms['KL now'] / ms['KL before']:.2f}; (now - before) / "
          f"unembedding: {(ms['KL now'] - ms['KL before']) / ms['unembed']:+.1%}")


def decisions(args):
    from acdc_engine.api.setup import build_problem, load_model, load_task
    from acdc_engine.plugins import registry
    from acdc_engine.problem import Problem
    from acdc_engine.scoring.acdc import AcdcConfig, acdc
    from acdc_engine.tasks import TaskData

    now = registry().metric("kl_div")
    if args.model == "tiny-ioi":
        task = load_task("ioi")
        lm = load_model(task.model)
        problem, _ = build_problem(lm, task, metric=now, ablation="corrupted",
                                   n_examples=args.examples, batch_size=args.examples,
                                   seed=args.seed)
        what = f"tiny-ioi, ioi, {args.examples} examples"
    else:
        import tempfile
        from pathlib import Path

        from transformers import GPT2Config, GPT2LMHeadModel

        torch.manual_seed(args.seed)
        cfg = GPT2Config(n_layer=args.layers, n_head=args.heads, n_embd=args.d_model,
                         vocab_size=args.vocab, n_positions=64, bos_token_id=0, eos_token_id=0)
        tmp = Path(tempfile.mkdtemp(prefix="kl-acc-"))
        GPT2LMHeadModel(cfg).save_pretrained(tmp / "model")
        lm = load_model(str(tmp / "model"))
        gen = torch.Generator().manual_seed(args.seed + 1)
        ids = lambda *s: torch.randint(0, args.vocab, s, generator=gen).tolist()  # noqa: E731
        B, P = args.batch, args.pos
        data = TaskData(task="random", rows=[{} for _ in range(B)], clean=ids(B, P),
                        corrupted=ids(B, P), answers=[[a] for a in ids(B)],
                        wrongs=[[w] for w in ids(B)])
        problem = Problem.build(lm, data, now, "corrupted", batch_size=B)
        what = (f"GPT-2 shape {args.layers}x{args.heads}, d_model {args.d_model}, vocab "
                f"{args.vocab}, random weights, batch {B} x {P}")
    g = lm.graph
    if args.tau == "auto":
        from acdc_cost import auto_tau  # the same tau rule as the ACDC cost benchmark

        tau = auto_tau(problem)
    else:
        tau = float(args.tau)
    print(f"{what}; {g.n_edges} edges; tau {tau:.4g}")
    runs = {}
    for name, metric in (("before", before_metric()), ("now", now)):
        t0 = time.perf_counter()
        runs[name] = acdc(problem.with_metric(metric), AcdcConfig(tau, progress=False))
        r = runs[name]
        print(f"  {name:6s}: {r.n_tested} tested, {r.n_kept} kept, "
              f"{time.perf_counter() - t0:.1f} s")
    a, b = runs["before"].decisions, runs["now"].decisions
    n = min(len(a), len(b))
    first = next((i for i in range(n) if a[i] != b[i]), None)
    same = sum(x == y for x, y in zip(a, b))
    print(f"decisions: {same} of {n} identical in test order"
          + ("" if first is None else f"; first difference at test {first + 1}"))
    da, db = dict(a), dict(b)
    differ = [e for e in da if e in db and da[e] != db[e]]
    print(f"edges decided differently (by edge id): {len(differ)} of {len(da)}")
    ka = set(torch.nonzero(runs["before"].keep).flatten().tolist())
    kb = set(torch.nonzero(runs["now"].keep).flatten().tolist())
    print(f"kept sets: {len(ka & kb)} shared, {len(ka - kb)} only before, {len(kb - ka)} only now")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cost", action="store_true", help="time one evaluation's KL instead")
    ap.add_argument("--decisions", action="store_true", help="ACDC before/now instead")
    ap.add_argument("--vocabs", type=int, nargs="+", default=[1000, 50257, 151936])
    ap.add_argument("--scales", type=float, nargs="+",
                    default=[1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0])
    ap.add_argument("--offset", type=float, default=-80.0)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--model", default="gpt2-shape", choices=["gpt2-shape", "tiny-ioi"])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--pos", type=int, default=16)
    ap.add_argument("--examples", type=int, default=64, help="--model tiny-ioi: ioi examples")
    ap.add_argument("--speculate", type=int, default=32)
    ap.add_argument("--tau", default="auto")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cost:
        return cost(args)
    if args.decisions:
        return decisions(args)
    return error_table(args)


if __name__ == "__main__":
    main()
