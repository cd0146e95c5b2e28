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


def candidates(study: Study, space: SearchSpace) -> list[WarmRun]:
    """The study's completed runs that a trial of this space would reproduce."""

    params = study.params
    labels: dict[str, list[str]] = {}
    for m in study.plan.members:
        labels.setdefault(m.run_id, []).append(f"{m.group}:{m.name}:{m.label}")
    found: dict[str, WarmRun] = {}
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
        if make_run(params, overrides, spec.seed).config != spec.config:
            continue  # a key outside the space differs: not what a trial would train
        key = run_signature(spec.config)[:16]
        w = found.setdefault(key, WarmRun(key, values, overrides))
        w.run_ids.append(run_id)
        w.labels += [lb for lb in labels.get(run_id, []) if lb not in w.labels]
        w.accs.append(float(acc))
        w.n_params = metrics.get("n_params", w.n_params)
        w.curves.append({int(h["epoch"]): float(h["val_acc"]) for h in metrics.get("history", [])
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
