"""The plan of a run before it starts (``acdc plan``): predicted peak memory per device, time on
the measured hardware, the largest batch that fits, and whether a device map or more ranks are
needed, from the model's config alone (no weights are loaded).

    from acdc_engine.planning import plan
    print(plan("gpt2-ioi-bpe", examples=256, seq_len=16, method="eap").render())

:mod:`.shape` reads the config, :mod:`.costs` is the cost model with its fitted constants,
:mod:`.plan` puts them together, :mod:`.measure` measures what they predict.
"""

from .costs import METHODS, Costs, memory_bytes, seconds
from .plan import Hardware, Plan, device_bytes, plan
from .shape import ModelShape, model_shape

__all__ = ["plan", "Plan", "Hardware", "ModelShape", "model_shape", "Costs", "memory_bytes",
           "seconds", "METHODS", "device_bytes"]
