"""The engine's attribution graph against circuit-tracer 0.5.0's: same model, transcoders, prompt.

    python benchmarks/trace_vs_circuit_tracer.py                 # shipped gpt2-ioi-bpe, IOI prompt
    python benchmarks/trace_vs_circuit_tracer.py --repeats 3 --out /tmp/agree
    python benchmarks/trace_vs_circuit_tracer.py --transcoders random --n-features 256 --k 8
    python benchmarks/trace_vs_circuit_tracer.py --setup         # only create /work/ct-venv

circuit-tracer runs in its own virtual environment (``--ct-venv``, default /work/ct-venv,
created with the commands of benchmarks/README_circuit_tracer.md when it is missing), through
``benchmarks/_ct_side.py``, in a subprocess; the engine runs ``acdc_engine.features.trace`` in
another subprocess of this script, so each side's time and peak memory are its own, measured
the same way (``_ct_side.measure``: wall time of the graph call alone, the model loaded
before; the process's peak resident memory and its rise over the memory before the call).

The transcoders are the shipped ones (``acdc_engine.features.shipped_transcoders``) when they
exist, else random sparse topk per-layer transcoders; either way they are written in
circuit-tracer's file format (``acdc_engine.features.circuit_tracer_format``) and both sides
read that folder. The prompt's token ids are passed to both sides with the end-of-text token
(id 0) first: both keep a prompt that starts with a special token as it is, so neither
prepends (circuit-tracer's own choice of BOS skips id 0).

Compared: the active features (layer, pos, feature) and their activations, the selected
feature nodes, the logit targets and probabilities, the adjacency, the pruned node and edge
sets (circuit-tracer's defaults 0.8 / 0.98), the replacement / completeness scores, and the
pruned graph's JSON for circuit-tracer's frontend (the engine's ``to_circuit_tracer_json``
against circuit-tracer's ``create_graph_files``: node ids and fields, links and weights). The
adjacency tolerance is derived, not chosen: the engine also computes the graph in float64
(the reference); the float32 rounding error of a graph is measured as the engine's float32
graph's largest distance from it, ``e32``; circuit-tracer agrees when its graph's largest
distance from the float64 graph is at most ``8 * e32 + eps32 * max|A64|`` (another summation
order may double or triple the rounding error; a convention that differs shows as an error
of the size of the entries). Prints a table; writes ``comparison.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _trace_compare import compare, explain, table  # noqa: E402  (beside this script)
ROOT = HERE.parent
SHIPPED_MODEL = ROOT / "plugins" / "acdc_builtins" / "models" / "gpt2-ioi-bpe"
PROMPT = "When Mary and John went to the store, John gave a drink to"
CT_VENV = Path("/work/ct-venv")
TORCH = "torch==2.13.0"
CT_PINS = ("circuit-tracer==0.5.0", "transformers<=4.57.3")


def ensure_ct_venv(venv: Path = CT_VENV) -> Path:
    """The python of ``venv``, creating it (README_circuit_tracer.md's commands) if missing."""
    python = venv / "bin" / "python"
    ok = python.exists() and subprocess.run(
        [str(python), "-c", "import circuit_tracer"], capture_output=True).returncode == 0
    if ok:
        return python
    print(f"creating {venv} (circuit-tracer 0.5.0 on {TORCH}) ...", flush=True)
    pip = [str(venv / "bin" / "pip"), "install", "-q"]
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(pip + [TORCH], check=True)
    constraints = venv / "constraints.txt"
    constraints.write_text(TORCH + "\n")
    subprocess.run(pip + ["-c", str(constraints), *CT_PINS], check=True)
    subprocess.run(pip + ["-c", str(constraints), "nnsight==0.7.0"], check=True)
    subprocess.run([str(python), "-c", "from circuit_tracer import ReplacementModel, attribute"],
                   check=True)
    return python


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
            "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS", "1"),
            "TOKENIZERS_PARALLELISM": "false"}


def random_transcoders(n_layers: int, d: int, n: int, k: int, model: str, seed: int = 0,
                       kind: str = "transcoders"):
    """Random sparse (topk) per-layer transcoders, or a cross-layer transcoder (``clt``)."""
    import torch

    from acdc_engine.features.dictionary import CrossLayerTranscoder, Transcoder, TranscoderSet

    torch.manual_seed(seed)
    if kind == "clt":
        return CrossLayerTranscoder(n_layers, d, n, activation="topk", k=k, model=model)
    return TranscoderSet([Transcoder(d, n, layer=i, activation="topk", k=k, model=model)
                          for i in range(n_layers)])


