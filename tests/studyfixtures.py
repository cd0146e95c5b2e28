"""Shrink the shipped params.toml into a quick study for end-to-end tests.

Tests run the real configuration with fewer samples, values and epochs rather
than a fake one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomli
import tomli_w

ROOT = Path(__file__).resolve().parents[1]
FMNIST_MIRROR = Path("/usr/share/datasets/fashion-mnist")
BIN = Path(sys.executable).parent
IN_CI = os.environ.get("CI") == "true"
# The one "needs the real data" marker: the real Fashion-MNIST from Debian's package.
# In CI (`make test` installs it) a missing dataset fails the tests instead of skipping.
needs_real_data = pytest.mark.skipif(
    not FMNIST_MIRROR.is_dir() and not IN_CI,
    reason="needs Debian's dataset-fashion-mnist (make test installs it)")


def shrunk_params(tmp: Path, *, subset: int = 600, epochs: int = 1, values: int = 2,
                  sweeps: int = 2, grids: bool = True, configs: bool = True,
                  **overrides) -> Path:
    """Write tmp/params.toml: the shipped study, shrunk; return its path."""
    data = tomli.loads((ROOT / "params.toml").read_text())
    # fidelities as written (the budget planner has its own tests)
    data["study"]["budget"] = 0
    data["data"]["train_subset"] = subset
    data["train"]["epochs"] = epochs
    data["train"]["eval_batch_size"] = 2048
    data["sweeps"] = {k: {**v, "values": v["values"][:values]}
                      for k, v in list(data["sweeps"].items())[:sweeps]}
    if not grids:
        data["grids"] = {}
    if not configs:
        data["configs"] = {}
    for grid in data["grids"].values():
        for axis in ("x", "y"):
            grid[axis]["values"] = grid[axis]["values"][:values]
    for cfg in data["configs"].values():
        cfg["train.epochs"] = epochs
    data["optuna"].update(n_trials=3, n_workers=2, epochs=1)
    data["final"].update(seeds=[0, 1], epochs=1)
    for dotted, value in overrides.items():  # e.g. train__lr=0.01, optuna__n_workers=1
        section, _, key = dotted.partition("__")
        data[section][key] = value
    path = tmp / "params.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def snakemake(workdir: Path, *args: str, timeout: int = 600,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real snakemake on the project's Snakefile inside `workdir`."""
    cmd = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
           "--config", f"params={workdir / 'params.toml'}", "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def copy_project(dest: Path) -> Path:
    """A copy of the project's DAG files and library source (for tests that need
    their own git/DVC repo, or that edit the code: run them with project_env)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "dvc.yaml", "params.toml", ".dvcignore", ".gitignore"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, dest / name)
    for name in ("workflow", "profiles"):
        shutil.copytree(ROOT / name, dest / name)
    shutil.copytree(ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__",
                                                                              "*.egg-info"))
    return dest


def project_env(project: Path) -> dict[str, str]:
    """Environment in which `hpsweep`, `snakemake` and `dvc` use the copy's library."""
    import os

    env = dict(os.environ)
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(project / "src")
    return env
