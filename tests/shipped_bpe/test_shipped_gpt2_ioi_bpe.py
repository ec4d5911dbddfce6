"""The shipped ``gpt2-ioi-bpe`` model: files, tokenizer, held-out accuracy, discovery, invariants.

Floors are set below what was measured when the model was trained (see its README.md and
``training.json``), so a retrained or damaged model that lost the behaviour fails here.
"""

from __future__ import annotations

import json

import pytest
import torch

from acdc_engine.plugins import registry

NAME = "gpt2-ioi-bpe"
EVAL_SEED = 1_000_003  # the training script's held-out seed (never trained on)


def _dir():
    return registry().shipped[NAME].path


def test_registered_and_small():
    shipped = registry().shipped[NAME]
    assert registry().provider[("shipped", NAME)] == "builtins"
    names = {p.name for p in shipped.path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "README.md", "training.json"} <= names
    total = sum(p.stat().st_size for p in shipped.path.iterdir())
    assert total < 4_000_000, f"shipped files are {total / 1e6:.1f} MB"
    cfg = json.loads((shipped.path / "config.json").read_text())
    assert cfg["model_type"] == "gpt2" and cfg["n_layer"] == 4 and cfg["n_head"] == 4


def test_loads_by_name_offline(bpe_model, monkeypatch, tmp_path):
    """By its shipped name, with the hub off and an empty hub cache: nothing is fetched."""
    from acdc_engine import load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    lm = load_model(NAME, device="cpu")
    assert lm.hf.config.model_type == "gpt2"
    assert len(lm.tokenizer) == lm.hf.config.vocab_size == 1949
    assert lm.graph.n_edges == bpe_model.graph.n_edges == 479


def test_tokenizer_is_byte_level_bpe(bpe_model):
    tok = bpe_model.tokenizer
    spec = json.loads((_dir() / "tokenizer.json").read_text())
    assert spec["model"]["type"] == "BPE"
    pre = json.dumps(spec["pre_tokenizer"])
    assert '"ByteLevel"' in pre and spec["decoder"]["type"] == "ByteLevel"
    # any text round-trips (every byte is in the alphabet), none of it unknown
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    for text in ("Then, Mary and John went to the store. John gave a ring to Mary",
                 "zqxj Überraschung! naïve café — 北京 🙂 <tag a='1'>\n\tdef f(x): return x**2",
                 " 1732 to 1799", "  two  spaces\nand a newline"):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert eot not in ids
        assert tok.decode(ids) == text
    # sub-word: an unseen word is split, a task word with its leading space is one token
    assert len(tok(" Mary", add_special_tokens=False)["input_ids"]) == 1
    assert len(tok(" Quetzalcoatl", add_special_tokens=False)["input_ids"]) > 1
    assert tok(" 1732", add_special_tokens=False)["input_ids"] == tok.convert_tokens_to_ids(
        ["Ġ17", "32"])


def test_ioi_names_keeps_every_word(bpe_model):
    from acdc_tasks.literature import ioi_names

    rows = ioi_names.rows(64, 0, tokenizer=bpe_model.tokenizer)
    assert rows.notes["names"] == "100 of 100 single-token"
    assert rows.notes["places"] == "16 of 16 single-token"
    assert rows.notes["objects"] == "16 of 16 single-token"
    assert len(rows) == 64


def _last_logits(hf, tok, texts: list[str]) -> torch.Tensor:
    """Logits ``[B, V]`` at each text's last token (right-padded batch with a mask)."""
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(map(len, ids))
    batch = torch.zeros(len(ids), width, dtype=torch.long)  # [B, T]
    mask = torch.zeros(len(ids), width, dtype=torch.long)  # [B, T]
    for i, x in enumerate(ids):
        batch[i, : len(x)], mask[i, : len(x)] = torch.tensor(x), 1
    logits = hf(input_ids=batch, attention_mask=mask).logits.float()  # [B, T, V]
    return logits[torch.arange(len(ids)), mask.sum(1) - 1]


