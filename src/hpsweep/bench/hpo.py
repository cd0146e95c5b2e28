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
is that of one of the grid's best configurations: the top ``--top`` share (2 %:
the 3 best of 120), so random search needs a large part of the grid (a target
0.3 points below the best, ``--tolerance``, was met by 9 of the 120 and ranked
nothing). The table gives the epochs each method spent until then over
``--repeats`` sampler seeds: median, quartiles and worst, as a share of the
grid's epochs. A configuration sampled twice is paid twice, as a real study
would. Warm start adds the one-parameter sweep runs around the baseline as
finished trials (hpsweep's warm start); their epochs were paid by the sweep
stage and are shown in their own column.

The last row is the study's own multi-fidelity path, every epoch counted: the
one-parameter sweeps at ``--low-epochs`` (their own runs: a short OneCycle run
is not the start of a long one), the ``--promote`` best of them retrained at the
full epochs as the first trials (optuna.promote), then TPE with the median
pruner, as the default study runs it.

    hpsweep bench-hpo                      # real Fashion-MNIST (after `make run`)
    hpsweep bench-hpo --subset 2000 --epochs 4 --repeats 3   # smaller
    hpsweep bench-hpo --tolerance 0.003    # the older, easier target

Grid runs are kept under --workdir (default results/bench_hpo/runs) and reused
by the next call.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
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

# The study's path (the last row): sweeps -> promotion -> TPE with the median pruner.
STUDY_PATH = "hpsweep path: sweeps at low epochs -> promote -> TPE + median"

Config = tuple  # values in GRID's key order


@dataclass
class Outcome:
    reached: bool
    epochs: int  # epochs trained by the search until it reached the target (or gave up)
    trials: int


def grid_configs(grid: dict[str, list[Any]]) -> list[Config]:
    return list(itertools.product(*grid.values()))


def run_name(grid: dict[str, list[Any]], cfg: Config, suffix: str = "") -> str:
    short = {"train.lr": "lr", "model.width": "w", "model.depth": "d", "model.dropout": "do"}
    return "_".join(f"{short.get(k, k.split('.')[-1])}{v}"
                    for k, v in zip(grid, cfg, strict=True)) + suffix


def train_grid(grid: dict[str, list[Any]], data: PreparedData, epochs: int, workdir: Path,
               threads: int, configs: list[Config] | None = None,
               suffix: str = "") -> dict[Config, list[float]]:
    """Train every grid configuration (or ``configs``), or reuse its finished run; return
    val-acc curves. ``suffix`` names runs of another length apart."""
    curves: dict[Config, list[float]] = {}
    base = Params().run_base()
    todo = grid_configs(grid) if configs is None else configs
    for cfg in tqdm(todo, desc=f"runs of {epochs} epochs", unit="run", dynamic_ncols=True):
        run_cfg = resolve_run(base, {**dict(zip(grid, cfg, strict=True)), "train.epochs": epochs})
        m = train_run(run_cfg, data, workdir / run_name(grid, cfg, suffix), seed=0,
                      threads=threads, progress=False)
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
           curves: dict[Config, list[float]], target: float, budget: int,
           promoted: list[Config] = (), spent_before: int = 0) -> Outcome:
    """One Optuna study replaying ``curves``; stops at the target or after ``budget`` epochs.
    ``promoted``: configurations enqueued as the first trials (optuna.promote), after
    ``spent_before`` epochs of sweeps."""
    sampler_kind, pruner_kind, warm = method
    epochs = len(next(iter(curves.values())))
    # A fixed name: Hyperband assigns trials to brackets by a hash of the study's name,
    # and an unnamed study gets a random one (two runs of the table differed by 2x).
    study = optuna.create_study(direction="maximize",
                                study_name=f"{sampler_kind}-{pruner_kind}-{warm}-{seed}",
                                sampler=make_sampler(sampler_kind, seed),
                                pruner=make_pruner(pruner_kind, epochs=epochs, max_resource=epochs,
                                                   promoted=len(promoted)))
    for cfg in promoted:
        study.enqueue_trial(dict(zip(grid, cfg, strict=True)))
    dists = {k: optuna.distributions.CategoricalDistribution(v) for k, v in grid.items()}
    if warm:
        for cfg in sweep_configs(grid, BASELINE):
            curve = curves[cfg]
            study.add_trial(optuna.trial.create_trial(
                params=dict(zip(grid, cfg, strict=True)), distributions=dists, value=max(curve),
                intermediate_values={e: a for e, a in enumerate(curve, 1)}))
        if study.best_value >= target:
            return Outcome(True, 0, 0)
    spent, trials = spent_before, 0
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


def study_path(seed: int, grid: dict[str, list[Any]], curves: dict[Config, list[float]],
               low: dict[Config, list[float]], promote: int, target: float,
               budget: int, pruner: str = "median") -> Outcome:
    """The study's path: the sweeps' low-fidelity runs (``low``, all paid), their
    ``promote`` best as the first full-length trials, then TPE with ``pruner``."""
    ranked = sorted(low, key=lambda c: max(low[c]), reverse=True)
    spent = sum(len(c) for c in low.values())
    return search(("tpe", pruner, False), seed, grid, curves, target, budget,
                  promoted=ranked[:promote], spent_before=spent)


def target_of(curves: dict[Config, list[float]], top: float, tolerance: float | None) -> float:
    """The accuracy a search must reach: the ceil(top x configs)-th best configuration's,
    or with ``tolerance``, the best's minus it."""
    finals = sorted((max(c) for c in curves.values()), reverse=True)
    if tolerance is not None:
        return finals[0] - tolerance
    return finals[max(1, math.ceil(top * len(finals))) - 1]


