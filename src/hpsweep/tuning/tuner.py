"""Optuna refinement: one study shared by N worker processes (Snakemake jobs).

    setup_study(study)          create/load the study, add completed sweep runs (warm start)
    run_worker(study, i)        train trials until the study has optuna.n_trials finished
    collect(study)              trials.csv, best_params.json, figures

Paths (``Tuner``), for a study named S:

    results/optuna/S.db                          default SQLite storage (optuna.storage = "")
    results/optuna/S/<key>/setup.json            setup done (warm start counts)
    results/optuna/S/<key>/workers/<i>.json      worker i done
    results/optuna/S/<key>/trials/<number>/      a trial's run: config.json, metrics.json, tb/
    results/optuna/S/trials.csv, best_params.json
    results/optuna/<study>/figures/optuna_*.png

``key`` is a signature of what determines a trial's result (baseline config,
space, trial epochs, cv folds, objectives, trial seed, data identity, training
code); the Optuna study is named ``S-<key>``. Editing any of these starts a new
study (and new trial directories) instead of mixing incomparable trials, as run
directories do for sweeps. n_trials, sampler and pruner are not part of it:
raising n_trials continues the study (the workers' params stamp reruns them).

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

import hashlib
import json
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from hpsweep.core.atomic import write_text
from hpsweep.core.layout import OBJECTIVES, OptunaLayout
from hpsweep.core.params_deps import made_from
from hpsweep.core.plan import code_version, make_run
from hpsweep.core.schema import ParamsError
from hpsweep.core.study import Study
from hpsweep.data.prepared import PreparedData, load_prepared
from hpsweep.tuning.algorithms import make_pruner, make_sampler
from hpsweep.tuning.figures import write_figures
from hpsweep.tuning.space import trial_overrides
from hpsweep.tuning.storage import has_heartbeat, mask, open_storage, storage_url
from hpsweep.tuning.warmstart import add_warm_start

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
ACTIVE = (TrialState.RUNNING, TrialState.WAITING)


def optuna_logs_to_root() -> None:
    """Send Optuna's log records to the root logger (a job's log file), not its own
    stderr handler bound at import time."""
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()


@dataclass
class Tuner(OptunaLayout):
    """The Optuna side of a study: its key and paths (OptunaLayout), storage, sampler,
    pruner."""

    # -- storage -----------------------------------------------------------------------
    @cached_property
    def url(self) -> str:
        return storage_url(self.study)

    @property
    def masked_url(self) -> str:
        return mask(self.url)

    @property
    def storage_setting(self) -> str:
        """optuna.storage as written (${VAR} not expanded, password masked): safe to
        show, and computable where the variables are not set (Snakefile parsing)."""
        return mask(self.params.optuna.storage) or "(default SQLite)"

    def validate(self) -> None:
        """Problems params validation cannot see (it does not know Optuna); raised before
        any trial."""
        o = self.params.optuna
        problems = []
        if not o.space:
            problems.append("optuna.space is empty; add at least one [optuna.space.\"KEY\"]")
        if o.pruner == "wilcoxon" and o.cv_folds < 2:
            problems.append("optuna.pruner = 'wilcoxon' compares per-fold scores of paired "
                            "folds; set optuna.cv_folds >= 2 or pick another pruner")
        if o.sampler == "cmaes":
            try:
                import cmaes  # noqa: F401
            except ImportError:
                problems.append("optuna.sampler = 'cmaes' needs the `cmaes` package "
                                "(pip install cmaes), or pick another sampler")
        if problems:
            raise ParamsError(problems, str(self.study.params_path))

    def sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return make_sampler(self.params.optuna.sampler, seed,
                            n_trials=self.params.optuna.n_trials,
                            conditional=self.space.conditional)

    def pruner(self) -> optuna.pruners.BasePruner:
        epochs = self.params.optuna.epochs or self.params.train.epochs
        return make_pruner(self.params.optuna.pruner, multi_objective=self.multi_objective,
                           epochs=epochs)

    def open(self, *, seed: int | None = None,
             storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
        """Create or load the study (safe when several workers start at once)."""
        return optuna.create_study(
            storage=storage or open_storage(self.url), study_name=self.name, load_if_exists=True,
            directions=self.directions,
            sampler=self.sampler(self.params.optuna.seed if seed is None else seed),
            pruner=self.pruner())

    def load(self) -> optuna.Study:
        """Load an existing study (collect): a missing one is an error, not a new study."""
        try:
            return optuna.load_study(study_name=self.name, storage=open_storage(self.url),
                                     sampler=self.sampler(self.params.optuna.seed),
                                     pruner=self.pruner())
        except KeyError:
            raise RuntimeError(f"Optuna study {self.name!r} is not in {self.masked_url}; run "
                               "the optuna_setup and optuna_worker jobs first") from None


# -- counting ---------------------------------------------------------------------------------

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


# -- cross-validation -------------------------------------------------------------------------

def stratified_folds(y: torch.Tensor, k: int, seed: int) -> list[torch.Tensor]:
    """Indices of ``k`` stratified folds of labels ``y`` (fixed by ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[] for _ in range(k)]
    offset = 0
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        for i, chunk in enumerate(torch.tensor_split(idx, k)):
            # rotate per class so the larger remainders do not all land in fold 0
            parts[(i + offset) % k].append(chunk)
        offset += len(idx) % k
    return [torch.sort(torch.cat(p)).values for p in parts]


