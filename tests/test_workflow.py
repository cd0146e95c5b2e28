"""Thread reservation of training jobs (hpsweep.workflow)."""

from __future__ import annotations

import pytest

from hpsweep.workflow import TRAIN_THREADS, torch_threads, training_threads_for


@pytest.mark.parametrize("cores,cpus", [(1, 2), (2, 2), (4, 2), (3, 3), (4, 16), (16, 16),
                                        (32, 16), (64, 4), (5, 1)])
def test_jobs_running_at_once_never_oversubscribe_the_cpus(cores, cpus):
    reserved = training_threads_for(cores, local=True, cpus=cpus)
    # Snakemake scales a job's threads down to --cores when they exceed it.
    reserved = min(reserved, cores)
    at_once = max(1, cores // reserved)
    assert at_once * torch_threads(reserved, cpus) <= max(cpus, 1)


def test_normal_case_and_remote_executors_keep_two_threads():
    assert training_threads_for(4, local=True, cpus=16) == TRAIN_THREADS
    assert training_threads_for(2, local=True, cpus=2) == TRAIN_THREADS
    # A cluster job gets its own CPUs (sbatch --cpus-per-task = threads): no scaling.
    assert training_threads_for(400, local=False, cpus=2) == TRAIN_THREADS
    assert training_threads_for(None, local=True, cpus=2) == TRAIN_THREADS


def test_cores_above_cpus_run_one_job_at_a_time_on_a_small_machine():
    assert training_threads_for(4, local=True, cpus=2) == 4  # `--cores 4` on 2 CPUs
    assert torch_threads(4, cpus=2) == 2
