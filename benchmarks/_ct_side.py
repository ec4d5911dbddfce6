"""circuit-tracer 0.5.0's side of ``trace_vs_circuit_tracer.py``: runs in /work/ct-venv.

Usage (the benchmark calls it; by hand for debugging)::

    /work/ct-venv/bin/python benchmarks/_ct_side.py --model DIR --transcoders DIR \\
        --ids 0,12,34 --out ct.pt [--repeats 3] [--batch-size 512]

Loads a GPT-2 folder (Hugging Face ``save_pretrained``) into circuit-tracer's TransformerLens
replacement model without TransformerLens' official-name check (a ``HookedTransformerConfig``
built from the GPT-2 config, ``ReplacementModel.from_config``, and the converted weights loaded
with ``.mlp.`` renamed to ``.mlp.old_mlp.`` and ``unembed.`` to ``unembed.old_unembed.``), and
the transcoders from a circuit-tracer folder (``config.yaml`` + safetensors; a topk folder
written by the engine, ``acdc_activation: topk``, gets the engine's topk: the ``k`` largest
pre-activations, relu'd). Runs ``attribute`` on the given token ids (which start with a special
token, so circuit-tracer prepends nothing) ``repeats`` times and saves the graph, the pruned
node and edge masks (``prune_graph`` at its defaults 0.8 / 0.98), the graph's scores, the
wall times, the peak memory and the largest difference between the replacement model's logits
and the Hugging Face model's.

This file imports neither the engine nor anything outside the standard library at module
level, so the engine side imports :func:`rss_bytes` and :func:`peak_rss_bytes` from it and
both sides measure memory the same way.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

__all__ = ["rss_bytes", "peak_rss_bytes", "measure"]


def rss_bytes() -> int:
    """This process's resident memory now (Linux ``/proc/self/statm``)."""
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (``ru_maxrss``, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(fn, repeats: int) -> tuple[object, dict]:
    """Call ``fn()`` ``repeats`` times; its last result and the figures: every wall time, the
    peak resident memory of the process and how far it rose above the memory before the first
    call (both sides of the benchmark measure this way, each in its own process)."""
    before = rss_bytes()
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    peak = peak_rss_bytes()
    return result, {"times_s": times, "peak_rss_bytes": peak, "rss_before_bytes": before,
                    "peak_rise_bytes": max(peak - before, 0)}


# ----- circuit-tracer --------------------------------------------------------------------------
def hooked_config(hf_config, name: str):
    """A TransformerLens config for a Hugging Face GPT-2 config (no official name needed)."""
    import torch
    from transformer_lens import HookedTransformerConfig

    d = hf_config.n_embd
    return HookedTransformerConfig(
        d_model=d, n_layers=hf_config.n_layer, n_heads=hf_config.n_head,
        d_head=d // hf_config.n_head, d_mlp=hf_config.n_inner or 4 * d,
        d_vocab=hf_config.vocab_size, n_ctx=hf_config.n_positions,
        act_fn=hf_config.activation_function, normalization_type="LN",
        eps=hf_config.layer_norm_epsilon, positional_embedding_type="standard",
        original_architecture="GPT2LMHeadModel", model_name=name, default_prepend_bos=True,
        device="cpu", dtype=torch.float32)


class TopKReLU:
    """The engine's topk: the ``k`` largest pre-activations per row, relu'd, the rest zero."""

    def __init__(self, k: int):
        self.k = k

    def __call__(self, pre):
        import torch

        top = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))


def load_transcoders(folder: str):
    """circuit-tracer's own loader for a transcoder folder (float32, nothing lazy)."""
    import torch
    from circuit_tracer.utils.caching import load_transcoders_from_cache

    tc, config = load_transcoders_from_cache(folder, cache_dir="/", device=torch.device("cpu"),
                                             dtype=torch.float32, lazy_decoder=False)
    if config.get("acdc_activation") == "topk":
        act = TopKReLU(int(config["acdc_k"]))
        if type(tc).__name__ == "TranscoderSet":
            for t in tc:
                t.activation_function = act
        else:
            tc.activation_function = act
    return tc


