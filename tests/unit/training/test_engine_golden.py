"""The engine's numbers are pinned to its version (hpsweep.core.ids.ENGINE_VERSION).

A run's signature names the engine by ENGINE_VERSION, not by a hash of its files, so a
refactor of training/ or models.py retrains nothing. This test is what makes that safe:
it trains a few tiny runs on the CPU, covering the optimizers, schedules, augmentations,
dropout, label smoothing and both architectures, and compares every epoch's losses and
accuracies with the ones recorded in tests/unit/training/golden/engine.json. Numbers that move while
ENGINE_VERSION stays the same fail here: bump ENGINE_VERSION, then re-record with

    .venv/bin/python tests/unit/training/test_engine_golden.py

(which refuses to overwrite the record of an unchanged ENGINE_VERSION).
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path

import torch
from studyfixtures import ROOT
from synthdata import write_data

from hpsweep.core.ids import ENGINE_VERSION
from hpsweep.core.schema import Params, resolve_run
from hpsweep.training.engine import train_run

GOLDEN = Path(__file__).parent / "golden" / "engine.json"
FIELDS = ("train_loss", "train_acc", "val_loss", "val_acc")
# Same machine class and pinned torch: the numbers repeat to the last digit. The
# tolerance only absorbs summation-order noise of other CPUs' kernels; a changed
# initialisation, RNG draw or formula moves them by orders of magnitude more.
REL_TOL = 1e-4

RUNS: dict[str, dict] = {
    "mlp_sgd_cosine": {"model.arch": "mlp", "model.depth": 2, "model.width": 64,
                       "model.dropout": 0.2, "model.activation": "gelu",
                       "train.optimizer": "sgd", "train.nesterov": True, "train.lr": 0.05,
                       "train.scheduler": "cosine", "train.label_smoothing": 0.1,
                       "train.augment": "shift", "train.grad_clip": 1.0},
    "mlp_adamw_onecycle": {"model.arch": "mlp", "model.depth": 1, "model.width": [32],
                           "model.batch_norm": False, "train.optimizer": "adamw",
                           "train.scheduler": "onecycle", "train.lr": 3e-3},
    "cnn_adam_step": {"model.arch": "cnn", "model.channels": [8, 16], "model.fc": [32],
                      "model.residual": True, "train.optimizer": "adam", "train.lr": 2e-3,
                      "train.scheduler": "step", "train.step_size": 1,
                      "train.augment": "crop_flip"},
}


def run_cfg(overrides: dict) -> dict:
    # bf16 off: train.bf16 = "auto" turns bf16 autocast on where the CPU has bf16
    # instructions (AVX-512 BF16, AMX), and its kernels differ from CPU to CPU; fp32 with
    # one thread gives the same numbers, within summation-order noise, on every x86 CPU.
    small = {"train.epochs": 3, "train.batch_size": 64, "train.eval_batch_size": 128,
             "train.bf16": "off"}
    cfg = resolve_run(Params().run_base(), {**small, **overrides})
    cfg["device"] = "cpu"
    return cfg


def measure() -> dict[str, list[dict[str, float]]]:
    """Each golden run's per-epoch numbers, trained here (one thread: the same order of
    floating-point sums on every machine with this torch)."""
    threads = torch.get_num_threads()
    out = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = write_data(Path(tmp) / "synthetic.pt", n_train=256)
            for name, overrides in RUNS.items():
                m = train_run(run_cfg(overrides), data, Path(tmp) / name, seed=7,
                              threads=1, progress=False)
                out[name] = [{f: row[f] for f in FIELDS} for row in m["history"]]
    finally:
        torch.set_num_threads(threads)
    return out


def test_engine_numbers_match_the_record_of_this_engine_version():
    golden = json.loads(GOLDEN.read_text())
    assert golden["engine_version"] == ENGINE_VERSION, (
        f"{GOLDEN} was recorded for engine {golden['engine_version']}, not "
        f"{ENGINE_VERSION}: re-record it (.venv/bin/python {Path(__file__).relative_to(ROOT)})")
    assert set(golden["runs"]) == set(RUNS), "re-record: the golden runs changed"
    measured = measure()
    moved = [f"{name} epoch {i + 1} {f}: {row[f]!r} != recorded {want[f]!r}"
             for name, rows in measured.items()
             for i, (row, want) in enumerate(zip(rows, golden["runs"][name], strict=True))
             for f in FIELDS if not math.isclose(row[f], want[f], rel_tol=REL_TOL, abs_tol=1e-7)]
    assert not moved, (
        "the training numbers changed while hpsweep.core.ids.ENGINE_VERSION did not: bump it "
        "(completed runs then retrain) and re-record, or undo the change.\n" + "\n".join(moved))


def test_the_check_can_fail(monkeypatch):
    """A 0.2 % change of one run's learning rate already moves its record."""
    golden = json.loads(GOLDEN.read_text())
    monkeypatch.setitem(RUNS, "mlp_sgd_cosine", {**RUNS["mlp_sgd_cosine"], "train.lr": 0.0501})
    rows = measure()["mlp_sgd_cosine"]
    want = golden["runs"]["mlp_sgd_cosine"]
    assert any(not math.isclose(r["train_loss"], w["train_loss"], rel_tol=REL_TOL)
               for r, w in zip(rows, want, strict=True))


def record() -> None:
    if GOLDEN.exists() and json.loads(GOLDEN.read_text())["engine_version"] == ENGINE_VERSION:
        sys.exit(f"{GOLDEN} already holds engine {ENGINE_VERSION}'s numbers; bump "
                 "hpsweep.core.ids.ENGINE_VERSION first (a new engine needs a new version)")
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({"engine_version": ENGINE_VERSION,
                                  "torch": torch.__version__.split("+")[0],
                                  "runs": measure()}, indent=1) + "\n")
    print(f"recorded {GOLDEN} for engine {ENGINE_VERSION}")


if __name__ == "__main__":
    record()
