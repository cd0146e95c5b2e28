"""The tuning jobs that train: optuna_setup (create the study, warm start) and
optuna_worker (train trials until the study has optuna.n_trials finished ones; the
promoted ones in packs where study.pack_size allows: tuning.trial_pack)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import optuna

from hpsweep.core.atomic import write_text
from hpsweep.core.schema import ParamsError
from hpsweep.core.study import Study
from hpsweep.data.prepared import load_prepared
from hpsweep.tuning.counting import failed_elsewhere, trial_counts
from hpsweep.tuning.objective import Objective, _Invalid, _Surplus
from hpsweep.tuning.promotion import promote
from hpsweep.tuning.storage import has_heartbeat, open_storage
from hpsweep.tuning.trial_pack import packed_in_line, train_promoted_pack
from hpsweep.tuning.tuner import Tuner
from hpsweep.tuning.warmstart import add_warm_start

log = logging.getLogger(__name__)

# The clock optuna.minutes is measured on (a name of its own, so a test can move it).
_now = time.monotonic

# A worker gives up after this many invalid samples in a row: the space is mostly invalid.
MAX_INVALID_IN_A_ROW = 20


def setup_study(study: Study, marker: str | Path | None = None) -> dict[str, Any]:
    """Create (or load) the study and add the completed sweep runs once; writes the setup
    marker (``marker``: the rule's output; default the layout's setup.json)."""
    tuner = Tuner(study)
    tuner.validate()
    ostudy = tuner.open()
    ostudy.set_user_attr("hpsweep", {"key": tuner.key, "space": tuner.space.describe(),
                                     "trial_seed": tuner.trial_seed,
                                     "epochs": study.params.optuna.epochs,
                                     "cv_folds": study.params.optuna.cv_folds})
    o = study.params.optuna
    warm = {"found": 0, "added": 0, "present": 0}
    if o.warm_start and o.cv_folds:
        log.info("warm start skipped: sweep runs score the fixed split, trials score %d-fold "
                 "cross-validation", o.cv_folds)
    elif o.warm_start:
        warm = add_warm_start(ostudy, study, tuner.space, tuner.multi_objective)
    promoted = promote(ostudy, study, tuner.space, o.promote)
    info = {"optuna_study": tuner.name, "storage": tuner.masked_url, "warm_start": warm,
            "promotion": promoted, "counts": trial_counts(ostudy)}
    write_text(marker or tuner.setup_marker, json.dumps(info, indent=2))
    return info


def _worker_seed(base: int, worker: int, n_existing: int) -> int:
    """Distinct per worker and per restart: a rerun worker must not replay the random
    draws of its previous run."""
    h = hashlib.sha256(f"{base}:{worker}:{n_existing}".encode()).digest()
    return int.from_bytes(h[:4], "little")


class _Worker:
    """One worker's loop, step by step: what to do next (stop, wait, train a trial) and
    what one trial's outcome means for the loop."""

    def __init__(self, study: Study, index: int, threads: int | None, progress: bool,
                 poll_s: float | None):
        self.study, self.index = study, index
        self.tuner = tuner = Tuner(study)
        tuner.validate()
        self.n_trials = study.params.optuna.n_trials
        self.storage = storage = open_storage(tuner.url)
        self.ostudy = tuner.open(storage=storage)
        self.ostudy.sampler = tuner.sampler(_worker_seed(
            study.params.optuna.seed, index, len(self.ostudy.get_trials(deepcopy=False))))
        self.heartbeat = has_heartbeat(storage)
        if poll_s is None:
            # waiting for others' trials: look again every half heartbeat (at most 5 s)
            poll_s = (min(5.0, max(0.2, storage.get_heartbeat_interval() / 2))
                      if self.heartbeat else 5.0)
        self.poll_s = poll_s
        self.objective = Objective(tuner, load_prepared(study.paths.prepared), index,
                                   threads=threads, progress=progress)
        self.ran: list[int] = []
        self.waited = False
        self.invalid_in_a_row = 0
        minutes = study.params.optuna.minutes
        self.deadline = _now() + 60 * minutes if minutes else None
        self.trial_s: list[float] = []  # seconds of each trial (or pack) this worker ran
        self.stopped_by = "n_trials"
        # promoted trials in packs (tuning.trial_pack): one objective, the fixed split
        o = study.params.optuna
        self.pack_size = (study.params.study.pack_size
                          if not tuner.multi_objective and not o.cv_folds else 1)

    def next_step(self) -> str:
        """"stop", "wait" (the last trials run elsewhere) or "train"."""
        if self.heartbeat:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.ostudy)
        c = trial_counts(self.ostudy)
        if c["finished"] >= self.n_trials:
            return "stop"
        expected_s = self.expected_trial_s()
        if self.deadline is not None and _now() + expected_s > self.deadline:
            log.info("worker %d: optuna.minutes = %g spent, or too little of it left for "
                     "a trial of %.1f min (this worker's mean); no new trial (%d of %d "
                     "finished)", self.index, self.study.params.optuna.minutes,
                     expected_s / 60, c["finished"], self.n_trials)
            self.stopped_by = "optuna.minutes"
            return "stop"
        if c["waiting"] == 0 and c["finished"] + c["running"] >= self.n_trials:
            if not self.heartbeat:
                log.info("worker %d: the last trials run elsewhere; this storage has no "
                         "heartbeat, so not waiting for them", self.index)
                return "stop"
            if not self.waited:
                log.info("worker %d: waiting for %d running trial(s) (retried if their "
                         "worker dies)", self.index, c["running"])
                self.waited = True
            return "wait"
        self.waited = False
        return "train"

    def expected_trial_s(self) -> float:
        """How long this worker's next trial may take: the mean of those it ran (0 before
        the first). A trial started with less than that left of optuna.minutes would, on
        average, end past them, and the budget's plan counts on the stage ending there."""
        return sum(self.trial_s) / len(self.trial_s) if self.trial_s else 0.0

    def train_one(self) -> None:
        """Train the next trial (or pack of promoted trials) and time it."""
        started, ran_before = _now(), len(self.ran)
        self._train_one()
        if len(self.ran) > ran_before:  # trained something (not a surplus or invalid draw)
            self.trial_s.append(_now() - started)

    def _train_one(self) -> None:
        if self.pack_size > 1 and packed_in_line(self.ostudy, self.pack_size) > 1:
            self.ran += train_promoted_pack(self.ostudy, self.storage, self.objective,
                                            self.pack_size)
            self.invalid_in_a_row = 0
            return
        objective = self.objective
        try:
            self.ostudy.optimize(objective, n_trials=1, catch=(_Surplus, _Invalid),
                                 gc_after_trial=False)
        except ValueError:
            # Optuna refuses to tell a trial that is already finished. It is FAIL when
            # this worker missed heartbeats (an overloaded machine) and another worker
            # failed its trial as stale and re-queued it; the retry counts, not this one.
            if not failed_elsewhere(self.ostudy, objective.last_number):
                raise
            log.warning("worker %d: trial %s was failed as stale while it trained here "
                        "(heartbeats missed) and re-queued; this result is dropped",
                        self.index, objective.last_number)
            return
        if objective.last_surplus:
            time.sleep(self.poll_s)
        elif objective.last_invalid:
            self.invalid_in_a_row += 1
            if self.invalid_in_a_row >= MAX_INVALID_IN_A_ROW:
                raise ParamsError([f"optuna.space: {self.invalid_in_a_row} sampled "
                                   "combinations in a row were invalid run configs (see the "
                                   "FAIL trials' 'invalid' attr); narrow the space"],
                                  str(self.study.params_path))
        elif objective.last_number is not None:
            self.invalid_in_a_row = 0
            self.ran.append(objective.last_number)


