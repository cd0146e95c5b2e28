"""Hashes that name results, without importing torch (the Snakefile needs them to
build the DAG, and torch costs seconds to import)."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def training_code_files() -> list[Path]:
    """What a run's result depends on besides its config: the model and trainer code."""
    return [PACKAGE / "models.py", PACKAGE / "train.py",
            *sorted((PACKAGE / "training").glob("*.py"))]


def training_code_hash() -> str:
    """sha256 over the training code (models.py, train.py, training/*.py)."""
    h = hashlib.sha256()
    for f in training_code_files():
        if f.is_file():
            h.update(f.relative_to(PACKAGE).as_posix().encode())
            h.update(b"\0")
            h.update(f.read_bytes())
            h.update(b"\0")
    return h.hexdigest()


@cache
def code_version() -> str:
    """Short hash of the training code: an edit of the trainer retrains every run."""
    return training_code_hash()[:16]
