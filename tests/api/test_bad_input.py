"""Bad input gets an error that names the problem and the offending item, never a deep trace."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from acdc_engine import discover
from acdc_engine.errors import (AcdcError, MetricError, TaskDataError, UnknownNameError,
                                UnsupportedModelError)
from acdc_engine.hookspecs import hookimpl
from acdc_engine.metrics import Metric
from acdc_engine import load_model
from acdc_engine.tasks import Task, prepare
from acdc_engine.testing import random_pairs


def test_model_the_families_do_not_know(tmp_path):
    from transformers import BloomConfig, BloomForCausalLM  # ALiBi: no family runs it

    BloomForCausalLM(BloomConfig(hidden_size=16, n_layer=1, n_head=2,
                                 vocab_size=50)).save_pretrained(tmp_path)
    with pytest.raises(UnsupportedModelError,
                       match=r"model_type='bloom'.*known families: .*gpt2"):
        load_model(str(tmp_path))


def test_model_path_that_does_not_exist():
    with pytest.raises(AcdcError, match="does not exist"):
        load_model("./no/such/model")


def test_unknown_task_method_ablation(gpt2_path):
    with pytest.raises(UnknownNameError, match="unknown task 'no-such-task'"):
        discover(model=str(gpt2_path), task="no-such-task")
    with pytest.raises(UnknownNameError, match="unknown method 'magic'"):
        discover(model=str(gpt2_path), method="magic")
    with pytest.raises(UnknownNameError, match="unknown ablation 'resample'"):
        discover(model=str(gpt2_path), ablation="resample")


def test_answers_that_are_not_one_token_and_length_mismatch(gpt2):
    rows = random_pairs(4)
    rows[1]["answer"] = " w1 w2"  # two tokens
    rows[2]["corrupted"] += " w3"  # one token longer than clean
    rows[3]["wrong_answer"] = ""  # -> no contrastive answers at all
    with pytest.raises(TaskDataError) as info:
        prepare("t", gpt2.tokenizer, rows)
    msg = str(info.value)
    assert "row 2: answer ' w1 w2' is 2 tokens" in msg
    assert "row 3: clean prompt is 6 tokens but corrupted is 7" in msg
    assert "2 problem(s)" in msg


def test_words_the_tokenizer_does_not_know(gpt2):
    rows = random_pairs(2)
    rows[1]["answer"] = " Marry"  # a typo: one token, but <unk>
    with pytest.raises(TaskDataError, match=r"row 2: answer ' Marry' has a word the tokenizer"):
        prepare("t", gpt2.tokenizer, rows)


def test_empty_dataset(gpt2):
    with pytest.raises(TaskDataError, match="no rows"):
        prepare("t", gpt2.tokenizer, [])


def test_metric_needing_wrong_answers_on_a_task_without_them(gpt2_path):
    rows = random_pairs(4)
    for r in rows:
        del r["wrong_answer"]
    task = Task("nowrong", lambda n, s: rows, model=str(gpt2_path))
    with pytest.raises(AcdcError, match="metric 'logit_diff' needs a wrong_answer"):
        discover(task=task, method="eap", n_edges=3, progress=False)
    result = discover(task=task, method="eap", metric="nll", n_edges=3, progress=False)
    assert result.circuit.number_of_edges() <= 3


def test_metric_returning_nan_names_the_row(gpt2_path):
    def nan_on_row_3(logits, batch):
        values = logits[:, 0].clone()
        rows = torch.tensor(batch.rows)
        return torch.where(rows == 2, torch.full_like(values, float("nan")), values)

    task = Task("rand", lambda n, s: random_pairs(6), model=str(gpt2_path))
    from acdc_engine import plugins

    class NaNPlugin:
        @hookimpl
        def acdc_metrics(self):
            return [Metric("nan_metric", nan_on_row_3)]

    plugins.register(NaNPlugin(), name="nan-plugin")
    try:
        with pytest.raises(MetricError, match=r"metric 'nan_metric' returned nan for row 3"):
            discover(task=task, method="eap", metric="nan_metric", n_edges=3, progress=False)
    finally:
        plugins.unregister("nan-plugin")


def test_non_differentiable_metric_cannot_drive_attribution(gpt2_path):
    task = Task("rand", lambda n, s: random_pairs(4), model=str(gpt2_path))
    with pytest.raises(AcdcError, match="'accuracy' is not differentiable"):
        discover(task=task, method="eap", metric="accuracy", n_edges=3, progress=False)


def test_cli_prints_one_line_errors(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "acdc_engine.cli", "discover", "--task",
                           "no-such-task", "--no-track", "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown task 'no-such-task' (known:")
    assert "Traceback" not in proc.stderr
