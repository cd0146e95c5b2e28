"""A tiny synthetic study for the Optuna and final-retrain tests.

256 images of 8x8 pixels, 4 classes (a bright quadrant per class plus noise),
saved with the real save_prepared under the study's prepared path, so the real
trainer, real Optuna storages and real worker processes run in seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import tomli_w
import torch

from hpsweep.core.plan import dumps_config
from hpsweep.core.study import Study
from hpsweep.data.prepared import save_prepared

# Worker processes: each trains with one thread (the test machine has two cores).
WORKER = """
import sys
from hpsweep.core.study import Study
from hpsweep.tuning.worker import run_worker
run_worker(Study.load(sys.argv[1], root=sys.argv[2]), int(sys.argv[3]), threads=1)
"""


def synthetic_tensors(n: int = 256, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    y = y[torch.randperm(n, generator=g)]
    x = torch.randint(0, 60, (n, 1, 8, 8), generator=g)
    for c in range(4):
        r, q = divmod(c, 2)
        x[y == c, :, 4 * r:4 * r + 4, 4 * q:4 * q + 4] += 150
    x = x.clamp(0, 255).to(torch.uint8)
    a, b = int(n * 0.625), int(n * 0.8125)  # 160 / 48 / 48
    return {"x_train": x[:a], "y_train": y[:a], "x_val": x[a:b], "y_val": y[a:b],
            "x_test": x[b:], "y_test": y[b:]}


def tiny_params(**sections: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {
        "study": {"name": "tiny", "seeds": [0], "device": "cpu"},
        "data": {"dataset": "fashion-mnist", "mirrors": []},
        "model": {"arch": "mlp", "depth": 1, "width": 16, "batch_norm": False,
                  "dropout": 0.0},
        "train": {"epochs": 2, "batch_size": 32, "lr": 0.01, "scheduler": "none",
                  "label_smoothing": 0.0, "eval_batch_size": 256, "log_every_steps": 1000,
                  "bf16": "off"},
        "optuna": {"n_trials": 4, "n_workers": 2, "sampler": "random", "pruner": "none",
                   "epochs": 1, "warm_start": False,
                   "space": {"train.lr": {"type": "float", "low": 0.001, "high": 0.1,
                                          "log": True},
                             "model.width": {"type": "categorical", "choices": [8, 16]}}},
        "final": {"seeds": [0, 1], "epochs": 1},
    }
    for name, values in sections.items():
        params[name] = {**params.get(name, {}), **values}
    return params


def make_study(root: Path, **sections: dict[str, Any]) -> Study:
    """Write root/params.toml and the synthetic prepared data; return the Study."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.toml").write_text(tomli_w.dumps(tiny_params(**sections)))
    study = Study.load(root / "params.toml", root=root)
    save_prepared(study.paths.prepared, synthetic_tensors(), ["a", "b", "c", "d"],
                  "fashion-mnist")
    return study


def fake_complete_run(study: Study, run_id: str, acc: float, n_params: int = 100) -> None:
    """Mark a planned run complete without training (config.json + metrics.json)."""
    d = study.paths.run_dir(run_id)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(dumps_config(study.plan.runs[run_id]))
    history = [{"epoch": 1, "val_acc": acc - 0.05}, {"epoch": 2, "val_acc": acc}]
    (d / "metrics.json").write_text(json.dumps({
        "status": "ok", "best_val_acc": acc, "n_params": n_params, "history": history}))


def worker_env(**extra: str) -> dict[str, str]:
    # Heartbeat every second, stale after three: a killed worker's trial is retried fast.
    return {**os.environ, "HPSWEEP_OPTUNA_HEARTBEAT_S": "1", "HPSWEEP_OPTUNA_GRACE_S": "3",
            "OMP_NUM_THREADS": "1", **extra}


def start_worker(study: Study, index: int, env: dict[str, str], code: str = WORKER,
                 log: Path | None = None) -> subprocess.Popen:
    log = log or study.paths.results_dir / f"worker{index}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    root = study.params_path.parent
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", code, str(study.params_path),
                                 str(root), str(index)], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    proc.log_path = log  # type: ignore[attr-defined]
    return proc


def wait_all(procs: list[subprocess.Popen], timeout: float = 120) -> None:
    for p in procs:
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:  # none is left behind to poll the storage for ever
                q.kill()
                q.wait()
            raise AssertionError(f"a worker did not finish in {timeout} s:\n"
                                 f"{p.log_path.read_text()[-3000:]}") from None
        log = p.log_path.read_text()
        assert rc == 0, log[-3000:]
        # SQLite under concurrent writers: a lock error retried or swallowed still
        # means the storage set-up is wrong, so it must not appear at all.
        assert "database is locked" not in log, log[-3000:]


def kill_when(victim: subprocess.Popen, marker: Path, what: str, timeout: float = 90) -> None:
    """SIGKILL ``victim`` once it has written ``marker`` (it then hangs there); fails with
    its log if it exits first, or with ``what`` if the marker does not come in time."""
    deadline = time.time() + timeout
    while not marker.exists():
        assert victim.poll() is None, victim.log_path.read_text()
        assert time.time() < deadline, what
        time.sleep(0.1)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
