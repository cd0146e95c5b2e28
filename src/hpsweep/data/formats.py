"""Readers for the non-IDX raw formats: pixel CSVs and the Tiny ImageNet tree.

Both return uint8 [N, C, H, W] images and int64 [N] labels, and fail with a
DataError naming the file and the line or image at fault.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpsweep.data import DataError
from hpsweep.data.sources import TinyExpect

# ----------------------------------------------------------------------------- CSV


def read_pixel_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read ``label,pixel0..pixelN`` (header line required) into square grayscale images.

    The side is inferred from the pixel count (784 -> 28x28); a count that is
    not a perfect square, a row with a different number of fields, a
    non-integer value or a pixel outside 0..255 is a DataError.
    """
    import pandas as pd  # deferred: only CSV users pay for the import

    path = Path(path)
    try:
        df = pd.read_csv(path, header=0, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file; expected a header line label,pixel0,...") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        # pandas: "Expected 785 fields in line 3, saw 786" -- a row with extra fields.
        msg = " ".join(str(e).split()).removeprefix("Error tokenizing data. C error: ")
        raise DataError(
            f"{path}: malformed CSV ({msg}); every row needs label + all pixels"
        ) from None
    cols = [str(c).strip().lower() for c in df.columns]
    if not cols or cols[0] != "label":
        raise DataError(
            f"{path}: first header column is {cols[0] if cols else ''!r}, expected 'label'"
            " (header line label,pixel0,...,pixelN)"
        )
    n_pix = len(cols) - 1
    side = math.isqrt(n_pix)
    if n_pix == 0 or side * side != n_pix:
        raise DataError(
            f"{path}: {n_pix} pixel columns is not a square image (e.g. 784 = 28x28);"
            " check the header has label plus side*side pixel columns"
        )
    if len(df) == 0:
        raise DataError(f"{path}: header only, no data rows")
    missing = df.isna().any(axis=1).to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise DataError(
            f"{path}: line {row + 2} has fewer than the header's {len(cols)} fields"
            " (or an empty field); every row needs label + all pixels"
        )
    non_int = [c for c, dt in df.dtypes.items() if not pd.api.types.is_integer_dtype(dt)]
    if non_int:
        raise DataError(
            f"{path}: column {non_int[0]!r} holds non-integer values; labels and pixels"
            " must be integers"
        )
    values = df.to_numpy(dtype=np.int64)
    labels, pixels = values[:, 0], values[:, 1:]
    if pixels.min() < 0 or pixels.max() > 255:
        raise DataError(
            f"{path}: pixel values must be 0..255, found {pixels.min()}..{pixels.max()}"
        )
    if labels.min() < 0:
        raise DataError(f"{path}: labels must be >= 0, found {labels.min()}")
    images = pixels.astype(np.uint8).reshape(-1, 1, side, side)
    return images, labels.copy()


# ------------------------------------------------------------------- Tiny ImageNet

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
TINY_SIZE = 64


@dataclass
class TinyLayout:
    """The files of a Tiny ImageNet tree, listed and checked but not decoded."""

    root: Path
    wnids: list[str]  # sorted: label i is wnids[i]
    train: list[tuple[Path, int]]
    val: list[tuple[Path, int]]


def _images_in(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def scan_tiny(root: Path, expect: TinyExpect | None = None) -> TinyLayout:
    """Check the standard layout and return its file lists.

        wnids.txt                        one class id per line
        words.txt                        optional: wnid<TAB>names
        train/<wnid>/images/*.JPEG       labelled by directory
        val/images/*.JPEG + val/val_annotations.txt   file<TAB>wnid<TAB>box...
    (test/ has no labels and is not used.)
    """
    root = Path(root)
    expect = expect or TinyExpect()
    wnids_file = root / "wnids.txt"
    if not wnids_file.is_file():
        raise DataError(f"{root}: no wnids.txt; not a tiny-imagenet-200 directory")
    wnids = [w.strip() for w in wnids_file.read_text().splitlines() if w.strip()]
    if not wnids or len(set(wnids)) != len(wnids):
        raise DataError(f"{wnids_file}: empty or has duplicate class ids")
    wnids = sorted(wnids)
    if expect.classes is not None and len(wnids) != expect.classes:
        raise DataError(f"{wnids_file}: {len(wnids)} classes, expected {expect.classes}")
    index = {w: i for i, w in enumerate(wnids)}
    train = []
    for w in wnids:
        d = root / "train" / w / "images"
        files = _images_in(d) if d.is_dir() else []
        if not files:
            raise DataError(f"{d}: missing or has no images; the tree is incomplete")
        if expect.train_per_class is not None and len(files) != expect.train_per_class:
            raise DataError(f"{d}: {len(files)} images, expected {expect.train_per_class}")
        train += [(p, index[w]) for p in files]
    ann = root / "val" / "val_annotations.txt"
    if not ann.is_file():
        raise DataError(f"{ann}: missing; the validation labels are needed as the test set")
    val = []
    for n, line in enumerate(ann.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or parts[1] not in index:
            raise DataError(f"{ann}: line {n} is not file<TAB>known-wnid: {line[:80]!r}")
        p = root / "val" / "images" / parts[0]
        if not p.is_file():
            raise DataError(f"{ann}: line {n} names {parts[0]}, which is not in val/images")
        val.append((p, index[parts[1]]))
    if not val or (expect.val is not None and len(val) != expect.val):
        raise DataError(f"{ann}: {len(val)} labelled images, expected {expect.val or 'some'}")
    return TinyLayout(root, wnids, train, val)


def tiny_class_names(root: Path, wnids: list[str]) -> list[str]:
    """First synonym from words.txt ('n01443537<TAB>goldfish, Carassius auratus' ->
    'goldfish'); the wnid where words.txt is absent; '(wnid)' added to repeats."""
    words = {}
    wf = Path(root) / "words.txt"
    if wf.is_file():
        for line in wf.read_text(errors="replace").splitlines():
            wnid, _, names = line.partition("\t")
            words[wnid.strip()] = names.split(",")[0].strip()
    names = [words.get(w) or w for w in wnids]
    return [f"{n} ({w})" if names.count(n) > 1 else n for n, w in zip(names, wnids, strict=True)]


def load_images(items: list[tuple[Path, int]], root: Path, digest: hashlib._Hash,
                progress: bool = False, desc: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Decode images to uint8 [N,3,64,64] (grayscale -> RGB, other sizes resized).

    Each file's relative path and bytes go into ``digest``, so the manifest can
    name exactly which tree was read without hashing it twice.
    """
    from PIL import Image, UnidentifiedImageError
    from tqdm import tqdm

    x = np.empty((len(items), 3, TINY_SIZE, TINY_SIZE), dtype=np.uint8)
    y = np.empty(len(items), dtype=np.int64)
    for i, (path, label) in enumerate(tqdm(items, desc=desc, disable=not progress, leave=False)):
        data = path.read_bytes()
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(data).digest())
        try:
            with Image.open(io.BytesIO(data)) as im:
                im = im.convert("RGB")
                if im.size != (TINY_SIZE, TINY_SIZE):
                    im = im.resize((TINY_SIZE, TINY_SIZE), Image.Resampling.BILINEAR)
                x[i] = np.asarray(im).transpose(2, 0, 1)
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"{path}: cannot decode image ({e}); replace or remove it") from None
        y[i] = label
    return x, y
