"""Aggregate the study's runs into tidy tables."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .atomic import atomic_path
from .study import Study

METRIC_COLUMNS = ("status", "best_val_acc", "best_val_loss", "best_epoch", "final_val_acc",
                  "test_acc", "epochs_run", "epoch_time_s", "total_time_s", "samples_per_s",
                  "peak_mem_mb", "n_params")


def read_metrics(run_dir: Path) -> dict | None:
    path = run_dir / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def experiment_table(study: Study) -> pd.DataFrame:
    """One row per (group, name, value, seed) of the plan, with its run's metrics.

    A run shared by several sweeps (the baseline value) appears in each, so
    every sweep's table is complete on its own; `run_id` shows the sharing.
    """
    rows = []
    for m in study.plan.members:
        metrics = read_metrics(study.paths.run_dir(m.run_id)) or {"status": "missing"}
        row = {"group": m.group, "name": m.name, "label": m.label, "seed": m.seed,
               "run_id": m.run_id}
        row.update({f"param:{k}": v if not isinstance(v, list) else json.dumps(v)
                    for k, v in m.overrides})
        row.update({k: metrics.get(k) for k in METRIC_COLUMNS})
        rows.append(row)
    return pd.DataFrame(rows)


def write_experiment_summary(study: Study, out: str | Path) -> pd.DataFrame:
    table = experiment_table(study)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    return table
