"""A budgeted study under the real snakemake: a dry run plans without freezing, a real run
freezes the plan before its jobs, and a slower machine afterwards reuses it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomli
import tomli_w
from studyfixtures import ROOT, needs_real_data, snakemake

pytestmark = [pytest.mark.slow, needs_real_data]


def test_snakemake_plans_freezes_on_a_real_run_and_keeps_the_plan(tmp_path):
    params = tomli.loads((ROOT / "studies/quick.toml").read_text())
    params["study"]["budget"] = 1000.0  # the quick study fits as written
    (tmp_path / "params.toml").write_text(tomli_w.dumps(params))
    lock = tmp_path / "results/quick/plan/lock.json"

    dry = snakemake(tmp_path, "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "Budget plan (not frozen yet)" in dry.stderr and not lock.exists()

    prepared = Path(params["study"]["data_dir"]) / "prepared/fashion-mnist.pt"
    real = snakemake(tmp_path, str(prepared))
    assert real.returncode == 0, real.stderr[-3000:]
    frozen = json.loads(lock.read_text())
    assert frozen["budget"] == 1000.0 and frozen["chosen"] == frozen["bounds"]

    # A machine ten times slower: the frozen plan stands (no re-planning, same lock).
    calibration = tmp_path / "results/quick/calibration"
    for f in calibration.glob("*.json"):
        cost = json.loads(f.read_text())
        for key in ("train_s_per_sample", "eval_s_per_sample", "seconds"):
            if key in cost:
                cost[key] *= 10
        f.write_text(json.dumps(cost))
    again = snakemake(tmp_path, "-n")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Budget plan" not in again.stderr
    assert json.loads(lock.read_text()) == frozen

    # A changed key the plan depends on re-plans it (a dry run: the lock stays as it was).
    params["optuna"]["n_trials"] += 1
    (tmp_path / "params.toml").write_text(tomli_w.dumps(params))
    replanned = snakemake(tmp_path, "-n")
    assert replanned.returncode == 0, replanned.stderr[-3000:]
    assert "Budget plan (not frozen yet)" in replanned.stderr
    assert json.loads(lock.read_text()) == frozen
