"""The :class:`Problem`: a model, a task's batches, a metric and an ablation, built once.

Every scorer (EAP, EAP-IG, exact patching, ACDC) and every evaluator (faithfulness, curves,
comparison) takes a Problem instead of the quartet ``(model, batches, metric, ablation)``::

    problem = Problem.build(model, data, metric, Ablation("corrupted"), batch_size=32)
    problem.evaluate([mask, None])        # mean metric under each mask (None = full model)
    problem.faithfulness(mask)            # Faithfulness(circuit, full, empty)

Built once, it caches what every consumer would otherwise recompute: the ablated writer
outputs of each batch (the corrupted run; computed on first use, ``cache=False`` recomputes
them per use to save memory on big models), the mean activations for mean ablation, and the
clean model's logits at the read positions when the metric needs them (KL divergence).
Every metric value goes through :meth:`Problem.score` (``problem.score(batch, mask, ablated)``):
the metric of a (patched) run's logits ``[batch, k, vocab]`` at the task's read positions (the
last one by default, :meth:`Problem.logits`).
:meth:`with_metric` shares those caches with a problem scored by another metric (ACDC's
pruning metric).

With ``positions`` (a :class:`~acdc_engine.positions.PositionSplit`), the problem's graph is
position-aware (every edge split by position group), masks are ``[n_writers, n_readers,
n_groups]`` and every run gets the batch's per-token group labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from .distributed import SINGLE, Ranks
from .errors import AcdcError
from .graph import Graph, Mask
from .metrics import Faithfulness, Metric
from .models import LoadedModel
from .patching import DEFAULT, LAST, NO_PATCH, Ablation, Context, PatchPlan, ReadOut, run
from .positions import PositionSplit
from .progress import progress_bar
from .tasks import Batch, TaskData

__all__ = ["Problem", "check_needs"]

_NEEDS = {  # what a metric may need -> (is it there?, what the task must give)
    "answer": (lambda d: d.has_answer, "an answer for every row"),
    "wrong": (lambda d: d.wrong is not None, "a wrong_answer for every row"),
    "answer_set": (lambda d: d.answer_set is not None, "an answer_set for every row"),
    "wrong_set": (lambda d: d.wrong_set is not None, "a wrong_set for every row"),
}


def check_needs(metric: Metric, data: TaskData) -> None:
    """Refuse a metric whose ``needs`` the task's data lacks, saying what to pick instead."""
    for need in metric.needs:
        if need in _NEEDS and not _NEEDS[need][0](data):
            alt = ("'set_prob_diff'" if data.answer_set is not None and data.wrong_set is not None
                   else "'nll' or 'kl_div'" if data.has_answer else "'kl_div'")
            raise AcdcError(
                f"metric {metric.name!r} needs {_NEEDS[need][1]}, and task {data.task!r} has "
                f"none; pick a metric such as {alt}")


