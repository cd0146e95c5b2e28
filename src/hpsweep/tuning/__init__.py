"""Optuna refinement internals; the public entry points live in :mod:`hpsweep.tuning.tuner`.

    storage.py    storage URL from params (SQLite default, any RDB URL, journal file),
                  ${ENV} expansion, password masking, heartbeat + stale-trial retry
    space.py      params' [optuna.space] as Optuna distributions, conditional on model.arch
    warmstart.py  completed sweep/grid/config runs added as finished trials (never retrained)
    algorithms.py samplers and pruners by their params.toml names
    figures.py    Optuna's matplotlib figures as PNGs (placeholders where one cannot be drawn)
"""
