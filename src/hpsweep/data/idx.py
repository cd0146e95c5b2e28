"""Strict reader and verifier for IDX files (MNIST, Fashion-MNIST).

Format (big-endian): two zero bytes, a type code (0x08 = unsigned byte), the
number of dimensions, one uint32 per dimension, then exactly prod(dims) data
bytes. Labels are 0x00000801 ([N]), images 0x00000803 ([N, rows, cols]).
Anything else -- another magic, a short or over-long payload, a truncated
gzip, labels outside the class range -- is a DataError: a silently misread
file would train on garbage and still produce numbers.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from hpsweep.data import DataError
from hpsweep.data.sources import IdxFile, known_content

MAGIC = {"labels": 0x00000801, "images": 0x00000803}


def decompress(path: Path, name: str = "") -> bytes:
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (EOFError, OSError, zlib.error) as e:  # BadGzipFile is an OSError
        raise DataError(
            f"{name or path}: truncated or corrupt gzip ({e}); delete it and fetch it again"
        ) from None


def parse_idx(data: bytes, kind: str, name: str = "IDX data") -> np.ndarray:
    """Parse IDX bytes of ``kind`` ('images' or 'labels'); read-only uint8 array."""
    expected = MAGIC[kind]
    if len(data) < 4:
        raise DataError(f"{name}: {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected:
        raise DataError(
            f"{name}: magic number 0x{magic:08x}, expected 0x{expected:08x} for IDX {kind};"
            " this is not an uncompressed IDX file of that kind"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: header truncated ({len(data)} of {header} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if any(d == 0 for d in dims[1:]):
        raise DataError(f"{name}: header declares an empty dimension {dims}")
    payload = len(data) - header
    if payload != math.prod(dims):
        raise DataError(
            f"{name}: header declares {dims} = {math.prod(dims)} bytes of data but the file"
            f" holds {payload}; it is truncated or has trailing bytes, fetch it again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def check_labels(labels: np.ndarray, num_classes: int, name: str) -> None:
    if labels.size and int(labels.max()) >= num_classes:
        bad = int(labels.max())
        raise DataError(
            f"{name}: label {bad} is outside 0..{num_classes - 1}; the file does not belong"
            " to this dataset"
        )


def read_verified(path: Path, spec: IdxFile, num_classes: int,
                  label: str = "") -> tuple[np.ndarray, dict]:
    """Read one IDX .gz file and check it against ``spec``.

    Returns the array and a record: sha256 of the stored file, sha256 of its
    decompressed content, and which check verified it. Errors name ``label``
    (default: the file's name; fetch checks temp files, whose names mean nothing).
    """
    name = label or spec.name
    raw = Path(path).read_bytes()
    content = decompress(path, name)
    arr = parse_idx(content, spec.kind, name)
    if arr.shape != tuple(spec.shape):
        raise DataError(
            f"{name}: header says shape {arr.shape}, expected {tuple(spec.shape)}"
        )
    if spec.kind == "labels":
        check_labels(arr, num_classes, name)
    content_sha = hashlib.sha256(content).hexdigest()
    if spec.content_sha256:
        if content_sha != spec.content_sha256:
            other = known_content(content_sha)
            raise DataError(
                f"{name}: content sha256 {content_sha[:12]}... does not match the known"
                f" {spec.content_sha256[:12]}...{f' (it is {other})' if other else ''}"
            )
        verified_by = "content-sha256"
    elif spec.gz_md5:
        gz_md5 = hashlib.md5(raw).hexdigest()
        if gz_md5 != spec.gz_md5:
            other = known_content(content_sha)
            raise DataError(
                f"{name}: .gz md5 {gz_md5} does not match the upstream {spec.gz_md5}"
                f"{f' (it is {other})' if other else ' (a recompressed copy cannot be verified)'}"
            )
        verified_by = "gz-md5"
    else:
        raise DataError(f"{name}: no checksum is known for this file; cannot verify it")
    record = {
        "sha256": hashlib.sha256(raw).hexdigest(),
        "content_sha256": content_sha,
        "verified_by": verified_by,
    }
    return arr, record


def verify(path: Path, spec: IdxFile, num_classes: int) -> dict:
    return read_verified(path, spec, num_classes)[1]


def load_pair(images: np.ndarray, labels: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Images [N,H,W] + labels [N] -> (uint8 [N,1,H,W], int64 [N]), both writable copies."""
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{what}: {images.shape[0]} images but {labels.shape[0]} labels; the files are"
            " from different datasets or one is damaged"
        )
    return images[:, None, :, :].copy(), labels.astype(np.int64)