@torch.no_grad()
def test_heldout_accuracy_and_logit_diff(bpe_model):
    """Measured on 2000 held-out rows at training time (``training.json``); here 300 of them."""
    from acdc_tasks.literature import ioi_names

    tok, hf = bpe_model.tokenizer, bpe_model.hf
    rows = ioi_names.rows(300, EVAL_SEED, tokenizer=tok)
    a, s = (torch.tensor([tok(r[k], add_special_tokens=False)["input_ids"][0] for r in rows])
            for k in ("answer", "wrong_answer"))  # [B] each
    idx = torch.arange(len(rows))
    clean = _last_logits(hf, tok, [r["clean"] for r in rows])  # [B, V]
    corr = _last_logits(hf, tok, [r["corrupted"] for r in rows])  # [B, V]
    acc = (clean.argmax(-1) == a).float().mean().item()
    ld_clean = (clean[idx, a] - clean[idx, s]).mean().item()
    ld_corr = (corr[idx, a] - corr[idx, s]).mean().item()
    assert acc >= ACC_FLOOR, f"held-out accuracy {acc:.3f}"
    assert ld_clean >= LD_FLOOR, f"clean logit difference {ld_clean:.2f}"
    assert abs(ld_corr) < 1.0, f"corrupted (ABC) logit difference {ld_corr:.2f}, not near 0"
    assert (corr.argmax(-1) == a).float().mean() < 0.05  # no IO to copy in ABC prompts


def test_training_record_matches_floors():
    rec = json.loads((_dir() / "training.json").read_text())
    assert rec["eval"]["n"] == 2000 and rec["eval"]["clean_accuracy"] >= ACC_FLOOR
    assert rec["config"]["eval_seed"] == EVAL_SEED
    assert rec["discovery"]["runs"], "the card's discovery table was measured"


def test_conformance_invariants(bpe_model):
    from acdc_engine.testing import check_model

    check_model(bpe_model)


def test_ioi_names_task_conforms(bpe_model):
    from acdc_engine.api import load_task
    from acdc_engine.testing import check_task

    check_task(load_task("ioi-names"), bpe_model.tokenizer, n=8)


def test_fixed_budget_circuit_is_faithful(bpe_model):
    """EAP-IG's top 46 edges on 32 examples: measured 0.827 normalized faithfulness."""
    from acdc_engine.api import discover

    r = discover(bpe_model, "ioi-names", "eap-ig", n_examples=32, n_edges=46, curve=False,
                 threads=1, track=False, render=False, progress=False)
    assert r.faithfulness.full > LD_FLOOR  # the task's logit difference on the full model
    assert r.faithfulness.empty < 1.0  # corrupted (ABC) prompts: no preference
    assert 40 <= r.circuit.number_of_edges() <= 46
    assert r.faithfulness.normalized >= FIXED_FAITH_FLOOR, r.summary()


@pytest.mark.slow
def test_discovery_target_search(bpe_model):
    """The card's run (EAP-IG, 64 examples, smallest budget reaching 0.8): measured 46 of 479
    edges at 0.874 normalized faithfulness, full-model logit difference 14.2."""
    from acdc_engine.api import discover

    r = discover(bpe_model, "ioi-names", "eap-ig", n_examples=64, threads=1, track=False,
                 render=False, progress=False)
    n = r.circuit.number_of_edges()
    assert r.faithfulness.normalized >= 0.8, r.summary()
    assert 0 < n <= MAX_EDGES, r.summary()
    assert not r.warnings, r.warnings
    assert r.curve.cpr >= 0.85, r.summary()  # measured 0.941


# floors below the measured figures (README.md, training.json): 100% held-out accuracy,
# logit difference 14.0; EAP-IG circuits of ~46 edges at faithfulness 0.83-0.87
ACC_FLOOR = 0.95
LD_FLOOR = 8.0
FIXED_FAITH_FLOOR = 0.7
MAX_EDGES = 60  # of 479


@pytest.mark.parametrize("task", ["greater-than", "docstring", "gender-bias",
                                  "induction-random", "induction-random-all"])
def test_every_literature_task_runs_on_it(task, bpe_model):
    """Its tokenizer was trained on every literature task's corpus: each keeps all its examples
    and discovery runs (the model was trained on IOI only, so faithfulness is not asserted)."""
    from acdc_engine import discover

    result = discover(model=bpe_model, task=task, method="eap", n_examples=8, n_edges=10,
                      track=False, render=False, progress=False, curve=False)
    notes = result.params.get("task_notes") or result.summary()
    assert "8 of 8 kept" in str(notes)
    assert result.circuit.number_of_edges() > 0
