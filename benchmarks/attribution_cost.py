"""Attribution cost relative to a plain forward+backward pass of the same model on the same batch.

    python benchmarks/attribution_cost.py                      # GPT-2-small shape, CPU or GPU
    python benchmarks/attribution_cost.py --batch 8 --pos 32 --dtype bfloat16 --device cuda
    python benchmarks/attribution_cost.py --family pythia --layers 4 --heads 4 --d-model 128 \
        --vocab 1000 --repeats 2                               # any built-in family

Builds a GPT-2-small-shaped model (12 layers, 12 heads, d_model 768; ``--family`` picks the
architecture, from the real transformers config class, with MLP width 4 d_model and as many
key/value heads as query heads unless ``--kv-heads``) with random weights, saves it and loads it
by path through acdc-engine (transformers + nnsight), prints the invariant errors on the
benchmark batch (full circuit vs the model's own logits, empty circuit vs the corrupted run,
relative to the logits' scale), then times, in one run and on the same batch:

  baseline   the Hugging Face model's own forward + backward (logit-difference metric at the
             last position, logits computed for that position only, as EAP does; gradient
             w.r.t. the input embeddings only: the cheapest backward)
  baseline+W the same with parameter gradients (a training step's forward + backward)
  2-D base   the baseline with the last position's logits from a contiguous [batch, d_model]
             matrix: Hugging Face's ``logits_to_keep=1`` slices [batch, 1, d_model] out of the
             final hidden states, a strided view that torch's linear layer multiplies as
             ``batch`` matrix-vector products over the whole unembedding (GPT-2 small on CPU:
             about 0.2 s of the baseline's 2.0-2.5 s); the engine's unembedding is contiguous,
             so this row shows the ratios without that difference
  eap        acdc-engine EAP over that batch (corrupted forward, clean forward, patched
             forward + backward for every edge at once)
  eap-ig     EAP-IG with --ig-steps interpolation steps (default 5)
  eap chunk  EAP with ``attribute(..., chunk=--chunk)`` (default batch / 4 examples at a time;
             0: no such row): the memory-bounded option, same scores

and prints each as a ratio to the baseline, with peak memory (peak RSS on CPU, counted from a
trimmed heap and without the +W row's leftover weight gradients). The rows are timed
round-robin (each repeat runs every row once) and the ratio is the median over repeats of each
round's ratio to that round's baseline: on a shared machine whose speed drifts by 10-20% over
minutes, ratios taken within a round are what stays comparable. ``--ab`` instead times EAP and
EAP-IG with and without the fused norm + q/k/v projection (``models.norm_project``), interleaved;
``--layer-ab`` times that change on one layer's q/k/v inputs alone (CPU seconds).
The floor for EAP is two forward passes and one backward pass; targets (issue 14): EAP <= 2x,
EAP-IG (5 steps) <= 6x, EAP's peak memory <= 1.5x the baseline's.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def _trim_heap():
    """Hand the C heap's free pages back to the OS (glibc ``malloc_trim``), so that a row's
    peak RSS counts what that row keeps alive, not what an earlier row freed into the heap."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_reset(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        _trim_heap()
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (peak RSS) on Linux
        except OSError:
            pass