def load_replacement_model(model_dir: str, transcoders):
    """circuit-tracer's TransformerLens replacement model of a local GPT-2 folder, and the HF
    model (for the logits check)."""
    import torch
    from circuit_tracer import ReplacementModel
    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights
    from transformers import AutoTokenizer, GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    cfg = hooked_config(hf.config, name=model_dir.rstrip("/").split("/")[-1])
    model = ReplacementModel.from_config(cfg, transcoders, backend="transformerlens",
                                         tokenizer=tok)
    state = convert_gpt2_weights(hf, cfg)
    state = {k.replace(".mlp.", ".mlp.old_mlp.").replace("unembed.", "unembed.old_unembed."): v
             for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    with torch.no_grad():  # GPT-2 has no unembedding bias; TransformerLens' converter omits it
        model.unembed.old_unembed.b_U.zero_()
    real_missing = [k for k in missing if not k.endswith(("IGNORE", ".mask", ".b_U"))
                    and not k.startswith("transcoders.")]
    if real_missing or unexpected:
        raise SystemExit(f"weights did not map: missing {real_missing[:5]}, unexpected "
                         f"{unexpected[:5]}")
    return model.eval(), hf


def main(argv=None) -> None:
    """Run circuit-tracer on the ids and save what the benchmark compares."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--transcoders", required=True)
    p.add_argument("--ids", help="comma-separated token ids, a special one first")
    p.add_argument("--prompt", help="text instead of ids (circuit-tracer tokenizes it)")
    p.add_argument("--out", required=True)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--max-feature-nodes", type=int, default=None)
    args = p.parse_args(argv)

    import torch
    from circuit_tracer import attribute
    from circuit_tracer.graph import compute_graph_scores, prune_graph

    torch.manual_seed(0)
    t0 = time.perf_counter()
    model, hf = load_replacement_model(args.model, load_transcoders(args.transcoders))
    load_s = time.perf_counter() - t0
    try:
        ids = model.ensure_tokenized(args.prompt) if args.prompt is not None else \
            torch.tensor([int(i) for i in args.ids.split(",")])
    except StopIteration:  # next(filter(None, ...)) over special ids that are all 0
        raise SystemExit("circuit-tracer cannot tokenize a text prompt for this tokenizer: its "
                         "BOS choice skips id 0 and no other special id exists (StopIteration "
                         "in ensure_tokenized); pass ids instead") from None
    with torch.no_grad():
        logit_diff = float((model(ids[None]) - hf(ids[None]).logits).abs().max())

    def run():
        return attribute(ids, model, batch_size=args.batch_size,
                         max_feature_nodes=args.max_feature_nodes)

    graph, figures = measure(run, args.repeats)
    pruned = prune_graph(graph)
    replacement, completeness = compute_graph_scores(graph)
    json_file = None
    try:  # circuit-tracer's own graph JSON (its frontend's and Neuronpedia's format)
        from pathlib import Path

        from circuit_tracer.utils.create_graph_files import create_graph_files

        graph.cfg.tokenizer_name = args.model  # a local folder: its tokenizer loads offline
        folder = Path(args.out).parent / "ct_json"
        create_graph_files(graph, "graph", str(folder), scan="benchmark")
        json_file = str(folder / "graph.json")
    except Exception as e:  # noqa: BLE001 - reported, the comparison of the rest goes on
        print(f"circuit-tracer's graph JSON failed: {type(e).__name__}: {e}")
    torch.save({
        "adjacency": graph.adjacency_matrix, "active_features": graph.active_features,
        "selected_features": graph.selected_features,
        "activation_values": graph.activation_values, "input_tokens": graph.input_tokens,
        "logit_token_ids": graph.logit_token_ids,
        "logit_probabilities": graph.logit_probabilities,
        "node_mask": pruned.node_mask, "edge_mask": pruned.edge_mask,
        "cumulative_scores": pruned.cumulative_scores,
        "replacement_score": replacement, "completeness_score": completeness,
        "json": json_file,
        "figures": {**figures, "load_s": load_s, "logits_vs_hf_max_abs": logit_diff,
                    "torch_threads": torch.get_num_threads()},
    }, args.out)
    print(json.dumps({"nodes": graph.adjacency_matrix.shape[0],
                      "features": int(len(graph.selected_features)), **figures}))


if __name__ == "__main__":
    main()
