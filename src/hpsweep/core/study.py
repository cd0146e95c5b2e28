"""A loaded study: validated params, its paths and its expanded run plan.

What the Snakefile, the scripts and the CLI share. Loading validates the
params file first, so no job starts on an invalid study.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from hpsweep.core import budget
from hpsweep.core.gpus import gpu_visible
from hpsweep.core.layout import StudyPaths
from hpsweep.core.packs import Pack, pending_packs, plan_packs
from hpsweep.core.plan import StudyPlan, expand
from hpsweep.core.schema import Params, load_params


@dataclass
class Study:
    params_path: Path
    params: Params  # what trains: a budgeted study's planned values overlaid
    paths: StudyPaths
    # A budgeted study's frozen plan (core.budget; None with study.budget = 0): its
    # "bounds" are the params.toml values of the keys it set.
    plan_lock: dict[str, Any] | None = None

    @classmethod
    def load(cls, params_path: str | Path = "params.toml", root: str | Path = ".", *,
             lock: dict[str, Any] | None = None) -> Study:
        """The validated study. A budgeted one needs its frozen plan: ``lock``, else
        <results>/plan/lock.json; a missing or outdated plan is a ParamsError that says
        to run `hpsweep plan` (ops.jobs.load_study_or_exit plans instead)."""
        written = cls.as_written(params_path, root)
        if not written.params.study.budget:
            return written
        lock = lock if lock is not None else budget.read_lock(written.paths.plan_lock)
        why = budget.why_not_current(lock, written.params)
        if why:
            raise budget.no_plan_error(written.params, written.paths.plan_lock, why)
        return cls(written.params_path, budget.apply_lock(written.params, lock),
                   written.paths, lock)

    @classmethod
    def as_written(cls, params_path: str | Path = "params.toml", root: str | Path = ".") -> Study:
        """The study as params.toml writes it, without a budget's plan (what a plan is
        made from)."""
        params = load_params(params_path)
        return cls(Path(params_path), params, StudyPaths.from_params(params, root))

    @cached_property
    def plan(self) -> StudyPlan:
        return expand(self.params)

    @property
    def uses_gpu(self) -> bool:
        """Training jobs claim `resources: gpu=1` when they will run on a GPU."""
        device = self.params.study.device
        if device in ("cuda", "mps"):
            return True
        return device == "auto" and gpu_visible()

    @cached_property
    def packs(self) -> list[Pack]:
        """The plan's packs of study.pack_size runs (core.packs; [] at pack_size = 1)."""
        return plan_packs({r: s.config for r, s in self.plan.runs.items()},
                          self.params.study.pack_size)

    def pending_packs(self) -> list[Pack]:
        """The packs cut down to their runs without a metrics.json, those with two or more
        left: what Snakemake's train_pack_<n> rules train now."""
        return pending_packs(self.packs, self.has_metrics)

    def has_metrics(self, run_id: str) -> bool:
        """Run ``run_id`` has its metrics.json (what Snakemake's train rules write)."""
        return (self.paths.run_dir(run_id) / "metrics.json").exists()

    def run_metrics(self) -> list[str]:
        return [str(self.paths.run_dir(r) / "metrics.json") for r in self.plan.run_ids()]
