"""GPU slots with real concurrent processes on a fake device list (HPSWEEP_GPUS).

Each holder process claims a slot, writes the CUDA_VISIBLE_DEVICES it was given to a
file, and holds the slot until the test removes its "go" file (or kills it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from hpsweep.core.gpus import visible_devices
from hpsweep.ops.gpu_slots import gpu_slot

HOLDER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from hpsweep.ops.gpu_slots import gpu_slot
    out, hold = Path(sys.argv[1]), Path(sys.argv[2])
    with gpu_slot(int(sys.argv[3]), poll_s=0.05) as slot:
        out.write_text(f"{os.environ.get('CUDA_VISIBLE_DEVICES')} {slot.index if slot else '-'}")
        while hold.exists():
            time.sleep(0.02)
""")


def _env(tmp_path: Path, devices: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")}
    env.update({"HPSWEEP_GPUS": devices, "HPSWEEP_GPU_LOCKS": str(tmp_path / "locks")})
    return env


def _start(tmp_path: Path, name: str, env: dict, jobs_per_gpu: int = 1):
    out, hold = tmp_path / f"{name}.out", tmp_path / f"{name}.hold"
    hold.touch()
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), str(hold),
                             str(jobs_per_gpu)], env=env)
    return proc, out, hold


def _wait_for(paths: list[Path], timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, f"no slot reported in {timeout} s"
        time.sleep(0.02)
    return [p.read_text() for p in paths]


def _finish(procs) -> None:
    for _, _, hold in procs:
        hold.unlink(missing_ok=True)
    for proc, _, _ in procs:
        proc.wait(timeout=30)


def test_n_concurrent_jobs_get_n_distinct_gpus(tmp_path):
    env = _env(tmp_path, "0,1,2,3")
    procs = [_start(tmp_path, f"job{i}", env) for i in range(4)]
    try:
        got = [text.split()[0] for text in _wait_for([out for _, out, _ in procs])]
    finally:
        _finish(procs)
    assert sorted(got) == ["0", "1", "2", "3"]


def test_jobs_per_gpu_fills_every_gpu_once_before_any_twice(tmp_path):
    env = _env(tmp_path, "0,1")
    first = [_start(tmp_path, f"a{i}", env, jobs_per_gpu=2) for i in range(2)]
    try:
        # two jobs on two GPUs: one each, never both on GPU 0
        assert sorted(t.split()[0] for t in _wait_for([o for _, o, _ in first])) == ["0", "1"]
        second = [_start(tmp_path, f"b{i}", env, jobs_per_gpu=2) for i in range(2)]
        try:
            texts = _wait_for([o for _, o, _ in first + second])
        finally:
            _finish(second)
    finally:
        _finish(first)
    assert Counter(t.split()[0] for t in texts) == {"0": 2, "1": 2}
    assert sorted(t.split()[1] for t in texts) == ["0", "0", "1", "1"]


def test_a_killed_jobs_slot_is_freed_and_a_waiting_job_takes_it(tmp_path):
    env = _env(tmp_path, "0,1")
    holders = [_start(tmp_path, f"job{i}", env) for i in range(2)]
    try:
        devices = [t.split()[0] for t in _wait_for([o for _, o, _ in holders])]
        waiter = _start(tmp_path, "waiter", env)
        time.sleep(1.0)
        assert not waiter[1].exists(), "a third job got a slot while both were held"
        victim = holders[0][0]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        (got,) = _wait_for([waiter[1]])
        _finish([waiter])
    finally:
        _finish(holders)
    assert got.split()[0] == devices[0]


def test_under_slurm_nothing_is_claimed_and_the_clusters_pinning_stays():
    env = {"SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "3", "HPSWEEP_GPUS": "0,1"}
    with gpu_slot(1, environ=env) as slot:
        assert slot is None and env["CUDA_VISIBLE_DEVICES"] == "3"


def test_the_slot_sets_and_then_restores_the_environment(tmp_path):
    env = {"HPSWEEP_GPUS": "GPU-aaaa,GPU-bbbb", "HPSWEEP_GPU_LOCKS": str(tmp_path)}
    with gpu_slot(1, environ=env) as slot:
        assert slot.device == "GPU-aaaa" and env["CUDA_VISIBLE_DEVICES"] == "GPU-aaaa"
        assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
        with gpu_slot(1, environ=dict(env, HPSWEEP_GPUS="GPU-aaaa,GPU-bbbb")) as other:
            assert other.device == "GPU-bbbb"  # the first is held (flock is per open file)
    assert "CUDA_VISIBLE_DEVICES" not in env and "CUDA_DEVICE_ORDER" not in env


@pytest.mark.parametrize(("environ", "nodes", "want"), [
    ({"HPSWEEP_GPUS": "2, 3"}, [], ["2", "3"]),
    ({"HPSWEEP_GPUS": ""}, ["nvidia0"], []),
    ({}, ["nvidia1", "nvidia0", "nvidiactl"], ["0", "1"]),
    ({"CUDA_VISIBLE_DEVICES": "1,0"}, ["nvidia0", "nvidia1"], ["1", "0"]),
    ({"CUDA_VISIBLE_DEVICES": "-1"}, ["nvidia0"], []),
    ({"CUDA_VISIBLE_DEVICES": "0"}, [], []),  # set, but this machine has no NVIDIA GPU
])
def test_which_devices_are_visible(tmp_path, environ, nodes, want):
    for name in nodes:
        (tmp_path / name).touch()
    assert visible_devices(environ, dev=tmp_path) == want