# ----- preparing: transcoders in circuit-tracer's format, the prompt's ids --------------------
def prepare(args, out: Path) -> tuple[Path, list[int], str]:
    """Write the transcoders as a circuit-tracer folder; the prompt's ids (a special first)."""
    from transformers import AutoTokenizer

    from acdc_engine.errors import AcdcError
    from acdc_engine.features.circuit_tracer_format import (is_circuit_tracer_folder,
                                                            load_circuit_tracer,
                                                            save_circuit_tracer)
    folder = out / "transcoders"
    what = args.transcoders
    if what not in ("shipped", "random") and is_circuit_tracer_folder(what):
        tc, what = load_circuit_tracer(what), f"circuit-tracer folder {what}"
    elif what not in ("shipped", "random"):
        from acdc_engine.features import load_any

        tc, what = load_any(what), f"dictionary {what}"
    else:
        tc = None
        if what == "shipped":
            try:
                from acdc_engine.features.shipped import shipped_transcoders

                kind = "clt" if args.kind == "clt" else "transcoders"
                tc, what = shipped_transcoders(kind=kind), f"shipped gpt2-ioi-bpe {kind}"
            except (AcdcError, ImportError, OSError) as e:
                print(f"no shipped transcoders ({e}); using random topk ones", flush=True)
        if tc is None:
            from transformers import AutoConfig

            cfg = AutoConfig.from_pretrained(args.model)
            tc = random_transcoders(cfg.n_layer, cfg.n_embd, args.n_features, args.k,
                                    Path(args.model).name, args.seed, args.kind)
            what = f"random topk {args.kind} ({args.n_features} features, k={args.k})"
    save_circuit_tracer(tc, folder)
    tok = AutoTokenizer.from_pretrained(args.model)
    ids = tok(args.prompt, add_special_tokens=False).input_ids
    return folder, [first_special_id(tok)] + list(ids), what


def first_special_id(tok) -> int:
    """The special token both sides keep first: bos, else pad, eos, the first special id."""
    for i in (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, *tok.all_special_ids):
        if i is not None:
            return int(i)
    raise SystemExit("the tokenizer has no special token to put first")


# ----- the engine's side (a subprocess of this script) ----------------------------------------
def engine_side(args) -> None:
    """Trace with the engine (timed), then once in float64 (the reference); save both."""
    import torch

    sys.path.insert(0, str(HERE))
    from _ct_side import measure

    from acdc_engine import load_model
    from acdc_engine.features.attribution_graph import trace
    from acdc_engine.features.circuit_tracer_format import load_circuit_tracer

    model = load_model(args.model, device="cpu")
    tc = load_circuit_tracer(args.tc_folder)
    prompt = args.text if args.text is not None else \
        torch.tensor([int(i) for i in args.ids.split(",")])

    def run():
        return trace(model, prompt, tc, batch_size=args.batch_size,
                     max_feature_nodes=args.max_feature_nodes)

    graph, figures = measure(run, args.repeats)
    pruned = graph.prune()
    replacement, completeness = graph.scores()
    json_file = str(graph.to_circuit_tracer_json(Path(args.out_file).parent / "engine_json",
                                                 "graph", tokenizer=model.tokenizer))
    with torch.no_grad():
        logits = model.adapter.model(graph.input_tokens[None]).logits
    ref = None
    if not args.no_float64:
        model.adapter.model.double()
        tc64 = load_circuit_tracer(args.tc_folder).double()
        g64 = trace(model, prompt, tc64, batch_size=args.batch_size,
                    max_feature_nodes=args.max_feature_nodes)
        ref = {"adjacency": g64.adjacency_matrix, "selected_features": g64.selected_features,
               "active_features": g64.active_features, "logit_ids": g64.logit_ids}
    torch.save({
        "adjacency": graph.adjacency_matrix, "active_features": graph.active_features,
        "selected_features": graph.selected_features,
        "activation_values": graph.activation_values, "input_tokens": graph.input_tokens,
        "logit_token_ids": graph.logit_ids, "logit_probabilities": graph.logit_probabilities,
        "node_mask": pruned.node_mask, "edge_mask": pruned.edge_mask,
        "replacement_score": replacement, "completeness_score": completeness,
        "float64": ref, "logits": logits, "json": json_file,
        "figures": {**figures, "torch_threads": torch.get_num_threads()}}, args.out_file)


def run_comparison(model: str, folder: Path, ids: list | str, out: Path, ct_python: Path,
                   repeats: int = 1, batch_size: int = 256, max_feature_nodes: int | None = None,
                   float64: bool = True) -> tuple[dict, dict, dict]:
    """Run both sides (each its own process) on ``model``, the circuit-tracer folder
    ``folder`` and token ``ids`` (or a text each side tokenizes); (comparison, engine's
    results, circuit-tracer's)."""
    import torch

    text = isinstance(ids, str)
    ids_arg = ["--text" if text else "--ids", ids if text else ",".join(map(str, ids))]
    common = ["--repeats", str(repeats), "--batch-size", str(batch_size)]
    if max_feature_nodes:
        common += ["--max-feature-nodes", str(max_feature_nodes)]
    eng_cmd = [sys.executable, str(Path(__file__).resolve()), "--side", "engine", "--model",
               str(model), "--tc-folder", str(folder), *ids_arg, "--out-file",
               str(out / "engine.pt"), "--ct-venv", str(ct_python.parent.parent), *common]
    if not float64:
        eng_cmd.append("--no-float64")
    ct_cmd = [str(ct_python), str(HERE / "_ct_side.py"), "--model", str(model),
              "--transcoders", str(folder), "--prompt" if text else "--ids", ids_arg[1], "--out",
              str(out / "ct.pt"),
              *common]
    for name, cmd in (("engine", eng_cmd), ("circuit-tracer", ct_cmd)):
        done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=str(ROOT))
        if done.returncode != 0:
            raise RuntimeError(f"{name} side failed:\n{done.stderr[-4000:]}")
    eng = torch.load(out / "engine.pt", weights_only=False)
    ct = torch.load(out / "ct.pt", weights_only=False)
    return compare(eng, ct), eng, ct


