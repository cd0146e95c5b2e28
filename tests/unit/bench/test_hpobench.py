"""hpsweep bench-hpo: the replay of a trained grid by real Optuna samplers/pruners."""

from __future__ import annotations

import json
import random

import pytest
import torch
from tunefixtures import synthetic_tensors

from hpsweep.bench.hpo import (
    BASELINE,
    METHODS,
    STUDY_PATH,
    benchmark,
    grid_configs,
    main,
    search,
    study_path,
    sweep_configs,
    target_of,
)
from hpsweep.data.prepared import save_prepared

GRID = {"train.lr": [0.001, 0.003, 0.01], "model.width": [64, 128, 256],
        "model.depth": [1, 2], "model.dropout": [0.0, 0.3]}


def table(best_cfg=None, epochs=4, seed=0):
    """Rising curves in 0.60..0.80; ``best_cfg`` alone ends at 0.90."""
    rng = random.Random(seed)
    curves = {}
    for cfg in grid_configs(GRID):
        end = 0.9 if cfg == best_cfg else rng.uniform(0.6, 0.8)
        curves[cfg] = [end - 0.05 * (epochs - e) for e in range(1, epochs + 1)]
    return curves


def test_sweep_configs_vary_one_key_around_the_baseline():
    base = {"train.lr": 0.003, "model.width": 128, "model.depth": 1, "model.dropout": 0.0}
    cfgs = sweep_configs(GRID, base)
    assert len(cfgs) == 3 + 2 + 1 + 1  # lr values (baseline among them), then the others
    for cfg in cfgs:
        assert sum(v != base[k] for k, v in zip(GRID, cfg, strict=True)) <= 1


def test_unpruned_search_pays_whole_runs_and_finds_the_single_best():
    best = (0.01, 256, 2, 0.3)
    curves = table(best)
    target = 0.9 - 0.003
    out = search(METHODS["random search"], 0, GRID, curves, target, budget=10_000)
    assert out.reached
    assert out.epochs % 4 == 0 and out.epochs >= 4
    assert out.trials == out.epochs // 4


def test_unreachable_target_stops_at_the_budget():
    curves = table(None)
    out = search(METHODS["TPE"], 0, GRID, curves, target=0.99, budget=40)
    assert not out.reached and 40 <= out.epochs < 44


def test_pruning_spends_partial_runs():
    curves = table((0.01, 256, 2, 0.3))
    out = search(METHODS["TPE + Hyperband"], 1, GRID, curves, 0.897, budget=10_000)
    assert out.reached
    # a pruned trial stops early, so some trial cost is not a multiple of the epoch budget
    # or the search took fewer epochs than its trials' full runs
    assert out.epochs < 4 * out.trials


def test_warm_start_that_contains_the_best_costs_nothing():
    base_best = (0.003, 512, 2, 0.0)
    grid = {**GRID, "model.width": [128, 512]}
    curves = {c: [0.7] * 3 for c in grid_configs(grid)}
    curves[base_best] = [0.8, 0.85, 0.9]
    out = search(METHODS["TPE + Hyperband + warm start"], 0, grid, curves, 0.897, budget=99)
    assert out.reached and out.epochs == 0


def test_benchmark_table_rows():
    curves = table((0.01, 256, 2, 0.3))
    head, rows = benchmark(curves, GRID, 0.003, repeats=2)
    assert head["grid_epochs"] == 36 * 4 and head["configs_within_target"] == 1
    assert rows[0]["method"] == "exhaustive grid" and rows[0]["share_of_grid"] == 1.0
    assert [r["method"] for r in rows[1:]] == list(METHODS)
    for r in rows[1:]:
        # a search may pay more than the grid (a configuration sampled twice is paid twice)
        assert 0 <= r["q1_epochs"] <= r["median_epochs"] <= r["q3_epochs"] <= r["worst_epochs"]
        assert r["reached"] <= 2


def test_the_target_is_the_top_share_of_configurations():
    curves = {(i,): [i / 100] for i in range(100)}
    assert target_of(curves, 0.02, None) == 0.98  # the 2nd best of 100
    assert target_of(curves, 0.001, None) == 0.99  # at least the best itself
    assert target_of(curves, 0.02, 0.05) == pytest.approx(0.94)  # best - tolerance


def test_study_path_pays_its_sweeps_and_tries_the_promoted_first():
    # the best configuration is a sweep member; its low-fidelity run ranks it first
    best = sweep_configs(GRID, BASELINE)[-1]
    curves = table(best)
    low = {c: [0.5 if c != best else 0.6] * 2 for c in sweep_configs(GRID, BASELINE)}
    out = study_path(0, GRID, curves, low, promote=3, target=0.897, budget=10_000)
    # the sweeps' epochs, then the first promoted trial reaches the target in one full run
    assert out.reached and out.trials == 1
    assert out.epochs == 2 * len(low) + 4
    head, rows = benchmark(curves, GRID, None, repeats=3, top=0.02, low=low)
    assert rows[-1]["method"] == STUDY_PATH and rows[-1]["median_epochs"] == out.epochs
    assert head["low_epochs"] == 2 and head["promote"] == 3


def test_cli_trains_a_tiny_grid_and_reuses_it(tmp_path, capsys):
    prepared = tmp_path / "tiny.pt"
    save_prepared(prepared, synthetic_tensors(), ["a", "b", "c", "d"], "fashion-mnist")
    grid = {"train.lr": [0.003, 0.03], "model.width": [16, 32], "model.depth": [1],
            "model.dropout": [0.0]}
    args = ["--data", str(prepared), "--subset", "80", "--epochs", "2", "--repeats", "2",
            "--threads", "1", "--workdir", str(tmp_path / "w"), "--grid", json.dumps(grid)]
    torch.manual_seed(0)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "grid: 4 configs x 2 epochs = 8 epochs" in out
    assert "TPE + Hyperband + warm start" in out
    assert STUDY_PATH in out
    saved = json.loads((tmp_path / "w/bench_hpo.json").read_text())
    assert len(saved["rows"]) == 1 + len(METHODS) + 1
    runs = sorted(p.name for p in (tmp_path / "w/runs").iterdir())
    # the grid, and the sweep members around the baseline at the path's low epochs
    sweeps = len(sweep_configs(grid, BASELINE))
    assert len(runs) == 4 + sweeps and sum(r.endswith("_e2") for r in runs) == sweeps
    stamp = {r: (tmp_path / "w/runs" / r / "metrics.json").stat().st_mtime_ns for r in runs}
    assert main(args) == 0  # second call: finished grid runs are reused, not retrained
    assert stamp == {r: (tmp_path / "w/runs" / r / "metrics.json").stat().st_mtime_ns
                     for r in runs}


def test_missing_data_is_one_line_error(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "none.pt")]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and err.count("\n") == 1


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_runs(name):
    curves = table((0.001, 64, 1, 0.0))
    out = search(METHODS[name], 3, GRID, curves, 0.897, budget=10_000)
    assert out.reached


def test_a_search_is_the_same_every_time_hyperband_included():
    # Hyperband brackets hash the study's name: an unnamed study made the table vary
    curves = table((0.01, 256, 2, 0.3))
    for method in ("TPE + Hyperband", "TPE + Hyperband + warm start"):
        runs = [search(METHODS[method], 2, GRID, curves, 0.897, budget=10_000) for _ in range(2)]
        assert runs[0] == runs[1]
