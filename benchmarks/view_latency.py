"""Ablation latency of ``acdc view``: server side and browser round trip.

    python benchmarks/view_latency.py                       # tiny-ioi, then GPT-2-small shape
    python benchmarks/view_latency.py --d-model 256 --repeats 5 --no-browser
    python benchmarks/view_latency.py --skip-gpt2
    python benchmarks/view_latency.py --device cuda --dtype bfloat16 --no-browser

Server side: the time ``Session.intervene`` takes to push ``ablate a{l}.{h} corrupted`` and
evaluate the task's examples under the stack, then undo; the session's memory of past
evaluations is cleared before each. *warm* is the normal case: the session knows the clean run's
residual stream per layer (from opening it), so an intervention recomputes the layers from the
intervened one on; *cold* forgets that too (a full patched run per batch).
Browser round trip: headless Chromium (system ``/usr/bin/chromium`` through Playwright) clicks
the head on the map and waits until the page shows the new intervention and metric.

The GPT-2-small-shaped model has random weights (12 layers, 12 heads, vocabulary of the test
word tokenizer), ``--d-model`` (default 768) and ``--n-examples`` prompts of the random pairs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch


def server_side(session, repeats: int, cold: bool = False) -> list[float]:
    g = session.graph
    out = []
    for i in range(repeats):
        layer, head = i % g.n_layers, (3 * i) % g.n_heads
        session.clear_cache(prefix=cold)  # measure the model, not the memory of past states
        t0 = time.perf_counter()
        session.intervene(f"ablate a{layer}.{head} corrupted")
        out.append(1000 * (time.perf_counter() - t0))
        session.undo()
    return out


def browser_round_trip(session, repeats: int, chromium: str) -> list[float] | None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("  (playwright is not installed: no browser round trip)")
        return None
    server = session.serve()
    out = []
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = b.new_page()
            page.goto(server.url)
            page.wait_for_selector("#map rect[data-node='a0.0']")
            g = session.graph
            for i in range(repeats):
                node = f"a{i % g.n_layers}.{(3 * i) % g.n_heads}"
                session.clear_cache()
                t0 = time.perf_counter()
                page.click(f"#map rect[data-node='{node}']")
                page.wait_for_selector(f"#interventions li:has-text('ablate {node} zero')")
                out.append(1000 * (time.perf_counter() - t0))
                page.click("#reset")
                page.wait_for_selector("#interventions li:has-text('none')")
            b.close()
    finally:
        server.stop()
    return out


def gpt2_small_session(d_model: int, n_examples: int, seq: int, device="cpu", dtype=None):
    from acdc_engine import load_model
    from acdc_engine.plugins import registry
    from acdc_engine.problem import Problem
    from acdc_engine.tasks import prepare
    from acdc_engine.testing import random_pairs, save_gpt2
    from acdc_engine.view import Session

    path = save_gpt2(tempfile.mkdtemp(prefix="gpt2-small-shape-"), n_layer=12, n_head=12,
                     n_embd=d_model)
    model = load_model(str(path), device=device, dtype=dtype)
    data = prepare("pairs", model.tokenizer, random_pairs(n_examples, length=seq))
    problem = Problem.build(model, data, registry().metric("logit_diff"), "corrupted")
    return Session(model, problem, data, task="pairs", name=f"gpt2-small shape d={d_model}")


def report(name: str, values: list[float] | None) -> None:
    if not values:
        return
    print(f"  {name:<22} median {statistics.median(values):8.1f} ms   "
          f"min {min(values):8.1f}   max {max(values):8.1f}   (n={len(values)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--d-model", type=int, default=768, help="GPT-2-small shape width")
    ap.add_argument("--n-examples", type=int, default=32, help="prompts of the GPT-2 model")
    ap.add_argument("--seq", type=int, default=16, help="tokens per prompt of the GPT-2 model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--skip-gpt2", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from acdc_engine import load_model
    from acdc_engine.view import Session

    sessions = [lambda: Session.open(load_model("tiny-ioi", device=args.device,
                                                dtype=args.dtype), "ioi")]
    if not args.skip_gpt2:
        sessions.append(lambda: gpt2_small_session(args.d_model, args.n_examples, args.seq,
                                                   args.device, args.dtype))
    print(f"load average before: {os.getloadavg()[0]:.2f} (1 min)")
    for make in sessions:
        s = make()
        print(f"{s.name}: {s.problem.n_examples} examples, {s.graph.n_edges} edges, "
              f"{torch.get_num_threads()} thread(s)")
        server_side(s, 2)  # warm up
        report("server side, warm", server_side(s, args.repeats))
        report("server side, cold", server_side(s, args.repeats, cold=True))
        if not args.no_browser:
            report("browser round trip", browser_round_trip(s, args.repeats, args.chromium))
    print(f"load average after: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
