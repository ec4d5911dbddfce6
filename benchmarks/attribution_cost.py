"""Attribution cost relative to a plain forward+backward pass of the same model on the same batch.

    python benchmarks/attribution_cost.py                      # GPT-2-small shape, CPU or GPU
    python benchmarks/attribution_cost.py --batch 8 --pos 32 --dtype bfloat16 --device cuda

Builds a GPT-2-small-shaped model (12 layers, 12 heads, d_model 768) with random weights,
saves it and loads it by path through acdc-engine (transformers + nnsight), then times, in one
run and on the same batch:

  baseline   the Hugging Face model's own forward + backward (logit-difference metric at the
             last position, logits computed for that position only, as EAP does; gradient
             w.r.t. the input embeddings only: the cheapest backward)
  baseline+W the same with parameter gradients (a training step's forward + backward)
  eap        acdc-engine EAP over that batch (corrupted forward, clean forward, patched
             forward + backward for every edge at once)
  eap-ig     EAP-IG with --ig-steps interpolation steps (default 5)

and prints each as a ratio to the baseline, with peak memory. The floor for EAP is two forward
passes and one backward pass; targets: EAP <= 2x, EAP-IG (5 steps) <= 7x.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def peak_reset(device):
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (peak RSS) on Linux
        except OSError:
            pass


def peak_read(device) -> float:
    """Peak memory in MiB since peak_reset: CUDA allocator peak, or process peak RSS."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(fn, device, repeats):
    fn()  # warm-up
    times, peaks = [], []
    for _ in range(repeats):
        peak_reset(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        peaks.append(peak_read(device))
    return statistics.median(times), max(peaks)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--pos", type=int, default=32)
    ap.add_argument("--ig-steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()

    from transformers import GPT2Config, GPT2LMHeadModel

    from acdc_engine import load_model
    from acdc_engine.patching import Ablation
    from acdc_engine.plugins import registry
    from acdc_engine.problem import Problem
    from acdc_engine.scoring import attribute
    from acdc_engine.tasks import Batch

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=args.layers, n_head=args.heads, n_embd=args.d_model,
                     vocab_size=args.vocab, n_positions=max(64, args.pos),
                     bos_token_id=0, eos_token_id=0)
    with tempfile.TemporaryDirectory() as tmp:
        GPT2LMHeadModel(cfg).save_pretrained(tmp)
        lm = load_model(tmp, device=args.device, dtype=args.dtype)
    dev, hf = lm.device, lm.hf
    g = lm.graph
    B, P = args.batch, args.pos
    clean = torch.randint(0, args.vocab, (B, P), device=dev)
    corrupted = torch.randint(0, args.vocab, (B, P), device=dev)
    answer = torch.randint(0, args.vocab, (B,), device=dev)
    wrong = torch.randint(0, args.vocab, (B,), device=dev)
    batch = Batch(clean, corrupted, answer, wrong, list(range(B)))
    metric = registry().metric("logit_diff")
    abl = Ablation("corrupted")

    def baseline(param_grads: bool):
        def step():
            for p in hf.parameters():
                p.requires_grad_(param_grads)
                p.grad = None
            emb = hf.transformer.wte(clean).detach().requires_grad_(True)
            logits = hf(inputs_embeds=emb, logits_to_keep=1).logits  # last position, as EAP
            metric(logits[:, -1], batch).sum().backward()
        return step

    def method(name):
        # a fresh Problem per call: the corrupted forward is part of the cost measured
        return lambda: attribute(Problem(lm, [batch], metric, abl), name,
                                 ig_steps=args.ig_steps, progress=False)

    print(f"model: GPT-2 shape {args.layers}x{args.heads}, d_model {args.d_model}, vocab "
          f"{args.vocab}; {g.n_edges} edges; batch {B} x {P} tokens; device {dev}; "
          f"dtype {str(lm.dtype).replace('torch.', '')}; median of {args.repeats}")
    rows = [("baseline fwd+bwd", baseline(False)), ("baseline fwd+bwd +W grads", baseline(True)),
            ("eap", method("eap")), (f"eap-ig ({args.ig_steps} steps)", method("eap-ig"))]
    results = {}
    for name, fn in rows:
        results[name] = timed(fn, dev, args.repeats)
    base = results["baseline fwd+bwd"][0]
    print(f"{'':28s} {'seconds':>9s} {'x baseline':>11s} {'peak MiB':>9s}")
    for name, (t, peak) in results.items():
        print(f"{name:28s} {t:9.4f} {t / base:10.2f}x {peak:9.0f}")
    eap = results["eap"][0] / base
    ig = results[f"eap-ig ({args.ig_steps} steps)"][0] / base
    print(f"EAP/baseline = {eap:.2f}x (target <= 2x); EAP-IG/baseline = {ig:.2f}x "
          f"(target <= {args.ig_steps + 2}x)")


if __name__ == "__main__":
    main()
