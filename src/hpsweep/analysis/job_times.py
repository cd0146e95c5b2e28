"""What each stage's Snakemake jobs took: their `benchmark:` records, summed per stage.

Snakemake writes one TSV per job (core.layout.BENCHMARKS: <results>/benchmarks/<stage>/)
with the job's wall seconds in column `s`, start-up and imports included: the quantity
the budget plan prices (less the few seconds of the jobs without a record, named
there). Only the current study's jobs count (its planned runs, its
Optuna workers, its final seeds), so the records of runs an earlier params.toml planned
are left out. A job Snakemake ran again keeps only its latest record.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from hpsweep.core.study import Study


@dataclass(frozen=True)
class StageTime:
    seconds: float  # the stage's jobs' wall seconds, summed
    jobs: int  # how many of its jobs have a record


def wall_seconds(path: Path) -> float | None:
    """The job's wall seconds from its benchmark record; None if it has none."""
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except FileNotFoundError:
        return None
    return sum(float(r["s"]) for r in rows) if rows else None


def stage_jobs(study: Study) -> dict[str, list[Path]]:
    """The benchmark record of every job of the study's sweeps, Optuna, final and control
    stages (the Snakefile's expansion of each rule)."""
    p, params = study.paths, study.params
    runs = study.plan.run_ids()
    seeds = params.final.seeds if params.final.enabled else []
    return {
        "sweeps": [*(p.benchmark("train_run", run=r) for r in runs),
                   *(p.benchmark("extract_run", run=r) for r in runs),
                   p.benchmark("summarize")],
        "optuna": ([p.benchmark("optuna_setup"),
                    *(p.benchmark("optuna_worker", worker=w)
                      for w in range(params.optuna.n_workers))]
                   if params.optuna.enabled else []),
        "final": [p.benchmark("final_run", seed=s) for s in seeds],
        "control": [p.benchmark("control_run", seed=s)
                    for s in (seeds if params.final.control else [])],
    }


def stage_times(study: Study) -> dict[str, StageTime]:
    """Per stage key (core.layout.STAGES) with at least one record: its jobs' time."""
    out = {}
    for stage, paths in stage_jobs(study).items():
        found = [s for s in map(wall_seconds, paths) if s is not None]
        if found:
            out[stage] = StageTime(sum(found), len(found))
    return out
