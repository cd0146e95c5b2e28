"""The real Fashion-MNIST from Debian's dataset-fashion-mnist: fetch, verify, prepare."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hpsweep.core.sections import DataConfig
from hpsweep.data import DataError, fetch, load_prepared, prepare
from hpsweep.data.download import Retry, read_record

DEBIAN = Path("/usr/share/datasets/fashion-mnist")

pytestmark = pytest.mark.skipif(
    not (DEBIAN / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"real Fashion-MNIST not installed at {DEBIAN} (apt-get install dataset-fashion-mnist)",
)


def test_fetch_and_prepare_real_fashion_mnist(tmp_path):
    raw = tmp_path / "raw"
    out = fetch("fashion-mnist", raw, mirrors=[str(DEBIAN)], urls=[], progress=False)
    rec = read_record(out)
    assert all(r["verified_by"] == "content-sha256" for r in rec.values())

    cfg = DataConfig(dataset="fashion-mnist", val_fraction=0.1, split_seed=0)
    m = prepare(cfg, raw, tmp_path / "fashion-mnist.pt", progress=False)
    assert m["counts"] == {"train": 54000, "val": 6000, "test": 10000}
    assert m["class_counts"]["val"] == [600] * 10 and m["class_counts"]["test"] == [1000] * 10
    assert m["num_classes"] == 10 and m["classes"][9] == "Ankle boot"
    assert m["source"] == str(DEBIAN)  # the mirror all four files came from

    d = load_prepared(tmp_path / "fashion-mnist.pt")
    assert d.x_train.dtype == torch.uint8 and d.x_train.shape == (54000, 1, 28, 28)
    assert d.y_train.dtype == torch.int64 and d.num_classes == 10
    assert d.checksum == m["checksum"]


def test_fashion_files_are_not_accepted_as_mnist(tmp_path):
    # Same file names, different dataset: the checksum table must tell them apart.
    with pytest.raises(DataError, match="it is fashion-mnist's train-images-idx3-ubyte.gz"):
        fetch("mnist", tmp_path, mirrors=[str(DEBIAN)], urls=["http://127.0.0.1:9/"],
              progress=False, retry=Retry(attempts=1))
    assert not (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").exists()
