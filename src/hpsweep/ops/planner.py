"""Fit a study into its budget (`study.budget`), before anything runs: `hpsweep plan`.

The practitioners' method with its fidelities chosen for the machine: low-fidelity
sweeps to rank values, Optuna at the final fidelity for what is left, then the final
seeds and the control. Prices come from ops.estimate (a short calibration per model
shape on this machine, cached under <results>/calibration/), always as if nothing ran
yet, so the same params on the same machine give the same plan.

    fixed   = final seeds + control + report                 (not planned: priced first)
    sweeps  = the largest train.epochs (<= its params.toml value) whose sweeps, grids
              and configs fit SWEEP_SHARE of what is left (the whole of it without Optuna)
    optuna  = the most trials (<= optuna.n_trials) that fit the rest, pruning priced;
              when that is fewer than asked, optuna.minutes stops each worker when the
              stage's share is spent (a slower machine trains fewer trials, on time)
    then    = if Optuna got all its trials, the sweeps take what is left (up to the cap)

Each candidate is priced whole at its sweep epochs: the trials train them where
optuna.epochs = 0, and so do the final seeds and the control where final.epochs = 0
and no Optuna chooses (the best sweep member wins).

Values written in a run's overrides stay as written (a sweep over train.epochs, a
named config's epochs). A plan that fits as written is the study as written: nothing
is lowered and optuna.minutes keeps its value. The result is frozen by core.budget.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import Any

from hpsweep.core import budget
from hpsweep.core.atomic import write_json
from hpsweep.core.schema import Params, ParamsError
from hpsweep.core.study import Study
from hpsweep.ops import estimate as est
from hpsweep.ops.threads import job_slots

# Of the time left after the final stage, what the sweeps may take when Optuna runs too
# (the rest is Optuna's): the sweeps rank values, Optuna refines at the final fidelity.
SWEEP_SHARE = 0.5


@dataclass
class _Pricing:
    """What the plan is priced from: this machine's costs and its job slots."""

    written: Study  # the study as params.toml writes it (the bounds)
    slots: int
    cost_of: Any

    def inputs(self, chosen: dict[str, Any]) -> est._Inputs:
        """What the study with the ``chosen`` values is priced from."""
        params = budget.apply_lock(self.written.params, {"chosen": chosen})
        study = Study(self.written.params_path, params, self.written.paths)
        return est.study_inputs(study, fresh=True, cost_of=self.cost_of)

    def stages(self, chosen: dict[str, Any]) -> list[est.StageEstimate]:
        x = self.inputs(chosen)
        return est.estimate(x.study, x)

    def wall(self, stage: est.StageEstimate) -> float:
        return stage.wall_min(self.slots)


def make_plan(written: Study, *, slots: int | None = None,
              cost_of=est.calibrate) -> dict[str, Any]:
    """The lock for ``written`` (a Study loaded as params.toml writes it)."""
    params = written.params
    b = params.study.budget
    p = _Pricing(written, slots or job_slots(), cost_of)
    bounds = budget.planned_values(params)
    cap_e, cap_n = bounds["train.epochs"], bounds["optuna.n_trials"]
    as_written = p.stages(bounds)
    by = {s.stage: s for s in as_written}

    # Every price is at the candidate's sweep epochs e: trials train them where
    # optuna.epochs = 0, and the final seeds (and the control) where final.epochs = 0 and
    # the winner is a sweep member (no Optuna). A candidate prices only what it changes.
    @functools.cache
    def left(e: int) -> float:
        """The budget less the final seeds, the control and the report."""
        x = p.inputs({**bounds, "train.epochs": e})
        return b - sum(p.wall(s) for s in est.closing_stages(x))

    @functools.cache
    def sweeps(e: int) -> float:
        return p.wall(est.sweeps_stage(p.inputs({**bounds, "train.epochs": e})))

    @functools.cache
    def optuna(n: int, e: int) -> float:
        if not params.optuna.enabled:
            return 0.0
        chosen = {**bounds, "train.epochs": e, "optuna.n_trials": n}
        return p.wall(est.optuna_stage(p.inputs(chosen)))

    least = b - left(1) + sweeps(1) + optuna(1, 1)
    if b < least:
        raise ParamsError([f"study.budget = {b:g} min is too small for this study on this "
                           f"machine: {_least_study(params)} need {least:.1f} min; set "
                           f"study.budget >= {math.ceil(least)} (or 0 for the fidelities as "
                           f"written)"])
    share = SWEEP_SHARE if params.optuna.enabled else 1.0
    e = _largest(cap_e, lambda e: sweeps(e) <= share * left(e)) or 1
    if params.optuna.enabled:
        e = min(e, _largest(cap_e, lambda e: sweeps(e) + optuna(1, e) <= left(e)) or 1)
    n = _largest(cap_n, lambda n: sweeps(e) + optuna(n, e) <= left(e)) \
        if params.optuna.enabled else cap_n
    if n == cap_n:  # Optuna has all it asked for: the sweeps may use the rest
        e = _largest(cap_e, lambda e: sweeps(e) + optuna(n, e) <= left(e)) or e
    chosen = {**bounds, "train.epochs": e, "optuna.n_trials": n}
    if params.optuna.enabled and n < cap_n:
        o = params.optuna
        share_min = left(e) - sweeps(e)
        per_worker = share_min * min(p.slots, o.n_workers) / o.n_workers
        # a tenth of a minute at least: 0 would mean no limit
        per_worker = max(0.1, math.floor(per_worker * 10) / 10)
        chosen["optuna.minutes"] = min(o.minutes, per_worker) if o.minutes else per_worker
    planned = p.stages(chosen)
    return {
        "version": budget.LOCK_VERSION, "budget": b, "inputs": budget.inputs_digest(params),
        "chosen": chosen, "bounds": bounds,
        "machine": {"job_slots": p.slots, "cpus": os.cpu_count()},
        "stages": [{"stage": s.stage, "runs": s.runs, "epochs": s.epochs,
                    "minutes": round(p.wall(s), 2)} for s in planned],
        "total_minutes": round(sum(p.wall(s) for s in planned), 2),
        "as_written_minutes": round(sum(p.wall(s) for s in by.values()), 2),
    }


