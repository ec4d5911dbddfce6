"""The test kit for plugin authors (and this project's own tests).

    conformance   check_task, check_metric, check_model: run them against your plugin
    builders      tiny random-weight models saved like a user's (save_gpt2, save_llama, ...)
    numerics      float32 tolerances from a float64 reference (float64, assert_close_to_f64)
    dictionaries  random transcoders that fit a model, weight comparisons (random_transcoders)
"""

from .builders import (
    WORDS,
    TinyShape,
    hf_shape,
    perturb,
    random_pairs,
    save_gpt2,
    save_hf,
    save_llama,
    save_tokenizer,
    save_tracr,
    word_tokenizer,
)
from .conformance import ConformanceError, check_metric, check_model, check_task, first_order_error
from .numerics import assert_close_to_f64, f32_bound, float64

__all__ = ["check_task", "check_metric", "check_model", "first_order_error", "ConformanceError",
           "WORDS", "word_tokenizer", "save_tokenizer", "perturb", "save_gpt2", "save_hf",
           "TinyShape", "hf_shape", "save_llama", "save_tracr", "random_pairs", "float64",
           "assert_close_to_f64", "f32_bound"]
