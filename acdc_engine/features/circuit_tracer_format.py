"""circuit-tracer's transcoder files (0.5.0), read and written.

circuit-tracer keeps transcoders in a folder holding ``config.yaml`` and safetensors files, the
layout of its local cache (``circuit_tracer.utils.caching``: ``load_transcoders_from_cache``)
and of the Hugging Face repos it loads:

* ``config.yaml``: ``model_kind`` (``transcoder_set`` | ``cross_layer_transcoder``),
  ``feature_input_hook`` and ``feature_output_hook`` (hook names inside a block; the engine's
  transcoders read what the MLP receives and predict what it returns: ``mlp.hook_in`` /
  ``mlp.hook_out``, or TransformerLens' ``ln2.hook_normalized`` / ``hook_mlp_out``),
  ``model_name``, ``scan``; optionally ``transcoders``, a list of per-layer file paths
  (relative to the folder, absolute, or ``hf://owner/repo/file`` in the local cache).
* per-layer transcoders (``transcoder_set``): ``layer_{i}.safetensors`` with ``W_enc`` [n, d]
  (circuit-tracer computes ``x @ W_enc.T + b_enc``), ``W_dec`` [n, d], ``b_enc`` [n],
  ``b_dec`` [d] and, for JumpReLU, ``activation_function.threshold`` [n]; no key: ReLU.
* cross-layer transcoders (``cross_layer_transcoder``): ``W_enc_{i}.safetensors`` with
  ``W_enc_{i}`` [n, d], ``b_enc_{i}`` [n], ``b_dec_{i}`` [d] and, for JumpReLU,
  ``threshold_{i}`` [n]; ``W_dec_{i}.safetensors`` with ``W_dec_{i}`` [n, L - i, d].

The engine's ``W_enc`` is the transpose ([d, n]); everything else maps one to one, and a round
trip is bit for bit. circuit-tracer's files have no TopK: a topk dictionary is written with the
extra keys ``acdc_activation: topk`` and ``acdc_k`` in ``config.yaml``, which this module reads
back but circuit-tracer ignores (it would compute ReLU). A skip connection (``W_skip``), which
the engine's transcoders do not compute, is refused, as are missing layers, tensors of the
wrong name, shape or kind, and hooks other than the MLP's input and output: one line naming the
file and the mismatch.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import AcdcError
from .dictionary import CrossLayerTranscoder, Transcoder, Transcoders, TranscoderSet
from .formats import _finish, read_safetensors, resolve_source

__all__ = ["CONFIG", "IN_HOOKS", "OUT_HOOKS", "save_circuit_tracer", "load_circuit_tracer",
           "is_circuit_tracer_folder"]

CONFIG = "config.yaml"
"""The config file of a circuit-tracer transcoder folder."""

IN_HOOKS = ("mlp.hook_in", "ln2.hook_normalized")
"""``feature_input_hook`` values that mean what the engine's transcoders read (the MLP's input,
after its norm); the first is written."""

OUT_HOOKS = ("mlp.hook_out", "hook_mlp_out")
"""``feature_output_hook`` values that mean the MLP's output; the first is written."""

_KINDS = {"transcoder_set": TranscoderSet, "cross_layer_transcoder": CrossLayerTranscoder}