def peak_read(device) -> float:
    """Peak memory in MiB since peak_reset: CUDA allocator peak, or process peak RSS."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def interleaved(rows, device, repeats, between=None):
    """Time every row ``(name, fn)`` ``repeats`` times, round-robin: each round runs every row
    once, so a slow spell of a shared machine hits the rows of a round alike. Returns ``(times,
    peaks)``: per row its seconds in each round, and its max peak MiB. ``between()`` runs
    after every call (untimed)."""
    for _, fn in rows:  # warm-up
        fn()
        if between:
            between()
    times = {name: [] for name, _ in rows}
    peaks = {name: 0.0 for name, _ in rows}
    for _ in range(repeats):
        for name, fn in rows:
            peak_reset(device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[name].append(time.perf_counter() - t)
            peaks[name] = max(peaks[name], peak_read(device))
            if between:
                between()
    return times, peaks


def round_ratio(times: dict, name: str, base: str) -> float:
    """The median over rounds of ``name``'s time over ``base``'s in the same round (steadier
    than a ratio of medians taken at different times)."""
    return statistics.median(t / b for t, b in zip(times[name], times[base]))


#: --family -> transformers model_type
FAMILIES = {"gpt2": "gpt2", "llama": "llama", "mistral": "mistral", "qwen2": "qwen2",
            "qwen3": "qwen3", "pythia": "gpt_neox", "gpt_neox": "gpt_neox", "gemma": "gemma",
            "gemma2": "gemma2", "gemma3": "gemma3_text", "phi3": "phi3", "opt": "opt",
            "mixtral": "mixtral", "qwen2_moe": "qwen2_moe"}


def build(args):
    """A random model of ``args.family`` with the benchmark's shape (not saved yet)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from acdc_engine.testing.builders import hf_shape

    model_type = FAMILIES[args.family]
    shape = hf_shape(model_type, args.layers, args.heads, args.kv_heads or args.heads,
                     args.d_model, vocab=args.vocab, n_pos=max(64, args.pos))
    if model_type != "gpt2":  # GPT-2's MLP width: 4 d_model
        shape["ffn_dim" if model_type == "opt" else "intermediate_size"] = 4 * args.d_model
    cfg = AutoConfig.for_model(model_type, **shape, bos_token_id=0, eos_token_id=0,
                               pad_token_id=0)
    return AutoModelForCausalLM.from_config(cfg)


def side_by_side(args, baseline, method, device):
    """Time the baseline and EAP / EAP-IG with the fused norm + projection on and off, one
    after the other in every repeat (a loaded machine slows all of them alike), and print the
    median ratios: the before/after of that change in one run."""
    ig = f"eap-ig ({args.ig_steps} steps)"
    runs = [("baseline fwd+bwd", baseline)] + [
        (f"{name} {'fused' if fuse else 'unfused'}", method(name, fuse=fuse))
        for name in ("eap", "eap-ig") for fuse in (False, True)]
    times: dict[str, list[float]] = {name: [] for name, _ in runs}
    for fuse in (False, True):  # warm-up
        method("eap", fuse=fuse)()
    for _ in range(args.repeats):
        for name, fn in runs:
            t = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[name].append(time.perf_counter() - t)
    base = statistics.median(times["baseline fwd+bwd"])
    print(f"side by side, interleaved, median of {args.repeats}:")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"{name.replace('eap-ig', ig):34s} {t:9.4f} s {t / base:7.2f}x")


