"""MIB (Mechanistic Interpretability Benchmark) circuit files, and CPR/CMD computed as MIB does.

The file format is EAP-IG's ``Graph.to_json`` / ``Graph.from_json``, which MIB's circuit track
reads (sources: github.com/hannamw/EAP-IG ``src/eap/graph.py``; the example submission
``circuits/ioi-eap-ig.json`` of the MIB circuit-track code, e.g. github.com/yanivnik/
MIB-shared-task)::

    {"cfg": {"n_layers": 12, "n_heads": 12, "parallel_attn_mlp": false, "d_model": 768},
     "nodes": {"input": {"in_graph": true}, "a0.h0": {"in_graph": false}, ..., "m0": ...,
               "logits": {"in_graph": true}},
     "edges": {"input->a0.h0<q>": {"score": -0.0003, "in_graph": false}, ...,
               "a0.h1->m0": {"score": 0.0077, "in_graph": true}, ...}}

Names: heads ``a{layer}.h{head}`` (the engine's ``a{layer}.{head}``), MLPs ``m{layer}``,
``input``, ``logits``; an edge into a head ends with ``<q>``, ``<k>`` or ``<v>``. MIB's graph
always has MLPs; an attention-only model (tracr) is written with the extra ``cfg`` key
``"attn_only": true`` and no ``m{layer}`` nodes, which this module reads back but MIB's own
reader cannot. Position-aware graphs have no MIB form.

A submission folder (one per task and model, both kinds of content) is
:mod:`acdc_engine.evaluation.mib_submission`'s.

MIB's evaluation (``evaluate_area_under_curve`` in ``MIB_circuit_track/evaluation.py``),
replicated by :func:`mib_curve`: for each fraction ``p`` of :data:`MIB_PERCENTAGES` keep the
top ``int(p * n_edges)`` edges by ``|score|`` (``apply_topn``; ``absolute=False`` ranks by the
signed score), prune edges off input-to-logits paths, evaluate; faithfulness
``f = (m(C) - m(empty)) / (m(full) - m(empty))``; then with ``x = p`` (the *requested*
fraction, not the fraction left after pruning), trapezoids between consecutive points::

    CPR = sum (x2 - x1) * (f1 + f2) / 2         CMD = sum (x2 - x1) * (|1 - f1| + |1 - f2|) / 2

(``log_scale``: ``x = log p``, as MIB's leaderboard evaluation calls it.)

How that differs from the engine's own curve (:mod:`~acdc_engine.evaluation.curves`):
docs/metrics.md.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..circuit import prune_dead, select
from ..errors import AcdcError
from ..graph import Graph, Keep, Scores

__all__ = ["MIB_PERCENTAGES", "mib_node", "engine_node", "mib_edge", "engine_edge", "to_mib",
           "write_mib", "MibFile", "read_mib", "mib_counts", "mib_areas", "MibCurve",
           "mib_curve", "mib_circuits_curve"]

MIB_PERCENTAGES: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1)
"""The edge fractions MIB evaluates at (``percentages`` in its evaluation code)."""

_ENGINE_HEAD = re.compile(r"^a(\d+)\.(\d+)$")
_MIB_HEAD = re.compile(r"^a(\d+)\.h(\d+)$")
_EDGE = re.compile(r"^(?P<src>[^-<>]+)->(?P<dst>[^<>]+)(?P<kind><[qkv]>)?$")


def mib_node(name: str) -> str:
    """The MIB name of an engine node: ``a0.1`` -> ``a0.h1``; others are spelled the same."""
    m = _ENGINE_HEAD.match(name)
    return f"a{m[1]}.h{m[2]}" if m else name


def engine_node(name: str) -> str:
    """The engine name of a MIB node: ``a0.h1`` -> ``a0.1``."""
    m = _MIB_HEAD.match(name)
    return f"a{m[1]}.{m[2]}" if m else name


def _convert_edge(name: str, node) -> str:
    m = _EDGE.match(name.strip())
    if m is None:
        raise AcdcError(f"not an edge name: {name!r} (edges look like 'a0.h1->m0' or "
                        "'input->a1.h0<q>')")
    return f"{node(m['src'])}->{node(m['dst'])}{m['kind'] or ''}"


def mib_edge(name: str) -> str:
    """``a0.1->a2.3<q>`` -> ``a0.h1->a2.h3<q>``."""
    return _convert_edge(name, mib_node)


def engine_edge(name: str) -> str:
    """``a0.h1->a2.h3<q>`` -> ``a0.1->a2.3<q>``."""
    return _convert_edge(name, engine_node)


def _check_graph(graph: Graph) -> None:
    if graph.positions:
        raise AcdcError("MIB circuit files have no token positions; export the circuit "
                        "unsplit (Circuit.unsplit()) or discover without --positions")


def _float(v: float) -> float:
    return float(v)  # NaN stays NaN: Python's json (MIB's reader) reads it back


def to_mib(graph: Graph, scores: Scores, keep: Keep | None = None,
           d_model: int | None = None) -> dict:
    """The MIB/EAP-IG JSON of ``scores`` (one per edge) and the circuit ``keep`` (default:
    no edge in the graph). A node is in the graph when a kept edge touches it; ``logits``
    always is (as in EAP-IG)."""
    _check_graph(graph)
    if scores.shape != (graph.n_edges,):
        raise AcdcError(f"expected {graph.n_edges} scores, got {tuple(scores.shape)}")
    keep = torch.zeros(graph.n_edges, dtype=torch.bool) if keep is None else keep.bool().cpu()
    s = scores.detach().float().cpu().tolist()
    touched = {n for i in keep.nonzero()[:, 0].tolist()
               for n in (graph.edges[i].src.name, graph.edges[i].dst.name)}
    cfg = {"n_layers": graph.n_layers, "n_heads": graph.n_heads,
           "parallel_attn_mlp": graph.parallel, "d_model": d_model}
    if graph.attn_only:
        cfg["attn_only"] = True
    nodes = {mib_node(n.name): {"in_graph": n.name in touched or n.name == "logits"}
             for n in graph.nodes}
    edges = {mib_edge(e.name): {"score": _float(s[i]), "in_graph": bool(keep[i])}
             for i, e in enumerate(graph.edges)}
    return {"cfg": cfg, "nodes": nodes, "edges": edges}


def write_mib(path: str | Path, graph: Graph, scores: Scores, keep: Keep | None = None,
              d_model: int | None = None) -> Path:
    """Write :func:`to_mib` to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_mib(graph, scores, keep, d_model)))
    return path


