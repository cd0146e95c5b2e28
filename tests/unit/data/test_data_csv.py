"""Pixel CSVs (label,pixel0..pixelN): parsing, fetching and preparing."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from hpsweep.data import DataError, fetch, load_prepared, prepare
from hpsweep.data.formats import read_pixel_csv


def write_csv(path, labels, side=4, header=None, rows=None):
    header = header or "label," + ",".join(f"pixel{i}" for i in range(side * side))
    rng = np.random.default_rng(0)
    lines = [header]
    for lab in labels:
        lines.append(",".join(str(v) for v in [lab, *rng.integers(0, 256, side * side)]))
    lines += rows or []
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_good_csv(tmp_path):
    x, y = read_pixel_csv(write_csv(tmp_path / "d.csv", [0, 2, 1], side=4))
    assert x.shape == (3, 1, 4, 4) and x.dtype == np.uint8
    assert y.tolist() == [0, 2, 1] and y.dtype == np.int64


def test_pixel_order_is_row_major(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("label,pixel0,pixel1,pixel2,pixel3\n5,1,2,3,4\n")
    x, _ = read_pixel_csv(p)
    assert x[0, 0].tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize("extra_row, needle", [
    ("1," + ",".join(["0"] * 17), "malformed CSV"),  # one field too many
    ("1," + ",".join(["0"] * 15), "line 4 has fewer"),  # one field too few
    ("1," + ",".join(["0"] * 15) + ",x", "non-integer"),
    ("1," + ",".join(["0"] * 15) + ",256", "0..255"),
    ("-1," + ",".join(["0"] * 16), "labels must be >= 0"),
])
def test_bad_rows_are_rejected(tmp_path, extra_row, needle):
    p = write_csv(tmp_path / "d.csv", [0, 1], side=4, rows=[extra_row])
    with pytest.raises(DataError, match=needle) as e:
        read_pixel_csv(p)
    assert "\n" not in str(e.value)


def test_non_square_and_bad_header_are_rejected(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("label,p0,p1,p2\n0,1,2,3\n")
    with pytest.raises(DataError, match="3 pixel columns is not a square"):
        read_pixel_csv(p)
    p.write_text("pixel0,label\n0,1\n")
    with pytest.raises(DataError, match="expected 'label'"):
        read_pixel_csv(p)
    p.write_text("")
    with pytest.raises(DataError, match="empty file"):
        read_pixel_csv(p)


def test_fetch_and_prepare_csv(tmp_path):
    labels = np.repeat(np.arange(3), [50, 30, 20])
    src = write_csv(tmp_path / "kaggle.csv", labels, side=4)
    raw = tmp_path / "raw"
    fetch("csv", raw, mirrors=[], csv_path=str(src), progress=False)
    assert (raw / "csv" / "data.csv").read_bytes() == src.read_bytes()

    cfg = SimpleNamespace(dataset="csv", val_fraction=0.1, split_seed=0, train_subset=0)
    m = prepare(cfg, raw, tmp_path / "csv.pt", progress=False)
    # test: 10% of all rows; val: 10% of the remaining 90.
    assert m["counts"] == {"train": 81, "val": 9, "test": 10}
    assert m["class_counts"]["test"] == [5, 3, 2]
    assert m["input_shape"] == [1, 4, 4] and m["classes"] == ["0", "1", "2"]
    d = load_prepared(tmp_path / "csv.pt")
    assert d.checksum == m["checksum"]

    # Another split_seed reshuffles train/val but never the held-out test set.
    m2 = prepare(SimpleNamespace(**{**vars(cfg), "split_seed": 5}), raw, tmp_path / "b.pt",
                 progress=False)
    d2 = load_prepared(tmp_path / "b.pt")
    assert bool((d2.x_test == d.x_test).all())
    assert not bool((d2.y_val == d.y_val).all() and (d2.x_val == d.x_val).all())
    assert m2["checksum"] != m["checksum"]


def test_fetch_csv_follows_a_changed_source(tmp_path):
    raw = tmp_path / "raw"
    a = write_csv(tmp_path / "a.csv", [0, 1, 1])
    fetch("csv", raw, mirrors=[], csv_path=str(a), progress=False)
    b = write_csv(tmp_path / "b.csv", [1, 0])
    fetch("csv", raw, mirrors=[], csv_path=str(b), progress=False)
    assert (raw / "csv" / "data.csv").read_bytes() == b.read_bytes()


def test_fetch_csv_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        fetch("csv", tmp_path, mirrors=[], csv_path=str(tmp_path / "missing.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_text("label,a,b\n0,1,2\n")
    with pytest.raises(DataError, match="not a square"):
        fetch("csv", tmp_path / "raw", mirrors=[], csv_path=str(bad))
    assert not (tmp_path / "raw" / "csv" / "data.csv").exists()
