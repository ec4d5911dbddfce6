"""``acdc sae train``: a sparse autoencoder on one layer's residual stream over a task.

    acdc sae train --task ioi --layer 1 --features 64 --out results/sae
    acdc sae stats results/sae/sae.safetensors --task ioi     # any SAE in the common layout

Reports the reconstruction error, L0, the metric with the reconstruction spliced into the
model, the features that matter most for the metric (exact, by zeroing each, next to the
one-backward gradient estimate of every feature) and their top activating tokens.
"""

from __future__ import annotations

from pathlib import Path

from .args import add_threads_arg, finite, positive, task_problem

ORDER = 48


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

    from ..evidence.sae import SAE, train_sae
    problem = task_problem(args)[0]
    if args.action == "train":
        sae = train_sae(problem, args.layer, args.features, l1=args.l1, steps=args.steps)
    else:
        if args.weights is None:
            from ..errors import AcdcError

            raise AcdcError("acdc sae stats needs the SAE's safetensors file")
        sae = SAE.load(args.weights, layer=args.layer)
    out = _report(problem, sae, args.top)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        if args.action == "train":
            sae.save(args.out / "sae.safetensors")
        (args.out / "sae.json").write_text(json.dumps(out, indent=2))
        print(f"written to {args.out}/")
    return 0


def register(sub) -> None:
    p = sub.add_parser("sae", help="train or inspect a sparse autoencoder on a layer")
    p.add_argument("action", choices=["train", "stats"])
    p.add_argument("weights", nargs="?", type=Path, help="stats: the SAE's safetensors file")
    p.add_argument("--task", default="ioi")
    p.add_argument("--model", help="default: the task's model")
    p.add_argument("--layer", type=int, default=0,
                   help="residual stream after this layer (-1: the embeddings)")
    p.add_argument("--features", type=positive, default=64)
    p.add_argument("--l1", type=finite, default=1e-3, help="sparsity penalty")
    p.add_argument("--steps", type=positive, default=2000)
    p.add_argument("--top", type=positive, default=8, help="features to report")
    p.add_argument("--examples", type=positive)
    p.add_argument("--out", type=Path)
    p.add_argument("--device", default=None)
    add_threads_arg(p)
    p.set_defaults(func=_cmd_sae)