@dataclass
class MibFile:
    """A MIB circuit file read onto the engine's graph: ``scores`` per edge (NaN where the
    file has none), ``keep`` its ``in_graph`` flags, ``cfg`` its config."""

    graph: Graph
    scores: Scores
    keep: Keep
    cfg: dict
    source: str = ""

    @property
    def has_scores(self) -> bool:
        return bool(torch.isfinite(self.scores).any())


def _graph_of_cfg(cfg: dict, where: str) -> Graph:
    try:
        return Graph(int(cfg["n_layers"]), int(cfg["n_heads"]),
                     parallel=bool(cfg.get("parallel_attn_mlp", False)),
                     attn_only=bool(cfg.get("attn_only", False)))
    except (KeyError, TypeError, ValueError) as e:
        raise AcdcError(f"{where}: its cfg needs n_layers and n_heads ({e})") from None


def read_mib(path: str | Path, graph: Graph | None = None) -> MibFile:
    """Read a MIB/EAP-IG circuit JSON onto ``graph`` (default: the graph its ``cfg``
    describes). Every edge of the file must be an edge of the graph."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise AcdcError(f"cannot read MIB circuit {path}: {e}") from None
    if not (isinstance(data, dict) and isinstance(data.get("cfg"), dict)
            and isinstance(data.get("edges"), dict)):
        raise AcdcError(f"{path} is not a MIB circuit file (expected a JSON object with "
                        "'cfg', 'nodes' and 'edges', as EAP-IG's Graph.to_json writes)")
    g = graph or _graph_of_cfg(data["cfg"], str(path))
    _check_graph(g)
    scores = torch.full((g.n_edges,), float("nan"))
    keep = torch.zeros(g.n_edges, dtype=torch.bool)
    unknown = []
    for name, info in data["edges"].items():
        i = g.edge_index.get(engine_edge(name))
        if i is None:
            unknown.append(name)
            continue
        if not isinstance(info, dict):
            raise AcdcError(f"{path}: edge {name!r} must map to {{'score', 'in_graph'}}")
        v = info.get("score")
        scores[i] = float("nan") if v is None else float(v)
        keep[i] = bool(info.get("in_graph", False))
    if unknown:
        raise AcdcError(f"{path} names {len(unknown)} edge(s) a graph of {g.n_layers} layers "
                        f"x {g.n_heads} heads does not have: {unknown[:5]}")
    return MibFile(g, scores, keep, dict(data["cfg"]), str(path))


# ----- MIB's CPR and CMD -----------------------------------------------------------------------
def mib_counts(n_edges: int, percentages=MIB_PERCENTAGES) -> list[int]:
    """Edges requested at each fraction: ``int(p * n_edges)`` (floor, as MIB)."""
    return [int(p * n_edges) for p in percentages]


def mib_areas(percentages, faithfulness, log_scale: bool = False) -> tuple[float, float]:
    """``(CPR, CMD)``: MIB's trapezoids over consecutive points, in the order given, with
    ``x`` the requested fractions (their logarithm with ``log_scale``)."""
    if len(percentages) != len(faithfulness):
        raise ValueError("one faithfulness per percentage")
    xs = [math.log(p) if log_scale else float(p) for p in percentages]
    under = from_1 = 0.0
    for i in range(len(xs) - 1):
        dx = xs[i + 1] - xs[i]
        f1, f2 = faithfulness[i], faithfulness[i + 1]
        from_1 += dx * ((abs(1.0 - f1) + abs(1.0 - f2)) / 2)
        under += dx * ((f1 + f2) / 2)
    return under, from_1


@dataclass(frozen=True)
class MibCurve:
    """MIB's faithfulness curve: per requested fraction, the requested and kept (after
    pruning) edge counts and the mean metric; ``full``/``empty`` normalise it."""

    percentages: tuple[float, ...]
    requested: tuple[int, ...]
    kept: tuple[int, ...]
    values: tuple[float, ...]
    full: float
    empty: float
    n_edges_total: int
    absolute: bool = True
    log_scale: bool = False

    @property
    def faithfulness(self) -> list[float]:
        d = self.full - self.empty
        return [float("nan") if d == 0 else (v - self.empty) / d for v in self.values]

    @property
    def cpr(self) -> float:
        """MIB's area under the faithfulness curve (``area_under``)."""
        return mib_areas(self.percentages, self.faithfulness, self.log_scale)[0]

    @property
    def cmd(self) -> float:
        """MIB's area between the curve and 1 (``area_from_1``)."""
        return mib_areas(self.percentages, self.faithfulness, self.log_scale)[1]

    def as_dict(self) -> dict:
        return {**asdict(self), "faithfulness": self.faithfulness, "cpr": self.cpr,
                "cmd": self.cmd}

    def table(self) -> str:
        lines = [f"{'edges %':>8} {'requested':>9} {'kept':>6} {'metric':>11} "
                 f"{'faithfulness':>12}"]
        for p, r, k, v, f in zip(self.percentages, self.requested, self.kept, self.values,
                                 self.faithfulness):
            lines.append(f"{100 * p:>8g} {r:>9d} {k:>6d} {v:>11.4g} {f:>12.3f}")
        lines.append(f"MIB CPR {self.cpr:.4f} (higher is better)  MIB CMD {self.cmd:.4f} "
                     "(lower is better)")
        return "\n".join(lines)


