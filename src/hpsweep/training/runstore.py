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
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hpsweep.core import layout, params_deps
from hpsweep.core.runstatus import RunStatus
from hpsweep.core.study import Study

# Seconds between the layers sync stamps (file systems keep nanoseconds).
STEP = 0.01
# Files a run's downstream rules derive from metrics.json, touched after it.
DERIVED = ("scalars.csv", "results.toml")


@dataclass
class RunState:
    run_id: str
    state: str  # complete | incomplete | pending | invalid
    why: str = ""


def read_metrics(run_dir: Path) -> dict | None:
    """A run's metrics.json (written last by the trainer: the run is complete), or None."""
    path = run_dir / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


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
        return RunState(run_id, RunStatus.INCOMPLETE)
    return RunState(run_id, "complete")


def _downstream_layers(study: Study) -> list[list[Path]]:
    """Outputs after the runs, in the order the DAG makes them (may not exist)."""
    summary = layout.experiment_summary_path(study)
    optuna = study.paths.results_dir / "optuna"  # every study name's and key's outputs
    final = layout.final_dir(study)
    glob = lambda root, pat: sorted(root.glob(pat)) if root.is_dir() else []  # noqa: E731
    return [
        [summary],
        [p for p in glob(layout.summary_dir(study), "*") if p != summary],
        glob(optuna, "**/setup.json"),
        glob(optuna, "**/workers/*.json"),
        [p for p in glob(optuna, "*/*") if p.is_file()] + glob(optuna, "*/figures/*"),
        glob(final, "seed_*/metrics.json") + glob(final, "control/seed_*/metrics.json"),
        [p for p in glob(final, "*") if p.is_file()],
        [p for p in glob(layout.figures_dir(study), "*") if p.is_file()],
        # the report rule's outputs: report.md and its copies of the Optuna figures
        [layout.report_path(study), *layout.report_optuna_figures(study).values()],
    ]


def sync(study: Study, snakefile: str | Path | None = "Snakefile") -> dict[str, int]:
    """Re-stamp what DVC restored, in DAG order, so nothing complete looks stale.

    Oldest first: the params stamps (hpsweep.core.params_deps; DVC restored each with
    the outputs it describes), then, after the prepared data (which keeps its
    time), complete valid runs and what is derived from them (extraction,
    summaries, Optuna, final retrain, report), STEP apart, the last one just now:
    never in the future, or a stamp the Snakefile rewrites right after (a changed
    param) could still look older than the outputs it makes stale. Incomplete or
    invalid runs are left alone (Snakemake reruns them), and Snakemake forgets how
    the restored files were made last time (see _forget_history). Returns how
    many runs are in each state.
    """
    counts: dict[str, int] = {}
    layers = _downstream_layers(study)
    now = time.time()
    manifest = study.paths.manifest
    data_time = manifest.stat().st_mtime if manifest.is_file() else now - 1
    t = max(now - STEP * (len(layers) + 2), data_time + STEP)  # the runs' time
    stamp = lambda path, when: os.utime(path, (when, when))  # noqa: E731
    for rule in params_deps.RULES:
        path = params_deps.stamp_path(study.paths.results_dir, rule)
        if path.is_file():
            stamp(path, min(t, data_time) - STEP)
    derived = []
    for run_id in study.plan.run_ids():
        st = inspect(study, run_id)
        counts[st.state] = counts.get(st.state, 0) + 1
        if st.state != "complete":
            continue
        d = study.paths.run_dir(run_id)
        stamp(d / "metrics.json", t)
        derived += [d / name for name in DERIVED if (d / name).exists()]
    for path in derived:
        stamp(path, t + STEP)
    restored = list(derived)
    for i, layer in enumerate(layers, start=2):
        for path in layer:
            if path.is_file():
                stamp(path, t + i * STEP)
                restored.append(path)
    if snakefile is not None:
        _forget_history(study, snakefile, restored)
    return counts


def _forget_history(study: Study, snakefile: Path, files: list[Path]) -> None:
    """Drop Snakemake's records of what made these files.

    Snakemake remembers the inputs each output was last made from. After DVC
    restores another version (baseline after an experiment), those records
    describe the other version, and Snakemake would redo e.g. the summary
    although the restored one matches the params. DVC vouches for restored
    files, so their history goes; modification times (set above) decide.
    """
    if not files or not Path(snakefile).is_file():
        return
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "--config",
           f"params={study.params_path}", "--cleanup-metadata", *map(str, files)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    # Files Snakemake holds no record of are reported as failures; nothing to forget there.
    if res.returncode != 0 and "metadata was not present" not in res.stderr + res.stdout:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:]
        raise RuntimeError(f"snakemake --cleanup-metadata failed: {' '.join(tail)}")


def stale_runs(study: Study) -> list[Path]:
    """Run directories not in the current plan (kept: they may come back)."""
    root = study.paths.results_dir / "runs"
    planned = set(study.plan.run_ids())
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name not in planned) \
        if root.is_dir() else []
