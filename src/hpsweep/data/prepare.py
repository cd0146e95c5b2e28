"""Raw files -> one prepared file with a fixed, seeded, stratified split + its manifest.

The split is part of the experiment's identity: every run of a study must see
the same train/validation samples, so it is computed once here (not in each
training run) and its checksum names the data every run was trained on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hpsweep.core.atomic import write_json
from hpsweep.core.layout import manifest_path
from hpsweep.data import DataError
from hpsweep.data.download import file_hash, read_record
from hpsweep.data.formats import load_images, read_pixel_csv, scan_tiny, tiny_class_names
from hpsweep.data.idx import load_pair, read_verified
from hpsweep.data.prepared import SPLITS, save_prepared
from hpsweep.data.sources import CSV_FILE, DatasetSpec, get_spec
from hpsweep.data.split import stratified_split, stratified_subset

# Each random draw gets its own stream, so changing one (e.g. train_subset)
# never reshuffles another (the validation split).
_VAL, _SUBSET, _CSV_TEST = 1, 2, 3
# The CSV test split ignores split_seed: varying split_seed (to study split
# variance) must not move samples in or out of the held-out test set.
CSV_TEST_SEED = 0

SPLIT_METHOD = ("stratified: per class, numpy default_rng(seed) permutation; per-class counts"
                " by largest remainder so the total is exactly round(fraction * N)")


# --------------------------------------------------------------------- reading


@dataclass
class _Raw:
    """A dataset as read: the pool the train/val split is drawn from, and the test set."""

    x_pool: np.ndarray
    y_pool: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    files: dict
    test_from: str
    extra: dict = field(default_factory=dict)


def _need(path: Path, spec: DatasetSpec) -> Path:
    if not path.exists():
        raise DataError(f"{path}: missing; run the fetch step for {spec.name!r} first")
    return path


def _read_idx(spec: DatasetSpec, src: Path, record: dict, progress: bool) -> _Raw:
    arrays, files = {}, {}
    for f in spec.files:
        path = _need(src / f.name, spec)
        arr, info = read_verified(path, f, len(spec.classes), label=str(path))
        arrays[(f.split, f.kind)] = arr
        files[f.name] = {**record.get(f.name, {}), **info}  # hashes recomputed now win
    x_pool, y_pool = load_pair(arrays["train", "images"], arrays["train", "labels"], "train")
    x_test, y_test = load_pair(arrays["test", "images"], arrays["test", "labels"], "test")
    return _Raw(x_pool, y_pool, x_test, y_test, list(spec.classes), files, "official test set")


def _read_tiny(spec: DatasetSpec, src: Path, record: dict, progress: bool) -> _Raw:
    root = _need(src / spec.tree, spec)
    layout = scan_tiny(root, spec.expect)
    digest = hashlib.sha256()
    x_pool, y_pool = load_images(layout.train, root, digest, progress, "train images")
    x_test, y_test = load_images(layout.val, root, digest, progress, "val images")
    files = {spec.tree: {**record.get(spec.tree, {}), "tree_sha256": digest.hexdigest(),
                         "images": len(layout.train) + len(layout.val)}}
    # The official test/ images have no labels, so the labelled val/ set is the
    # test set and validation is split off train/ like for the other datasets.
    return _Raw(x_pool, y_pool, x_test, y_test, tiny_class_names(root, layout.wnids), files,
                "val/ (the official test/ images have no labels)", {"wnids": layout.wnids})


def _read_csv(spec: DatasetSpec, src: Path, record: dict, progress: bool, cfg) -> _Raw:
    path = _need(src / CSV_FILE, spec)
    x, y = read_pixel_csv(path)
    # A CSV has no test set: a stratified test split of the same size as the
    # validation split (val_fraction of all rows) is carved first, with a seed
    # fixed at CSV_TEST_SEED; validation then comes out of the rest as usual.
    # So a 0.1 fraction gives 81/9/10 % train/val/test.
    rest, test = stratified_split(y, cfg.val_fraction, [CSV_TEST_SEED, _CSV_TEST])
    if len(rest) == 0 or len(test) == 0:
        raise DataError(f"{path}: {len(y)} rows are too few to split into train/val/test")
    classes = [str(i) for i in range(int(y.max()) + 1)]
    files = {CSV_FILE: {**record.get(CSV_FILE, {}), "sha256": file_hash(path)}}
    return _Raw(x[rest], y[rest], x[test], y[test], classes, files,
                f"stratified {cfg.val_fraction:g} of the CSV rows, seed {CSV_TEST_SEED}")


# --------------------------------------------------------------------- prepare


def prepare(data_cfg, raw_dir: Path, out_path: Path, progress: bool = True) -> dict:
    """Read raw_dir/<dataset>/, split, write out_path and its manifest; return the manifest.

    ``data_cfg`` is a config.DataConfig (only dataset, val_fraction, split_seed
    and train_subset are read).
    """
    spec = get_spec(data_cfg.dataset)
    src = Path(raw_dir) / spec.name
    record = read_record(src)
    if spec.kind == "idx":
        raw = _read_idx(spec, src, record, progress)
    elif spec.kind == "tiny-imagenet":
        raw = _read_tiny(spec, src, record, progress)
    else:
        raw = _read_csv(spec, src, record, progress, data_cfg)
    train, val = _train_val(raw, data_cfg)
    parts = {
        "train": (raw.x_pool[train], raw.y_pool[train]),
        "val": (raw.x_pool[val], raw.y_pool[val]),
        "test": (raw.x_test, raw.y_test),
    }
    tensors = {}
    for s, (x, y) in parts.items():
        tensors[f"x_{s}"] = torch.from_numpy(np.ascontiguousarray(x, dtype=np.uint8))
        tensors[f"y_{s}"] = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    try:
        checksum = save_prepared(out_path, tensors, raw.classes, spec.name)
    except ValueError as e:  # save_prepared's own validation: a bug or a bad raw file
        raise DataError(f"{out_path}: not written, prepared data is invalid ({e})") from None
    manifest = _manifest(spec, raw, data_cfg, parts, list(tensors["x_train"].shape[1:]),
                         Path(out_path).name, checksum)
    write_json(manifest_path(out_path), manifest)
    return manifest


def _train_val(raw: _Raw, data_cfg) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the pool's training and validation samples (stratified; the training
    part subsampled to data.train_subset)."""
    train, val = stratified_split(raw.y_pool, data_cfg.val_fraction, [data_cfg.split_seed, _VAL])
    if len(train) == 0 or len(val) == 0:
        # Checked before anything is written: an empty split would replace good prepared
        # data with a file every run fails on (or, empty val, scores as NaN).
        n = len(raw.y_pool)
        raise DataError(
            f"data.val_fraction = {data_cfg.val_fraction} leaves {len(train)} training and"
            f" {len(val)} validation samples of {n}; use a fraction in"
            f" {0.5 / n:.2g}..{1 - 0.5 / n:.6g} (0.1 is usual)"
        )
    if data_cfg.train_subset:
        train = train[stratified_subset(raw.y_pool[train], data_cfg.train_subset,
                                        [data_cfg.split_seed, _SUBSET])]
    return train, val


def _manifest(spec, raw: _Raw, data_cfg, parts: dict, input_shape: list[int],
              prepared_name: str, checksum: str) -> dict:
    k = len(raw.classes)
    # Where the raw files came from: the mirror directory or base URL they share.
    sources = sorted({
        str(v.get("source", "unknown")).removesuffix("/" + name)
        for name, v in raw.files.items()
    })
    return {
        "dataset": spec.name,
        "format": spec.kind,
        "source": sources[0] if len(sources) == 1 else sources,
        "files": raw.files,
        "classes": raw.classes,
        "num_classes": k,
        "input_shape": input_shape,
        "counts": {s: int(len(parts[s][1])) for s in SPLITS},
        "class_counts": {s: np.bincount(parts[s][1], minlength=k).tolist() for s in SPLITS},
        "split": {
            "method": SPLIT_METHOD,
            "val_fraction": data_cfg.val_fraction,
            "split_seed": data_cfg.split_seed,
            "train_subset": data_cfg.train_subset,
            "test_from": raw.test_from,
        },
        "prepared_file": prepared_name,
        "checksum": checksum,
        **raw.extra,
    }
