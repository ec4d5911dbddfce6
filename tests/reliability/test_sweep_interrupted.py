"""An interrupted sweep trial does not count toward n_trials and is redone with the same
parameters; a killed worker's trial (a stale heartbeat) is failed and redone; surplus trials
started in a race are pruned; Ctrl-C prints no optuna traceback."""

from __future__ import annotations

import optuna
import pytest

from acdc_engine import plugins
from acdc_engine.api.search import sweep
from acdc_engine.hookspecs import hookimpl
from acdc_engine.records.studies import counted, prune_surplus, requeue_interrupted
from acdc_engine.scoring import Method, MethodOutput, attribute
from acdc_engine.tasks import Task
from acdc_engine.testing import random_pairs

_calls: list = []


def _interrupted_once(problem, settings, progress):
    """EAP, except that its second call is interrupted (Ctrl-C or SIGTERM)."""
    _calls.append(1)
    if len(_calls) == 2:
        raise KeyboardInterrupt
    return MethodOutput(attribute(problem, "eap", progress=False))


class _Plugin:
    @hookimpl
    def acdc_methods(self):
        return [Method("stops", _interrupted_once)]


@pytest.fixture(scope="module")
def task(gpt2_path):
    return Task("rand", lambda n, s: random_pairs(n or 8, seed=s), model=str(gpt2_path))


def test_an_interrupted_trial_is_redone_and_not_counted(task, tmp_path, capsys):
    _calls.clear()
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    kw = dict(storage=storage, study_name="s", track=False, results=tmp_path,
              methods=("stops",), ablations=("corrupted", "zero"), n_examples=8)
    plugins.register(_Plugin(), name="stops-method")
    try:
        with pytest.raises(KeyboardInterrupt):
            sweep(task, n_trials=3, **kw)
        err = capsys.readouterr().err
        assert "Traceback" not in err and "KeyboardInterrupt" not in err
        res = sweep(task, n_trials=3, **kw)
    finally:
        plugins.unregister("stops-method")
    states = [t["state"] for t in res.trials]
    # trial 1 was interrupted: FAIL, queued again (trial 2, same parameters) and redone;
    # then one more: 3 COMPLETE, as asked
    assert states == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"], states
    assert res.trials[2]["ablation"] == res.trials[1]["ablation"]
    assert res.trials[2]["settings"] == res.trials[1]["settings"]
    assert res.trials[1]["interrupted"] and res.ran == 2
    assert "(3 complete, 0 failed, 1 interrupted and redone; 2 run now)" in res.summary()


def _study_with(states_and_attrs):
    study = optuna.create_study(directions=["maximize", "minimize"])
    d = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for state, attrs, sys_attrs in states_and_attrs:
        study.add_trial(optuna.create_trial(
            state=state, params={"x": 0.5}, distributions=d, user_attrs=attrs,
            system_attrs=sys_attrs, values=[1.0, 2.0] if state.name == "COMPLETE" else None))
    return study


def test_what_counts_toward_n_trials():
    S = optuna.trial.TrialState
    study = _study_with([
        (S.COMPLETE, {}, {}),
        (S.FAIL, {"error": "boom"}, {}),  # a real failure: counts
        (S.FAIL, {}, {}),  # a stale heartbeat, retried by trial 3: does not count
        (S.COMPLETE, {}, {"failed_trial": 2, "retry_history": [2]}),
        (S.FAIL, {"interrupted": True}, {}),  # interrupted: never counts
        (S.PRUNED, {"surplus": True}, {}),  # surplus: never counts
    ])
    assert counted(optuna, study.get_trials()) == 3
    assert requeue_interrupted(optuna, study) == 1
    assert requeue_interrupted(optuna, study) == 0  # once only
    waiting = study.get_trials()[-1]
    assert waiting.state == S.WAITING and waiting.system_attrs["retry_history"] == [4]
    assert counted(optuna, study.get_trials()) == 3


def test_a_trial_started_beyond_n_trials_is_pruned():
    S = optuna.trial.TrialState
    study = _study_with([(S.COMPLETE, {}, {}), (S.COMPLETE, {}, {})])
    first, second = study.ask(), study.ask()  # two workers start at once; one is missing
    prune_surplus(first, n_trials=3)  # the first fills the study
    with pytest.raises(optuna.TrialPruned):
        prune_surplus(second, n_trials=3)
    assert second.user_attrs["surplus"] is True