def _least_study(params: Params) -> str:
    """What the least budget pays for, as the stages are enabled."""
    parts = ["one sweep epoch"]
    if params.optuna.enabled:
        parts.append("one Optuna trial")
    if params.final.enabled:
        parts.append("the final seeds")
        if params.final.control:
            parts.append("their control")
    return ", ".join(parts) + " and the report"


def _largest(cap: int, fits) -> int:
    """The largest value in 1..cap for which ``fits`` holds (it is monotone), or 0."""
    lo, hi = 0, cap
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def current_lock(written: Study) -> dict[str, Any] | None:
    """The frozen plan, if it is the plan for these params."""
    lock = budget.read_lock(written.paths.plan_lock)
    return lock if not budget.why_not_current(lock, written.params) else None


def plan_and_freeze(written: Study, *, update: bool = False, cost_of=est.calibrate,
                    slots: int | None = None) -> tuple[dict[str, Any], bool]:
    """(the lock, whether it was made now): the frozen one while it is current, else a
    new plan, written. ``update``: re-plan (and recalibrate) regardless."""
    params: Params = written.params
    written.paths.calibration.mkdir(parents=True, exist_ok=True)  # the DVC plan stage's output
    if not params.study.budget:
        lock = {"version": budget.LOCK_VERSION, "budget": 0, "chosen": {}}
        if budget.read_lock(written.paths.plan_lock) != lock:
            write_json(written.paths.plan_lock, lock)
        return lock, False
    lock = None if update else current_lock(written)
    if lock is not None:
        return lock, False
    if update:
        _drop_calibration(written)
    lock = make_plan(written, cost_of=cost_of, slots=slots)
    write_json(written.paths.plan_lock, lock)
    return lock, True


def _drop_calibration(written: Study) -> None:
    cache = written.paths.calibration
    if cache.is_dir():
        for f in cache.glob("*.json"):
            f.unlink()


def render(lock: dict[str, Any]) -> str:
    """The plan as a table: per stage, runs, epochs and minutes; the total vs the budget."""
    from tabulate import tabulate

    rows = [[s["stage"], s["runs"], s["epochs"], f"{s['minutes']:.1f}"] for s in lock["stages"]]
    rows.append(["total", "", "", f"{lock['total_minutes']:.1f}"])
    table = tabulate(rows, ["stage", "runs", "epochs", "minutes"],
                     colalign=("left", "right", "right", "right"), disable_numparse=True)
    fit = "; ".join(f"{k} = {v} (params.toml: {bound})"
                    for k, (v, bound) in budget.changed(lock).items()) \
        or "the study as written fits"
    return (f"{table}\nbudget {lock['budget']:g} min, planned {lock['total_minutes']:.1f} min "
            f"({lock['machine']['job_slots']} training job(s) at once); as written "
            f"{lock['as_written_minutes']:.1f} min. Planned: {fit}.")
