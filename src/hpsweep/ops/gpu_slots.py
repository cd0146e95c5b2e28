"""GPU slots: each training job on a GPU of its own (or one of study.jobs_per_gpu on it).

Snakemake's `--resources gpu=N` only counts jobs; it does not tell a job which device
to use, so every job would open cuda:0 while the other GPUs idle. Before a training
job touches CUDA it therefore claims a slot: slot k of device d is the lock file
``<lock dir>/gpu-<d>.<k>.lock``, held with flock(2) for the job's life. The kernel
drops the lock when the process ends, however it ends (kill -9 included), so a dead
job's slot is free at once and there is no stale file to clean up. The job then sees
only its device (CUDA_VISIBLE_DEVICES=d), which it opens as cuda:0.

Slots are filled breadth first: every device gets one job before any gets two.

Which devices: core.gpus.visible_devices (HPSWEEP_GPUS, e.g. "0,1,2,3", else the
NVIDIA devices CUDA_VISIBLE_DEVICES leaves visible). Under SLURM (SLURM_JOB_ID set)
nothing is claimed: the cluster already gave the job its --gpus and set
CUDA_VISIBLE_DEVICES. The lock directory is HPSWEEP_GPU_LOCKS, else
<tmp>/hpsweep-gpu-slots: one per machine, so studies running side by side share it.

Nothing here imports torch: the slot must be chosen before CUDA starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from hpsweep.core.gpus import visible_devices

log = logging.getLogger(__name__)

LOCK_DIR_ENV = "HPSWEEP_GPU_LOCKS"


@dataclass(frozen=True)
class Slot:
    device: str  # as CUDA_VISIBLE_DEVICES names it: an index or a GPU UUID
    index: int  # which of the device's jobs_per_gpu slots
    lock: Path


def lock_dir(environ: MutableMapping[str, str] = os.environ) -> Path:
    d = Path(environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "hpsweep-gpu-slots")
    if not d.is_dir():
        d.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # shared by every user of the machine's GPUs
            d.chmod(0o1777)
    return d


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    # Who holds it, for a person looking at the directory (the lock is what counts).
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _lock_name(device: str, k: int) -> str:
    return f"gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', device)}.{k}.lock"


@contextlib.contextmanager
def gpu_slot(jobs_per_gpu: int = 1, *, environ: MutableMapping[str, str] = os.environ,
             poll_s: float = 1.0) -> Iterator[Slot | None]:
    """Claim a free GPU slot, point CUDA_VISIBLE_DEVICES at its device, hold it until the
    block ends. Yields the Slot, or None where nothing is claimed (under SLURM, or no
    GPU is visible). Waits while every slot is taken (more jobs than
    GPUs x jobs_per_gpu, i.e. `--resources gpu` set higher than that)."""
    if environ.get("SLURM_JOB_ID"):
        yield None
        return
    devices = visible_devices(environ)
    if not devices:
        log.warning("gpu slot: no GPU visible; the job runs where its trainer puts it")
        yield None
        return
    directory = lock_dir(environ)
    per_gpu = max(1, jobs_per_gpu)
    candidates = [(d, k) for k in range(per_gpu) for d in devices]
    waited_since = None
    while True:
        for device, k in candidates:
            path = directory / _lock_name(device, k)
            fd = _try_lock(path)
            if fd is not None:
                break
        else:
            if waited_since is None:
                waited_since = time.monotonic()
                log.info("gpu slot: all %d slots (%d GPUs x %d) are taken; waiting",
                         len(candidates), len(devices), per_gpu)
            time.sleep(poll_s)
            continue
        break
    before = {v: environ.get(v) for v in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")}
    # Indices in nvidia-smi's order (PCI bus), not CUDA's default fastest-first order,
    # unless the launcher chose an order for the indices it gave.
    environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    environ["CUDA_VISIBLE_DEVICES"] = device
    slot = Slot(device, k, path)
    log.info("gpu slot: device %s (slot %d of %d on it)%s", device, k, per_gpu,
             f", after waiting {time.monotonic() - waited_since:.0f} s" if waited_since else "")
    try:
        yield slot
    finally:
        for var, value in before.items():
            if value is None:
                environ.pop(var, None)
            else:
                environ[var] = value
        os.close(fd)  # closing the descriptor releases the flock
