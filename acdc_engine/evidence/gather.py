"""Evidence of a run, computed from its :class:`RunContext` (circuit, problem, scores).

    st = stability_evidence(ctx, n=5)             # intervals, stability, redundancy (a dict)
    ev = descriptive_evidence(ctx)                # attention, logit lens, DLA, patching, ...

The computations are those of :mod:`.descriptive`, :mod:`.causal` and :mod:`.uncertainty`;
reopening a recorded run and logging to it is the API's job (:mod:`acdc_engine.api.evidence`).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..circuit import Circuit
from ..problem import Problem
from ..records.runs import RunRecord
from ..tasks import TaskData

__all__ = ["RunContext", "stability_evidence", "descriptive_evidence", "write_json"]


@dataclass
class RunContext(RunRecord):
    """A recorded discovery run, reopened: its record (run.json), circuit and problem."""

    ref: str
    record: dict
    circuit: Circuit
    problem: Problem
    data: TaskData
    run_dir: Path | None
    tracking_uri: str | None
    scores: torch.Tensor | None = None  # [n_edges], every edge's score (edge_scores.tsv)

    @property
    def out_dir(self) -> Path:
        """Where evidence files go: the run directory, or a temporary one."""
        if self.run_dir is not None:
            return self.run_dir
        d = Path(tempfile.mkdtemp(prefix="acdc-evidence-"))
        self.run_dir = d
        return d


def stability_evidence(ctx: RunContext, n: int = 5, fraction: float = 0.5,
                       n_boot: int = 1000, methods: list[str] | None = None,
                       redundancy_top: int = 20) -> dict:
    """Faithfulness and curve intervals, stability across ``n`` subsamples (and across
    ``methods``), the redundancy check, and plain sentences; as a JSON-ready dict."""
    from .uncertainty import (
        circuit_stability,
        curve_intervals,
        faithfulness_interval,
        method_agreement,
        redundancy,
    )

    p, c = ctx.problem, ctx.circuit
    params = ctx.params
    method = params.get("method", "eap-ig")
    settings = ctx.record.get("settings") or {}
    faith = faithfulness_interval(p, c.mask(), n_boot=n_boot)
    out: dict = {"faithfulness": faith.as_dict(), "n_examples": p.n_examples}
    scores = ctx.scores if ctx.scores is not None else c.scores
    if scores is not None and not torch.isfinite(scores).any():
        scores = None
    if scores is not None:
        budgets = [float(b) for b in str(params.get("budgets", "")).split(",") if b] or None
        curve = curve_intervals(p, torch.nan_to_num(scores.float()), *(
            [budgets] if budgets else []), n_boot=n_boot)
        out["curve"] = curve.as_dict()
    names = c.edge_names
    st = circuit_stability(p, method, len(names), n=n, fraction=fraction, settings=settings,
                           reference=names) if n > 0 else None
    sentences = [_faith_sentence(faith, p.n_examples)]
    if "curve" in out:
        cpr, cmd = out["curve"]["cpr"], out["curve"]["cmd"]
        sentences.append(f"Over the edge budgets, CPR is {cpr['point']:.3f} (95% interval "
                         f"{cpr['low']:.3f} to {cpr['high']:.3f}) and CMD {cmd['point']:.3f} "
                         f"({cmd['low']:.3f} to {cmd['high']:.3f}).")
    if st is not None:
        out["stability"] = st.as_dict()
        sentences += st.sentences()
    if methods:
        agree = method_agreement(p, methods, len(names), reference=names)
        out["methods"] = agree.as_dict()
        sentences += agree.sentences()
    red = redundancy(p, c.keep, scores, top=redundancy_top)
    out["redundancy"] = red.as_dict()
    sentences += red.sentences()
    out["sentences"] = sentences
    out["settings"] = {"n": n, "fraction": fraction, "n_boot": n_boot, "methods": methods}
    return out


def _faith_sentence(ci, n: int) -> str:
    width = ci.high - ci.low
    s = (f"The circuit recovers {ci.point:.1%} of the behaviour (normalized faithfulness; 95% "
         f"bootstrap interval {ci.low:.1%} to {ci.high:.1%} over {n} examples).")
    if width > 0.2:
        s += " The interval is wide: more examples would pin it down."
    return s


def descriptive_evidence(ctx: RunContext, max_examples: int = 16) -> dict:
    """Attention patterns, logit lens, DLA, token attribution, activation patching and node
    ablation of the run's problem (tensors kept for the pictures). Attention and the logit
    lens use ``max_examples`` prompts of the first batch; activation patching a random
    ``2 * max_examples``; the rest every example."""
    from .causal import activation_patching, node_ablation
    from .descriptive import (
        attention_patterns,
        direct_logit_attribution,
        logit_lens,
        token_attribution,
    )

    p, lm = ctx.problem, ctx.problem.model
    b = p.batches[0]
    ids = b.clean[:max_examples]
    tok = lm.tokenizer
    tokens = tok.convert_ids_to_tokens(ids[0].tolist()) if tok is not None else None
    out = {"tokens": tokens, "example": _decode(tok, ids[0])}
    out["attention"] = attention_patterns(lm, ids)
    out["logit_lens"] = logit_lens(lm, ids, b.answer[:max_examples],
                                   None if b.wrong is None else b.wrong[:max_examples])
    out["dla"] = direct_logit_attribution(p)
    out["token_attribution"] = token_attribution(p, "integrated_gradients", steps=8)
    from .uncertainty import subsample

    small = p if p.n_examples <= 2 * max_examples else subsample(
        p, 2 * max_examples / p.n_examples, seed=0)
    out["patching"] = activation_patching(small)  # nodes x positions: the costly one
    out["patching_examples"] = small.n_examples
    out["ablation"] = node_ablation(p, source=p.ablation.kind if p.ablation.kind != "corrupted"
                                    else "mean")
    return out


def _decode(tok, ids) -> str:
    if tok is None:
        return " ".join(map(str, ids.tolist()))
    return tok.decode(ids.tolist())


def write_json(path: Path, obj: dict) -> Path:
    """Write ``obj`` as indented JSON to ``path`` (tensors and numpy numbers as floats); returns
    ``path``."""
    path.write_text(json.dumps(obj, indent=2, default=float))
    return path


def _metrics_of(st: dict) -> dict:
    """The stability numbers worth an MLflow metric each."""
    f = st["faithfulness"]
    out = {"faithfulness_ci_low": f["low"], "faithfulness_ci_high": f["high"]}
    if "curve" in st:
        for k in ("cpr", "cmd"):
            out[f"{k}_ci_low"], out[f"{k}_ci_high"] = st["curve"][k]["low"], st["curve"][k]["high"]
    if "stability" in st:
        j = st["stability"]["jaccard_to_reference"]
        out["stability_jaccard_mean"] = sum(j) / len(j)
        out["stability_jaccard_min"] = min(j)
        out["stability_n"] = len(j)
    out["redundant_edges"] = len(st["redundancy"]["flagged"])
    return out
