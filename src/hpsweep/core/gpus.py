"""Which GPUs this machine shows, read without importing torch (seconds, at every DAG
build, and CUDA must not start before a job has its GPU slot: ops.gpu_slots)."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path

# The GPUs hpsweep may use, comma-separated indices or UUIDs ("0,1,2,3"): overrides
# what the machine shows. Also how the tests stand in for a GPU box.
DEVICES_ENV = "HPSWEEP_GPUS"


def _listed(value: str) -> list[str]:
    value = value.strip()
    return [] if value in ("", "-1") else [d.strip() for d in value.split(",") if d.strip()]


def visible_devices(environ: Mapping[str, str] = os.environ,
                    dev: Path = Path("/dev")) -> list[str]:
    """HPSWEEP_GPUS if set; else, where NVIDIA device nodes exist, the devices
    CUDA_VISIBLE_DEVICES leaves visible (all of the nodes when it is unset)."""
    if DEVICES_ENV in environ:
        return _listed(environ[DEVICES_ENV])
    nodes = sorted(int(p.name.removeprefix("nvidia")) for p in dev.glob("nvidia[0-9]*"))
    if not nodes:
        return []
    if "CUDA_VISIBLE_DEVICES" in environ:
        return _listed(environ["CUDA_VISIBLE_DEVICES"])
    return [str(n) for n in nodes]


def gpu_visible() -> bool:
    """Whether "auto" would train on a GPU here: an NVIDIA GPU (visible_devices) or Apple
    silicon (MPS). Only decides the jobs' gpu=1 claim and GPU slot; the trainer itself
    asks torch (training.device.resolve_device)."""
    if sys.platform == "darwin":
        return platform.machine() == "arm64"
    return bool(visible_devices())
