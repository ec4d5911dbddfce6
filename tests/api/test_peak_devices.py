"""A run's peak memory is read on every device its model is on (a device_map spreads a model
over GPUs; the first device's peak alone undercounts it)."""

from __future__ import annotations

from acdc_engine.api import recording


def test_model_params_name_every_device():
    from acdc_engine.api import build_problem, load_model, load_task

    lm = load_model("tiny-ioi")
    _, data = build_problem(lm, load_task("ioi"), n_examples=4)
    params = recording.model_params(lm, data)
    assert params["devices"] == "cpu" and lm.devices == ["cpu"]
    assert recording._run_devices(params) == ["cpu"]


def test_the_peak_is_read_on_all_devices(monkeypatch):
    seen = []
    monkeypatch.setattr(recording, "peak_memory_mb", lambda d: seen.append(d) or 1.0)
    assert recording._run_devices({"device": "cuda:0", "devices": "cuda:0,cuda:1"}) == [
        "cuda:0", "cuda:1"]
    assert recording._run_devices({"device": "cpu"}) == ["cpu"]
    assert recording._run_devices({}) is None
    # and the resources module resolves such a list to every CUDA index (CPU skipped)
    from acdc_engine.resources import cuda_indices

    assert cuda_indices(["cpu", "disk"]) == []
    assert cuda_indices(["cuda:0", "cuda:1", "cuda:1"]) == [0, 1]
