"""HPO efficiency: grid vs random vs TPE (with and without pruning, warm start).

How it measures. Every configuration of one exhaustive grid is trained once, for
the full epoch budget, with hpsweep's trainer on real images; its validation
accuracy after every epoch is kept (a tabular benchmark, as HPOBench and
NAS-Bench do). Each search method then runs as a real Optuna study (the same
samplers and pruners the pipeline builds, hpsweep.tuning.algorithms) whose
objective replays those curves: a trial "trains" by reading its configuration's
accuracy epoch by epoch, reporting each to the pruner, and pays one epoch per
epoch read. Training is deterministic (same config + seed, same numbers: a
tested property), so a replayed trial is exactly what retraining it would give,
including a pruned trial's prefix; that lets every method run with many sampler
seeds at no extra training cost.

A method *reaches* the target when a finished trial's best validation accuracy
is within ``--tolerance`` (0.3 points) of the grid's best. The table gives the
epochs it spent until then (median and worst over the seeds) as a share of the
grid's epochs. A configuration sampled twice is paid twice, as a real study would.
Warm start adds the one-parameter sweep runs around the baseline as finished
trials (hpsweep's warm start); their epochs were paid by the sweep stage and are
shown in their own column.

    hpsweep bench-hpo                      # real Fashion-MNIST (after `make run`)
    hpsweep bench-hpo --subset 2000 --epochs 4 --repeats 3   # smaller

Grid runs are kept under --workdir (default results/bench_hpo/runs) and reused
by the next call.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from tqdm import tqdm

from hpsweep.core.layout import StudyPaths
from hpsweep.core.schema import Params, resolve_run
from hpsweep.data.prepared import PreparedData, load_prepared
from hpsweep.data.split import stratified_subset
from hpsweep.training.engine import train_run
from hpsweep.tuning.algorithms import make_pruner, make_sampler

# The grid: the default study's search dimensions (params.toml [optuna.space]) at
# the values a practitioner's grid would take. 120 configurations.
GRID: dict[str, list[Any]] = {
    "train.lr": [0.0003, 0.001, 0.003, 0.01, 0.03],
    "model.width": [128, 256, 512, 1024],
    "model.depth": [1, 2, 3],
    "model.dropout": [0.0, 0.3],
}
# Warm start: the one-parameter sweeps around this baseline (the default study's).
BASELINE = {"train.lr": 0.003, "model.width": 512, "model.depth": 2, "model.dropout": 0.0}

# name -> (sampler, pruner, warm start)
METHODS: dict[str, tuple[str, str, bool]] = {
    "random search": ("random", "none", False),
    "TPE": ("tpe", "none", False),
    "TPE + median pruning": ("tpe", "median", False),
    "TPE + Hyperband": ("tpe", "hyperband", False),
    "TPE + Hyperband + warm start": ("tpe", "hyperband", True),
}

Config = tuple  # values in GRID's key order


@dataclass
class Outcome:
    reached: bool
    epochs: int  # epochs trained by the search until it reached the target (or gave up)
    trials: int


def grid_configs(grid: dict[str, list[Any]]) -> list[Config]:
    return list(itertools.product(*grid.values()))


def run_name(grid: dict[str, list[Any]], cfg: Config) -> str:
    short = {"train.lr": "lr", "model.width": "w", "model.depth": "d", "model.dropout": "do"}
    return "_".join(f"{short.get(k, k.split('.')[-1])}{v}" for k, v in zip(grid, cfg, strict=True))


def train_grid(grid: dict[str, list[Any]], data: PreparedData, epochs: int, workdir: Path,
               threads: int) -> dict[Config, list[float]]:
    """Train every grid configuration (or reuse its finished run); return val-acc curves."""
    curves: dict[Config, list[float]] = {}
    base = Params().run_base()
    for cfg in tqdm(grid_configs(grid), desc="grid runs", unit="run", dynamic_ncols=True):
        run_cfg = resolve_run(base, {**dict(zip(grid, cfg, strict=True)), "train.epochs": epochs})
        m = train_run(run_cfg, data, workdir / run_name(grid, cfg), seed=0, threads=threads,
                      progress=False)
        curves[cfg] = [r["val_acc"] for r in m["history"]]
        if len(curves[cfg]) < epochs:  # diverged: the remaining epochs never happen
            curves[cfg] += [curves[cfg][-1]] * (epochs - len(curves[cfg]))
    return curves


def sweep_configs(grid: dict[str, list[Any]], baseline: dict[str, Any]) -> list[Config]:
    """The one-parameter-at-a-time sweep members around the baseline, each once (a key
    whose baseline value is not on the grid sweeps around the grid's middle value)."""
    baseline = {k: baseline[k] if baseline.get(k) in v else v[len(v) // 2]
                for k, v in grid.items()}
    out: list[Config] = []
    for key, values in grid.items():
        for v in values:
            cfg = tuple(v if k == key else baseline[k] for k in grid)
            if cfg not in out:
                out.append(cfg)
    return out


def search(method: tuple[str, str, bool], seed: int, grid: dict[str, list[Any]],
           curves: dict[Config, list[float]], target: float, budget: int) -> Outcome:
    """One Optuna study replaying ``curves``; stops at the target or after ``budget`` epochs."""
    sampler_kind, pruner_kind, warm = method
    epochs = len(next(iter(curves.values())))
    study = optuna.create_study(direction="maximize",
                                sampler=make_sampler(sampler_kind, seed),
                                pruner=make_pruner(pruner_kind, epochs=epochs, max_resource=epochs))
    dists = {k: optuna.distributions.CategoricalDistribution(v) for k, v in grid.items()}
    if warm:
        for cfg in sweep_configs(grid, BASELINE):
            curve = curves[cfg]
            study.add_trial(optuna.trial.create_trial(
                params=dict(zip(grid, cfg, strict=True)), distributions=dists, value=max(curve),
                intermediate_values={e: a for e, a in enumerate(curve, 1)}))
        if study.best_value >= target:
            return Outcome(True, 0, 0)
    spent, trials = 0, 0
    reached = False

    def objective(trial: optuna.Trial) -> float:
        nonlocal spent
        cfg = tuple(trial.suggest_categorical(k, v) for k, v in grid.items())
        curve = curves[cfg]
        for epoch, acc in enumerate(curve, 1):
            spent += 1  # this epoch is trained
            trial.report(acc, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return max(curve)

    def stop(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        nonlocal reached, trials
        trials += 1
        if trial.value is not None and trial.value >= target:
            reached = True
            study.stop()
        elif spent >= budget:
            study.stop()

    study.optimize(objective, callbacks=[stop], n_trials=10 * len(curves))
    return Outcome(reached, spent, trials)


def benchmark(curves: dict[Config, list[float]], grid: dict[str, list[Any]], tolerance: float,
              repeats: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    epochs = len(next(iter(curves.values())))
    grid_epochs = len(curves) * epochs
    best_cfg = max(curves, key=lambda c: max(curves[c]))
    best = max(curves[best_cfg])
    target = best - tolerance
    within = sum(max(c) >= target for c in curves.values())
    head = {"configs": len(curves), "epochs_per_run": epochs, "grid_epochs": grid_epochs,
            "best_val_acc": best, "best_config": dict(zip(grid, best_cfg, strict=True)),
            "target": target,
            "configs_within_target": within,
            "sweep_epochs": len(sweep_configs(grid, BASELINE)) * epochs}
    rows = [{"method": "exhaustive grid", "repeats": 1, "reached": 1, "median_epochs":
             grid_epochs, "worst_epochs": grid_epochs, "median_trials": len(curves),
             "share_of_grid": 1.0, "warm_epochs": 0}]
    for name, method in METHODS.items():
        outs = [search(method, seed, grid, curves, target, budget=grid_epochs)
                for seed in range(repeats)]
        spent = [o.epochs if o.reached else grid_epochs for o in outs]
        med = statistics.median(spent)
        rows.append({"method": name, "repeats": repeats,
                     "reached": sum(o.reached for o in outs),
                     "median_epochs": med, "worst_epochs": max(spent),
                     "median_trials": statistics.median(o.trials for o in outs),
                     "share_of_grid": med / grid_epochs,
                     "warm_epochs": head["sweep_epochs"] if method[2] else 0})
    return head, rows


def print_table(head: dict[str, Any], rows: list[dict[str, Any]], tolerance: float) -> None:
    print(f"grid: {head['configs']} configs x {head['epochs_per_run']} epochs = "
          f"{head['grid_epochs']} epochs; best val acc {head['best_val_acc']:.4f} "
          f"({head['best_config']})")
    print(f"target: val acc >= {head['target']:.4f} (best - {tolerance * 100:.1f} points); "
          f"{head['configs_within_target']} of {head['configs']} configs reach it")
    print()
    from tabulate import tabulate

    print(tabulate([[r["method"], f"{r['reached']}/{r['repeats']}", r["median_epochs"],
                     r["worst_epochs"], r["median_trials"], f"{100 * r['share_of_grid']:.1f}%",
                     r["warm_epochs"] or ""] for r in rows],
                   ["method", "reached", "median epochs", "worst", "trials", "% of grid",
                    "+ sweep epochs"], floatfmt=".0f", colalign=("left", *["right"] * 6)))
    print("\nepochs until a finished trial reaches the target (a search that never does "
          "is charged the whole grid); median/worst over sampler seeds 0..repeats-1.")


def subset_data(data: PreparedData, n: int, seed: int = 0) -> PreparedData:
    idx = torch.from_numpy(stratified_subset(data.y_train.numpy(), n, seed))
    return data.derive(x_train=data.x_train[idx], y_train=data.y_train[idx],
                       x_test=data.x_test[:1], y_test=data.y_test[:1])


def main(argv: list[str] | None = None) -> int:
    default = StudyPaths.from_params(Params()).prepared
    p = argparse.ArgumentParser(prog="hpsweep bench-hpo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--data", type=Path, default=default,
                   help=f"prepared dataset (default {default}, made by `make run`)")
    p.add_argument("--subset", type=int, default=6000,
                   help="stratified training images per run (default 6000)")
    p.add_argument("--epochs", type=int, default=8, help="epochs per grid run (default 8)")
    p.add_argument("--repeats", type=int, default=10, help="sampler seeds per method")
    p.add_argument("--tolerance", type=float, default=0.003,
                   help="target = grid best minus this (default 0.003 = 0.3 points)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", type=Path, default=Path("results/bench_hpo"))
    p.add_argument("--grid", type=json.loads, default=None,
                   help='JSON {"train.lr": [...], ...} instead of the built-in 120-run grid')
    args = p.parse_args(argv)
    if not args.data.is_file():
        print(f"hpsweep bench-hpo: {args.data} not found; run `make data` (or pass --data)",
              file=sys.stderr)
        return 2
    grid = args.grid or GRID
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.perf_counter()
    data = subset_data(load_prepared(args.data), args.subset)
    shown = sys.argv[2:] if argv is None else argv
    print("command:", shlex.join(["hpsweep", "bench-hpo", *shown]))
    print(f"data:    {args.data}, {args.subset} stratified training images, "
          f"{len(data.y_val)} validation images; trainer = params.toml defaults")
    curves = train_grid(grid, data, args.epochs, args.workdir / "runs", args.threads)
    t_grid = time.perf_counter() - t0
    head, rows = benchmark(curves, grid, args.tolerance, args.repeats)
    print_table(head, rows, args.tolerance)
    out = args.workdir / "bench_hpo.json"
    out.write_text(json.dumps({"head": head, "rows": rows}, indent=2, default=str))
    print(f"\ntraining the grid: {t_grid:.0f} s; total {time.perf_counter() - t0:.0f} s; "
          f"table saved to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
