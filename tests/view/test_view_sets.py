"""The viewer on a token-set task (greater-than): the answer probability is the mass on the
answer set, not the probability of one token."""

from __future__ import annotations

import torch

from acdc_engine.patching import LAST, NO_PATCH, run
from acdc_engine.view import Session


def test_summary_of_a_set_task_is_the_set_mass():
    s = Session.open("gpt2-ioi-bpe", "greater-than", n_examples=8)
    summ = s.summary
    masses, wrong = [], []
    for b in s.problem.batches:
        with torch.no_grad():
            probs = run(s.model.adapter, b.clean, NO_PATCH, LAST)[:, -1].float().softmax(-1)
        masses.append(b.set_mass(probs, "answer_set"))
        wrong.append(b.set_mass(probs, "wrong_set"))
    good, bad = torch.cat(masses), torch.cat(wrong)
    assert abs(summ.prob - float(good.mean())) < 1e-5
    assert summ.logit_diff is None
    assert abs(summ.accuracy - float((good > bad).float().mean())) < 1e-6
    assert 0.0 < summ.prob < 1.0
    # an intervention changes the mass the same way
    after = s.ablate("m3")
    assert after.prob != summ.prob
