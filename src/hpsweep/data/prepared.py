"""The prepared-dataset file: the one format every training run reads.

A prepared dataset is a single ``torch.save`` file of plain tensors (loaded
with ``weights_only=True``, so a tampered file cannot run code):

    x_train, x_val, x_test : uint8  [N, C, H, W]
    y_train, y_val, y_test : int64  [N]
    classes                : list[str]
    dataset                : str
    checksum               : str   (sha256 over the tensors; provenance of every run)
"""

from __future__ import annotations

import errno
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from hpsweep.core.atomic import atomic_path

SPLITS = ("train", "val", "test")


@dataclass
class PreparedData:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    dataset: str
    checksum: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], classes: list[str],
                     dataset: str) -> PreparedData:
        """In-memory data (synthetic, a subset, a merge), identified by its own checksum
        so runs trained on it never pass for runs on the prepared file."""
        return cls(**tensors, classes=list(classes), dataset=dataset,
                   checksum=tensor_checksum(tensors))

    def derive(self, **splits: torch.Tensor) -> PreparedData:
        """This data with some split tensors replaced (``x_train=...``), checksum redone."""
        tensors = {f"{xy}_{s}": getattr(self, f"{xy}_{s}") for s in SPLITS for xy in "xy"}
        unknown = set(splits) - set(tensors)
        if unknown:
            raise TypeError(f"derive(): not split tensors: {sorted(unknown)}")
        return PreparedData.from_tensors({**tensors, **splits}, self.classes, self.dataset)


def tensor_checksum(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].contiguous()
        h.update(key.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def save_prepared(path: str | Path, tensors: dict[str, torch.Tensor], classes: list[str],
                  dataset: str) -> str:
    """Validate and write atomically (temp file + rename); return the checksum."""
    for s in SPLITS:
        x, y = tensors[f"x_{s}"], tensors[f"y_{s}"]
        if x.dtype != torch.uint8 or x.ndim != 4:
            raise ValueError(f"x_{s} must be uint8 [N,C,H,W], got {x.dtype} {tuple(x.shape)}")
        if y.dtype != torch.int64 or y.shape != (x.shape[0],):
            raise ValueError(f"y_{s} must be int64 [{x.shape[0]}], got {y.dtype} {tuple(y.shape)}")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(classes)):
            raise ValueError(f"y_{s} has labels outside 0..{len(classes) - 1}")
    checksum = tensor_checksum(tensors)
    path = Path(path)
    with atomic_path(path) as tmp:  # a failed write leaves no half-written file behind
        try:
            torch.save({**tensors, "classes": list(classes), "dataset": dataset,
                        "checksum": checksum}, tmp)
        except RuntimeError as e:
            # torch reports a failed write as "[enforce fail at inline_container.cc] ...":
            # name the file, and a full disk as such (checked while the partial file exists).
            need = sum(t.numel() * t.element_size() for t in tensors.values())
            full = shutil.disk_usage(path.parent).free < need
            raise OSError(errno.ENOSPC if full else errno.EIO,
                          "No space left on device" if full else f"write failed ({e})",
                          str(path)) from None
    return checksum


def load_prepared(path: str | Path) -> PreparedData:
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    return PreparedData(**{k: blob[k] for k in PreparedData.__dataclass_fields__})
