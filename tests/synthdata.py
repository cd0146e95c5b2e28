"""A tiny learnable synthetic image task, written as a real prepared-data file.

Noise images with a bright 6x6 square in the quadrant the label names: an MLP or a CNN
learns it in a few epochs on the CPU, so engine tests need no downloaded data.
"""

from __future__ import annotations

from pathlib import Path

import torch

from hpsweep.data.prepared import PreparedData, load_prepared, save_prepared

CLASSES = ["top-left", "top-right", "bottom-left", "bottom-right"]


def synthetic(n: int, seed: int, c: int = 1, hw: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images with a bright 6x6 square in the quadrant the label names."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, len(CLASSES), (n,), generator=g)
    x = torch.randint(0, 80, (n, c, hw, hw), generator=g).to(torch.uint8)
    q = hw // 2
    for k in range(len(CLASSES)):
        r, col = divmod(k, 2)
        m = y == k
        x[m, :, r * q + 3:r * q + 9, col * q + 3:col * q + 9] = 230
    return x, y


def write_data(path: Path, c: int = 1, hw: int = 28, n_train: int = 512) -> PreparedData:
    tensors = {}
    for i, (split, n) in enumerate((("train", n_train), ("val", 128), ("test", 96))):
        tensors[f"x_{split}"], tensors[f"y_{split}"] = synthetic(n, seed=i, c=c, hw=hw)
    save_prepared(path, tensors, CLASSES, "synthetic")
    return load_prepared(path)