def layer_side_by_side(args):
    """One layer's q/k/v inputs alone (the part the fused norm + projection changes): norm and
    project the unpatched stream for 3H readers, backward to every reader, join the 3H
    gradients and sum them (what the patched forward's reader node does), with the per-reader
    norm (``shared_norm`` + projection + concatenation) and with ``norm_project`` (+ the joined
    view). CPU seconds per layer, interleaved; far less noisy than whole runs on a busy
    machine."""
    from acdc_engine.patching.norms import norm_project, shared_norm

    H, d, b, p = args.heads, args.d_model, args.batch, args.pos
    k = d // H
    torch.manual_seed(0)
    ln = torch.nn.LayerNorm(d).requires_grad_(False)
    w, bias = torch.randn(3, H, k, d) / d**0.5, torch.randn(3, H, k)
    resid, gs = torch.randn(b, p, d), [torch.randn(b, H, p, k) for _ in range(3)]

    def step(fused: bool):
        x = resid.clone().requires_grad_(True)
        qkv = x.unsqueeze(0).expand(3 * H, b, p, d).split(H)  # as the patched forward
        if fused:
            outs = norm_project(ln, *qkv, [(w[i], bias[i]) for i in range(3)], H)
        else:
            outs = [torch.einsum("hbpd,hkd->bhpk", shared_norm(ln, t), w[i]) + bias[i][:, None]
                    for i, t in enumerate(qkv)]
        grads = torch.autograd.grad(outs, qkv, gs)
        base = grads[0]
        joined = (base.new_empty(0).set_(base.untyped_storage(), 0, (3 * H, b, p, d))
                  if fused else torch.cat(grads))  # [3H, b, p, d]
        return joined.sum(0)

    times = {False: [], True: []}
    for _ in range(args.repeats):
        for fused in (False, True):
            step(fused)
            t = time.process_time()
            for _ in range(10):
                step(fused)
            times[fused].append((time.process_time() - t) / 10)
    old, new = statistics.median(times[False]), statistics.median(times[True])
    print(f"one layer's q/k/v inputs, {3 * H} readers, batch {b} x {p}, d_model {d}, CPU "
          f"seconds, median of {args.repeats} x 10: per-reader norm {old * 1e3:.1f} ms, fused "
          f"{new * 1e3:.1f} ms ({new / old:.2f}x)")


