"""Tasks: named datasets of clean/corrupted prompt pairs, and their tokenized form.

A :class:`Task` is what a plugin registers: a name, a function that returns rows, and the
defaults (metric, ablation). A row is a dict:

``clean``, ``corrupted``
    the prompts (equal token lengths: the pairs align token by token).
``positions`` (optional)
    where the metric reads: omitted = the last prompt token; ``"all"`` = every prompt
    position; a list of token indices into the prompt (negative counts from the end).
``answer`` / ``wrong_answer``
    one token (a string), or a list of strings, one per read position. ``wrong_answer`` is what
    the corrupted prompt points to (contrastive metrics); optional.
``answer_set`` / ``wrong_set`` (optional)
    token sets (lists of one-token strings): greater-than's years > YY vs years <= YY. A row
    with an ``answer_set`` may omit ``answer``.
any other key
    carried to the batch as ``batch.extra[key]`` (keys starting with ``_`` are bookkeeping).

With ``Task(multi_token_answer=True)`` an answer of n tokens is scored by teacher forcing: its
first n-1 tokens are appended to both prompts and the metric reads the n positions that predict
the answer's tokens (see :func:`prepare`). ``Task.rows`` may take a keyword ``tokenizer`` (the
model's) and may return :class:`TaskRows`, whose ``notes`` land in ``TaskData.meta["notes"]``.

:func:`prepare` tokenizes and validates every row before any model work is done, and reports
every offending row at once. Batches group rows of equal token length and equal number of
read positions, so no padding (and no attention mask) is ever needed.

The package: :mod:`~acdc_engine.tasks.task` (:class:`Task`, :class:`TaskRows`, the row keys),
:mod:`~acdc_engine.tasks.batch` (:class:`Batch`), :mod:`~acdc_engine.tasks.data`
(:class:`TaskData`, cut into batches) and :mod:`~acdc_engine.tasks.rows` (:func:`prepare` and
the row reader behind it); each imports only the ones listed before it.
"""

from .batch import Batch
from .data import TaskData
from .rows import prepare
from .task import ROW_KEYS, Task, TaskRows

__all__ = ["Task", "TaskRows", "TaskData", "Batch", "prepare", "ROW_KEYS"]
