"""The example plugin, checked with acdc-engine's conformance kit."""

from acdc_engine import load_model
from acdc_engine.plugins import registry
from acdc_engine.testing import check_metric, check_task

import acdc_example_plugin as plugin


def test_registered_through_entry_point():
    reg = registry()
    assert reg.provider[("tasks", "ioi-flip")] == "example"
    assert reg.provider[("metrics", "answer_rank")] == "example"


def test_task_conforms():
    check_task(plugin.TASK, load_model("tiny-ioi", device="cpu").tokenizer)


def test_metric_conforms():
    check_metric(plugin.METRIC)
