"""The memory model's fit: measured peaks in, :data:`~acdc_engine.planning.costs.MEMORY`'s
coefficients out, with the error of the model on every measured point.

    python -m acdc_engine.planning.calibration          # refit measured.json, print the table

``measured.json`` (beside this module) holds the points (:mod:`.measure`'s output, each with the
config of the model it ran, so a point's shape is rebuilt without its weights) and how they
were measured. EAP's two coefficients (per writer and reader, per layer) are fitted by
non-negative least squares on relative error; every other method is EAP's shape times one
fitted factor (its points are fewer); the methods of ``UNMODELLED`` are not fitted.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from .costs import MEMORY, UNMODELLED, Costs, memory_bytes
from .shape import ModelShape, model_shape

__all__ = ["MEASURED", "load_points", "shapes_of", "predicted_mb", "fit"]

MEASURED = Path(__file__).with_name("measured.json")
"""The measured points and their provenance."""


def load_points(path: Path = MEASURED) -> dict:
    """``{"provenance": ..., "configs": {name: config dict}, "points": [...]}``."""
    return json.loads(Path(path).read_text())


def shapes_of(configs: dict) -> dict[str, ModelShape]:
    """Each config's :class:`ModelShape`, built from the config alone (written to a temporary
    directory, read back by :func:`model_shape`)."""
    from transformers import AutoConfig

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in configs.items():
            cfg = dict(cfg)
            AutoConfig.for_model(cfg.pop("model_type"), **cfg).save_pretrained(f"{tmp}/{name}")
            out[name] = model_shape(f"{tmp}/{name}")
    return out


def _costs(point: dict, shape: ModelShape) -> Costs:
    return Costs(shape=shape, method=point["method"], examples=point["examples"],
                 seq_len=point["pos"], batch=point["batch"], nbytes=4, settings={})


def predicted_mb(point: dict, shape: ModelShape, memory: dict | None = None) -> float:
    """The model's peak (MiB, weights included) for a measured ``point``, with ``memory``'s
    coefficients (default: the shipped ones)."""
    coefficients = {**MEMORY, **(memory or {})}
    return sum(memory_bytes(_costs(point, shape), coefficients=coefficients).values()) / 2**20


def fit(points: list[dict], shapes: dict[str, ModelShape]) -> dict:
    """Refit MEMORY's coefficients to ``points`` (module docstring)."""
    import numpy as np
    from scipy.optimize import nnls

    def rest(p):  # what the fit explains: the measured peak less the terms that are sizes
        m = memory_bytes(_costs(p, shapes[p["model"]]))
        return p["peak_mb"] * 2**20 - m["weights"] - m["cache"] - m["logits"] - m["masks"]

    def feats(p):
        s = shapes[p["model"]]
        tok = p["batch"] * p["pos"] * s.d_model * 4
        return [(s.n_writers + s.n_readers) * tok, s.graph.n_layers * tok]

    eap = [p for p in points if p["method"] == "eap"]
    A, y = np.array([feats(p) for p in eap]), np.array([rest(p) for p in eap])
    (a, c), _ = nnls(A / y[:, None], np.ones(len(y)))
    out = {}
    for method in MEMORY:
        mine = [p for p in points if p["method"] == method]
        if not mine or method in UNMODELLED:
            continue
        base = np.array([a * f[0] + c * f[1] for f in map(feats, mine)])
        r = np.array([rest(p) for p in mine])
        k = float((base / r) @ np.ones(len(r)) / ((base / r) @ (base / r)))
        out[method] = (round(float(k * a), 3), round(float(k * c), 2), MEMORY[method][2])
    return out


def main() -> None:
    """Refit and print every point's measured and predicted peak."""
    data = load_points()
    shapes = shapes_of(data["configs"])
    new = fit(data["points"], shapes)
    print("MEMORY coefficients (per writer and reader, per layer, masks):")
    for k, v in new.items():
        print(f"  {k!r}: {v},")
    print(f"{'model':8s} {'method':20s} {'N':>4s} {'b x p':>8s} {'measured':>9s} "
          f"{'predicted':>9s} {'error':>6s}")
    for p in data["points"]:
        pred = predicted_mb(p, shapes[p["model"]], new)
        print(f"{p['model']:8s} {p['method']:20s} {p['examples']:4d} "
              f"{p['batch']:>3d} x {p['pos']:<3d} {p['peak_mb']:9.1f} {pred:9.1f} "
              f"{100 * (pred - p['peak_mb']) / p['peak_mb']:+5.0f}%")


if __name__ == "__main__":
    main()
