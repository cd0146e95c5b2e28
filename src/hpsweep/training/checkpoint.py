"""Checkpoints: atomic torch.save, safe resume, RNG state capture.

Everything stored is tensors and plain Python types, so checkpoints load with
``torch.load(weights_only=True)``: a checkpoint file cannot run code.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from hpsweep.core.atomic import atomic_path
from hpsweep.core.ids import same_code

log = logging.getLogger(__name__)

CKPT_FORMAT = 1


def save_atomic(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def capture_rng(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    elif device.type == "mps":
        state["mps"] = torch.mps.get_rng_state()
    return state


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])
    elif device.type == "mps" and "mps" in state:
        torch.mps.set_rng_state(state["mps"])


def load_resume(path: Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it exists, loads and belongs to this run, else None.

    ``identity`` (run config, seed, data checksum, code version) must match what the
    checkpoint recorded: resuming someone else's half-trained model would be silent
    corruption. An unreadable file is a warning and a fresh start, never a crash.
    """
    if not path.exists():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
            raise ValueError(f"not a format-{CKPT_FORMAT} hpsweep checkpoint")
        for key in ("identity", "epoch", "model", "optimizer", "schedule", "rng", "state"):
            if key not in ckpt:
                raise ValueError(f"missing {key!r}")
    except Exception as e:  # truncated zip, pickle error, wrong content: all mean "start over"
        log.warning("%s is unreadable (%s: %s); training from scratch", path,
                    type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        return None
    saved = ckpt["identity"]
    diff = sorted(k for k in identity if saved.get(k) != identity[k]
                  and not (k == "code_version" and same_code(str(saved.get(k)))))
    if diff:
        log.warning("%s belongs to a different run (%s differ); training from scratch",
                    path, ", ".join(diff))
        return None
    return ckpt