def is_circuit_tracer_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a circuit-tracer ``config.yaml``."""
    return (Path(path) / CONFIG).is_file()


def _tensor(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().cpu()


def save_circuit_tracer(transcoders: Transcoders, folder: str | Path,
                        scan: str | None = None) -> Path:
    """Write a :class:`~.dictionary.TranscoderSet` or :class:`~.dictionary.CrossLayerTranscoder`
    as a circuit-tracer folder (see the module docstring); returns the folder. ``scan`` names
    the transcoders for circuit-tracer's feature pages (default: the folder's name). A set whose
    layers mix activations is refused (circuit-tracer's config has one)."""
    import yaml
    from safetensors.torch import save_file

    folder = Path(folder)
    if isinstance(transcoders, TranscoderSet):
        kind, layers = "transcoder_set", list(transcoders.layers)
        acts = {(t.activation, t.k) for t in layers}
        if len(acts) != 1:
            raise AcdcError(f"circuit-tracer folder '{folder}': the transcoder set mixes "
                            f"activations {sorted(map(str, acts))}; circuit-tracer has one")
        activation, k = acts.pop()
    elif isinstance(transcoders, CrossLayerTranscoder):
        kind, activation, k = "cross_layer_transcoder", transcoders.activation, transcoders.k
    else:
        raise AcdcError(f"circuit-tracer folder '{folder}': a {type(transcoders).__name__} is "
                        "not a transcoder set or a cross-layer transcoder")
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "transcoder_set":
        for i, t in enumerate(layers):
            tensors = {"W_enc": _tensor(t.W_enc.T), "W_dec": _tensor(t.W_dec),
                       "b_enc": _tensor(t.b_enc), "b_dec": _tensor(t.b_dec)}
            if t.activation == "jumprelu":
                tensors["activation_function.threshold"] = _tensor(t.threshold)
            save_file(tensors, str(folder / f"layer_{i}.safetensors"))
    else:
        c = transcoders
        for i in range(c.n_layers):
            enc = {f"W_enc_{i}": _tensor(c.W_enc[i].T), f"b_enc_{i}": _tensor(c.b_enc[i]),
                   f"b_dec_{i}": _tensor(c.b_dec_all[i])}
            if c.activation == "jumprelu":
                enc[f"threshold_{i}"] = _tensor(c.threshold[i])
            save_file(enc, str(folder / f"W_enc_{i}.safetensors"))
            save_file({f"W_dec_{i}": _tensor(c.W_dec[i])}, str(folder / f"W_dec_{i}.safetensors"))
    config = {"model_kind": kind, "model_name": transcoders.model,
              "feature_input_hook": IN_HOOKS[0], "feature_output_hook": OUT_HOOKS[0],
              "scan": scan or folder.name}
    if activation == "topk":
        config.update(acdc_activation="topk", acdc_k=int(k))
    (folder / CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


# ----- reading ---------------------------------------------------------------------------------
def _read_config(folder: Path) -> dict:
    import yaml

    path = folder / CONFIG
    if folder.is_file():
        raise AcdcError(f"'{folder}' is a file; a circuit-tracer transcoder folder holds "
                        f"{CONFIG} and the safetensors files")
    if not path.is_file():
        raise AcdcError(f"circuit-tracer folder '{folder}' has no {CONFIG}" if folder.is_dir()
                        else f"circuit-tracer folder '{folder}' does not exist")
    try:
        config = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise AcdcError(f"circuit-tracer config '{path}' is not readable YAML ({first})") from None
    if not isinstance(config, dict):
        raise AcdcError(f"circuit-tracer config '{path}' is not a mapping")
    if config.get("model_kind") not in _KINDS:
        raise AcdcError(f"circuit-tracer config '{path}': model_kind "
                        f"{config.get('model_kind')!r} is not one of {', '.join(_KINDS)}")
    for key, allowed in (("feature_input_hook", IN_HOOKS), ("feature_output_hook", OUT_HOOKS)):
        if config.get(key) not in allowed:
            raise AcdcError(f"circuit-tracer config '{path}': {key} {config.get(key)!r} is not "
                            f"one the engine's transcoders use ({', '.join(allowed)})")
    return config


def _layer_files(folder: Path, config: dict, stem: str) -> list[Path]:
    """The per-layer files ``stem{i}.safetensors`` 0..L-1 (or the config's ``transcoders``)."""
    listed = config.get("transcoders")
    if listed:
        return [_resolve_listed(folder, str(p)) for p in listed]
    found = {p.stem[len(stem):]: p for p in folder.glob(f"{stem}*.safetensors")}
    n = len(found)
    want = [str(i) for i in range(n)]
    if n == 0 or sorted(found) != sorted(want):
        raise AcdcError(f"circuit-tracer folder '{folder}' needs {stem}0..{stem}{max(n - 1, 0)}"
                        f".safetensors in order; found {sorted(p.name for p in found.values())}")
    return [found[i] for i in want]


def _resolve_listed(folder: Path, entry: str) -> Path:
    """A path listed in ``config.yaml``: relative to the folder, absolute, or an ``hf://``
    URI already in the local Hugging Face cache (offline)."""
    if not entry.startswith("hf://"):
        path = Path(entry) if Path(entry).is_absolute() else folder / entry
        if not path.is_file():
            raise AcdcError(f"circuit-tracer config '{folder / CONFIG}' lists '{entry}', which "
                            "does not exist")
        return path
    from huggingface_hub import hf_hub_download

    repo_and_file = entry[len("hf://"):].split("?")[0].split("/")
    repo, file = "/".join(repo_and_file[:2]), "/".join(repo_and_file[2:])
    try:
        return Path(hf_hub_download(repo, file, local_files_only=True))
    except Exception as e:  # noqa: BLE001 - any hub failure means: not in the cache
        raise AcdcError(f"circuit-tracer config '{folder / CONFIG}' lists '{entry}', which is "
                        f"not in the local Hugging Face cache ({type(e).__name__})") from None


def _check(tensors: dict, want: dict, path: Path) -> None:
    """Refuse (one line naming ``path``) missing, extra, non-float or misshapen tensors."""
    if "W_skip" in tensors or any(k.startswith("W_skip") for k in tensors):
        raise AcdcError(f"circuit-tracer file '{path}' has a skip connection (W_skip), which "
                        "the engine's transcoders do not compute")
    missing, extra = sorted(set(want) - set(tensors)), sorted(set(tensors) - set(want))
    if missing or extra:
        said = [x for x in (missing and f"missing {', '.join(missing)}",
                            extra and f"unexpected {', '.join(extra)}") if x]
        raise AcdcError(f"circuit-tracer file '{path}': {'; '.join(said)}")
    for k, shape in want.items():
        if not tensors[k].is_floating_point():
            raise AcdcError(f"circuit-tracer file '{path}': {k} holds {tensors[k].dtype}, "
                            "not floats")
        if tuple(tensors[k].shape) != tuple(shape):
            raise AcdcError(f"circuit-tracer file '{path}': {k} is {list(tensors[k].shape)}, "
                            f"expected {list(shape)}")


def _activation(config: dict, thresholds: bool, n: int, path: Path) -> tuple[str, int | None]:
    if config.get("acdc_activation") == "topk":
        k = config.get("acdc_k")
        if thresholds or not isinstance(k, int) or not 0 < k <= n:
            raise AcdcError(f"circuit-tracer config '{path}': acdc_k {k!r} is not in 1..{n} or "
                            "a topk dictionary has thresholds")
        return "topk", k
    if config.get("acdc_activation") not in (None, "relu", "jumprelu"):
        raise AcdcError(f"circuit-tracer config '{path}': acdc_activation "
                        f"{config['acdc_activation']!r} is not relu, jumprelu or topk")
    return ("jumprelu" if thresholds else "relu"), None


def _load_set(folder: Path, config: dict) -> TranscoderSet:
    layers = []
    for i, path in enumerate(_layer_files(folder, config, "layer_")):
        tensors, _ = read_safetensors(path, "circuit-tracer transcoder")
        b_enc, b_dec = tensors.get("b_enc"), tensors.get("b_dec")
        if b_enc is None or b_dec is None or b_enc.dim() != 1 or b_dec.dim() != 1:
            raise AcdcError(f"circuit-tracer file '{path}': b_enc and b_dec must be vectors "
                            f"(keys: {', '.join(sorted(tensors))})")
        n, d = b_enc.shape[0], b_dec.shape[0]
        thr = "activation_function.threshold" in tensors
        want = {"W_enc": (n, d), "W_dec": (n, d), "b_enc": (n,), "b_dec": (d,)}
        if thr:
            want["activation_function.threshold"] = (n,)
        _check(tensors, want, path)
        if layers and d != layers[0].d_in:
            raise AcdcError(f"circuit-tracer file '{path}': d_model {d}, but layer 0 has "
                            f"{layers[0].d_in}")
        activation, k = _activation(config, thr, n, folder / CONFIG)
        t = Transcoder(d, n, layer=i, activation=activation, k=k, model=config.get("model_name"))
        state = {"W_enc": tensors["W_enc"].T, "W_dec": tensors["W_dec"],
                 "b_enc": tensors["b_enc"], "b_dec": tensors["b_dec"]}
        if thr:
            state["threshold"] = tensors["activation_function.threshold"]
        t.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
        layers.append(_finish(t, path))
    return TranscoderSet(layers)


def _load_clt(folder: Path, config: dict) -> CrossLayerTranscoder:
    encs = _layer_files(folder, config, "W_enc_")
    decs = _layer_files(folder, config, "W_dec_")
    n_layers = len(encs)
    if len(decs) != n_layers:
        raise AcdcError(f"circuit-tracer folder '{folder}' has {n_layers} W_enc files but "
                        f"{len(decs)} W_dec files")
    parts, shape = [], None
    for i, (enc_path, dec_path) in enumerate(zip(encs, decs)):
        enc, _ = read_safetensors(enc_path, "circuit-tracer encoder")
        w = enc.get(f"W_enc_{i}")
        if w is None or w.dim() != 2:
            raise AcdcError(f"circuit-tracer file '{enc_path}' has no matrix W_enc_{i} "
                            f"(keys: {', '.join(sorted(enc))})")
        shape = shape or tuple(w.shape)
        n, d = shape
        thr = f"threshold_{i}" in enc
        want = {f"W_enc_{i}": (n, d), f"b_enc_{i}": (n,), f"b_dec_{i}": (d,)}
        if thr:
            want[f"threshold_{i}"] = (n,)
        _check(enc, want, enc_path)
        dec, _ = read_safetensors(dec_path, "circuit-tracer decoder")
        _check(dec, {f"W_dec_{i}": (n, n_layers - i, d)}, dec_path)
        parts.append((enc, dec[f"W_dec_{i}"], thr))
    thresholds = {thr for _, _, thr in parts}
    if len(thresholds) != 1:
        raise AcdcError(f"circuit-tracer folder '{folder}': some layers have thresholds and "
                        "some do not")
    activation, k = _activation(config, thresholds.pop(), shape[0], folder / CONFIG)
    clt = CrossLayerTranscoder(n_layers, shape[1], shape[0], activation=activation, k=k,
                               model=config.get("model_name"))
    state = {"W_enc": torch.stack([e[f"W_enc_{i}"].T for i, (e, _, _) in enumerate(parts)]),
             "b_enc": torch.stack([e[f"b_enc_{i}"] for i, (e, _, _) in enumerate(parts)]),
             "b_dec_all": torch.stack([e[f"b_dec_{i}"] for i, (e, _, _) in enumerate(parts)])}
    state.update({f"W_dec.{i}": w for i, (_, w, _) in enumerate(parts)})
    if activation == "jumprelu":
        state["threshold"] = torch.stack([e[f"threshold_{i}"] for i, (e, _, _) in
                                          enumerate(parts)])
    clt.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    return _finish(clt, folder)


def load_circuit_tracer(source: str | Path) -> TranscoderSet | CrossLayerTranscoder:
    """Transcoders from a circuit-tracer folder (see the module docstring), by local path or a
    Hugging Face id ``owner/name[/sub/folder]`` already in the local cache (offline); its
    ``source`` is the folder. A bad folder or file is refused with one line naming it and the
    mismatch."""
    folder = resolve_source(source)
    config = _read_config(folder)
    if config["model_kind"] == "transcoder_set":
        return _finish(_load_set(folder, config), folder)
    return _load_clt(folder, config)