@dataclass
class Problem:
    """What discovery works on. ``batches`` are on the model's device."""

    model: LoadedModel
    batches: list[Batch]
    metric: Metric
    ablation: Ablation
    cache: bool = True
    positions: PositionSplit | None = None
    context: Context = DEFAULT
    """How its runs compute (:class:`~acdc_engine.patching.Context`: the clean prefix, the fused
    kernels and the node fast path; tests and benchmarks switch them with
    :meth:`with_context`)."""
    ranks: Ranks = SINGLE
    """The data-parallel job this problem is a shard of (:meth:`shard`); its sums over
    examples (:meth:`evaluate`, every scorer's) are all-reduced over the ranks."""
    whole: list[Batch] | None = field(default=None, repr=False)
    """Every rank's batches, as one process would have them (None: :attr:`batches`); what
    must agree across ranks and numbers of ranks is computed from them (a checkpoint's data
    hash): :attr:`all_batches`."""
    _ablated: dict = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, model: LoadedModel, data: TaskData, metric: Metric,
              ablation: Ablation | str = "corrupted", batch_size: int = 32,
              cache: bool = True, positions: PositionSplit | str | None = None) -> Problem:
        """Batch ``data`` for ``model`` and fit the ablation (mean activations).
        ``positions``: split edges by position (:meth:`PositionSplit.parse`'s forms)."""
        if batch_size < 1:
            raise AcdcError(f"batch size must be at least 1, got {batch_size}")
        check_needs(metric, data)
        if isinstance(positions, str):
            positions = PositionSplit.parse(positions, data)
        elif positions is not None:
            positions.check(data)
        ablation = Ablation(ablation) if isinstance(ablation, str) else ablation
        batches = data.batches(batch_size, device=model.device)
        ablation.fit(model.adapter, batches)
        return cls(model, batches, metric, ablation, cache, positions).with_metric(metric)

    # ----- what it is ---------------------------------------------------------------------------
    @property
    def graph(self) -> Graph:
        """The model's graph, split by :attr:`positions` when the problem has them."""
        g = self.model.graph
        return g if self.positions is None else g.with_positions(self.positions.names)

    def labels(self, batch: Batch) -> torch.Tensor | None:
        """``batch``'s per-token position groups [B, P] (None without positions)."""
        return None if self.positions is None else self.positions.labels(batch)

    @property
    def n_examples(self) -> int:
        """This rank's examples (all of them in one process)."""
        return sum(len(b) for b in self.batches)

    @property
    def all_batches(self) -> list[Batch]:
        """Every rank's batches in the order one process has them (:attr:`batches` in one
        process)."""
        return self.batches if self.whole is None else self.whole

    def shard(self, ranks: Ranks) -> Problem:
        """This rank's part of the problem: examples ``ranks.shard(n)`` of the batches taken in
        order (contiguous; a batch cut at a shard's edge gives each side its rows). Ablation
        and metric are this problem's (a mean ablation fitted on every example); its sums are
        all-reduced over ``ranks``. One process: this problem."""
        if not ranks.active:
            return self
        lo, hi = ranks.shard(self.n_examples)
        mine, start = [], 0
        for b in self.batches:
            a, z = max(lo, start) - start, min(hi, start + len(b)) - start
            if a < z:
                mine.append(b if (a, z) == (0, len(b)) else b.select(list(range(a, z))))
            start += len(b)
        return replace(self, batches=mine, ranks=ranks, whole=self.all_batches, _ablated={})

    def __len__(self) -> int:
        return self.n_examples

    @property
    def n_outputs(self) -> int:
        """Entries of the model's output at a position: the vocabulary size (1 for a
        numerical readout such as tracr's frac_prevs)."""
        with torch.no_grad():
            return run(self.model.adapter, self.batches[0].clean[:1], NO_PATCH, LAST,
                       self.context).shape[-1]

    # ----- cached runs --------------------------------------------------------------------------
    def ablated(self, i: int) -> torch.Tensor | None:
        """Ablated writer outputs of batch ``i``: [n_writers, batch or 1, pos, d_model] (None
        for zero ablation)."""
        if i in self._ablated:
            return self._ablated[i]
        acts = self.ablation.activations(self.model.adapter, self.batches[i])
        if self.cache:
            self._ablated[i] = acts
        return acts

    def clear_cache(self) -> None:
        """Forget the ablated activations (they are recomputed on next use)."""
        self._ablated.clear()

    def with_metric(self, metric: Metric) -> Problem:
        """The same problem scored by ``metric``; batches carry the clean logits it needs.
        Caches are shared."""
        batches = self.batches
        if "clean_logits" in metric.needs and any(b.clean_logits is None for b in batches):
            batches = []
            with torch.no_grad():
                for b in self.batches:
                    c = replace(b)
                    if c.clean_logits is None:  # [b, k, vocab]
                        c.clean_logits = self.logits(b)
                    batches.append(c)
        out = replace(self, batches=batches, metric=metric)
        out._ablated = self._ablated
        return out

    def with_context(self, context: Context | None = None, **changes) -> Problem:
        """The same problem whose runs compute under ``context`` (or this one's with
        ``changes``: ``prefix=``, ``fuse=``, ``node_fastpath=``, ``workspace=``); caches and
        batches are shared."""
        out = replace(self, context=replace(context or self.context, **changes))
        out._ablated = self._ablated
        return out

    # ----- one (patched) run, read at the batch's read positions -------------------------------
    def logits(self, batch: Batch, mask: Mask | None = None, ablated: torch.Tensor | None = None,
               *, embed: torch.Tensor | None = None, grad_sink=None,
               ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B, k, vocab]`` at ``batch``'s read positions of a run of its clean prompts
        with the edges ``mask`` removes replaced by ``ablated`` (:func:`patching.run`'s
        plan). A position-aware mask ``[W, R, G]`` gets the batch's position groups; the run
        computes under :attr:`context`.
        ``embed`` replaces the embeddings, ``grad_sink`` collects reader gradients, ``ids``
        runs other prompts of the batch's shape (e.g. ``batch.corrupted``)."""
        labels = None if mask is None or mask.dim() == 2 else self.labels(batch)
        context = self.context if grad_sink is None else replace(self.context,
                                                                  grad_sink=grad_sink)
        return run(self.model.adapter, batch.clean if ids is None else ids,
                   PatchPlan(mask=mask, ablated=ablated, embed=embed, labels=labels),
                   ReadOut.of(batch), context)

    def score(self, batch: Batch, mask: Mask | None = None, ablated: torch.Tensor | None = None,
              *, embed: torch.Tensor | None = None, grad_sink=None,
              ids: torch.Tensor | None = None) -> torch.Tensor:
        """The metric ``[B]`` of :meth:`logits` (same arguments): every example's value under
        ``mask`` (None: the full model). Differentiable when the run is (a mask that requires
        grad, ``embed``); wrap it in ``torch.no_grad()`` otherwise."""
        return self.metric.score(self.logits(batch, mask, ablated, embed=embed,
                                             grad_sink=grad_sink, ids=ids), batch)

    # ----- evaluation -----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, masks: list[Mask | None], progress: bool = False,
                 desc: str = "evaluate") -> list[float]:
        """Mean metric over all examples for each mask (None = the full model); the ablated
        activations of a batch are shared by every mask. A shard's sums (and count) are
        added over its ranks."""
        model = self.model
        totals = [0.0] * len(masks)
        masks = [None if m is None else m.to(model.device, model.dtype) for m in masks]
        for i, batch in enumerate(progress_bar(self.batches, desc=desc,
                                               enabled=progress and len(masks) > 1)):
            abl = self.ablated(i)
            for j, mask in enumerate(masks):
                totals[j] += float(self.score(batch, mask, abl).sum())
        *totals, n = self.ranks.sum_floats([*totals, self.n_examples])
        return [t / n for t in totals]

    def empty_mask(self) -> Mask:
        """The empty circuit's mask (every edge removed) on :attr:`graph`."""
        return self.graph.full_mask(0.0)

    def faithfulness(self, mask: Mask, progress: bool = False) -> Faithfulness:
        """Faithfulness of the circuit ``mask`` (:attr:`Graph.dense_shape`, 1 = keep)."""
        circuit, full, empty = self.evaluate([mask, None, self.empty_mask()], progress,
                                             desc="faithfulness")
        return Faithfulness(circuit, full, empty)
