"""The tuning stage's results (optuna_collect): trials.csv, best_params.json, figures."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsweep.core.atomic import atomic_path, write_text
from hpsweep.core.layout import OBJECTIVES, optuna_figure_names
from hpsweep.core.params_deps import made_from
from hpsweep.core.plan import make_run
from hpsweep.core.study import Study
from hpsweep.tuning.counting import is_warm, trial_counts
from hpsweep.tuning.figures import write_figures
from hpsweep.tuning.space import trial_overrides
from hpsweep.tuning.tuner import Tuner

log = logging.getLogger(__name__)


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
            "warm_start": is_warm(t), "promoted": bool(ua.get("promoted")),
            "surplus": bool(ua.get("surplus")),
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


def collect(study: Study, out: Mapping[str, str | Path] | None = None) -> dict[str, Any]:
    """Write trials.csv, best_params.json and the figures; returns the best record.

    ``out``: the files by key (the rule's named outputs; default the layout's)."""
    tuner = Tuner(study)
    out = {k: Path(v) for k, v in (out or tuner.collect_output_map()).items()}
    ostudy = tuner.load()
    table = trials_table(tuner, ostudy)
    # the params these trials were made from (hpsweep.core.params_deps): checkable later
    digest = made_from(study.params, "optuna_collect")
    table["made_from"] = digest
    with atomic_path(out["trials"]) as tmp:
        table.to_csv(tmp, index=False)
    best = best_record(tuner, ostudy)
    best["made_from"] = digest
    write_text(out["best"], json.dumps(best, indent=2, default=str))
    figures = {n: out[f"optuna_{n}"] for n in optuna_figure_names(tuner.multi_objective)}
    best["figures"] = write_figures(ostudy, figures, tuner.multi_objective)
    log.info("best trial %d: val acc %.4f, %s", best["trial_number"], best["value"],
             best["overrides"])
    return best
