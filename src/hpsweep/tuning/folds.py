"""Cross-validation folds of train+val for trials scored by k-fold CV (optuna.cv_folds)."""

from __future__ import annotations

import hashlib

import torch

from hpsweep.data.prepared import PreparedData


def stratified_folds(y: torch.Tensor, k: int, seed: int) -> list[torch.Tensor]:
    """Indices of ``k`` stratified folds of labels ``y`` (fixed by ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[] for _ in range(k)]
    offset = 0
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        for i, chunk in enumerate(torch.tensor_split(idx, k)):
            # rotate per class so the larger remainders do not all land in fold 0
            parts[(i + offset) % k].append(chunk)
        offset += len(idx) % k
    return [torch.sort(torch.cat(p)).values for p in parts]


def fold_data(data: PreparedData, k: int, fold: int, seed: int) -> PreparedData:
    """Fold ``fold`` of ``k`` over train+val: that fold validates, the rest trains.
    The test split is untouched (and unused by trials)."""
    x = torch.cat([data.x_train, data.x_val])
    y = torch.cat([data.y_train, data.y_val])
    val = stratified_folds(y, k, seed)[fold]
    train = torch.ones(len(y), dtype=torch.bool)
    train[val] = False
    ident = hashlib.sha256(f"{data.checksum}:cv{k}:seed{seed}:fold{fold}".encode()).hexdigest()
    return PreparedData(x_train=x[train], y_train=y[train], x_val=x[val], y_val=y[val],
                        x_test=data.x_test, y_test=data.y_test, classes=data.classes,
                        dataset=data.dataset, checksum=ident)
