"""Tiny ImageNet layout on a generated 3-class tree: scan, safe unzip, fetch, prepare."""

from __future__ import annotations

import hashlib
import stat
import zipfile
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from hpsweep.data import DataError, fetch, load_prepared, prepare, sources
from hpsweep.data.download import safe_extract_zip
from hpsweep.data.formats import load_images, scan_tiny, tiny_class_names

WNIDS = ["n03", "n01", "n02"]  # unsorted on purpose: labels follow sorted wnids
WORDS = {"n01": "goldfish, Carassius auratus", "n02": "crane", "n03": "crane, bird"}


def make_tiny(root, train_per=4, val_per=2):
    """A tiny-imagenet-200-shaped tree; class i's pixels are all 10*(i+1)."""
    (root / "val" / "images").mkdir(parents=True)
    (root / "test" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    (root / "words.txt").write_text(
        "n00\tentity\n" + "".join(f"{w}\t{n}\n" for w, n in WORDS.items()))
    ann = []
    for i, w in enumerate(sorted(WNIDS)):
        d = root / "train" / w / "images"
        d.mkdir(parents=True)
        (root / "train" / w / f"{w}_boxes.txt").write_text("")
        for k in range(train_per):
            # One grayscale and one 32x32 image per class: both must come out 3x64x64.
            mode, size = ("L", 64) if k == 0 else ("RGB", 32) if k == 1 else ("RGB", 64)
            Image.new(mode, (size, size), 10 * (i + 1) if mode == "L" else (10 * (i + 1),) * 3
                      ).save(d / f"{w}_{k}.png")
        for k in range(val_per):
            name = f"val_{i}_{k}.png"
            Image.new("RGB", (64, 64), (10 * (i + 1),) * 3).save(root / "val" / "images" / name)
            ann.append(f"{name}\t{w}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(ann) + "\n")
    Image.new("RGB", (64, 64)).save(root / "test" / "images" / "test_0.png")
    return root


def zip_tree(tree, zip_path):
    with zipfile.ZipFile(zip_path, "w") as zf:
        for p in sorted(tree.rglob("*")):
            zf.write(p, p.relative_to(tree.parent).as_posix())
    return zip_path


@pytest.fixture
def toy_tiny(monkeypatch):
    spec = sources.DatasetSpec(
        name="tiny-toy", kind="tiny-imagenet", hint="provide the toy tree",
        archive="tiny-imagenet-200.zip", tree="tiny-imagenet-200",
        expect=sources.TinyExpect(classes=3, train_per_class=4, val=6),
    )
    monkeypatch.setitem(sources.DATASETS, spec.name, spec)
    return spec


def test_scan_and_decode(tmp_path):
    root = make_tiny(tmp_path / "tiny-imagenet-200")
    layout = scan_tiny(root, sources.TinyExpect(classes=3, train_per_class=4, val=6))
    assert layout.wnids == ["n01", "n02", "n03"]
    x, y = load_images(layout.train, root, hashlib.sha256())
    assert x.shape == (12, 3, 64, 64) and x.dtype == np.uint8
    assert y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    # Every pixel of class i is 10*(i+1), whatever the stored mode or size was.
    assert all(int(x[j].min()) == int(x[j].max()) == 10 * (y[j] + 1) for j in range(12))
    xv, yv = load_images(layout.val, root, hashlib.sha256())
    assert yv.tolist() == [0, 0, 1, 1, 2, 2] and int(xv[2].max()) == 20


def test_class_names_from_words(tmp_path):
    root = make_tiny(tmp_path / "t")
    assert tiny_class_names(root, ["n01", "n02", "n03"]) == ["goldfish", "crane (n02)",
                                                            "crane (n03)"]
    (root / "words.txt").unlink()
    assert tiny_class_names(root, ["n01", "n02"]) == ["n01", "n02"]


def test_scan_rejects_broken_trees(tmp_path):
    root = make_tiny(tmp_path / "t")
    with pytest.raises(DataError, match="3 classes, expected 200"):
        scan_tiny(root, sources.TinyExpect(classes=200))
    with pytest.raises(DataError, match="4 images, expected 500"):
        scan_tiny(root, sources.TinyExpect(train_per_class=500))
    ann = root / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text() + "val_x.png\tn99\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match="not file<TAB>known-wnid"):
        scan_tiny(root)
    ann.unlink()
    with pytest.raises(DataError, match="val_annotations.txt: missing"):
        scan_tiny(root)


@pytest.mark.parametrize("entry", ["../evil.txt", "/tmp/evil.txt", "a/../../evil.txt",
                                   "C:/evil.txt", "symlink"])
def test_zip_path_traversal_is_rejected(tmp_path, entry):
    zp = tmp_path / "bad.zip"
    with zipfile.ZipFile(zp, "w") as zf:
        zf.writestr("tiny-imagenet-200/wnids.txt", "n01\n")
        if entry == "symlink":
            info = zipfile.ZipInfo("tiny-imagenet-200/link")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
        else:
            zf.writestr(entry, "pwned")
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(DataError, match="outside"):
        safe_extract_zip(zp, dest)
    assert list(dest.iterdir()) == []  # checked before anything is written
    assert not (tmp_path / "evil.txt").exists()


def test_damaged_zip_is_rejected(tmp_path):
    zp = zip_tree(make_tiny(tmp_path / "src" / "tiny-imagenet-200"), tmp_path / "t.zip")
    zp.write_bytes(zp.read_bytes()[:-200])
    with pytest.raises(DataError, match="damaged zip"):
        safe_extract_zip(zp, tmp_path / "out")


def test_fetch_from_zip_mirror_then_prepare(tmp_path, toy_tiny):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    zip_tree(make_tiny(tmp_path / "src" / "tiny-imagenet-200"), mirror / "tiny-imagenet-200.zip")
    raw = tmp_path / "raw"
    out = fetch("tiny-toy", raw, mirrors=[str(tmp_path / "nowhere"), str(mirror)], urls=[],
                progress=False)
    tree = out / "tiny-imagenet-200"
    assert (tree / "wnids.txt").is_file()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no staging left
    stamp = (tree / "wnids.txt").stat().st_mtime_ns
    fetch("tiny-toy", raw, mirrors=[str(mirror)], progress=False)  # verified: no-op
    assert (tree / "wnids.txt").stat().st_mtime_ns == stamp

    cfg = SimpleNamespace(dataset="tiny-toy", val_fraction=0.25, split_seed=0, train_subset=0)
    m = prepare(cfg, raw, tmp_path / "p" / "tiny.pt", progress=False)
    assert m["counts"] == {"train": 9, "val": 3, "test": 6}
    assert m["class_counts"]["val"] == [1, 1, 1]
    assert m["classes"] == ["goldfish", "crane (n02)", "crane (n03)"]
    assert m["wnids"] == ["n01", "n02", "n03"] and m["input_shape"] == [3, 64, 64]
    assert m["source"].endswith("tiny-imagenet-200.zip")
    assert load_prepared(tmp_path / "p" / "tiny.pt").x_test.shape == (6, 3, 64, 64)


def test_fetch_from_directory_mirror(tmp_path, toy_tiny):
    make_tiny(tmp_path / "mirror" / "tiny-imagenet-200")
    out = fetch("tiny-toy", tmp_path / "raw", mirrors=[str(tmp_path / "mirror")], urls=[],
                progress=False)
    assert len(list((out / "tiny-imagenet-200" / "train").iterdir())) == 3


def test_fetch_zip_by_url_checks_md5(tmp_path, toy_tiny, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    zp = zip_tree(make_tiny(tmp_path / "src" / "tiny-imagenet-200"),
                  site / "tiny-imagenet-200.zip")
    url = site.as_uri() + "/"  # file:// goes through the same urllib download path
    md5 = hashlib.md5(zp.read_bytes()).hexdigest()
    monkeypatch.setitem(sources.DATASETS, "tiny-toy",
                        replace(toy_tiny, archive_md5="0" * 32))
    with pytest.raises(DataError, match="md5 does not match") as e:
        fetch("tiny-toy", tmp_path / "raw", mirrors=[], urls=[url], progress=False)
    assert "Fix: provide the toy tree" in str(e.value)
    assert not (tmp_path / "raw" / "tiny-toy" / "tiny-imagenet-200").exists()
    monkeypatch.setitem(sources.DATASETS, "tiny-toy",
                        replace(toy_tiny, archive_md5=md5))
    out = fetch("tiny-toy", tmp_path / "raw", mirrors=[], urls=[url], progress=False)
    assert (out / "tiny-imagenet-200" / "wnids.txt").is_file()
    assert not (out / "tiny-imagenet-200.zip").exists()
