"""``acdc sae train``: a sparse autoencoder on one layer's residual stream over a task.

    acdc sae train --task ioi --layer 1 --features 64 --out results/sae
    acdc sae stats results/sae/sae.safetensors --task ioi     # any SAE in the common layout

Reports the reconstruction error, L0, the metric with the reconstruction spliced into the
model, the features that matter most for the metric (exact, by zeroing each, next to the
one-backward gradient estimate of every feature) and their top activating tokens.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import add_threads_arg, finite, positive, task_problem

ORDER = 48


def penalty(text: str) -> float:
    """argparse type: a finite number >= 0."""
    x = finite(text)
    if x < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {x:g}")
    return x


def layer_index(text: str) -> int:
    """argparse type: a layer, >= -1 (the model's layer count is checked once it is loaded)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < -1:
        raise argparse.ArgumentTypeError(f"must be >= -1 (-1: the embeddings), got {n}")
    return n


def _report(problem, sae, top: int) -> dict:
    from ..evidence.sae import feature_attribution, feature_effects, sae_stats, top_activations

    st = sae_stats(problem, sae)
    print(f"layer {sae.layer}: {sae.W_enc.shape[1]} features; MSE {st.mse:.4g} "
          f"({st.fraction_unexplained:.1%} of the variance unexplained); L0 {st.l0:.1f}")
    print(f"metric: clean {st.metric_clean:.4g}, with the SAE spliced in {st.metric_spliced:.4g}")
    estimate = feature_attribution(problem, sae).tolist()  # every feature, one backward
    eff = feature_effects(problem, sae, top=top)
    print("features by effect on the metric when zeroed (exact; gradient estimate after it):")
    ranked = sorted(eff.items(), key=lambda t: -abs(t[1]))
    for j, e in ranked:
        tops = top_activations(problem, sae, j, k=3)
        shown = "; ".join(f"{t!r} ({a:.2g})" for a, t in tops)
        print(f"  feature {j:>4}: {e:+.4g} (estimate {estimate[j]:+.4g})   {shown}")
    return {"stats": st.as_dict(), "feature_effects": {str(j): e for j, e in ranked},
            "feature_attribution": {str(j): e for j, e in enumerate(estimate)}}


def _cmd_sae(args) -> int:
    import json

    from ..errors import AcdcError
    from ..evidence.sae import SAE, check_layer, check_sae, train_sae

    sae = None
    if args.action == "stats":  # a bad file is refused before the model is loaded
        if args.weights is None:
            raise AcdcError("acdc sae stats needs the SAE's safetensors file")
        sae = SAE.load(args.weights, layer=args.layer)
    elif args.weights is not None:
        raise AcdcError(f"acdc sae train takes no file (got '{args.weights}'); use --out to "
                        "say where the trained SAE goes")
    problem = task_problem(args)[0]
    if sae is None:
        layer = 0 if args.layer is None else args.layer
        check_layer(problem, layer)
        sae = train_sae(problem, layer, args.features, l1=args.l1, steps=args.steps)
    else:
        check_sae(problem, sae)
    out = _report(problem, sae, args.top)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        if args.action == "train":
            sae.save(args.out / "sae.safetensors")
        (args.out / "sae.json").write_text(json.dumps(out, indent=2))
        print(f"written to {args.out}/")
    return 0


def register(sub) -> None:
    p = sub.add_parser("sae", help="train or inspect a sparse autoencoder on a layer",
                       epilog="example: acdc sae train --task ioi --layer 1 --features 64 "
                              "--out results/sae")
    p.add_argument("action", choices=["train", "stats"])
    p.add_argument("weights", nargs="?", type=Path, help="stats: the SAE's safetensors file")
    p.add_argument("--task", default="ioi")
    p.add_argument("--model", help="default: the task's model")
    p.add_argument("--layer", type=layer_index, default=None,
                   help="residual stream after this layer (-1: the embeddings; default: 0 to "
                        "train, the file's own layer for stats)")
    p.add_argument("--features", type=positive, default=64)
    p.add_argument("--l1", type=penalty, default=1e-3, help="sparsity penalty, >= 0")
    p.add_argument("--steps", type=positive, default=2000)
    p.add_argument("--top", type=positive, default=8, help="features to report")
    p.add_argument("--examples", type=positive)
    p.add_argument("--out", type=Path)
    p.add_argument("--device", default=None)
    add_threads_arg(p)
    p.set_defaults(func=_cmd_sae)
