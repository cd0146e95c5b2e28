"""Where a study's files live: one place, so rules, scripts and the CLI agree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import Params


def manifest_path(prepared: Path) -> Path:
    """data/prepared/fashion-mnist.pt -> data/prepared/fashion-mnist.manifest.json"""
    return Path(prepared).with_suffix(".manifest.json")


@dataclass(frozen=True)
class StudyPaths:
    data_dir: Path
    results_dir: Path
    reports_dir: Path
    dataset: str

    @classmethod
    def from_params(cls, params: Params, root: str | Path = ".") -> StudyPaths:
        root = Path(root)
        return cls(root / params.study.data_dir, root / params.study.results_dir,
                   root / params.study.reports_dir, params.data.dataset)

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    @property
    def prepared(self) -> Path:
        return self.data_dir / "prepared" / f"{self.dataset}.pt"

    @property
    def manifest(self) -> Path:
        return manifest_path(self.prepared)

    def run_dir(self, run_id: str) -> Path:
        return self.results_dir / "runs" / run_id

    @property
    def logs(self) -> Path:
        return self.results_dir / "logs"