def fold_data(data: PreparedData, k: int, fold: int, seed: int) -> PreparedData:
    """Fold ``fold`` of ``k`` over train+val: that fold validates, the rest trains.
    The test split is untouched (and unused by trials)."""
    x = torch.cat([data.x_train, data.x_val])
    y = torch.cat([data.y_train, data.y_val])
    val = stratified_folds(y, k, seed)[fold]
    train = torch.ones(len(y), dtype=torch.bool)
    train[val] = False
    ident = hashlib.sha256(f"{data.checksum}:cv{k}:seed{seed}:fold{fold}".encode()).hexdigest()
    return PreparedData(x_train=x[train], y_train=y[train], x_val=x[val], y_val=y[val],
                        x_test=data.x_test, y_test=data.y_test, classes=data.classes,
                        dataset=data.dataset, checksum=ident)


# -- the objective ----------------------------------------------------------------------------

class _Surplus(Exception):  # noqa: N818 - a signal, not an error
    """The study already has n_trials finished or claimed: this trial is not run."""


class _Invalid(Exception):  # noqa: N818
    """The sampled combination is not a valid run config (e.g. nesterov with adam)."""


# A worker gives up after this many invalid samples in a row: the space is mostly invalid.
MAX_INVALID_IN_A_ROW = 20


def _train(*args, **kwargs) -> dict:
    """The trainer (module-level so tests can stand in for it)."""
    from hpsweep.training.engine import train_run

    return train_run(*args, **kwargs)


class Objective:
    def __init__(self, tuner: Tuner, data: PreparedData, worker: int,
                 threads: int | None = None, progress: bool = False):
        self.tuner, self.data, self.worker = tuner, data, worker
        self.threads, self.progress = threads, progress
        self.last_surplus = self.last_invalid = False
        self.last_number: int | None = None

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        from hpsweep.training.engine import Pruned

        tuner, params = self.tuner, self.tuner.params
        self.last_number, self.last_surplus, self.last_invalid = trial.number, False, False
        # First, so every trial this worker asked for says so, surplus and invalid ones too.
        trial.set_user_attr("worker", self.worker)
        if not admitted(trial.study, trial.number, params.optuna.n_trials):
            self.last_surplus = True
            trial.set_user_attr("surplus", True)
            raise _Surplus(f"n_trials = {params.optuna.n_trials} already finished or running")
        values = tuner.space.suggest(trial)
        overrides = trial_overrides(params, values)
        try:
            spec = make_run(params, overrides, tuner.trial_seed)
        except ParamsError as e:
            self.last_invalid = True
            trial.set_user_attr("invalid", str(e))
            raise _Invalid(str(e)) from None
        # A retry of a killed trial inherits its user attrs: train in the same directory,
        # so the trainer resumes the dead run's last checkpoint.
        rel = trial.user_attrs.get("run_dir") or str(tuner.trial_dir(trial.number))
        run_dir = Path(rel)
        trial.set_user_attr("run_dir", rel)
        trial.set_user_attr("overrides", overrides)
        trial.set_user_attr("run_id", spec.run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.json", json.dumps({
            "optuna_study": tuner.name, "trial": trial.number, "overrides": overrides,
            "run_id": spec.run_id, "signature": spec.signature, "seed": spec.seed,
            "code_version": code_version(), **spec.config}, indent=2, sort_keys=True))

        k = params.optuna.cv_folds
        epochs = spec.config["train"]["epochs"]
        wilcoxon = params.optuna.pruner == "wilcoxon"
        report = not tuner.multi_objective

        accs: list[float] = []
        metrics: dict[str, Any] = {}
        for fold in range(max(1, k)):
            def on_epoch(epoch: int, val_acc: float, fold: int = fold) -> None:
                if not report or wilcoxon or not math.isfinite(val_acc):
                    return
                trial.report(val_acc, fold * epochs + epoch)
                if trial.should_prune():
                    raise Pruned(f"trial {trial.number}, epoch {epoch}")

            data = self.data if k == 0 else fold_data(self.data, k, fold,
                                                      params.data.split_seed)
            out = run_dir if k == 0 else run_dir / f"fold_{fold}"
            metrics = _train(spec.config, data, out, seed=spec.seed, threads=self.threads,
                             on_epoch=on_epoch, progress=self.progress)
            trial.set_user_attr("status", metrics["status"])
            trial.set_user_attr("n_params", metrics.get("n_params"))
            trial.set_user_attr("epochs_run", metrics.get("epochs_run"))
            if metrics["status"] == "pruned":
                raise optuna.TrialPruned(f"fold {fold}, epoch {metrics.get('epochs_run')}")
            acc = metrics.get("best_val_acc")
            accs.append(float(acc) if acc is not None and math.isfinite(acc) else 0.0)
            if k:
                trial.set_user_attr("fold_val_acc", accs)
            if wilcoxon and report:
                trial.report(accs[-1], fold)
                if trial.should_prune():
                    # Optuna's advice for this pruner: return the estimate so far
                    trial.set_user_attr("pruned_after_fold", fold)
                    break
        value = sum(accs) / len(accs)
        trial.set_user_attr("val_acc", value)
        if tuner.multi_objective:
            return value, float(metrics.get("n_params") or 0)
        return value


