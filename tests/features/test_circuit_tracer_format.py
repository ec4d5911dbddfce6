"""circuit-tracer's transcoder files: per-layer and cross-layer transcoders round-trip bit for
bit, load by local path and by a Hugging Face id in an offline cache, bad files are refused
with one line naming the file; and (slow, needs /work/ct-venv) circuit-tracer 0.5.0 itself
loads a folder we wrote and computes the same features and reconstructions, and the files its
own writer (``to_safetensors``) makes load here bit for bit."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from acdc_engine.errors import AcdcError
from acdc_engine.features.circuit_tracer_format import load_circuit_tracer, save_circuit_tracer
from acdc_engine.features.dictionary import CrossLayerTranscoder, Transcoder, TranscoderSet

CT_PYTHON = Path("/work/ct-venv/bin/python")
L, D, N = 3, 8, 16


def _randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return module


def make_set(activation="relu", k=None, seed=0) -> TranscoderSet:
    """A random per-layer transcoder set for model 'toy'."""
    return _randomize(TranscoderSet([Transcoder(D, N, layer=i, activation=activation, k=k,
                                                model="toy") for i in range(L)]), seed)


def make_clt(activation="relu", k=None, seed=0) -> CrossLayerTranscoder:
    """A random cross-layer transcoder for model 'toy'."""
    return _randomize(CrossLayerTranscoder(L, D, N, activation=activation, k=k, model="toy"),
                      seed)


KINDS = [(make, act, k) for make in (make_set, make_clt)
         for act, k in (("relu", None), ("jumprelu", None), ("topk", 4))]


def _same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("make,activation,k", KINDS,
                         ids=[f"{m.__name__[5:]}-{a}" for m, a, _ in KINDS])
def test_round_trip_is_bit_identical(tmp_path, make, activation, k):
    original = make(activation, k)
    save_circuit_tracer(original, tmp_path / "tc")
    loaded = load_circuit_tracer(tmp_path / "tc")
    assert type(loaded) is type(original)
    _same(original, loaded)
    assert loaded.model == "toy" and loaded.source == str(tmp_path / "tc")
    x = torch.randn(5, D)
    for layer in range(L):
        assert torch.equal(loaded.encode(layer, x), original.encode(layer, x))


def test_files_use_circuit_tracers_names_and_layout(tmp_path):
    ts, clt = make_set("jumprelu"), make_clt("jumprelu")
    save_circuit_tracer(ts, tmp_path / "plt")
    save_circuit_tracer(clt, tmp_path / "clt")
    layer1 = load_file(str(tmp_path / "plt" / "layer_1.safetensors"))
    assert set(layer1) == {"W_enc", "W_dec", "b_enc", "b_dec", "activation_function.threshold"}
    assert torch.equal(layer1["W_enc"], ts.layers[1].W_enc.T)  # circuit-tracer: [n, d]
    enc, dec = (load_file(str(tmp_path / "clt" / f"W_{w}_1.safetensors")) for w in ("enc", "dec"))
    assert set(enc) == {"W_enc_1", "b_enc_1", "b_dec_1", "threshold_1"}
    assert tuple(dec["W_dec_1"].shape) == (N, L - 1, D)
    import yaml

    config = yaml.safe_load((tmp_path / "clt" / "config.yaml").read_text())
    assert config["model_kind"] == "cross_layer_transcoder" and config["model_name"] == "toy"
    assert (config["feature_input_hook"], config["feature_output_hook"]) == \
        ("mlp.hook_in", "mlp.hook_out")


def _hub_cache(root: Path, repo_id: str, folder: Path) -> Path:
    """``folder`` laid out as snapshot 'aaaa…' of ``repo_id`` (ref main) in a hub cache."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / ("a" * 40) / "tc"
    snap.parent.mkdir(parents=True)
    folder.rename(snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    return root


def test_loads_by_hugging_face_id_from_the_offline_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    original = make_clt("relu")
    save_circuit_tracer(original, tmp_path / "tc")
    cache = _hub_cache(tmp_path / "hub", "acme/toy-clt", tmp_path / "tc")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    _same(original, load_circuit_tracer("acme/toy-clt/tc"))
    with pytest.raises(AcdcError, match="acme/absent.*not in the local cache"):
        load_circuit_tracer("acme/absent/tc")


def _edit_config(folder: Path, **changes) -> None:
    import yaml

    config = yaml.safe_load((folder / "config.yaml").read_text())
    config.update(changes)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))


def _refused(folder: Path, match: str) -> str:
    with pytest.raises(AcdcError, match=match) as info:
        load_circuit_tracer(folder)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_bad_folders_and_files_are_refused_naming_the_file(tmp_path):
    tc = tmp_path / "tc"
    _refused(tc, "does not exist")
    save_circuit_tracer(make_set("relu"), tc)
    layer1 = tc / "layer_1.safetensors"
    tensors = load_file(str(layer1))

    save_file({**tensors, "W_enc": tensors["W_enc"][:, :-1].contiguous()}, str(layer1))
    assert "layer_1.safetensors" in _refused(tc, r"W_enc is \[16, 7\], expected \[16, 8\]")
    save_file({**tensors, "W_skip": torch.zeros(D, D)}, str(layer1))
    _refused(tc, "layer_1.safetensors' has a skip connection")
    save_file({k: v for k, v in tensors.items() if k != "W_dec"}, str(layer1))
    _refused(tc, "layer_1.safetensors': missing W_dec")
    save_file({**tensors, "W_dec": tensors["W_dec"].to(torch.int32)}, str(layer1))
    _refused(tc, "W_dec holds torch.int32")
    layer1.write_bytes(b"\x00" * 40)  # a corrupted file
    _refused(tc, "layer_1.safetensors' is not a readable safetensors file")
    _refused(tc / "layer_0.safetensors", "is a file; a circuit-tracer transcoder folder")
    layer1.unlink()
    _refused(tc, r"needs layer_0..layer_1.safetensors in order")

    save_circuit_tracer(make_set("relu"), tc)
    _edit_config(tc, feature_input_hook="hook_resid_mid")
    _refused(tc, "config.yaml': feature_input_hook 'hook_resid_mid' is not one")
    _edit_config(tc, feature_input_hook="mlp.hook_in", model_kind="sae")
    _refused(tc, "model_kind 'sae' is not one of")
    (tc / "config.yaml").write_text("model_kind: [unclosed\n")
    _refused(tc, "config.yaml' is not readable YAML")


