"""Warm start: completed sweep/grid/config runs enter the study as finished trials.

A run qualifies when it is complete and valid in the run store (its signature
matches the plan, metrics.json says ok or early_stopped) and a trial with the
run's space values would train exactly the run's config: every key outside the
space equal (so a sweep run with other epochs, or a named config with another
augmentation, does not qualify). Runs of one config with several seeds become
one trial whose value is their mean. Nothing is retrained.

Each added trial carries the user attr ``warm_start_key`` (the config's
signature); a config already in the study is never added again, so calling
``add_warm_start`` twice adds nothing the second time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from hpsweep.core.ids import run_signature
from hpsweep.core.plan import make_run
from hpsweep.core.runstatus import USABLE
from hpsweep.core.study import Study
from hpsweep.training.runstore import inspect, read_metrics
from hpsweep.tuning.space import SearchSpace, trial_overrides

log = logging.getLogger(__name__)


@dataclass
class WarmRun:
    key: str
    values: dict[str, Any]
    overrides: dict[str, Any]
    run_ids: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    accs: list[float] = field(default_factory=list)
    n_params: int | None = None
    curves: list[dict[int, float]] = field(default_factory=list)

    def intermediate_values(self) -> dict[int, float]:
        """Mean validation accuracy per epoch over the seeds that reached it."""
        epochs = sorted({e for c in self.curves for e in c})
        out = {}
        for e in epochs:
            vals = [c[e] for c in self.curves if e in c]
            out[e] = sum(vals) / len(vals)
        return out


@dataclass(frozen=True)
class DoneRun:
    """A complete, usable run of the plan whose values lie in the search space."""

    run_id: str
    config: dict[str, Any]  # the run's resolved config
    values: dict[str, Any]  # its values of the space's keys
    overrides: dict[str, Any]  # a trial's overrides for those values
    trial_config: dict[str, Any]  # what such a trial trains (with the run's seed)
    metrics: dict[str, Any]
    acc: float  # best validation accuracy
    labels: list[str]  # the plan members it is ("sweep:lr:0.003", ...)


def done_runs_in_space(study: Study, space: SearchSpace) -> Iterator[DoneRun]:
    """The plan's complete runs with a finite accuracy whose values lie in the space:
    what warm start (exact matches) and promotion (other epochs) choose from."""
    params = study.params
    labels: dict[str, list[str]] = {}
    for m in study.plan.members:
        labels.setdefault(m.run_id, []).append(f"{m.group}:{m.name}:{m.label}")
    for run_id in study.plan.run_ids():
        spec = study.plan.runs[run_id]
        values = space.values_of(spec.config)
        if values is None or inspect(study, run_id).state != "complete":
            continue
        metrics = read_metrics(study.paths.run_dir(run_id)) or {}
        acc = metrics.get("best_val_acc")
        if metrics.get("status") not in USABLE or acc is None or not math.isfinite(acc):
            continue
        overrides = trial_overrides(params, values)
        yield DoneRun(run_id, spec.config, values, overrides,
                      make_run(params, overrides, spec.seed).config, metrics, float(acc),
                      labels.get(run_id, []))


def candidates(study: Study, space: SearchSpace) -> list[WarmRun]:
    """The study's completed runs that a trial of this space would reproduce."""
    found: dict[str, WarmRun] = {}
    for r in done_runs_in_space(study, space):
        if r.trial_config != r.config:
            continue  # a key outside the space differs: not what a trial would train
        key = run_signature(r.config)[:16]
        w = found.setdefault(key, WarmRun(key, r.values, r.overrides))
        w.run_ids.append(r.run_id)
        w.labels += [lb for lb in r.labels if lb not in w.labels]
        w.accs.append(r.acc)
        w.n_params = r.metrics.get("n_params", w.n_params)
        w.curves.append({int(h["epoch"]): float(h["val_acc"])
                         for h in r.metrics.get("history", [])
                         if h.get("val_acc") is not None and math.isfinite(h["val_acc"])})
    return list(found.values())


def add_warm_start(ostudy: optuna.Study, study: Study, space: SearchSpace,
                   multi_objective: bool = False) -> dict[str, int]:
    """Add the qualifying runs not yet in ``ostudy``; returns counts (added, present, found)."""
    present = {t.user_attrs.get("warm_start_key") for t in ostudy.get_trials(deepcopy=False)}
    found = candidates(study, space)
    new = []
    for w in found:
        if w.key in present:
            continue
        if multi_objective and w.n_params is None:
            continue
        params, dists = space.encode(w.values)
        acc = sum(w.accs) / len(w.accs)
        new.append(optuna.trial.create_trial(
            state=TrialState.COMPLETE,
            **({"values": [acc, float(w.n_params)]} if multi_objective else {"value": acc}),
            params=params, distributions=dists,
            user_attrs={"warm_start": True, "warm_start_key": w.key, "overrides": w.overrides,
                        "run_ids": w.run_ids, "source": w.labels, "seeds_averaged": len(w.accs),
                        "n_params": w.n_params, "status": "ok"},
            intermediate_values=None if multi_objective else w.intermediate_values() or None))
    if new:
        ostudy.add_trials(new)
    log.info("warm start: %d completed runs qualify, %d added, %d already in the study",
             len(found), len(new), len(found) - len(new))
    return {"found": len(found), "added": len(new), "present": len(found) - len(new)}
