"""Hashes and versions that name results, without importing torch (the Snakefile needs
them to build the DAG, and torch costs seconds to import)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

# The training engine's identity, part of every run's signature. Bump it (any new
# string) when a change to training/ alters a number a run produces;
# tests/unit/training/test_engine_golden.py trains a few tiny runs and fails when
# their numbers differ from the recorded ones while this string is unchanged. A refactor that
# changes no number keeps it, so moving or tidying the engine retrains nothing.
# Until 0.1 this was the sha256 of the training code (its first 16 hex digits are
# kept here, so runs made then keep their ids).
ENGINE_VERSION = "751f77dca6f8e51d"


def code_version() -> str:
    """The training code's version, as it appears in run signatures and metrics.json."""
    return ENGINE_VERSION


def same_code(recorded: str) -> bool:
    """``recorded`` (a metrics.json or checkpoint's code_version) names this engine.

    Before 0.1 metrics.json held the 64-hex-digit sha256 whose first 16 digits became
    ENGINE_VERSION; such a run counts as made by this engine.
    """
    return recorded == ENGINE_VERSION or (len(recorded) == 64
                                          and recorded[:len(ENGINE_VERSION)] == ENGINE_VERSION)


def canonical_json(obj: Any) -> str:
    """One text per value: keys sorted, no spaces (configs compared as text)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def run_signature(run_cfg: dict[str, Any], extra: dict[str, Any] | None = None) -> str:
    """Stable hash of everything that determines a run's result."""
    blob = json.dumps({"run": run_cfg, "extra": extra or {}}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()
