"""The Optuna stage: one study shared by N worker jobs, started from the sweeps.

    tuner.py      the study's Optuna side: name, key, paths, storage, sampler, pruner
    worker.py     setup_study (optuna_setup) and run_worker (optuna_worker)
    objective.py  one trial: admit, sample a run config, train (per CV fold), prune
    counting.py   which trials count toward optuna.n_trials; the admission rule
    folds.py      k-fold cross-validation splits of train+val
    results.py    collect (optuna_collect): trials.csv, best_params.json, figures
    storage.py    storage URL from params (SQLite default, any RDB URL, journal file),
                  ${ENV} expansion, password masking, heartbeat + stale-trial retry
    space.py      params' [optuna.space] as Optuna distributions, conditional on model.arch
    warmstart.py  completed sweep/grid/config runs added as finished trials (never retrained)
    promotion.py  the best sweep configurations enqueued as the first trials (optuna.promote)
    algorithms.py samplers and pruners by their params.toml names
    figures.py    Optuna's matplotlib figures as PNGs (placeholders where one cannot be drawn)
"""
