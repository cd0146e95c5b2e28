"""Seeded stratified splits and subsets, and prepare() on a generated IDX dataset."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import TOY_TRAIN_SIZES

from hpsweep.data import (
    DataError,
    fetch,
    load_prepared,
    manifest_path,
    prepare,
    stratified_split,
    stratified_subset,
)

LABELS = np.random.default_rng(7).permutation(np.repeat(np.arange(5), [400, 300, 200, 70, 30]))


def test_split_is_deterministic_disjoint_and_stratified():
    rest, val = stratified_split(LABELS, 0.1, seed=3)
    rest2, val2 = stratified_split(LABELS, 0.1, seed=3)
    assert np.array_equal(rest, rest2) and np.array_equal(val, val2)
    assert len(val) == 100 and len(rest) == 900
    assert np.array_equal(np.sort(np.concatenate([rest, val])), np.arange(1000))
    assert np.bincount(LABELS[val]).tolist() == [40, 30, 20, 7, 3]
    other = stratified_split(LABELS, 0.1, seed=4)[1]
    assert not np.array_equal(val, other)
    assert np.bincount(LABELS[other]).tolist() == [40, 30, 20, 7, 3]


def test_split_total_is_exact_when_classes_do_not_divide():
    labels = np.repeat(np.arange(3), [7, 7, 7])
    _, taken = stratified_split(labels, 0.5, seed=0)
    assert len(taken) == round(0.5 * 21)  # 10, not 3 * round(3.5)
    assert sorted(np.bincount(labels[taken]).tolist()) == [3, 3, 4]


def test_subset_is_stratified_exact_and_seeded():
    idx = stratified_subset(LABELS, 200, seed=1)
    assert len(idx) == 200 and len(np.unique(idx)) == 200
    assert np.bincount(LABELS[idx]).tolist() == [80, 60, 40, 14, 6]
    assert np.array_equal(idx, stratified_subset(LABELS, 200, seed=1))
    with pytest.raises(DataError, match="train_subset = 2000 .* 1000 samples"):
        stratified_subset(LABELS, 2000, seed=1)


def cfg(**kw):
    base = dict(dataset="toy-idx", val_fraction=0.1, split_seed=0, train_subset=0, csv_path="")
    return SimpleNamespace(**{**base, **kw})


def test_prepare_idx(tmp_path, toy_idx):
    raw = tmp_path / "raw"
    fetch(toy_idx.name, raw, mirrors=[str(toy_idx.mirror)], progress=False)
    out = tmp_path / "prepared" / "toy.pt"
    m = prepare(cfg(), raw, out, progress=False)

    assert m["counts"] == {"train": 90, "val": 10, "test": 20}
    assert m["class_counts"]["val"] == [4, 3, 2, 1]
    assert m["class_counts"]["train"] == [s - v for s, v in zip(TOY_TRAIN_SIZES, [4, 3, 2, 1],
                                                                strict=True)]
    assert m["classes"] == ["a", "b", "c", "d"] and m["input_shape"] == [1, 8, 8]
    assert m["split"]["val_fraction"] == 0.1 and m["split"]["test_from"] == "official test set"
    assert set(m["files"]) == set(toy_idx.gz)
    f = m["files"]["train-images-idx3-ubyte.gz"]
    assert f["verified_by"] == "content-sha256" and len(f["sha256"]) == 64
    assert f["source"].startswith(str(toy_idx.mirror)) and m["source"] == str(toy_idx.mirror)
    assert json.loads(manifest_path(out).read_text()) == m
    assert manifest_path(out).name == "toy.manifest.json"

    d = load_prepared(out)
    assert d.checksum == m["checksum"] and d.dataset == "toy-idx"
    assert d.x_train.dtype == torch.uint8 and d.y_train.dtype == torch.int64
    assert d.x_train.shape == (90, 1, 8, 8)
    # Train and val together are exactly the official training set, pixels intact.
    x_all = np.concatenate([d.x_train.numpy(), d.x_val.numpy()])[:, 0]
    ref = toy_idx.arrays["train-images-idx3-ubyte.gz"]
    assert sorted(map(bytes, x_all)) == sorted(map(bytes, ref))
    test_ref = torch.from_numpy(toy_idx.arrays["t10k-images-idx3-ubyte.gz"])
    assert torch.equal(d.x_test[:, 0], test_ref)

    # Same inputs -> the same file, byte for byte in content (the checksum).
    assert prepare(cfg(), raw, tmp_path / "again.pt", progress=False)["checksum"] == m["checksum"]
    assert prepare(cfg(split_seed=1), raw, tmp_path / "s1.pt", progress=False)["checksum"] != \
        m["checksum"]


def test_prepare_train_subset(tmp_path, toy_idx):
    raw = tmp_path / "raw"
    fetch(toy_idx.name, raw, mirrors=[str(toy_idx.mirror)], progress=False)
    prepare(cfg(), raw, tmp_path / "f.pt", progress=False)
    full = load_prepared(tmp_path / "f.pt")
    m = prepare(cfg(train_subset=45), raw, tmp_path / "sub.pt", progress=False)
    assert m["counts"]["train"] == 45 and m["counts"]["val"] == 10
    assert m["class_counts"]["train"] == [18, 14, 9, 4]  # 36:27:18:9 halved, largest remainder
    sub = load_prepared(tmp_path / "sub.pt")
    assert torch.equal(sub.x_val, full.x_val)  # the subset never moves the validation split
    full_rows = {bytes(r) for r in full.x_train.numpy()}
    assert all(bytes(r) in full_rows for r in sub.x_train.numpy())
    with pytest.raises(DataError, match="train_subset = 1000"):
        prepare(cfg(train_subset=1000), raw, tmp_path / "x.pt", progress=False)
    assert not (tmp_path / "x.pt").exists()


def test_prepare_without_fetch_says_so(tmp_path, toy_idx):
    with pytest.raises(DataError, match="missing; run the fetch step"):
        prepare(cfg(), tmp_path / "raw", tmp_path / "p.pt", progress=False)


def test_prepare_rejects_a_raw_file_changed_after_fetch(tmp_path, toy_idx):
    raw = tmp_path / "raw"
    out = fetch(toy_idx.name, raw, mirrors=[str(toy_idx.mirror)], progress=False)
    other = toy_idx.gz["t10k-labels-idx1-ubyte.gz"]
    (out / "train-labels-idx1-ubyte.gz").write_bytes(other)
    with pytest.raises(DataError):
        prepare(cfg(), raw, tmp_path / "p.pt", progress=False)
    assert not (tmp_path / "p.pt").exists()


def test_derived_data_gets_its_own_checksum_and_keeps_the_rest():
    from hpsweep.data.prepared import PreparedData

    g = torch.Generator().manual_seed(0)
    t = {}
    for split, n in (("train", 20), ("val", 6), ("test", 4)):
        t[f"x_{split}"] = torch.randint(0, 256, (n, 1, 4, 4), generator=g, dtype=torch.uint8)
        t[f"y_{split}"] = torch.randint(0, 3, (n,), generator=g)
    data = PreparedData.from_tensors(t, ["a", "b", "c"], "toy")
    assert data.checksum == PreparedData.from_tensors(dict(t), ["a", "b", "c"], "toy").checksum
    half = data.derive(x_train=data.x_train[:10], y_train=data.y_train[:10])
    assert half.checksum != data.checksum and len(half.y_train) == 10
    assert half.x_val is data.x_val and half.classes == data.classes and half.dataset == "toy"
    assert data.derive().checksum == data.checksum
    with pytest.raises(TypeError, match="x_trian"):
        data.derive(x_trian=data.x_train)
