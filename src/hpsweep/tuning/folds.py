"""Cross-validation data of trials scored by k-fold CV (optuna.cv_folds): the folds
are drawn by data.split, like every split of hpsweep."""

from __future__ import annotations

import hashlib

import torch

from hpsweep.data.prepared import PreparedData
from hpsweep.data.split import stratified_folds


def fold_data(data: PreparedData, k: int, fold: int, seed: int) -> PreparedData:
    """Fold ``fold`` of ``k`` over train+val: that fold validates, the rest trains.
    The test split is untouched (and unused by trials)."""
    x = torch.cat([data.x_train, data.x_val])
    y = torch.cat([data.y_train, data.y_val])
    val = torch.from_numpy(stratified_folds(y.numpy(), k, seed)[fold])
    train = torch.ones(len(y), dtype=torch.bool)
    train[val] = False
    ident = hashlib.sha256(f"{data.checksum}:cv{k}:seed{seed}:fold{fold}".encode()).hexdigest()
    return PreparedData(x_train=x[train], y_train=y[train], x_val=x[val], y_val=y[val],
                        x_test=data.x_test, y_test=data.y_test, classes=data.classes,
                        dataset=data.dataset, checksum=ident)