def mib_curve(problem, scores: Scores, percentages=MIB_PERCENTAGES, absolute: bool = True,
              extra: list | None = None, progress: bool = False,
              log_scale: bool = False) -> tuple[MibCurve, list]:
    """MIB's curve of ``scores`` on ``problem`` (one pass over the data; equal circuits are
    evaluated once). ``extra`` dense masks are evaluated in the same pass; their mean metrics
    are returned second."""
    g = problem.graph
    _check_graph(g)
    if scores.shape != (g.n_edges,):
        raise AcdcError(f"expected {g.n_edges} scores, got {tuple(scores.shape)}")
    keeps = {}
    for n in mib_counts(g.n_edges, percentages):
        if n not in keeps:
            keeps[n] = prune_dead(g, select(g, scores, n_edges=n, absolute=absolute))
    return _curve(problem, percentages, keeps, (absolute, log_scale), extra, progress)


def mib_circuits_curve(problem, circuits: dict, extra: list | None = None,
                       progress: bool = False, log_scale: bool = False) -> tuple[MibCurve, list]:
    """MIB's curve of given circuits: ``circuits`` maps a fraction ``p`` to the circuit (a
    Keep) submitted for it (at most ``int(p * n_edges)`` edges); the 100 % point is the full
    model (every edge, pruned as :func:`mib_curve` prunes it), so a submission of
    :func:`mib_curve`'s own circuits gives its numbers exactly."""
    g = problem.graph
    _check_graph(g)
    ps = sorted(float(p) for p in circuits)
    if not ps or ps[0] <= 0 or ps[-1] >= 1:
        raise AcdcError(f"circuit fractions must lie strictly between 0 and 1, got {ps}")
    keeps = {}
    for p in ps:
        n, keep = int(p * g.n_edges), circuits[p].bool().cpu()
        if int(keep.sum()) > n:
            raise AcdcError(f"the circuit for {100 * p:g}% of edges keeps {int(keep.sum())} "
                            f"edges; MIB allows at most {n} of {g.n_edges}")
        keeps.setdefault(n, keep)
    full = torch.ones(g.n_edges, dtype=torch.bool)
    keeps.setdefault(g.n_edges, prune_dead(g, select(g, full.float(), n_edges=g.n_edges)))
    return _curve(problem, (*ps, 1), keeps, (True, log_scale), extra, progress)


def _curve(problem, percentages, keeps: dict, flags, extra, progress) -> tuple[MibCurve, list]:
    """Evaluate ``keeps`` (requested edge count -> circuit, in order), ``extra`` masks, the
    full model and the empty circuit in one pass: the curve over ``percentages``."""
    g = problem.graph
    requested = mib_counts(g.n_edges, percentages)
    slot = {n: i for i, n in enumerate(keeps)}
    masks = [g.mask_from_edges(k) for k in keeps.values()]
    extra = list(extra or [])
    k = len(masks)
    values = problem.evaluate([*masks, *extra, None, problem.empty_mask()], progress=progress,
                              desc="MIB curve")
    curve = MibCurve(tuple(float(p) for p in percentages), tuple(requested),
                     tuple(int(keeps[n].sum()) for n in requested),
                     tuple(values[slot[n]] for n in requested), values[-2], values[-1],
                     g.n_edges, *flags)
    return curve, values[k:k + len(extra)]