def main(argv=None) -> int:
    """Prepare, run both sides, compare, print, write comparison.json."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(SHIPPED_MODEL))
    ap.add_argument("--transcoders", default="shipped",
                    help="shipped | random | a circuit-tracer folder | an engine dictionary")
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--max-feature-nodes", type=int, default=None)
    ap.add_argument("--n-features", type=int, default=256)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--kind", choices=["transcoders", "clt"], default="transcoders",
                    help="per-layer transcoders or a cross-layer transcoder (shipped or random)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="folder for the graphs and comparison.json")
    ap.add_argument("--ct-venv", default=str(CT_VENV))
    ap.add_argument("--setup", action="store_true", help="only create the circuit-tracer venv")
    ap.add_argument("--no-float64", action="store_true", help="skip the float64 reference")
    ap.add_argument("--side", choices=["engine"], help=argparse.SUPPRESS)
    ap.add_argument("--tc-folder", help=argparse.SUPPRESS)
    ap.add_argument("--ids", help=argparse.SUPPRESS)
    ap.add_argument("--text", help=argparse.SUPPRESS)
    ap.add_argument("--as-text", action="store_true",
                    help="pass the prompt as text and let each side tokenize it (and choose "
                         "its BOS) instead of passing the same ids")
    ap.add_argument("--out-file", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    ct_python = ensure_ct_venv(Path(args.ct_venv))
    if args.setup:
        print(f"circuit-tracer venv ready: {ct_python}")
        return 0
    if args.side == "engine":
        engine_side(args)
        return 0
    out = Path(args.out or tempfile.mkdtemp(prefix="trace_vs_ct_"))
    out.mkdir(parents=True, exist_ok=True)
    folder, ids, what = prepare(args, out)
    try:
        r, eng, ct = run_comparison(args.model, folder, args.prompt if args.as_text else ids,
                                    out, ct_python, repeats=args.repeats,
                                    batch_size=args.batch_size,
                                    max_feature_nodes=args.max_feature_nodes,
                                    float64=not args.no_float64)
    except RuntimeError as e:
        print(e)
        return 1
    said = "tokenized by each side" if args.as_text else f"special id {ids[0]} first"
    print(f"model {args.model}; {what}; prompt {args.prompt!r} "
          f"({len(eng['input_tokens'])} tokens, {said})")
    print(f"nodes {r['nodes'][0]} engine / {r['nodes'][1]} circuit-tracer; active features "
          f"{r['active_features'][0]} / {r['active_features'][1]}; same active features "
          f"{r['same_active_features']}; same selected {r['same_selected_features']}; same "
          f"logit targets {r['same_logit_targets']}")
    if "adjacency_max_abs_diff" in r:
        print(f"adjacency: max |engine - circuit-tracer| {r['adjacency_max_abs_diff']:.3g} "
              f"(entries up to {r['adjacency_max_abs']:.3g}); tolerance {r['tolerance']:.3g}"
              + (f" (engine float32 vs float64 {r['engine_vs_float64']:.3g}, circuit-tracer vs "
                 f"float64 {r['ct_vs_float64']:.3g})" if "engine_vs_float64" in r else "")
              + f"; equal: {r['adjacency_equal']}")
        print(f"pruned nodes {r['pruned_nodes'][0]} / {r['pruned_nodes'][1]}; same pruned set "
              f"{r['same_pruned_nodes']}; same pruned edges {r['same_pruned_edges']}")
    if "json_equal" in r:
        print(f"graph JSON (circuit-tracer's frontend format): {r['json_nodes'][0]} / "
              f"{r['json_nodes'][1]} nodes, {r['json_links'][0]} / {r['json_links'][1]} links; "
              f"equal: {r['json_equal']}")
    print(f"replacement / completeness: engine {r['scores_engine'][0]:.4f} / "
          f"{r['scores_engine'][1]:.4f}; circuit-tracer {r['scores_ct'][0]:.4f} / "
          f"{r['scores_ct'][1]:.4f}")
    print(f"circuit-tracer's replacement model vs the HF model's logits: max abs "
          f"{ct['figures']['logits_vs_hf_max_abs']:.2g}")
    print(table(eng["figures"], ct["figures"]))
    differences = explain(r)
    print("differences: " + ("none" if not differences else "; ".join(differences)))
    (out / "comparison.json").write_text(json.dumps(
        {**r, "differences": differences, "engine": eng["figures"], "circuit_tracer":
         ct["figures"], "transcoders": what, "prompt": args.prompt, "ids": ids},
        indent=2, default=str))
    print(f"written: {out / 'comparison.json'}")
    return 0 if r.get("adjacency_equal") and r["same_active_features"] else 2


if __name__ == "__main__":
    sys.exit(main())
