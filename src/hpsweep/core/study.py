"""A loaded study: validated params, its paths and its expanded run plan.

What the Snakefile, the scripts and the CLI share. Loading validates the
params file first, so no job starts on an invalid study.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from hpsweep.core.gpus import gpu_visible
from hpsweep.core.layout import StudyPaths
from hpsweep.core.plan import StudyPlan, expand
from hpsweep.core.schema import Params, load_params


@dataclass
class Study:
    params_path: Path
    params: Params
    paths: StudyPaths

    @classmethod
    def load(cls, params_path: str | Path = "params.toml", root: str | Path = ".") -> Study:
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

    def run_metrics(self) -> list[str]:
        return [str(self.paths.run_dir(r) / "metrics.json") for r in self.plan.run_ids()]
