"""Which configuration the final stage retrains: Optuna's best trial when
``optuna.enabled``, else the sweep/grid/config with the highest mean validation
accuracy; ``final.epochs`` > 0 replaces its epochs."""

from __future__ import annotations

import json
from typing import Any

from hpsweep.core.layout import best_input
from hpsweep.core.plan import RunSpec, make_run
from hpsweep.core.runstatus import USABLE
from hpsweep.core.study import Study
from hpsweep.training.runstore import read_metrics

# -- the configuration --------------------------------------------------------------------------

def best_choice(study: Study) -> dict[str, Any]:
    """{"source", "overrides", "val_acc", ...} of the configuration to retrain."""
    if not study.params.optuna.enabled:
        # read from the run store (the summary csv is only the rule's ordering input)
        return _best_sweep_member(study)
    path = best_input(study)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; run the optuna_collect job first")
    best = json.loads(path.read_text())
    return {"source": "optuna", "optuna_study": best["optuna_study"],
            "trial_number": best["trial_number"], "warm_start": best.get("warm_start"),
            "val_acc": best["value"], "overrides": best["overrides"]}


def _best_sweep_member(study: Study) -> dict[str, Any]:
    """The plan member (any group) with the highest mean best_val_acc over its seeds."""
    accs: dict[tuple, dict[str, float]] = {}  # overrides -> run_id -> best val acc
    labels: dict[tuple, str] = {}
    for m in study.plan.members:
        metrics = read_metrics(study.paths.run_dir(m.run_id)) or {}
        acc = metrics.get("best_val_acc")
        if metrics.get("status") in USABLE and acc is not None:
            key = tuple((k, json.dumps(v)) for k, v in m.overrides)
            accs.setdefault(key, {})[m.run_id] = float(acc)
            labels.setdefault(key, f"{m.group}:{m.name}:{m.label}")
    if not accs:
        raise RuntimeError("no completed sweep run to choose the final configuration from")

    def mean(key: tuple) -> float:
        return sum(accs[key].values()) / len(accs[key])

    key = max(accs, key=mean)
    return {"source": "sweeps", "member": labels[key], "run_ids": sorted(accs[key]),
            "val_acc": mean(key), "overrides": {k: json.loads(v) for k, v in key}}


def final_overrides(study: Study, best: dict[str, Any] | None = None) -> dict[str, Any]:
    overrides = dict((best or best_choice(study))["overrides"])
    if study.params.final.epochs > 0:
        overrides["train.epochs"] = study.params.final.epochs
    return overrides


def final_spec(study: Study, seed: int, best: dict[str, Any] | None = None) -> RunSpec:
    return make_run(study.params, final_overrides(study, best), seed)