def _row(name: str, outs: list[Outcome], grid_epochs: int, warm: int) -> dict[str, Any]:
    spent = sorted(o.epochs if o.reached else grid_epochs for o in outs)
    q1, med, q3 = statistics.quantiles(spent, n=4, method="inclusive") if len(spent) > 1 \
        else (spent[0],) * 3
    return {"method": name, "repeats": len(outs), "reached": sum(o.reached for o in outs),
            "median_epochs": med, "q1_epochs": q1, "q3_epochs": q3, "worst_epochs": spent[-1],
            "median_trials": statistics.median(o.trials for o in outs),
            "share_of_grid": med / grid_epochs, "warm_epochs": warm}


def benchmark(curves: dict[Config, list[float]], grid: dict[str, list[Any]],
              tolerance: float | None, repeats: int, *, top: float = 0.02,
              low: dict[Config, list[float]] | None = None, promote: int = 3,
              path_pruner: str = "median") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    epochs = len(next(iter(curves.values())))
    grid_epochs = len(curves) * epochs
    best_cfg = max(curves, key=lambda c: max(curves[c]))
    target = target_of(curves, top, tolerance)
    within = sum(max(c) >= target for c in curves.values())
    head = {"configs": len(curves), "epochs_per_run": epochs, "grid_epochs": grid_epochs,
            "best_val_acc": max(curves[best_cfg]),
            "best_config": dict(zip(grid, best_cfg, strict=True)),
            "target": target, "configs_within_target": within,
            "sweep_epochs": len(sweep_configs(grid, BASELINE)) * epochs}
    rows = [{"method": "exhaustive grid", "repeats": 1, "reached": 1, "median_epochs":
             grid_epochs, "q1_epochs": grid_epochs, "q3_epochs": grid_epochs,
             "worst_epochs": grid_epochs, "median_trials": len(curves),
             "share_of_grid": 1.0, "warm_epochs": 0}]
    for name, method in METHODS.items():
        outs = [search(method, seed, grid, curves, target, budget=grid_epochs)
                for seed in range(repeats)]
        rows.append(_row(name, outs, grid_epochs, head["sweep_epochs"] if method[2] else 0))
    if low:
        head["low_epochs"] = len(next(iter(low.values())))
        head["promote"] = promote
        outs = [study_path(seed, grid, curves, low, promote, target, grid_epochs, path_pruner)
                for seed in range(repeats)]
        name = STUDY_PATH if path_pruner == "median" else \
            STUDY_PATH.replace("+ median", f"+ pruner {path_pruner}")
        rows.append(_row(name, outs, grid_epochs, 0))
    return head, rows


def print_table(head: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    print(f"grid: {head['configs']} configs x {head['epochs_per_run']} epochs = "
          f"{head['grid_epochs']} epochs; best val acc {head['best_val_acc']:.4f} "
          f"({head['best_config']})")
    print(f"target: val acc >= {head['target']:.4f}; {head['configs_within_target']} of "
          f"{head['configs']} configs reach it")
    if "low_epochs" in head:
        print(f"study path: sweeps at {head['low_epochs']} epochs (their epochs counted), "
              f"the {head['promote']} best promoted to {head['epochs_per_run']} epochs")
    print()
    from tabulate import tabulate

    print(tabulate([[r["method"], f"{r['reached']}/{r['repeats']}", r["median_epochs"],
                     f"{r['q1_epochs']:.0f}-{r['q3_epochs']:.0f}", r["worst_epochs"],
                     r["median_trials"], f"{100 * r['share_of_grid']:.1f}%",
                     r["warm_epochs"] or ""] for r in rows],
                   ["method", "reached", "median epochs", "quartiles", "worst", "trials",
                    "% of grid", "+ sweep epochs"], floatfmt=".0f",
                   colalign=("left", *["right"] * 7)))
    print("\nepochs until a finished trial reaches the target (a search that never does "
          "is charged the whole grid); over sampler seeds 0..repeats-1.")


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
    p.add_argument("--repeats", type=int, default=30,
                   help="sampler seeds per method (default 30: with 10, random search's "
                        "median moved from 15.8 to 24.2 %% of the grid when seeds were added)")
    p.add_argument("--top", type=float, default=0.02,
                   help="target = the accuracy of the best TOP share of configurations "
                        "(default 0.02: 3 of 120)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="instead: target = grid best minus this (0.003 = 0.3 points)")
    p.add_argument("--low-epochs", type=int, default=2,
                   help="the study path's sweep epochs (default 2)")
    p.add_argument("--promote", type=int, default=3,
                   help="sweep configurations the study path promotes (default 3)")
    p.add_argument("--path-pruner", default="median",
                   choices=["median", "hyperband", "successive_halving", "none"],
                   help="the study path's pruner (default median, as params.toml)")
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
    low = train_grid(grid, data, args.low_epochs, args.workdir / "runs", args.threads,
                     configs=sweep_configs(grid, BASELINE), suffix=f"_e{args.low_epochs}")
    t_grid = time.perf_counter() - t0
    head, rows = benchmark(curves, grid, args.tolerance, args.repeats, top=args.top, low=low,
                           promote=args.promote, path_pruner=args.path_pruner)
    print_table(head, rows)
    out = args.workdir / "bench_hpo.json"
    out.write_text(json.dumps({"head": head, "rows": rows}, indent=2, default=str))
    print(f"\ntraining the grid: {t_grid:.0f} s; total {time.perf_counter() - t0:.0f} s; "
          f"table saved to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
