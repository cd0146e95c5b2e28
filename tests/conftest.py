"""Shared fixtures for the data tests: real-format IDX files of a small generated dataset."""

from __future__ import annotations

import gzip
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from hpsweep.data import sources


def idx_bytes(arr: np.ndarray) -> bytes:
    """Uncompressed IDX bytes (unsigned byte type) of a uint8 array, as upstream writes them."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.tobytes()


@dataclass
class ToyIdx:
    """A registered MNIST-like dataset: a mirror dir with its four .gz files."""

    name: str
    mirror: Path
    spec: sources.DatasetSpec
    gz: dict[str, bytes]
    arrays: dict[str, np.ndarray]


# Uneven class sizes, so stratification is visible in the counts.
TOY_TRAIN_SIZES = (40, 30, 20, 10)


@pytest.fixture
def toy_idx(tmp_path, monkeypatch) -> ToyIdx:
    """Dataset 'toy-idx' (4 classes, 8x8), registered with the checksums of its files."""
    rng = np.random.default_rng(123)
    y_train = np.repeat(np.arange(4), TOY_TRAIN_SIZES).astype(np.uint8)
    rng.shuffle(y_train)
    y_test = np.tile(np.arange(4), 5).astype(np.uint8)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (len(y_train), 8, 8), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": y_train,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (len(y_test), 8, 8), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": y_test,
    }
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    files, gz = [], {}
    for name, arr in arrays.items():
        raw = idx_bytes(arr)
        gz[name] = gzip.compress(raw, mtime=0)
        (mirror / name).write_bytes(gz[name])
        files.append(sources.IdxFile(
            name, "images" if arr.ndim == 3 else "labels",
            "train" if name.startswith("train") else "test", arr.shape,
            content_sha256=hashlib.sha256(raw).hexdigest(),
        ))
    spec = sources.DatasetSpec(name="toy-idx", kind="idx", hint="provide toy files",
                               classes=("a", "b", "c", "d"), files=tuple(files))
    monkeypatch.setitem(sources.DATASETS, spec.name, spec)
    return ToyIdx(spec.name, mirror, spec, gz, arrays)


@pytest.fixture(scope="session")
def quick_study(tmp_path_factory) -> Path:
    """The shipped quick study (studies/quick.toml), finished once by the real snakemake
    and shared by the end-to-end tests that only read it or dry-run it.

    Run as on a box with two GPUs (HPSWEEP_GPUS, `--resources gpu=2`): the training jobs
    claim GPU slots (ops.gpu_slots) and still train on this machine's CPU."""
    import os
    import shutil

    from studyfixtures import ROOT, snakemake

    tmp = tmp_path_factory.mktemp("quick-study")
    shutil.copy(ROOT / "studies/quick.toml", tmp / "params.toml")
    env = {**os.environ, "HPSWEEP_GPUS": "0,1", "HPSWEEP_GPU_LOCKS": str(tmp / "gpu-locks")}
    res = snakemake(tmp, "--resources", "gpu=2", env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return tmp