# -- entry points ------------------------------------------------------------------------------

def setup_study(study: Study) -> dict[str, Any]:
    """Create (or load) the study and add the completed sweep runs once; writes setup.json."""
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
    info = {"optuna_study": tuner.name, "storage": tuner.masked_url, "warm_start": warm,
            "counts": trial_counts(ostudy)}
    write_text(tuner.setup_marker, json.dumps(info, indent=2))
    return info


def _worker_seed(base: int, worker: int, n_existing: int) -> int:
    """Distinct per worker and per restart: a rerun worker must not replay the random
    draws of its previous run."""
    h = hashlib.sha256(f"{base}:{worker}:{n_existing}".encode()).digest()
    return int.from_bytes(h[:4], "little")


def run_worker(study: Study, worker_index: int, *, threads: int | None = None,
               progress: bool = False, poll_s: float | None = None) -> dict[str, Any]:
    """Run trials until the study has optuna.n_trials finished trained trials.

    Returns (and writes to the worker's marker file) what this worker did.
    """
    tuner = Tuner(study)
    tuner.validate()
    n_trials = study.params.optuna.n_trials
    storage = open_storage(tuner.url)
    ostudy = tuner.open(storage=storage)
    ostudy.sampler = tuner.sampler(_worker_seed(study.params.optuna.seed, worker_index,
                                                len(ostudy.get_trials(deepcopy=False))))
    heartbeat = has_heartbeat(storage)
    if poll_s is None:
        # waiting for others' trials: look again every half heartbeat (at most 5 s)
        poll_s = min(5.0, max(0.2, storage.get_heartbeat_interval() / 2)) if heartbeat else 5.0
    data = load_prepared(study.paths.prepared)
    objective = Objective(tuner, data, worker_index, threads=threads, progress=progress)
    log.info("worker %d: study %s on %s, %d trials to finish", worker_index, tuner.name,
             tuner.masked_url, n_trials)
    ran: list[int] = []
    t0 = time.time()
    waited = False
    invalid_in_a_row = 0
    while True:
        if heartbeat:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(ostudy)
        c = trial_counts(ostudy)
        if c["finished"] >= n_trials:
            break
        if c["waiting"] == 0 and c["finished"] + c["running"] >= n_trials:
            if not heartbeat:
                log.info("worker %d: the last trials run elsewhere; this storage has no "
                         "heartbeat, so not waiting for them", worker_index)
                break
            if not waited:
                log.info("worker %d: waiting for %d running trial(s) (retried if their "
                         "worker dies)", worker_index, c["running"])
                waited = True
            time.sleep(poll_s)
            continue
        waited = False
        try:
            ostudy.optimize(objective, n_trials=1, catch=(_Surplus, _Invalid),
                            gc_after_trial=False)
        except ValueError as e:
            if "Cannot tell a FAIL trial" not in str(e):
                raise
            # This worker missed heartbeats (an overloaded machine) and another worker
            # failed its trial as stale and re-queued it; the retry counts, not this one.
            log.warning("worker %d: trial %s was failed as stale while it trained here "
                        "(heartbeats missed) and re-queued; this result is dropped",
                        worker_index, objective.last_number)
            continue
        if objective.last_surplus:
            time.sleep(poll_s)
        elif objective.last_invalid:
            invalid_in_a_row += 1
            if invalid_in_a_row >= MAX_INVALID_IN_A_ROW:
                raise ParamsError([f"optuna.space: {invalid_in_a_row} sampled combinations in "
                                   "a row were invalid run configs (see the FAIL trials' "
                                   "'invalid' attr); narrow the space"],
                                  str(study.params_path))
        elif objective.last_number is not None:
            invalid_in_a_row = 0
            ran.append(objective.last_number)
    info = {"worker": worker_index, "optuna_study": tuner.name, "storage": tuner.masked_url,
            "trials_run": ran, "counts": trial_counts(ostudy),
            "n_trials": n_trials, "wall_s": round(time.time() - t0, 2), "pid": os.getpid()}
    write_text(tuner.worker_marker(worker_index), json.dumps(info, indent=2))
    log.info("worker %d: done, ran trials %s; study counts %s", worker_index, ran, info["counts"])
    return info


