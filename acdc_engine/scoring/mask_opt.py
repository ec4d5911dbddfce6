"""Mask optimization: a mask over every edge learned by gradient descent through the patched
forward (:func:`acdc_engine.patching.run` is differentiable in a fractional mask).

Two methods, both registered by ``plugins/acdc_builtins/mask_opt.py``:

**Edge Pruning** (Bhaskar et al. 2024, "Finding Transformer Circuits with Edge Pruning";
princeton-nlp/Edge-Pruning, ``src/modeling/l0.py``). Each edge has a log-alpha; a step samples
the hard-concrete gate of Louizos et al. (2018) for every edge::

    s = sigmoid((log u - log(1 - u) + log_alpha) / beta),   z = clamp(s * (r - l) + l, 0, 1)

with ``l = -0.1, r = 1.1, beta = 2/3``; ``P(z = 0) = sigmoid(beta log(-l/r) - log_alpha)``
(:func:`hard_concrete_p_zero`). The loss is the task loss plus a Lagrangian on the
expected sparsity ``s = mean P(z = 0)``: ``lambda1 (s - t) + lambda2 (s - t)^2``, the lambdas
trained by gradient *ascent* (as the paper), the target ``t`` rising linearly from 0 to
``target_sparsity`` over the warm-up steps. Deterministic mask: ``clamp(sigmoid(log_alpha)
(r - l) + l, 0, 1)``; scores: ``-log P(z = 0)`` (:func:`edge_scores`); the circuit:
deterministic mask > 0.5 (log_alpha > 0).

**UGS, uniform gradient sampling** (Li & Janson 2024, "Optimal ablation for interpretability";
the MIB baseline of Mueller et al. 2025, "MIB: A Mechanistic Interpretability Benchmark", whose
README runs ``edge_pruning_unif_mib.py`` of alestolfo/optimalablation,
``mask_samplers/EdgeMaskSampler.py: EdgeMaskUnifSampler``). Each edge has a logit ``theta``,
``p = sigmoid(theta)`` its probability of being kept; a step samples ``u ~ U(0, 1)`` and::

    w = p (1 - p)  (no gradient),  m = 1 - clamp((u - p) / w + 1/2, 0, 1)

so ``m`` is 1 with probability ``p - w/2``, 0 with probability ``1 - p - w/2`` and uniform in
(0, 1) within the window (probability ``w``), where its gradient flows; ``p`` enters as
``w p - (w - 1) p.detach()`` (the same value; the gradient scaled by ``w``, "scale
invariance"). ``E[m] = p``. The loss is the task loss plus ``lamb * sum_edges p`` (MIB:
``lamb = 0.001``), or, when a target sparsity is given, the Lagrangian above on ``s = 1 -
mean p``. Gradients are clipped to norm 5 and ``theta`` starts at 1, as in that script.
Scores: ``-log(1 - p)``; the circuit: ``p > 0.5`` (``p = E[m]``, the deterministic mask). Not
done: MIB's
node regulariser and its removal of dangling edges from every sample, and its 12 mask samples
per example (the patched forward takes one mask per batch; ``samples`` masks per step are
separate runs).

**The task loss** is the value of ``problem.metric`` on the sampled run, averaged over the
batch, as a loss: itself when lower is better (``kl_div`` to the full model: Edge Pruning's
own objective; ``l2``), its negative otherwise. The plugin picks the metric as ACDC does
(``kl_div``; the task's metric on a one-output model).

**Warm start**: per-edge scores of any method, ranked by ``|score|``; the rank in [0, 1] maps
linearly to log-alpha (theta) in ``[-WARM, +WARM]`` (as MIB's Edge Pruning warm start, which
ranks |scores|). **Resume**: parameters, lambdas, both optimizers' states, the sampler's
random state and the step are saved every ``checkpoint_every`` steps (atomically); a run with a
checkpoint file continues from it when its fingerprint (model, data, settings) agrees, with
the same result, bit for bit on CPU, as a run without a break.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..distributed import average_gradients
from ..errors import AcdcError
from ..problem import Problem
from ..progress import progress_bar
from .acdc.checkpoints import checkpoint_problem, fingerprint

__all__ = ["MaskOptConfig", "MaskOptResult", "optimize_mask", "hard_concrete_sample",
           "hard_concrete_mask", "hard_concrete_p_zero", "hard_concrete_p_one", "ugs_sample",
           "final_mask", "edge_scores", "warm_start_params", "MaskState", "train_step", "KINDS"]

KINDS = ("edge-pruning", "ugs")
"""The mask optimizations :func:`optimize_mask` runs (``MaskOptConfig.kind``)."""
LIMIT_LEFT, LIMIT_RIGHT, BETA = -0.1, 1.1, 2 / 3
EPS = 1e-6
INIT = {"edge-pruning": 3.0, "ugs": 1.0}
"""Initial log-alpha (edge pruning: every gate's deterministic value is 1, P(z = 0) = 0.8%) and
theta (UGS: MIB's ``init_param=1``)."""
WARM = 3.0
UGS_CLIP = 5.0
CHECKPOINT_VERSION = 1


# ----- the samplers ---------------------------------------------------------------------------
def hard_concrete_sample(log_alpha: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The hard-concrete gate for uniform noise ``u`` in (0, 1): in [0, 1], differentiable in
    ``log_alpha`` where it is not clamped."""
    u = u.clamp(EPS, 1 - EPS)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / BETA)
    return (s * (LIMIT_RIGHT - LIMIT_LEFT) + LIMIT_LEFT).clamp(0.0, 1.0)


def hard_concrete_p_zero(log_alpha: torch.Tensor) -> torch.Tensor:
    """``P(z = 0)``: the stretched sample falls below 0."""
    return torch.sigmoid(BETA * math.log(-LIMIT_LEFT / LIMIT_RIGHT) - log_alpha)


def hard_concrete_p_one(log_alpha: torch.Tensor) -> torch.Tensor:
    """``P(z = 1)``: the stretched sample rises above 1."""
    return torch.sigmoid(log_alpha - BETA * math.log((1 - LIMIT_LEFT) / (LIMIT_RIGHT - 1)))


def hard_concrete_mask(log_alpha: torch.Tensor) -> torch.Tensor:
    """The deterministic gate (no noise): ``clamp(sigmoid(log_alpha) (r - l) + l, 0, 1)``."""
    return (torch.sigmoid(log_alpha) * (LIMIT_RIGHT - LIMIT_LEFT) + LIMIT_LEFT).clamp(0.0, 1.0)


def ugs_sample(theta: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """UGS's sampled mask for uniform noise ``u``: 1 below the window around ``p``, 0 above,
    linear (with gradient) inside it."""
    p = torch.sigmoid(theta)
    w = (p * (1 - p)).detach().clamp(min=1e-12)
    p = w * p - (w - 1) * p.detach()
    return 1 - ((u - p) / w + 0.5).clamp(0.0, 1.0)


def warm_start_params(scores: torch.Tensor) -> torch.Tensor:
    """Initial parameters from per-edge scores: ``|score|`` ranked (ties share their mean
    rank; NaN ranks lowest), the rank in [0, 1] mapped to ``[-WARM, WARM]``."""
    v = scores.detach().float().cpu().abs().nan_to_num(nan=-1.0)
    n = v.numel()
    if n < 2:
        return torch.full((n,), WARM)
    sorted_v, order = torch.sort(v, stable=True)
    ranks = torch.empty(n)
    ranks[order] = torch.arange(n, dtype=torch.float32)
    uniq, inverse = torch.unique(sorted_v, return_inverse=True)  # average tied ranks
    mean_rank = torch.zeros(len(uniq)).index_add_(0, inverse, torch.arange(n).float())
    mean_rank /= torch.bincount(inverse, minlength=len(uniq)).float()
    ranks[order] = mean_rank[inverse]
    return (ranks / (n - 1)) * 2 * WARM - WARM


# ----- configuration and result ---------------------------------------------------------------
@dataclass(frozen=True)
class MaskOptConfig:
    """One mask optimization. ``target_sparsity``: fraction of edges to remove (Edge Pruning:
    required; UGS: None = the fixed penalty ``lamb`` per kept edge)."""

    kind: str = "edge-pruning"
    target_sparsity: float | None = 0.9
    lamb: float = 1e-3
    steps: int = 300
    lr: float = 0.1
    lambda_lr: float = 0.1
    warmup: float = 0.5  # fraction of the steps over which the target rises from 0
    samples: int = 1  # mask samples (patched runs) per step
    seed: int = 0
    init: torch.Tensor | None = field(default=None, repr=False)  # warm-start scores per edge
    checkpoint: str | None = None
    checkpoint_every: int = 50
    progress: bool = True

    def check(self) -> None:
        """Refuse bad values with one line each."""
        if self.kind not in KINDS:
            raise AcdcError(f"mask optimization kind {self.kind!r} is not one of {KINDS}")
        t = self.target_sparsity
        if t is None and self.kind == "edge-pruning":
            raise AcdcError("edge pruning needs a target_sparsity in [0, 1]")
        if t is not None and not 0.0 <= t <= 1.0:
            raise AcdcError(f"target_sparsity must be in [0, 1] (the fraction of edges "
                            f"removed), got {t}")
        if self.steps < 1:
            raise AcdcError(f"steps must be at least 1, got {self.steps}")
        for name in ("lr", "lambda_lr"):
            v = getattr(self, name)
            if not v > 0 or not math.isfinite(v):
                raise AcdcError(f"{name} must be a positive number, got {v}")
        if not self.lamb >= 0:
            raise AcdcError(f"lamb must be 0 or positive, got {self.lamb}")
        if not 0.0 <= self.warmup <= 1.0:
            raise AcdcError(f"warmup must be a fraction of the steps in [0, 1], got "
                            f"{self.warmup}")
        if self.samples < 1 or self.checkpoint_every < 1:
            raise AcdcError("samples and checkpoint_every must be at least 1, got "
                            f"{self.samples} and {self.checkpoint_every}")
        if self.checkpoint and (why := checkpoint_problem(self.checkpoint)) is not None:
            raise AcdcError(f"checkpoint={self.checkpoint!r} cannot be written: {why}")


@dataclass
class MaskOptResult:
    """What :func:`optimize_mask` learned: scores, the deterministic mask and its circuit."""

    scores: torch.Tensor  # [n_edges] float32: -log P(edge removed) (edge_scores)
    mask: torch.Tensor  # [n_edges] float32: the deterministic mask
    keep: torch.Tensor  # [n_edges] bool: mask > 0.5
    info: dict = field(default_factory=dict)


# ----- the optimization ---------------------------------------------------------------------
class MaskState:
    """What an optimization carries from step to step: the parameters (log-alpha or theta, one
    per edge), the two Lagrange multipliers, their Adam optimizers, the mask noise's generator
    and the step count."""

    def __init__(self, config: MaskOptConfig, n_edges: int, device):
        init = (warm_start_params(config.init) if config.init is not None
                else torch.full((n_edges,), INIT[config.kind]))
        if init.shape != (n_edges,):
            raise AcdcError(f"warm-start scores have {init.numel()} values, the graph has "
                            f"{n_edges} edges: scores of another graph")
        self.params = init.to(device, torch.float32).requires_grad_(True)
        self.lambdas = torch.zeros(2, device=device, requires_grad=True)
        self.opt = torch.optim.Adam([self.params], lr=config.lr)
        self.lambda_opt = torch.optim.Adam([self.lambdas], lr=config.lambda_lr)
        self.gen = torch.Generator().manual_seed(config.seed)
        self.step = 0

    def state_dict(self) -> dict:
        return {"params": self.params.detach().cpu().clone(),
                "lambdas": self.lambdas.detach().cpu().clone(),
                "opt": self.opt.state_dict(), "lambda_opt": self.lambda_opt.state_dict(),
                "gen": self.gen.get_state(), "step": self.step}

    def load(self, state: dict) -> None:
        with torch.no_grad():
            self.params.copy_(state["params"])
            self.lambdas.copy_(state["lambdas"])
        self.opt.load_state_dict(state["opt"])
        self.lambda_opt.load_state_dict(state["lambda_opt"])
        self.gen.set_state(state["gen"])
        self.step = int(state["step"])


def _settings(problem: Problem, config: MaskOptConfig) -> dict:
    """The fingerprint's settings: what changes the result besides model and data."""
    out = {"method": config.kind, "metric": problem.metric.name,
           "ablation": problem.ablation.kind, "n_edges": problem.graph.n_edges,
           "positions": list(problem.graph.positions or ())}
    for k in ("target_sparsity", "lamb", "steps", "lr", "lambda_lr", "warmup", "samples",
              "seed"):
        out[k] = getattr(config, k)
    if config.init is not None:
        out["init"] = hashlib.sha256(config.init.detach().float().cpu().numpy().tobytes()
                                     ).hexdigest()[:16]
    return out


def _save(path: Path, state: MaskState, fp: dict) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"version": CHECKPOINT_VERSION, "fingerprint": fp, **state.state_dict()},
                   tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        tmp.unlink(missing_ok=True)
        raise AcdcError(f"cannot write the mask-optimization checkpoint {path}: "
                        f"{getattr(e, 'strerror', None) or e}") from None


def _resume(path: Path, state: MaskState, fp: dict) -> None:
    """Load ``path`` into ``state`` when it exists; refuse a checkpoint of another run."""
    if not path.exists():
        return
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (a truncated or foreign file)
        raise AcdcError(f"cannot read the mask-optimization checkpoint {path}: {e}") from None
    if not isinstance(saved, dict) or saved.get("version") != CHECKPOINT_VERSION:
        raise AcdcError(f"{path} is not a mask-optimization checkpoint (version "
                        f"{CHECKPOINT_VERSION}); give another file")
    theirs = saved.get("fingerprint", {})
    differ = sorted(k for k in set(fp) | set(theirs) if fp.get(k) != theirs.get(k))
    if differ:
        raise AcdcError(f"checkpoint {path} is of another run ({', '.join(differ)} differ); "
                        "delete it or give another checkpoint file")
    state.load(saved)


def _expected_sparsity(kind: str, params: torch.Tensor) -> torch.Tensor:
    if kind == "edge-pruning":
        return hard_concrete_p_zero(params).mean()
    return 1 - torch.sigmoid(params).mean()


def _regulariser(config: MaskOptConfig, state: MaskState, step: int) -> tuple[torch.Tensor, float]:
    """The sparsity term and the expected sparsity now."""
    s = _expected_sparsity(config.kind, state.params)
    if config.target_sparsity is None:  # UGS with MIB's fixed penalty per kept edge
        return config.lamb * torch.sigmoid(state.params).sum(), float(s.detach())
    warm = max(1, round(config.warmup * config.steps))
    t = config.target_sparsity * min(1.0, (step + 1) / warm)
    d = s - t
    return state.lambdas[0] * d + state.lambdas[1] * d * d, float(s.detach())


def _sample(kind: str, params: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    return hard_concrete_sample(params, u) if kind == "edge-pruning" else ugs_sample(params, u)


def edge_scores(kind: str, params: torch.Tensor) -> torch.Tensor:
    """Per-edge scores: ``-log P(edge removed)`` (edge pruning: ``P(z = 0)``; UGS: ``1 - p``),
    i.e. ``softplus(log_alpha - beta log(-l/r))`` or ``softplus(theta)``. Positive and strictly
    increasing in the parameter, so ranking by ``|score|`` (top-n, ROC AUC) ranks by it, as a
    log-alpha's sign would not; and, unlike a probability in float32, no two kept edges tie at
    1 (a probability saturates once log-alpha passes about 17)."""
    shift = BETA * math.log(-LIMIT_LEFT / LIMIT_RIGHT) if kind == "edge-pruning" else 0.0
    return torch.nn.functional.softplus(params.double() - shift).float()


def final_mask(kind: str, params: torch.Tensor) -> torch.Tensor:
    """The deterministic per-edge mask of ``params``."""
    return hard_concrete_mask(params) if kind == "edge-pruning" else torch.sigmoid(params)


def train_step(problem: Problem, config: MaskOptConfig, state: MaskState) -> tuple[float, float]:
    """One optimizer step on batch ``state.step % n_batches`` (``config.samples`` patched
    forward+backward runs, then the Adam steps): (mean metric of the samples, expected
    sparsity). Call it inside ``problem.model.frozen()``."""
    g, model = problem.graph, problem.model
    i = state.step % len(problem.batches)
    batch, abl = problem.batches[i], problem.ablated(i)
    sign = 1.0 if not problem.metric.higher_is_better else -1.0
    state.opt.zero_grad(set_to_none=True)
    state.lambda_opt.zero_grad(set_to_none=True)
    value = 0.0
    for _ in range(config.samples):
        u = torch.rand(g.n_edges, generator=state.gen).to(state.params.device)
        z = _sample(config.kind, state.params, u)
        mask = g.to_dense(z.to(model.dtype), fill=1.0)
        m = problem.score(batch, mask, abl).float().mean()
        (sign * m / config.samples).backward()
        value += float(m.detach()) / config.samples
    reg, sparsity = _regulariser(config, state, state.step)
    if reg.requires_grad:
        reg.backward()
    if state.lambdas.grad is not None:
        state.lambdas.grad.neg_()  # the lambdas ascend
    # several ranks (distributed data parallel): every rank steps on the example-weighted mean
    average_gradients([state.params], problem.ranks, weight=len(batch))
    state.params.grad.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
    if config.kind == "ugs":
        torch.nn.utils.clip_grad_norm_([state.params], UGS_CLIP)
    state.opt.step()
    state.lambda_opt.step()
    state.step += 1
    return value, sparsity


def optimize_mask(problem: Problem, config: MaskOptConfig) -> MaskOptResult:
    """Learn a mask over ``problem.graph``'s edges (module docstring); the task loss is
    ``problem.metric`` (lower is better: itself; else its negative)."""
    config.check()
    if not problem.metric.differentiable:
        raise AcdcError(f"metric {problem.metric.name!r} is not differentiable, so it cannot "
                        "drive mask optimization; optimize e.g. 'kl_div' or 'logit_diff'")
    g = problem.graph
    state = MaskState(config, g.n_edges, problem.model.device)
    path = Path(config.checkpoint).expanduser() if config.checkpoint else None
    fp = fingerprint(problem, _settings(problem, config)) if path else {}
    if path is not None:
        _resume(path, state, fp)
    resumed_at = state.step
    writes = path is not None and problem.ranks.main  # rank 0 alone writes the checkpoint
    bar = progress_bar(range(state.step, config.steps), desc=config.kind,
                       enabled=config.progress, total=config.steps - state.step)
    value = sparsity = float("nan")
    try:
        with problem.model.frozen():
            for _ in bar:
                value, sparsity = train_step(problem, config, state)
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(sparsity=f"{sparsity:.3f}", metric=f"{value:.4g}",
                                    refresh=False)
                if writes and (state.step % config.checkpoint_every == 0
                               or state.step == config.steps):
                    _save(path, state, fp)
    finally:
        problem.context.resolved_workspace().release()
    params = state.params.detach().float().cpu()
    mask = final_mask(config.kind, params)
    keep = params > 0  # mask > 0.5, without float rounding at the boundary
    info = {"mask_opt_steps": config.steps, "mask_opt_resumed_at": resumed_at,
            "mask_opt_expected_sparsity": float(_expected_sparsity(config.kind, params)),
            "mask_opt_kept": int(keep.sum()), "mask_opt_last_metric": value,
            "mask_opt_lambda1": float(state.lambdas[0].detach()),
            "mask_opt_lambda2": float(state.lambdas[1].detach())}
    return MaskOptResult(edge_scores(config.kind, params), mask, keep, info)

