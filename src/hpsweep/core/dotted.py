"""Nested config dicts as dotted keys ({"train": {"lr": 0.1}} -> {"train.lr": 0.1}): the
one flattener behind TensorBoard hparams, MLflow params, run tables and `hpsweep deps`."""

from __future__ import annotations

from typing import Any


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Leaves of ``tree`` by dotted key, in order; an empty dict is a leaf."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
