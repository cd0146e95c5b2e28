"""How many threads a training job takes, and how many training jobs run at once.

One policy, read by the Snakemake jobs (ops.jobs: what each job reserves), the
calibration (ops.estimate: it times a job as it will run) and the planner (how many
jobs share the wall time).
"""

from __future__ import annotations

import math
import os

# Threads one training job trains with. Two keeps a job efficient on small CPUs and
# lets `--cores N` run N/2 jobs side by side.
TRAIN_THREADS = 2


def training_threads_for(cores: int | None, local: bool, cpus: int | None = None) -> int:
    """Threads a training job reserves from Snakemake's `--cores`.

    Normally TRAIN_THREADS. But when jobs run on this machine and `--cores` exceeds
    its CPUs (`snakemake --cores 4` on a 2-core laptop), each job reserves more, so
    that the jobs running at once still use at most the machine's CPUs: PyTorch CPU
    jobs that oversubscribe the cores spin-wait on each other and run many times
    slower (measured here: 24-70 s per MLP epoch with two 2-thread jobs on 2 cores,
    against 2.8 s for one).
    """
    cpus = cpus or os.cpu_count() or 1
    if not local or not cores or cores <= cpus:
        return TRAIN_THREADS
    slots = max(1, cpus // TRAIN_THREADS)  # training jobs the machine can run at once
    return max(TRAIN_THREADS, math.ceil(cores / slots))


def torch_threads(reserved: int, cpus: int | None = None) -> int:
    """Threads a training job gives PyTorch out of the ``reserved`` ones (see above)."""
    return max(1, min(reserved, TRAIN_THREADS, cpus or os.cpu_count() or 1))


def job_slots(cores: int | None = None, gpus: int | None = None) -> int:
    """Training jobs that run at once locally: Snakemake's --cores over the threads each
    job reserves, never more than the machine's CPUs allow, nor, for a study that trains
    on a GPU (each training job claims gpu=1), than `--resources gpu=N`."""
    cpus = os.cpu_count() or 1
    slots = max(1, min(cores or cpus, cpus) // TRAIN_THREADS)
    return max(1, min(slots, gpus)) if gpus is not None else slots