def main():
    from acdc_engine.scoring.attribution import IG_STEPS

    sys.path.insert(0, str(Path(__file__).parent))
    from _common import add_device_args, add_shape_args

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", default="gpt2", choices=sorted(FAMILIES),
                    help="architecture (default gpt2)")
    ap.add_argument("--kv-heads", type=int, default=None,
                    help="key/value heads for GQA families (default: --heads)")
    add_shape_args(ap)
    ap.add_argument("--ig-steps", type=int, default=IG_STEPS)
    ap.add_argument("--repeats", type=int, default=3)
    add_device_args(ap)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    ap.add_argument("--ab", action="store_true",
                    help="instead of the rows: EAP and EAP-IG with and without the fused "
                         "norm + q/k/v projection (patching.norms.norm_project), interleaved")
    ap.add_argument("--layer-ab", action="store_true",
                    help="only one layer's q/k/v inputs, per-reader norm against the fused one")
    ap.add_argument("--chunk", type=int, default=None,
                    help="examples per pass of the chunked EAP row (default batch/4; 0: none)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.layer_ab:
        return layer_side_by_side(args)

    from acdc_engine import load_model
    from acdc_engine.patching import Ablation, Context, PatchPlan, run, run_with_writers
    from acdc_engine.plugins import registry
    from acdc_engine.problem import Problem
    from acdc_engine.scoring import attribute
    from acdc_engine.tasks import Batch

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        build(args).save_pretrained(tmp)
        lm = load_model(tmp, device=args.device, dtype=args.dtype)
    dev, hf = lm.device, lm.hf
    g = lm.graph
    B, P = args.batch, args.pos
    clean = torch.randint(0, args.vocab, (B, P), device=dev)
    corrupted = torch.randint(0, args.vocab, (B, P), device=dev)
    answer = torch.randint(0, args.vocab, (B,), device=dev)
    wrong = torch.randint(0, args.vocab, (B,), device=dev)
    batch = Batch(clean=clean, corrupted=corrupted, answers=answer[:, None],
                  wrongs=wrong[:, None], rows=list(range(B)))
    metric = registry().metric("logit_diff")
    abl = Ablation("corrupted")

    def baseline(param_grads: bool):
        def step():
            for p in hf.parameters():
                p.requires_grad_(param_grads)
                p.grad = None
            emb = hf.get_input_embeddings()(clean).detach().requires_grad_(True)
            logits = hf(inputs_embeds=emb, logits_to_keep=1).logits  # last position, as EAP
            metric(logits[:, -1], batch).sum().backward()
        return step

    def method(name, chunk=None, fuse=True):
        # a fresh Problem per call: the corrupted forward is part of the cost measured
        return lambda: attribute(Problem(lm, [batch], metric, abl, context=Context(fuse=fuse)),
                                 name, ig_steps=args.ig_steps, progress=False, chunk=chunk)

    print(f"model: {args.family} ({lm.family} family), {args.layers}x{args.heads}, d_model "
          f"{args.d_model}, vocab {args.vocab}; {g.n_edges} edges; batch {B} x {P} tokens; "
          f"device {dev}; dtype {str(lm.dtype).replace('torch.', '')}; median of {args.repeats}")
    with torch.no_grad():  # the invariants on this batch
        _, acts = run_with_writers(lm.adapter, corrupted)
        ones = torch.ones(g.n_writers, g.n_readers, device=dev)
        ref, ref_k = lm.reference_logits(clean).float(), lm.reference_logits(corrupted).float()
        full = run(lm.adapter, clean, PatchPlan(mask=ones, ablated=acts)).float()
        empty = run(lm.adapter, clean, PatchPlan(mask=0 * ones, ablated=acts)).float()
    scale = ref.abs().max().clamp(min=1.0)
    print(f"invariant error (relative): full circuit {float((full - ref).abs().max() / scale):.1e}"
          f", empty circuit {float((empty - ref_k).abs().max() / scale):.1e}")
    if args.ab:
        return side_by_side(args, baseline(False), method, dev)
    def baseline_2d():  # the same, the last position's logits from a contiguous [b, d] matrix
        for p in hf.parameters():
            p.requires_grad_(False)
        emb = hf.get_input_embeddings()(clean).detach().requires_grad_(True)
        hidden = hf.base_model(inputs_embeds=emb).last_hidden_state  # final norm applied
        logits = hf.get_output_embeddings()(hidden[:, -1])  # [b, vocab]
        metric(logits, batch).sum().backward()

    rows = [("baseline fwd+bwd", baseline(False)), ("baseline fwd+bwd +W grads", baseline(True)),
            ("baseline, 2-D unembedding", baseline_2d),
            ("eap", method("eap")), (f"eap-ig ({args.ig_steps} steps)", method("eap-ig"))]
    chunk = max(1, B // 4) if args.chunk is None else args.chunk
    if chunk:
        rows.append((f"eap (chunk {chunk})", method("eap", chunk)))
    def drop_weight_grads():  # the +W row's weight gradients are no later row's memory
        for p in hf.parameters():
            p.grad = None

    times, peaks = interleaved(rows, dev, args.repeats, between=drop_weight_grads)
    base, base2 = "baseline fwd+bwd", "baseline, 2-D unembedding"
    print(f"{'':28s} {'seconds':>9s} {'x baseline':>11s} {'x 2-D base':>11s} {'peak MiB':>9s}")
    for name, ts in times.items():
        print(f"{name:28s} {statistics.median(ts):9.4f} {round_ratio(times, name, base):10.2f}x "
              f"{round_ratio(times, name, base2):10.2f}x {peaks[name]:9.0f}")
    ig_row = f"eap-ig ({args.ig_steps} steps)"
    eap, ig = round_ratio(times, "eap", base), round_ratio(times, ig_row, base)
    mem = peaks["eap"] / peaks[base]
    print(f"EAP/baseline = {eap:.2f}x (target <= 2x); EAP-IG/baseline = {ig:.2f}x "
          f"(target <= 6x at 5 steps); EAP peak memory/baseline = {mem:.2f}x (target <= 1.5x)")
    print(f"against the 2-D-unembedding baseline: EAP {round_ratio(times, 'eap', base2):.2f}x, "
          f"EAP-IG {round_ratio(times, ig_row, base2):.2f}x")
    print("seconds in each round (the ratios above are medians of each round's ratio):")
    for name, ts in times.items():
        print(f"  {name:26s} " + " ".join(f"{t:7.3f}" for t in ts))


if __name__ == "__main__":
    main()
