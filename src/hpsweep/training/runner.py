"""Train one planned run of a study into its own directory."""

from __future__ import annotations

import logging
from pathlib import Path

from hpsweep.core.atomic import write_text
from hpsweep.core.plan import RunSpec, dumps_config
from hpsweep.core.study import Study
from hpsweep.data.prepared import load_prepared

log = logging.getLogger(__name__)


def _start_run(study: Study, run_id: str, out_dir: Path | None) -> tuple[RunSpec, Path]:
    """Run ``run_id`` of the plan and its directory (default: its run directory), with
    config.json (the resolved config and signature) written before training, so a running
    or killed run can be identified."""
    spec = study.plan.runs.get(run_id)
    if spec is None:
        raise KeyError(f"run {run_id!r} is not in the plan of {study.params_path}; "
                       "run `hpsweep plan` to list the study's runs")
    out_dir = Path(out_dir) if out_dir else study.paths.run_dir(run_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "config.json", dumps_config(spec))
    return spec, out_dir


def train_planned_run(study: Study, run_id: str, threads: int | None = None,
                      progress: bool = True, out_dir: Path | None = None) -> dict:
    """Train `run_id` of the study's plan into ``out_dir`` (default: its run directory,
    which the Snakemake rule names as its output); returns its metrics. metrics.json,
    written last by the trainer, marks the run complete."""
    from hpsweep.training.engine import train_run

    spec, out_dir = _start_run(study, run_id, out_dir)
    data = load_prepared(study.paths.prepared)
    log.info("run %s: seed %d, %s", run_id, spec.seed, Path(out_dir))
    return train_run(spec.config, data, out_dir, seed=spec.seed, threads=threads,
                     progress=progress)


def train_planned_pack(study: Study, run_ids: list[str], threads: int | None = None,
                       progress: bool = True, out_dirs: list[Path] | None = None) -> list[dict]:
    """Train runs of the study's plan as one pack (training.pack_trainer), each into its
    run directory (or ``out_dirs``, in order, which the Snakemake rule names); returns
    their metrics, in order. Each member starts as a run trained alone does; its files are
    those it would have alone."""
    from hpsweep.training.pack_trainer import PackMember, train_pack

    started = [_start_run(study, r, d)
               for r, d in zip(run_ids, out_dirs or [None] * len(run_ids), strict=True)]
    members = [PackMember(spec.config, spec.seed, out_dir) for spec, out_dir in started]
    data = load_prepared(study.paths.prepared)
    log.info("pack of %d runs: %s", len(members), ", ".join(run_ids))
    return train_pack(members, data, threads=threads, progress=progress)