def _plain(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, list | dict) else v


def trials_table(tuner: Tuner, ostudy: optuna.Study):
    """One row per trial, in the column names of Optuna's ``trials_dataframe``: number,
    state, value (multi-objective: values_0 = val acc, values_1 = parameters),
    params_<key> (decoded; lists as JSON), then what hpsweep records about the run."""
    import pandas as pd

    rows = []
    for t in ostudy.get_trials(deepcopy=False):
        ua = t.user_attrs
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        if tuner.multi_objective:
            vals = t.values or [None, None]
            row["values_0"], row["values_1"] = vals[0], vals[1]
        else:
            row["value"] = t.value
        row.update({f"params_{k}": _plain(v) for k, v in tuner.space.decode(t.params).items()})
        row.update({
            "warm_start": is_warm(t), "surplus": bool(ua.get("surplus")),
            "status": ua.get("status"), "n_params": ua.get("n_params"),
            "epochs_run": ua.get("epochs_run"),
            "duration_s": t.duration.total_seconds() if t.duration else None,
            "worker": ua.get("worker"), "run_dir": ua.get("run_dir"),
            "retried_from": t.system_attrs.get("failed_trial"),
            "source": _plain(ua.get("source"))})
        rows.append(row)
    return pd.DataFrame(rows)


def best_trial(tuner: Tuner, ostudy: optuna.Study) -> FrozenTrial:
    """Highest validation accuracy; multi-objective: the Pareto trial with the highest
    accuracy (fewest parameters on a tie)."""
    if not ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise RuntimeError(f"Optuna study {tuner.name!r} has no completed trial; "
                           "run the optuna_worker jobs first")
    if tuner.multi_objective:
        return max(ostudy.best_trials, key=lambda t: (t.values[0], -t.values[1]))
    return ostudy.best_trial


def best_record(tuner: Tuner, ostudy: optuna.Study) -> dict[str, Any]:
    t = best_trial(tuner, ostudy)
    values = tuner.space.decode(t.params)
    overrides = trial_overrides(tuner.params, values)
    spec = make_run(tuner.params, overrides, tuner.trial_seed)
    return {
        "optuna_study": tuner.name, "storage": tuner.masked_url,
        "trial_number": t.number, "value": t.values[0],
        **({"values": dict(zip(OBJECTIVES, t.values, strict=True))}
           if tuner.multi_objective else {}),
        "warm_start": is_warm(t), "source": t.user_attrs.get("source"),
        "run_dir": t.user_attrs.get("run_dir"), "run_ids": t.user_attrs.get("run_ids"),
        "params": values, "overrides": overrides, "config": spec.config,
        "counts": trial_counts(ostudy),
    }


def collect(study: Study) -> dict[str, Any]:
    """Write trials.csv, best_params.json and the figures; returns the best record."""
    from hpsweep.core.atomic import atomic_path

    tuner = Tuner(study)
    ostudy = tuner.load()
    table = trials_table(tuner, ostudy)
    # the params these trials were made from (hpsweep.core.params_deps): checkable later
    digest = made_from(study.params, "optuna_collect")
    table["made_from"] = digest
    with atomic_path(tuner.trials_csv) as tmp:
        table.to_csv(tmp, index=False)
    best = best_record(tuner, ostudy)
    best["made_from"] = digest
    write_text(tuner.best_params_path, json.dumps(best, indent=2, default=str))
    best["figures"] = write_figures(ostudy, tuner.figures_dir, tuner.multi_objective)
    log.info("best trial %d: val acc %.4f, %s", best["trial_number"], best["value"],
             best["overrides"])
    return best
