"""The sweep space: params.toml expanded into concrete training runs.

Every run is identified by a signature of what determines its result: the
resolved run config, its seed, the dataset identity and the training code.
The run directory is named by that signature, so a run trained under other
params or other code can never be mistaken for this one (a stale result is
impossible by construction), and a config
that appears in several sweeps (the baseline value of each sweep) is trained
once and shared.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpsweep.core.ids import code_version, run_signature
from hpsweep.core.schema import Params, resolve_run


def format_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return "x".join(format_value(x) for x in v)
    return str(v)


def label_of(overrides: dict[str, Any]) -> str:
    """Readable label: 'lr=0.001,batch_size=128' ('baseline' for no overrides)."""
    if not overrides:
        return "baseline"
    return ",".join(f"{k.split('.', 1)[1]}={format_value(v)}" for k, v in overrides.items())


@dataclass(frozen=True)
class RunSpec:
    """One training run of the study."""

    config: dict[str, Any] = field(hash=False, compare=False)
    seed: int
    signature: str

    @property
    def run_id(self) -> str:
        return self.signature[:12]


@dataclass(frozen=True)
class Member:
    """A run's place in a sweep/grid/config group (a run can be in several)."""

    group: str  # "sweep", "grid", "config" or "baseline"
    name: str  # sweep/grid/config name
    label: str
    overrides: tuple[tuple[str, Any], ...]
    seed: int
    run_id: str


@dataclass
class StudyPlan:
    runs: dict[str, RunSpec]  # run_id -> spec (unique configs)
    members: list[Member]

    def run_ids(self) -> list[str]:
        return sorted(self.runs)

    def members_of(self, group: str, name: str | None = None) -> list[Member]:
        return [m for m in self.members if m.group == group and (name is None or m.name == name)]


def data_identity(params: Params) -> dict[str, Any]:
    """What determines the prepared data. IDX/Tiny ImageNet raw files are verified
    against fixed checksums, so their config names their content; a CSV file is
    hashed because it has no published checksum."""
    ident = params.run_base()["data"]
    if params.data.dataset == "csv" and Path(params.data.csv_path).is_file():
        ident = {**ident, "csv_sha256": hashlib.sha256(
            Path(params.data.csv_path).read_bytes()).hexdigest()}
    return ident


def make_run(params: Params, overrides: dict[str, Any], seed: int) -> RunSpec:
    cfg = resolve_run(params.run_base(), overrides)
    sig = run_signature(
        cfg, {"seed": seed, "data": data_identity(params), "code": code_version()}
    )
    return RunSpec(config=cfg, seed=seed, signature=sig)


def expand(params: Params) -> StudyPlan:
    """All runs the sweeps, grids and named configs ask for, each seed included."""
    runs: dict[str, RunSpec] = {}
    members: list[Member] = []

    def add(group: str, name: str, overrides: dict[str, Any]) -> None:
        for seed in params.study.seeds:
            spec = make_run(params, overrides, seed)
            runs.setdefault(spec.run_id, spec)
            members.append(Member(group, name, label_of(overrides),
                                  tuple(overrides.items()), seed, spec.run_id))

    add("baseline", "baseline", {})
    for name, sweep in params.sweeps.items():
        for v in sweep.values:
            add("sweep", name, {sweep.param: v})
    for name, grid in params.grids.items():
        for xv in grid.x.values:
            for yv in grid.y.values:
                add("grid", name, {grid.x.param: xv, grid.y.param: yv})
    for name, overrides in params.configs.items():
        add("config", name, dict(overrides))
    return StudyPlan(runs=runs, members=members)


def plan_id(plan: StudyPlan) -> int:
    """A number naming the exact set of runs (params + data + code) a result came from.

    Written into the DVC metrics, so a test (or a person) can check that the
    metrics an experiment records were computed under its own params and code.
    An int, not a hex string, because DVC tables show numbers.
    """
    digest = hashlib.sha256("\n".join(plan.run_ids()).encode()).hexdigest()
    return int(digest[:12], 16)


def dumps_config(spec: RunSpec) -> str:
    return json.dumps({"run_id": spec.run_id, "signature": spec.signature, "seed": spec.seed,
                       "code_version": code_version(), **spec.config}, indent=2, sort_keys=True)