def run_worker(study: Study, worker_index: int, *, threads: int | None = None,
               progress: bool = False, poll_s: float | None = None,
               marker: str | Path | None = None) -> dict[str, Any]:
    """Run trials until the study has optuna.n_trials finished trained trials.

    Returns (and writes to ``marker``, the rule's output; default the layout's worker
    marker) what this worker did.
    """
    w = _Worker(study, worker_index, threads, progress, poll_s)
    tuner = w.tuner
    log.info("worker %d: study %s on %s, %d trials to finish", worker_index, tuner.name,
             tuner.masked_url, w.n_trials)
    t0 = time.time()
    while (step := w.next_step()) != "stop":
        if step == "wait":
            time.sleep(w.poll_s)
        else:
            w.train_one()
    info = {"worker": worker_index, "optuna_study": tuner.name, "storage": tuner.masked_url,
            "trials_run": w.ran, "counts": trial_counts(w.ostudy), "stopped_by": w.stopped_by,
            "n_trials": w.n_trials, "wall_s": round(time.time() - t0, 2), "pid": os.getpid()}
    write_text(marker or tuner.worker_marker(worker_index), json.dumps(info, indent=2))
    log.info("worker %d: done, ran trials %s; study counts %s", worker_index, w.ran,
             info["counts"])
    return info
