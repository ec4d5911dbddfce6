"""Built-in metrics.

Most read one position at a time (``reads="each"``): logits [batch, vocab] at a read position
and the batch's view of that position (``batch.at(j)``) -> [batch], averaged over the read
positions by ``Metric.score``. ``answer_logprob`` reads every position at once (``reads="all"``,
logits [batch, k, vocab]). The set metrics compare probability mass (or logsumexp) on the
batch's ``answer_set`` and ``wrong_set`` (greater-than, Hanna et al. 2023).

Prepared forms (scoring many stacked candidates of one batch, see :mod:`acdc_engine.metrics`):
KL divergence (:mod:`acdc_builtins.kl`, held to a float64 reference down to tiny values)
keeps the clean distribution per batch; logit difference and the set logit difference declare
the few logit columns they read.
"""

from __future__ import annotations

import torch

from acdc_engine.metrics import Metric

from .kl import kl_div, kl_div_prepared


def _gather(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return t.gather(-1, idx[:, None])[:, 0]


def logit_diff(logits, batch):
    logits = logits.float()
    return _gather(logits, batch.answer) - _gather(logits, batch.wrong)


def logit_diff_columns(batch):
    """[2B]: every row's answer, then every row's wrong answer."""
    return torch.cat([batch.answer, batch.wrong])


def logit_diff_prepared(batch):
    """[c, B, 2B] logits at :func:`logit_diff_columns` -> [c, B]."""
    b = len(batch)
    rows = torch.arange(b, device=batch.answer.device)
    return lambda z: z[:, rows, rows].float() - z[:, rows, rows + b].float()


def prob_diff(logits, batch):
    probs = logits.float().softmax(-1)
    return _gather(probs, batch.answer) - _gather(probs, batch.wrong)


def nll(logits, batch):
    return -_gather(logits.float().log_softmax(-1), batch.answer)


def accuracy(logits, batch):
    return (logits.argmax(-1) == batch.answer).float()


def answer_logprob(logits, batch):
    """[batch, k, vocab] -> [batch]: summed log-probability of the per-position answers (a
    multi-token answer's log-probability under teacher forcing)."""
    logp = logits.float().log_softmax(-1)  # [b, k, vocab]
    return logp.gather(-1, batch.answers[..., None])[..., 0].sum(-1)


def set_prob_diff(logits, batch):
    """Probability mass on ``answer_set`` minus mass on ``wrong_set``."""
    probs = logits.float().softmax(-1)  # [b, vocab]
    return batch.set_mass(probs, "answer_set") - batch.set_mass(probs, "wrong_set")


def set_logit_diff(logits, batch):
    """logsumexp of the logits over ``answer_set`` minus over ``wrong_set``."""
    logits = logits.float()
    neg = torch.finfo(logits.dtype).min
    vocab = logits.shape[-1]
    a = logits.masked_fill(~batch.token_mask("answer_set", vocab), neg).logsumexp(-1)
    w = logits.masked_fill(~batch.token_mask("wrong_set", vocab), neg).logsumexp(-1)
    return a - w


def _set_columns(batch) -> torch.Tensor:
    ids = torch.cat([batch.answer_set, batch.wrong_set], 1)  # [B, m + m'], -1 = padding
    return ids[ids >= 0].unique()


def set_logit_diff_columns(batch):
    """The tokens of every row's answer and wrong sets, sorted: [M]."""
    return _set_columns(batch)


def set_logit_diff_prepared(batch):
    """[c, B, M] logits at :func:`set_logit_diff_columns` -> [c, B]."""
    cols = _set_columns(batch)

    def member(name):  # [B, M] bool: column in row's set
        ids = getattr(batch, name)
        return (ids[:, :, None] == cols[None, None, :]).any(1)

    a, w = member("answer_set"), member("wrong_set")

    def fn(z):
        z = z.float()
        neg = torch.finfo(z.dtype).min
        return z.masked_fill(~a, neg).logsumexp(-1) - z.masked_fill(~w, neg).logsumexp(-1)

    return fn


METRICS = [
    Metric("logit_diff", logit_diff, needs=("answer", "wrong"),
           description="logit of the answer minus logit of the wrong answer",
           prepare=logit_diff_prepared, columns=logit_diff_columns),
    Metric("prob_diff", prob_diff, needs=("answer", "wrong"),
           description="probability of the answer minus probability of the wrong answer"),
    Metric("kl_div", kl_div, higher_is_better=False, needs=("clean_logits",),
           description="KL divergence from the clean model's next-token distribution",
           prepare=kl_div_prepared),
    Metric("nll", nll, higher_is_better=False, needs=("answer",),
           description="negative log-likelihood of the answer"),
    Metric("accuracy", accuracy, differentiable=False, needs=("answer",),
           description="1 if the answer is the top token, else 0"),
    Metric("answer_logprob", answer_logprob, needs=("answer",), reads="all",
           description="summed log-probability of the answer at every read position (a "
                       "multi-token answer's log-probability by teacher forcing)"),
    Metric("set_prob_diff", set_prob_diff, needs=("answer_set", "wrong_set"),
           description="probability mass on the answer set minus mass on the wrong set "
                       "(greater-than)"),
    Metric("set_logit_diff", set_logit_diff, needs=("answer_set", "wrong_set"),
           description="logsumexp of the logits over the answer set minus over the wrong set",
           prepare=set_logit_diff_prepared, columns=set_logit_diff_columns),
]
