"""Which trials count, and the admission rule that keeps N racing workers at n_trials.

Counting. ``optuna.n_trials`` counts *trained* trials that finished (COMPLETE
or PRUNED); warm-start trials (already trained sweep runs) do not count, or a
large sweep would leave nothing to tune. Workers never overshoot: a worker
asks a trial, then admits it only if

    finished + (RUNNING or WAITING trials with a smaller number) < n_trials

and otherwise marks it FAIL (user attr ``surplus``). Trial numbers follow
creation order, so of any set of racing workers the lowest-numbered claims are
admitted first and the sum can never pass n_trials. A worker that finds the
remaining slots held by running trials waits for them rather than exiting: on
RDB storage a trial whose worker died stops its heartbeat, is failed after the
grace period and re-queued with its parameters (RetryHeartbeatStaleTrialCallback),
and the waiting worker trains it, resuming the dead run's last checkpoint (the
retry inherits the ``run_dir`` user attr). So the study ends with exactly
n_trials finished and none RUNNING. Journal storage has no heartbeat: there a
worker exits instead of waiting, and a killed worker's trial stays RUNNING.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
ACTIVE = (TrialState.RUNNING, TrialState.WAITING)


def is_warm(t: FrozenTrial) -> bool:
    return bool(t.user_attrs.get("warm_start"))


def trial_counts(ostudy: optuna.Study) -> dict[str, int]:
    """finished/complete/pruned count trained trials only; warm: warm-start trials;
    surplus: claims past n_trials; invalid: sampled configs that failed validation;
    failed: trials that raised (or whose worker died)."""
    c = {"finished": 0, "complete": 0, "pruned": 0, "running": 0, "waiting": 0, "failed": 0,
         "warm": 0, "surplus": 0, "invalid": 0}
    for t in ostudy.get_trials(deepcopy=False):
        if is_warm(t):
            c["warm"] += 1
        elif t.state in FINISHED:
            c["finished"] += 1
            c["complete" if t.state == TrialState.COMPLETE else "pruned"] += 1
        elif t.state == TrialState.RUNNING:
            c["running"] += 1
        elif t.state == TrialState.WAITING:
            c["waiting"] += 1
        elif t.user_attrs.get("surplus"):
            c["surplus"] += 1
        elif t.user_attrs.get("invalid"):
            c["invalid"] += 1
        else:
            c["failed"] += 1
    return c


def admitted(ostudy: optuna.Study, number: int, n_trials: int) -> bool:
    """Whether trial ``number`` (just asked, RUNNING) fits in n_trials (see module doc)."""
    finished = ahead = 0
    for t in ostudy.get_trials(deepcopy=False, states=(*FINISHED, *ACTIVE)):
        if t.state in FINISHED:
            finished += not is_warm(t)
        elif t.number < number:
            ahead += 1
    return finished + ahead < n_trials


def failed_elsewhere(ostudy: optuna.Study, number: int | None) -> bool:
    """Trial ``number`` was failed by someone else (its state read back from storage): a
    worker that missed heartbeats finds its trial failed as stale and re-queued."""
    if number is None:
        return False
    trial = ostudy.get_trials(deepcopy=False)[number]
    return trial.number == number and trial.state == TrialState.FAIL