def test_a_set_with_mixed_activations_is_refused(tmp_path):
    ts = TranscoderSet([Transcoder(D, N, layer=0), Transcoder(D, N, layer=1, activation="topk",
                                                              k=2)])
    with pytest.raises(AcdcError, match="mixes activations"):
        save_circuit_tracer(ts, tmp_path / "tc")


# ----- circuit-tracer itself loads what we wrote (slow; needs /work/ct-venv) -------------------
CT_SCRIPT = r"""
import json, shutil, sys, torch
from safetensors.torch import load_file, save_file
from circuit_tracer.utils.caching import load_transcoders_from_cache
x = load_file(sys.argv[1])["x"]
said = []
for folder in sys.argv[2:]:
    tc, config = load_transcoders_from_cache(folder, cache_dir="/", device=torch.device("cpu"),
                                             dtype=torch.float32, lazy_decoder=False)
    out = {f"acts_{l}": tc.encode_layer(x[l], l) for l in range(len(x))}
    if type(tc).__name__ == "TranscoderSet":
        recon = torch.stack([tc[l].decode(out[f"acts_{l}"]) for l in range(len(x))])
    else:
        recon = tc.decode(torch.stack([out[f"acts_{l}"] for l in range(len(x))]))
    out["recon"] = recon
    save_file({k: v.contiguous() for k, v in out.items()}, folder + "/out.safetensors")
    tc.to_safetensors(folder + "_written_by_ct")  # circuit-tracer's own writer
    shutil.copy(folder + "/config.yaml", folder + "_written_by_ct/config.yaml")
    said.append({"kind": type(tc).__name__, "input_hook": tc.feature_input_hook})
print(json.dumps(said))
"""
CASES = [(make_set, "relu"), (make_set, "jumprelu"), (make_clt, "relu"), (make_clt, "jumprelu")]


@pytest.mark.slow
@pytest.mark.skipif(not CT_PYTHON.exists(),
                    reason="circuit-tracer 0.5.0 is not installed in /work/ct-venv (run "
                           "benchmarks/trace_vs_circuit_tracer.py --setup to create it)")
def test_circuit_tracer_reads_and_writes_our_files_and_computes_the_same(tmp_path):
    ours, folders = [], []
    for i, (make, activation) in enumerate(CASES):
        tc = make(activation)
        if activation == "jumprelu":  # thresholds that leave some features on
            with torch.no_grad():
                for name, p in tc.named_parameters():
                    if "threshold" in name:
                        p.copy_(p.abs() * 0.5)
        ours.append(tc)
        folders.append(str(save_circuit_tracer(tc, tmp_path / f"tc{i}")))
    x = torch.randn(L, 6, D, generator=torch.Generator().manual_seed(1))
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(CT_PYTHON), "-c", CT_SCRIPT, str(tmp_path / "x.safetensors"),
                           *folders], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    said = json.loads(done.stdout.strip().splitlines()[-1])
    for tc, folder, (make, _), s in zip(ours, folders, CASES, said):
        assert s["kind"] == type(tc).__name__ and s["input_hook"] == "mlp.hook_in"
        _agrees(tc, make, x, load_file(f"{folder}/out.safetensors"))
        _same(tc, load_circuit_tracer(f"{folder}_written_by_ct"))  # and we read its files


def _agrees(ours, make, x, theirs) -> None:
    """circuit-tracer's activations and reconstructions equal ours to float32 rounding."""
    acts = [ours.encode(layer, x[layer]).detach() for layer in range(L)]
    eps = torch.finfo(torch.float32).eps
    with torch.no_grad():
        for layer in range(L):
            # the same D products summed in another order: |error| <= D eps (|x| |W_enc| + |b|)
            w = ours.W_enc[layer] if make is make_clt else ours.layers[layer].W_enc
            b = ours.b_enc[layer] if make is make_clt else ours.layers[layer].b_enc
            bound = 2 * (D + 1) * eps * (x[layer].abs() @ w.abs() + b.abs())
            assert (acts[layer] > 0).sum() > 0
            assert ((theirs[f"acts_{layer}"] - acts[layer]).abs() <= bound).all()
        for j in range(L):
            # sum over every earlier layer's N features of act * decoder, plus b_dec
            terms = ours.b_dec(j).abs() + sum(acts[i].abs() @ ours.decoder(i, j).abs()
                                              for i in range(j + 1)
                                              if ours.decoder(i, j) is not None)
            bound = 2 * (L * N + 1) * eps * terms
            assert ((theirs["recon"][j] - ours.decode(j, acts)).abs() <= bound).all()
