"""The run store (results/runs/): which runs are complete, valid, or stale.

A run directory is named by its signature and holds config.json (written
first) and metrics.json (written last). After DVC restores files (checkout,
pull, exp apply, a queued experiment's fresh workspace) every file has a new
modification time, so Snakemake could see completed runs as older than their
inputs. `sync` re-stamps complete, valid runs so Snakemake's view matches
what is really there; it never deletes a completed run.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .study import Study

# Files a run's downstream rules derive from metrics.json, touched after it.
DERIVED = ("scalars.csv", "results.toml")


@dataclass
class RunState:
    run_id: str
    state: str  # complete | incomplete | pending | invalid
    why: str = ""


def inspect(study: Study, run_id: str) -> RunState:
    d = study.paths.run_dir(run_id)
    if not d.exists():
        return RunState(run_id, "pending")
    cfg_path = d / "config.json"
    try:
        sig = json.loads(cfg_path.read_text())["signature"]
    except (OSError, ValueError, KeyError):
        return RunState(run_id, "invalid", f"{cfg_path} missing or unreadable")
    if sig != study.plan.runs[run_id].signature:
        return RunState(run_id, "invalid", "signature in config.json does not match the plan")
    if not (d / "metrics.json").is_file():
        return RunState(run_id, "incomplete")
    return RunState(run_id, "complete")


def sync(study: Study) -> dict[str, int]:
    """Stamp complete valid runs newer than the data manifest; count states."""
    counts: dict[str, int] = {}
    now = time.time()
    for run_id in study.plan.run_ids():
        st = inspect(study, run_id)
        counts[st.state] = counts.get(st.state, 0) + 1
        if st.state != "complete":
            continue
        d = study.paths.run_dir(run_id)
        os.utime(d / "metrics.json", (now, now))
        for name in DERIVED:  # derived after metrics.json: one second later
            if (d / name).exists():
                os.utime(d / name, (now + 1, now + 1))
    return counts


def stale_runs(study: Study) -> list[Path]:
    """Run directories not in the current plan (kept: they may come back)."""
    root = study.paths.results_dir / "runs"
    planned = set(study.plan.run_ids())
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name not in planned) \
        if root.is_dir() else []
