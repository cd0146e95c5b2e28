"""Strict IDX parsing: good files load; every malformed one is a one-line DataError."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest
from conftest import idx_bytes

from hpsweep.data import DataError
from hpsweep.data.idx import load_pair, parse_idx, read_verified
from hpsweep.data.sources import DATASETS, IdxFile


def test_parse_good_images_and_labels():
    imgs = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    out = parse_idx(idx_bytes(imgs), "images")
    assert out.shape == (2, 3, 4) and out.dtype == np.uint8
    assert np.array_equal(out, imgs)
    labels = parse_idx(idx_bytes(np.array([3, 1, 4], dtype=np.uint8)), "labels")
    assert labels.tolist() == [3, 1, 4]


@pytest.mark.parametrize("data, kind, needle", [
    (idx_bytes(np.zeros(3, np.uint8)), "images", "magic number 0x00000801"),  # labels as images
    (idx_bytes(np.zeros((2, 2, 2), np.uint8)), "labels", "magic number 0x00000803"),
    (b"\x00\x00\x0d\x01" + b"\x00\x00\x00\x01" + b"\x00" * 4, "labels", "magic"),  # float type
    (idx_bytes(np.zeros((2, 4, 4), np.uint8))[:-1], "images", "truncated"),
    (idx_bytes(np.zeros((2, 4, 4), np.uint8)) + b"\x00", "images", "trailing"),
    (idx_bytes(np.zeros((2, 4, 4), np.uint8))[:10], "images", "header truncated"),
    (b"\x00\x00", "labels", "too short"),
])
def test_parse_rejects_malformed(data, kind, needle):
    with pytest.raises(DataError, match=needle) as e:
        parse_idx(data, kind, "f")
    assert "\n" not in str(e.value)


def _spec(arr, kind="labels", **kw):
    raw = idx_bytes(arr)
    kw.setdefault("content_sha256", hashlib.sha256(raw).hexdigest())
    return IdxFile("f.gz", kind, "train", arr.shape, **kw), gzip.compress(raw)


def test_read_verified_good(tmp_path):
    labels = np.array([0, 1, 2, 1], np.uint8)
    spec, gz = _spec(labels)
    (tmp_path / "f.gz").write_bytes(gz)
    arr, rec = read_verified(tmp_path / "f.gz", spec, num_classes=3)
    assert arr.tolist() == labels.tolist()
    assert rec["verified_by"] == "content-sha256"
    assert rec["sha256"] == hashlib.sha256(gz).hexdigest()


def test_truncated_gzip_is_rejected(tmp_path):
    spec, gz = _spec(np.arange(200, dtype=np.uint8) % 3)
    (tmp_path / "f.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(DataError, match="truncated or corrupt gzip"):
        read_verified(tmp_path / "f.gz", spec, num_classes=3)


def test_not_gzip_is_rejected(tmp_path):
    spec, _ = _spec(np.zeros(4, np.uint8))
    (tmp_path / "f.gz").write_bytes(b"<html>not found</html>")
    with pytest.raises(DataError, match="gzip"):
        read_verified(tmp_path / "f.gz", spec, num_classes=3)


def test_label_out_of_range_is_rejected(tmp_path):
    spec, gz = _spec(np.array([0, 1, 7], np.uint8))
    (tmp_path / "f.gz").write_bytes(gz)
    with pytest.raises(DataError, match="label 7 is outside 0..2"):
        read_verified(tmp_path / "f.gz", spec, num_classes=3)


def test_shape_other_than_declared_is_rejected(tmp_path):
    spec, gz = _spec(np.zeros(4, np.uint8))
    spec = IdxFile("f.gz", "labels", "train", (5,), content_sha256=spec.content_sha256)
    (tmp_path / "f.gz").write_bytes(gz)
    with pytest.raises(DataError, match=r"shape \(4,\), expected \(5,\)"):
        read_verified(tmp_path / "f.gz", spec, num_classes=3)


def test_checksum_mismatch_is_rejected(tmp_path):
    spec, gz = _spec(np.zeros(4, np.uint8), content_sha256="0" * 64)
    (tmp_path / "f.gz").write_bytes(gz)
    with pytest.raises(DataError, match="content sha256 .* does not match"):
        read_verified(tmp_path / "f.gz", spec, num_classes=3)


def test_gz_md5_fallback(tmp_path):
    arr = np.zeros(4, np.uint8)
    gz = gzip.compress(idx_bytes(arr))
    good = IdxFile("f.gz", "labels", "train", (4,), gz_md5=hashlib.md5(gz).hexdigest())
    (tmp_path / "f.gz").write_bytes(gz)
    assert read_verified(tmp_path / "f.gz", good, 3)[1]["verified_by"] == "gz-md5"
    # Same content, recompressed: the .gz md5 cannot vouch for it.
    (tmp_path / "f.gz").write_bytes(gzip.compress(idx_bytes(arr), compresslevel=1, mtime=1))
    with pytest.raises(DataError, match="recompressed copy cannot be verified"):
        read_verified(tmp_path / "f.gz", good, 3)
    # No checksum at all: refuse rather than trust.
    with pytest.raises(DataError, match="no checksum"):
        read_verified(tmp_path / "f.gz", IdxFile("f.gz", "labels", "train", (4,)), 3)


def test_count_mismatch_between_images_and_labels():
    with pytest.raises(DataError, match="3 images but 2 labels"):
        load_pair(np.zeros((3, 2, 2), np.uint8), np.zeros(2, np.uint8), "train")
    x, y = load_pair(np.zeros((3, 2, 2), np.uint8), np.zeros(3, np.uint8), "train")
    assert x.shape == (3, 1, 2, 2) and x.flags.writeable and y.dtype == np.int64


def test_production_tables_are_complete():
    """Every official IDX file carries a checksum and the shape upstream publishes."""
    for name in ("fashion-mnist", "mnist"):
        spec = DATASETS[name]
        assert len(spec.files) == 4 and len(spec.classes) == 10
        for f in spec.files:
            assert f.content_sha256 or f.gz_md5, f
            assert f.shape[0] in (60000, 10000)
    assert all(f.content_sha256 for f in DATASETS["fashion-mnist"].files)
    assert DATASETS["fashion-mnist"].classes[0] == "T-shirt/top"
