"""Scaling of EAP's time and peak memory with the model's shape, and a cost model fitted to it.

    python benchmarks/scaling.py --json scaling.json      # ~10 minutes on one idle core
    python benchmarks/scaling.py --quick                  # tiny shapes, seconds
    python benchmarks/scaling.py --device cuda --dtype bfloat16 --scale 16  # on a GPU
    python benchmarks/scaling.py --refit scaling.json     # refit, report and project, no runs

For each model shape (random weights from the real transformers config classes, built in memory:
GPT-2 small, medium and large; a Llama-3.2-1B-shaped model with grouped-query attention, vocab
128256, tied embeddings) and each batch x sequence point, it times in one process, on the same
batch, the model's own forward + backward to the input embeddings (the strict baseline of
``attribution_cost.py``) and acdc-engine's EAP, with the peak memory of each (weights included)
and the memory each call adds to what was resident before it. Then it fits:

  time    baseline  t = k_b * F_model                     F_model: forward FLOPs of the batch
          EAP       t = k_m * F_model + k_e * F_edges     F_edges = 2 * edges * b * p * d_model
  memory  baseline  extra = m_b * L * b * p * d_model * bytes
          EAP       extra = m_e * (n_writers + n_readers) * b * p * d_model * bytes
                            + m_g * 2 * L * d_model^2 * bytes     (grouped-query attention only)
                    (writer buffers of the clean and corrupted runs, reader inputs kept for the
                    backward; the key/value weights the adapter repeats for every query head);
                    total = weights + extra

and prints each fit with its error on every measured point, then projects the fits to 7B and
70B shapes on one and eight H100/H200 GPUs (:func:`project`; docs/benchmarks.md states the
assumptions). ``--json`` writes the table, the fits and the shapes. On CPU the fitted times
are the process's CPU time (robust to other jobs on a shared machine), on a GPU wall-clock.

On CPU the script restarts itself once with ``MALLOC_MMAP_THRESHOLD_`` fixed, so freed tensors
leave the resident set and each call's peak resident set is its own.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

import numpy as np
import torch
from _common import (
    Shape,
    add_device_args,
    baseline_step,
    build_model,
    load_in_memory,
    method_step,
    random_batch,
    timed,
    write_json,
)

SHAPES = {
    "gpt2-small": Shape("gpt2-small", "gpt2", 12, 12, 768, 3072, 50257),
    "gpt2-medium": Shape("gpt2-medium", "gpt2", 24, 16, 1024, 4096, 50257),
    "gpt2-large": Shape("gpt2-large", "gpt2", 36, 20, 1280, 5120, 50257),
    "llama-1b": Shape("llama-1b", "llama", 16, 32, 2048, 8192, 128256, kv_heads=8),
}
QUICK_SHAPES = {
    "gpt2-tiny": Shape("gpt2-tiny", "gpt2", 4, 4, 128, 512, 2000),
    "llama-tiny": Shape("llama-tiny", "llama", 4, 8, 256, 1024, 2000, kv_heads=2),
}
#: (shape, batch, positions) measured by a full run: several b x p on the smallest shape
#: (sequence and batch dependence), two points on every larger one.
POINTS = [("gpt2-small", 2, 32), ("gpt2-small", 8, 32), ("gpt2-small", 2, 128),
          ("gpt2-medium", 2, 32), ("gpt2-medium", 4, 32),
          ("gpt2-large", 1, 32), ("gpt2-large", 2, 32),
          ("llama-1b", 1, 32), ("llama-1b", 2, 32)]
QUICK_POINTS = [("gpt2-tiny", 2, 16), ("gpt2-tiny", 4, 32), ("gpt2-tiny", 2, 64),
                ("llama-tiny", 2, 16), ("llama-tiny", 4, 32)]


# ----- projection (``--project``): released shapes, devices, assumed rates ----------------------
#: the released models' configs (Hugging Face), untied embeddings
TARGETS = {
    "llama-2-7b": Shape("llama-2-7b", "llama", 32, 32, 4096, 11008, 32000, tied=False),
    "mistral-7b": Shape("mistral-7b", "mistral", 32, 32, 4096, 14336, 32000, kv_heads=8,
                        tied=False),
    "llama-2-70b": Shape("llama-2-70b", "llama", 80, 64, 8192, 28672, 32000, kv_heads=8,
                         tied=False),
}
#: name -> (GPUs, GiB each)
GPUS = {"1x H100": (1, 80), "1x H200": (1, 141), "8x H100": (8, 80), "8x H200": (8, 141)}
#: sustained dense matmul FLOP/s assumed: H100/H200 SXM peak 989e12 (bfloat16) at 40%; float32
#: without TF32 (torch's default) peak 67e12 at 60%. H200 has H100's compute.
RATES = {"bfloat16": 400e12, "float32": 40e12}
RESERVE = 0.10  # of every device: CUDA context, allocator slack, workspace

# ----- the cost model's features ---------------------------------------------------------------
def features(s: Shape, b: int, p: int, nbytes: int) -> dict:
    """What the cost model reads for shape ``s`` at batch ``b`` x ``p`` positions."""
    g = s.graph()
    f_model = (2 * b * p * s.layers * s.params_per_layer  # every matrix, every token
               + 2 * b * s.layers * p * p * s.d_model  # attention scores and mixing (causal)
               + 2 * b * s.d_model * s.vocab)           # logits at the last position only
    return {"params": s.params, "n_writers": g.n_writers, "n_readers": g.n_readers,
            "n_edges": g.n_edges_closed(), "f_model": f_model,
            "f_edges": 2 * g.n_edges_closed() * b * p * s.d_model,
            "u_model": s.layers * b * p * s.d_model * nbytes,
            "u_eap": (g.n_writers + g.n_readers) * b * p * s.d_model * nbytes,
            # grouped-query attention: the adapter repeats each key/value weight for every
            # query head it serves, a [d_model x heads*d_head] copy per layer for k and for v
            # that the backward keeps (independent of b and p)
            "w_gqa": (2 * s.layers * s.d_model * s.d_model * nbytes
                      if (s.kv_heads or s.heads) < s.heads else 0)}


def fit(rows, target: str, cols: list[str]) -> tuple[np.ndarray, list[float | None]]:
    """Non-negative least squares of ``target`` on ``cols`` (no intercept), weighted by
    1/target so small and large points count alike; relative error per row (None where the
    measured value is not positive: a memory increase below the resident set's resolution)."""
    from scipy.optimize import nnls

    used = [r for r in rows if r[target] > 0]
    a = np.array([[r[c] for c in cols] for r in used], dtype=float)
    y = np.array([r[target] for r in used], dtype=float)
    scale = np.where(a.max(0) > 0, a.max(0), 1.0)  # columns of order 1 for the solver
    coef, _ = nnls(a / scale / y[:, None], np.ones(len(y)))
    coef = coef / scale
    err = [float((np.array([r[c] for c in cols]) @ coef - r[target]) / r[target])
           if r[target] > 0 else None for r in rows]
    return coef, err


def fit_all(rows, clock: str = "s") -> dict:
    """The four fits of the module docstring, with their errors on every row; times are
    ``clock`` seconds: "s" wall-clock, "cpu_s" the process's CPU time."""
    out = {}
    for name, target, cols in [("time_baseline", f"baseline_{clock}", ["f_model"]),
                               ("time_eap", f"eap_{clock}", ["f_model", "f_edges"]),
                               ("memory_baseline", "baseline_extra_b", ["u_model"]),
                               ("memory_eap", "eap_extra_b", ["u_eap", "w_gqa"])]:
        coef, err = fit(rows, target, cols)
        out[name] = {"target": target, "features": cols, "coef": [float(c) for c in coef],
                     "rel_error": err,
                     "max_abs_rel_error": max(abs(e) for e in err if e is not None)}
    # EAP's working memory per family: what a block keeps differs (gated MLPs, RMSNorm)
    for fam in sorted({r["family"] for r in rows}):
        sub = [r for r in rows if r["family"] == fam]
        coef, err = fit(sub, "eap_extra_b", ["u_eap", "w_gqa"])
        out[f"memory_eap[{fam}]"] = {
            "target": "eap_extra_b", "features": ["u_eap", "w_gqa"],
            "coef": [float(c) for c in coef],
            "rel_error": [err[sub.index(r)] if r in sub else None for r in rows],
            "max_abs_rel_error": max((abs(e) for e in err if e is not None), default=0.0)}
    return out


# ----- measuring -------------------------------------------------------------------------------
def measure(shapes: dict, points, args) -> list[dict]:
    from acdc_engine.plugins import registry

    metric = registry().metric("logit_diff")
    rows, lm, current = [], None, None
    for name, b, p in points:
        s = shapes[name]
        if name != current:
            lm = None
            gc.collect()
            t0 = time.perf_counter()
            lm = load_in_memory(build_model(s, max(1024, p), 0, args.device, args.dtype),
                                args.device, args.dtype, name=name)
            current = name
            print(f"{name}: {s.family}, {s.layers} layers x {s.heads} heads "
                  f"({s.kv_heads or s.heads} kv), d_model {s.d_model}, d_mlp {s.d_mlp}, vocab "
                  f"{s.vocab}; {s.params / 1e9:.2f}B parameters; built and adapted in "
                  f"{time.perf_counter() - t0:.0f}s", file=sys.stderr)
        batch = random_batch(s.vocab, b, p, lm.device, seed=len(rows))
        nbytes = torch.finfo(lm.dtype).bits // 8
        base = timed(baseline_step(lm, batch, metric), lm.device, args.repeats)
        eap = timed(method_step(lm, batch, metric, "eap"), lm.device, args.repeats)
        weights_mb = sum(t.numel() * t.element_size() for t in lm.hf.parameters()) / 2**20
        row = {"shape": name, "family": s.family, "layers": s.layers, "heads": s.heads,
               "kv_heads": s.kv_heads or s.heads, "d_model": s.d_model, "d_mlp": s.d_mlp,
               "vocab": s.vocab, "batch": b, "pos": p, "tokens": b * p,
               "dtype": str(lm.dtype).replace("torch.", ""), "device": str(lm.device),
               **features(s, b, p, nbytes), "weights_mb": weights_mb,
               "baseline_s": base.seconds, "eap_s": eap.seconds,
               "baseline_cpu_s": base.cpu_seconds, "eap_cpu_s": eap.cpu_seconds,
               "ratio": eap.seconds / base.seconds,
               "ratio_cpu": eap.cpu_seconds / base.cpu_seconds,
               "baseline_peak_mb": base.peak_mb, "eap_peak_mb": eap.peak_mb,
               "baseline_extra_b": max(base.extra_mb, 0.0) * 2**20,
               "eap_extra_b": max(eap.extra_mb, 0.0) * 2**20}
        rows.append(row)
        print(f"  b {b:3d} x p {p:4d}: baseline {base.seconds:7.3f}s  EAP {eap.seconds:7.3f}s "
              f"({row['ratio']:.2f}x; CPU time {row['ratio_cpu']:.2f}x)  peak MiB "
              f"{base.peak_mb:7.0f} / {eap.peak_mb:7.0f}  "
              f"extra MiB {base.extra_mb:6.0f} / {eap.extra_mb:6.0f}", file=sys.stderr)
    return rows


def predict(f: dict, row: dict) -> float:
    """A fit's value at ``row``."""
    return float(sum(c * row[n] for c, n in zip(f["coef"], f["features"])))


def _pct(e: float | None) -> str:
    return "   n/a" if e is None else f"{100 * e:+5.0f}%"


def report(rows, fits, clock: str = "s") -> None:
    """The measured table and each fit's prediction and error on every point."""
    print(f"times: {'CPU time of the process' if clock == 'cpu_s' else 'wall-clock'} (median)")
    hdr = (f"{'shape':12s} {'b x p':>8s} {'edges':>8s} {'base s':>8s} {'EAP s':>8s} "
           f"{'ratio':>6s} {'fit s':>8s} {'err':>6s} {'weights':>8s} {'EAP peak':>9s} "
           f"{'extra':>7s} {'fit':>7s} {'err':>6s}")
    print(hdr)
    te, me = fits["time_eap"], fits["memory_eap"]
    for i, r in enumerate(rows):
        print(f"{r['shape']:12s} {r['batch']:>3d} x {r['pos']:<4d} {r['n_edges']:8d} "
              f"{r['baseline_' + clock]:8.3f} {r['eap_' + clock]:8.3f} "
              f"{r['eap_' + clock] / r['baseline_' + clock]:5.2f}x "
              f"{predict(te, r):8.3f} {_pct(te['rel_error'][i])} {r['weights_mb']:8.0f} "
              f"{r['eap_peak_mb']:9.0f} {r['eap_extra_b'] / 2**20:7.0f} "
              f"{predict(me, r) / 2**20:7.0f} {_pct(me['rel_error'][i])}")
    print("(MiB: weights, EAP's peak memory, and what EAP adds to "
          "what was resident before it, measured and fitted)")
    print("fits (coefficients; max |relative error| over the points):")
    for name, f in fits.items():
        terms = " + ".join(f"{c:.4g} * {n}" for c, n in zip(f["coef"], f["features"]))
        errs = " ".join(_pct(e).strip() for e in f["rel_error"])
        print(f"  {name:16s} {f['target']} = {terms}   max err "
              f"{100 * f['max_abs_rel_error']:.0f}%   [{errs}]")
    kb, (km, ke) = fits["time_baseline"]["coef"][0], fits["time_eap"]["coef"]
    rate = lambda k: f"{1e-9 / k:.1f}" if k > 0 else "inf"  # noqa: E731
    print(f"  => the baseline runs {rate(kb)} GFLOP/s of forward FLOPs; EAP's model work is "
          f"{km / kb:.2f} baselines, its edge products run at {rate(ke)} GFLOP/s")
    mb = fits["memory_baseline"]["coef"][0]
    per = ", ".join(f"{k.split('[')[1][:-1]} {f['coef'][0]:.2f}" for k, f in fits.items()
                    if k.startswith("memory_eap["))
    print(f"  => the baseline keeps {mb:.1f} d_model-vectors per layer and token; EAP keeps "
          f"{fits['memory_eap']['coef'][0]:.2f} per writer and reader and token ({per})")


def project(fits: dict, pos: int = 128) -> list[dict]:
    """What fits and how long a batch takes, for every target x devices x dtype (the doc's
    scaling section states the assumptions). Memory: weights + the fitted EAP working memory
    per token + the repeated k/v weights of grouped-query attention + the edge mask and its
    gradient (float32), within (1 - RESERVE) of each device;
    with several GPUs the first one also holds the writer buffers (clean and corrupted,
    2 * n_writers * d_model per token), where the patched forward places them today, while
    weights and the rest spread evenly. Time: the fitted model work (in baselines of 2 forward
    FLOPs each) plus the edge products, at ``RATES``, for the largest batch of ``pos``-token
    prompts; several GPUs split the layers (run one after another), not the time."""
    kb, km = fits["time_baseline"]["coef"][0], fits["time_eap"]["coef"][0]
    out = []
    for name, s in TARGETS.items():
        fam = "llama" if s.family in ("llama", "mistral") else s.family  # same block
        m_eap, m_gqa = fits.get(f"memory_eap[{fam}]", fits["memory_eap"])["coef"]
        for dtype, nbytes in (("bfloat16", 2), ("float32", 4)):
            f1 = features(s, 1, 1, nbytes)
            per_token = m_eap * f1["u_eap"]  # bytes; no p^2 term: SDPA keeps no attention matrix
            writers = min(2 * f1["n_writers"] * s.d_model * nbytes, per_token)
            # spread with the layers: weights, repeated k/v weights; on the first device: the
            # edge mask and its gradient (float32)
            spread_fixed = s.params * nbytes + m_gqa * f1["w_gqa"]
            masks = 2 * f1["n_writers"] * f1["n_readers"] * 4
            for gpus, (n, gib) in GPUS.items():
                usable = (1 - RESERVE) * gib * 2**30
                tokens = spread = (n * usable - spread_fixed - masks) / per_token  # all devices
                if n > 1:  # the first device: its share of the layers, all the writers
                    first = usable - spread_fixed / n - masks
                    tokens = min(tokens, first / (writers + (per_token - writers) / n))
                tokens = max(int(tokens), 0)
                b = tokens // pos
                f = features(s, max(b, 1), pos, nbytes)
                flops = (km / kb) * 2 * f["f_model"] + f["f_edges"]
                out.append({"model": name, "dtype": dtype, "gpus": gpus,
                            "params_b": s.params / 1e9, "edges": f1["n_edges"],
                            "weights_gib": s.params * nbytes / 2**30,
                            "gqa_copies_gib": m_gqa * f1["w_gqa"] / 2**30,
                            "per_token_mib": per_token / 2**20, "max_tokens": tokens,
                            "max_tokens_spread": max(int(spread), 0),
                            "pos": pos, "batch": b,
                            "seconds_per_batch": flops / RATES[dtype] if b else None,
                            "edge_share": f["f_edges"] / flops})
    return out


def report_projection(rows: list[dict]) -> None:
    """The projection as a table (the doc's scaling section quotes it)."""
    print(f"{'model':12s} {'edges':>9s} {'dtype':9s} {'GPUs':8s} {'weights':>8s} "
          f"{'MiB/tok':>8s} {'tokens':>8s} {'spread':>8s} {'batch':>6s} {'s/batch':>8s} "
          f"{'edges %':>7s}")
    for r in rows:
        secs = "-" if r["seconds_per_batch"] is None else f"{r['seconds_per_batch']:.2f}"
        print(f"{r['model']:12s} {r['edges']:9d} {r['dtype']:9s} {r['gpus']:8s} "
              f"{r['weights_gib']:7.0f}G {r['per_token_mib']:8.2f} {r['max_tokens']:8d} "
              f"{r['max_tokens_spread']:8d} "
              f"{r['batch']:6d} {secs:>8s} {100 * r['edge_share']:6.0f}%")
    print(f"(tokens: the largest b * p with the writer buffers on the first GPU, as today; "
          "spread: if they were spread over the GPUs like the layers;\n batch: prompts of "
          f"{rows[0]['pos']} tokens; s/batch at {RATES['bfloat16'] / 1e12:.0f}"
          f" TFLOP/s bfloat16, {RATES['float32'] / 1e12:.0f} TFLOP/s float32; edges %: share of "
          "the FLOPs in the edge products)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny shapes only (a test, seconds)")
    ap.add_argument("--shapes", nargs="+", default=None, help="only these shapes")
    ap.add_argument("--scale", type=int, default=1,
                    help="multiply every batch by this (fill a GPU: e.g. 8 or 32)")
    ap.add_argument("--repeats", type=int, default=1, help="timed calls per point (median)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    ap.add_argument("--json", default=None, help="write the table and fits here")
    ap.add_argument("--refit", default=None, metavar="JSON",
                    help="measure nothing: refit the rows of a --json file (with this "
                         "version's cost model), report and project them")
    add_device_args(ap)
    args = ap.parse_args()
    if args.refit:
        return refit(args.refit, args.json)
    from acdc_engine.models import resolve_device

    device = resolve_device(args.device)
    if device.type == "cpu" and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        # glibc otherwise keeps freed tensors resident (the threshold adapts upward)
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    torch.set_num_threads(args.threads)
    shapes = QUICK_SHAPES if args.quick else SHAPES
    points = [(n, b * args.scale, p) for n, b, p in (QUICK_POINTS if args.quick else POINTS)
              if args.shapes is None or n in args.shapes]
    t0 = time.perf_counter()
    rows = measure(shapes, points, args)
    clock = "cpu_s" if device.type == "cpu" else "s"  # CPU: immune to other jobs' load
    fits = fit_all(rows, clock)
    print(f"EAP scaling: device {rows[0]['device']}, dtype {rows[0]['dtype']}, "
          f"{torch.get_num_threads()} CPU thread(s), {len(rows)} points in "
          f"{time.perf_counter() - t0:.0f}s")
    report(rows, fits, clock)
    report_projection(project(fits))
    if args.json:
        write_json(args.json, {"benchmark": "scaling", "device": rows[0]["device"],
                               "dtype": rows[0]["dtype"], "threads": torch.get_num_threads(),
                               "clock": clock,
                               "torch": torch.__version__, "rows": rows, "fits": fits,
                               "shapes": {k: vars(v) for k, v in shapes.items()}})


def refit(path: str, out: str | None) -> None:
    """``--refit``: the rows of an earlier ``--json``, features recomputed, fitted, reported
    and projected (and written to ``out``)."""
    import json

    d = json.loads(open(path).read())
    shapes = {**SHAPES, **QUICK_SHAPES}
    for r in d["rows"]:
        r.update(features(shapes[r["shape"]], r["batch"], r["pos"],
                          torch.finfo(getattr(torch, r["dtype"])).bits // 8))
    d["fits"] = fit_all(d["rows"], d["clock"])
    print(f"EAP scaling (refitted from {path}): device {d['device']}, dtype {d['dtype']}, "
          f"{d['threads']} CPU thread(s), {len(d['rows'])} points")
    report(d["rows"], d["fits"], d["clock"])
    report_projection(project(d["fits"]))
    if out:
        write_json(out, d)


if __name__ == "__main__":
    main()
