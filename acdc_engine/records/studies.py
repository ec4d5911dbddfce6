"""An optuna study in its storage, shared by any number of sweep workers.

    study, n_done = open_study(optuna, "ioi-tiny-ioi", "postgresql://...", cfg)
    work(optuna, study, objective, n_trials=20, timeout=None, poll=2.0)

:func:`open_study` opens (or creates) the study; a database storage gets optuna heartbeats
(``heartbeat_interval``/``grace_period`` on ``RDBStorage``) and ``RetryFailedTrialCallback``, so
the trial of a worker killed outright is marked FAIL and queued again. :func:`counted` is what
counts toward ``n_trials`` (COMPLETE, and FAIL trials neither interrupted nor queued again);
:func:`requeue_interrupted` queues a trial stopped by Ctrl-C/SIGTERM again;
:func:`prune_surplus` prunes a trial started in a race beyond ``n_trials``; :func:`work` is the
worker loop. Used by :func:`acdc_engine.api.search.sweep`; optuna is passed in (the caller
imports it, with the extra's error message).
"""

from __future__ import annotations

import inspect
import re
import time
import warnings

from ..errors import AcdcError

__all__ = ["open_study", "counted", "retried", "requeue_interrupted", "prune_surplus", "work"]


def _redact(url: str) -> str:
    """The storage URL without a password (for messages)."""
    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", url)


def open_study(optuna, name: str, url: str | None, cfg):
    """The study ``name`` in ``url`` (created or resumed) and its number of counted trials;
    ``cfg`` gives ``heartbeat``, ``grace`` and ``seed`` (a SweepConfig).

    A database storage gets heartbeats and a retry callback (see the module docstring); its
    first use by several workers at once (each creating the tables) is retried."""
    storage = url
    for attempt in range(5):
        try:
            if url is not None:
                with warnings.catch_warnings():  # heartbeats are "experimental" in optuna
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    hb = {}
                    if cfg.heartbeat is not None:
                        hb = dict(heartbeat_interval=max(1, round(cfg.heartbeat)),
                                  grace_period=max(1, round(cfg.grace or 4 * cfg.heartbeat)),
                                  **_retry_callback(optuna))
                    storage = optuna.storages.RDBStorage(url, **hb)
            study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                                        directions=["maximize", "minimize"],
                                        sampler=optuna.samplers.TPESampler(seed=cfg.seed))
            break
        except Exception as e:
            text = str(e).lower()
            if attempt < 4 and ("already exists" in text or "duplicate" in text):
                time.sleep(0.5 * 2**attempt)  # another worker is creating the tables
                continue
            raise AcdcError(f"optuna storage {_redact(url or 'memory')!r} cannot be used for "
                            f"study {name!r}: {type(e).__name__}: {e}") from None
    n_done = counted(optuna, study.get_trials(deepcopy=False))
    # a resumed study must not replay the first run's random start: reseed past it
    study.sampler = optuna.samplers.TPESampler(seed=cfg.seed + len(study.trials))
    return study, n_done


def _retry_callback(optuna) -> dict:
    """RDBStorage's stale-trial callback argument: queue the trial again, at most 3 times
    (``RetryFailedTrialCallback``; renamed ``RetryHeartbeatStaleTrialCallback`` in optuna 4.9,
    and so was the argument)."""
    params = inspect.signature(optuna.storages.RDBStorage.__init__).parameters
    if "heartbeat_stale_trial_callback" in params:
        return {"heartbeat_stale_trial_callback":
                optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)}
    return {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=3)}


def retried(trials) -> set[int]:
    """Numbers of the trials queued again (their retries name them in ``retry_history``)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def counted(optuna, trials) -> int:
    """Trials that count toward ``n_trials``: COMPLETE, and FAIL trials that were neither
    interrupted nor queued again (a surplus trial is PRUNED and does not count)."""
    s, again = optuna.trial.TrialState, retried(trials)
    return sum(t.state == s.COMPLETE or (t.state == s.FAIL and t.number not in again
                                         and not t.user_attrs.get("interrupted"))
               for t in trials)


def requeue_interrupted(optuna, study) -> int:
    """Queue every interrupted trial again (same parameters, ``retry_history`` naming it),
    once; returns how many were queued."""
    trials = study.get_trials(deepcopy=False)
    again, n = retried(trials), 0
    for t in trials:
        if t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get("interrupted") \
                and t.number not in again:
            history = [*t.system_attrs.get("retry_history", []), t.number]
            study.add_trial(optuna.create_trial(
                state=optuna.trial.TrialState.WAITING, params=t.params,
                distributions=t.distributions, system_attrs={
                    "failed_trial": history[0], "retry_history": history}))
            n += 1
    return n


def prune_surplus(trial, n_trials: int) -> None:
    """Prune a trial that would take the study past ``n_trials`` (several workers started one
    at the same moment): the counted trials and the running ones numbered before it fill it."""
    import optuna

    trials = trial.study.get_trials(deepcopy=False)
    running = sum(t.state == optuna.trial.TrialState.RUNNING and t.number < trial.number
                  for t in trials)
    if counted(optuna, trials) + running >= n_trials:
        trial.set_user_attr("surplus", True)
        raise optuna.TrialPruned("the study has all its trials (started in a race)")


def work(optuna, study, objective, n_trials: int, timeout: float | None,
          poll: float) -> None:
    """Run trials one at a time while the study needs them: a waiting (queued) trial, or a new
    one while counted + running < ``n_trials``; wait while other workers' trials may still
    fill it (failing stale trials meanwhile, so a killed worker's trial is queued again)."""
    from optuna.storages import fail_stale_trials
    from optuna.storages._heartbeat import is_heartbeat_enabled

    s, t_end = optuna.trial.TrialState, None if timeout is None else time.time() + timeout
    while t_end is None or time.time() < t_end:
        if is_heartbeat_enabled(study._storage):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        done = counted(optuna, trials)
        if done >= n_trials:
            return
        waiting = any(t.state == s.WAITING for t in trials)
        if waiting or done + sum(t.state == s.RUNNING for t in trials) < n_trials:
            study.optimize(objective, n_trials=1, catch=(Exception,))
        else:
            time.sleep(poll)
