"""A budgeted study's frozen plan: what `study.budget` changes, and the lock that fixes it.

With ``study.budget = B`` (> 0) the fidelities in params.toml become upper bounds, and
a planner (hpsweep.ops.planner, which calibrates the machine) chooses the values of
PLANNED keys that fit the study into B minutes. Its choice is frozen in

    <results>/plan/lock.json     the budget, the digest of the params it was planned
                                 for, the chosen values, the planned minutes per stage

so a rerun on a noisier, faster or slower machine trains the same runs (run ids
depend on train.epochs): the lock is replaced only when the params it was planned
for change, or on `hpsweep plan --update`. Loading a budgeted study (core.study)
overlays the lock's values on the params; every consumer (run signatures, stamps,
the report) then sees the values that actually train. With budget 0 nothing is read.

Nothing here imports torch: the Snakefile and the scripts load studies through it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hpsweep.core.params_deps import OPTUNA_STUDY, PLAN, RUN_CONFIG, digest, value_at
from hpsweep.core.schema import Params, ParamsError, parse_params

LOCK_VERSION = 1
# The keys the planner sets. Their params.toml values are the upper bounds.
PLANNED = ("train.epochs", "optuna.n_trials", "optuna.minutes")
# The keys a plan depends on: what is trained, how long, how many trials and seeds.
# Report, tracking and data-source keys are not among them: changing them re-plans nothing.
PLAN_INPUTS = (*RUN_CONFIG, *PLAN, *OPTUNA_STUDY, "optuna", "final", "study.budget")


def inputs_digest(params: Params) -> str:
    """The digest of the params a plan is made from (their params.toml values)."""
    dump = params.model_dump(mode="json")
    return digest({k: value_at(dump, k) for k in sorted(set(PLAN_INPUTS))})


def read_lock(path: Path) -> dict[str, Any] | None:
    try:
        lock = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return lock if isinstance(lock, dict) and lock.get("version") == LOCK_VERSION else None


def why_not_current(lock: dict[str, Any] | None, params: Params) -> str:
    """'' when ``lock`` is the plan for these params, else the reason it is not."""
    if lock is None:
        return "no plan is frozen yet"
    if lock.get("inputs") != inputs_digest(params):
        return "the frozen plan was made for other params"
    return ""


class NoPlanError(ParamsError):
    """A budgeted study without its current frozen plan."""


def no_plan_error(params: Params, lock: Path, why: str) -> NoPlanError:
    return NoPlanError([f"study.budget = {params.study.budget:g} min but {why} "
                        f"({lock}); run `hpsweep plan` to plan and freeze "
                        "the study (snakemake does it before it runs)"])


def apply_lock(params: Params, lock: dict[str, Any]) -> Params:
    """The params with the lock's chosen values: what the budgeted study trains."""
    doc = params.model_dump(mode="json")
    for key, value in lock["chosen"].items():
        if key not in PLANNED:
            raise ParamsError([f"{key} in a plan lock is not a planned key; run "
                               "`hpsweep plan --update`"])
        section, leaf = key.split(".")
        doc[section][leaf] = value
    return parse_params(doc, "planned params")


def changed(lock: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The keys a plan set below params.toml: {key: (planned value, params.toml value)}."""
    return {k: (v, lock["bounds"][k]) for k, v in lock["chosen"].items()
            if v != lock["bounds"][k]}


def planned_values(params: Params) -> dict[str, Any]:
    dump = params.model_dump(mode="json")
    return {k: value_at(dump, k) for k in PLANNED}
