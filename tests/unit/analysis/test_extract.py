"""TensorBoard extraction: real runs of a tiny study -> scalars.csv + results.toml, checked.

`tiny_study` (also used by test_report.py) builds a real Study from a small params
file in tmp_path: 2 sweeps x 2 values, one 2x2 grid, 2 seeds, a synthetic prepared
dataset (3 classes, 8x8 images), trained by the real trainer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import tomli
import tomli_w
import torch

from hpsweep.analysis.extract import (
    EPOCH_TAGS,
    ExtractionError,
    ExtractionMismatch,
    extract_run,
    read_scalars,
)
from hpsweep.core.layout import results_files
from hpsweep.core.study import Study
from hpsweep.data.prepared import save_prepared
from hpsweep.training.runner import train_planned_run

CLASSES = ["shirt", "shoe", "bag"]
BASELINES = {"write-up 001: Fashion-MNIST MLP, 61-run grid": 0.855, "hand recipe": 0.908}


def tiny_params(tmp: Path) -> dict:
    return {
        "study": {"name": "tiny", "seeds": [0, 1], "device": "cpu",
                  "results_dir": str(tmp / "results"), "reports_dir": str(tmp / "reports"),
                  "data_dir": str(tmp / "data")},
        "data": {"dataset": "fashion-mnist", "mirrors": []},
        "model": {"arch": "mlp", "depth": 1, "width": 16, "dropout": 0.0},
        "train": {"epochs": 2, "batch_size": 32, "lr": 0.003, "eval_batch_size": 512,
                  "log_every_steps": 2, "bf16": "off"},
        "sweeps": {"lr": {"param": "train.lr", "values": [0.001, 0.003]},
                   "width": {"param": "model.width", "values": [8, 32]}},
        "grids": {"bs_x_lr": {"x": {"param": "train.batch_size", "values": [16, 64]},
                              "y": {"param": "train.lr", "values": [0.001, 0.01]}}},
        "report": {"title": "Tiny study", "top_k": 3, "baselines": BASELINES},
    }


def _synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise with a bright band whose row names the class (learnable in 2 epochs)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, len(CLASSES), (n,), generator=g)
    x = torch.randint(0, 90, (n, 1, 8, 8), generator=g).to(torch.uint8)
    for k in range(len(CLASSES)):
        x[y == k, :, 2 * k + 1:2 * k + 3, :] = 220
    return x, y


def tiny_study(tmp: Path, train: bool | int = True) -> Study:
    """Write params.toml + prepared data under `tmp`; train all runs (or the first `train`)."""
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "params.toml"
    path.write_text(tomli_w.dumps(tiny_params(tmp)))
    study = Study.load(path)
    tensors = {}
    for i, (split, n) in enumerate((("train", 150), ("val", 60), ("test", 60))):
        tensors[f"x_{split}"], tensors[f"y_{split}"] = _synthetic(n, seed=i)
    checksum = save_prepared(study.paths.prepared, tensors, CLASSES, "fashion-mnist")
    study.paths.manifest.write_text(json.dumps({
        "dataset": "fashion-mnist", "classes": CLASSES, "num_classes": len(CLASSES),
        "input_shape": [1, 8, 8], "counts": {"train": 150, "val": 60, "test": 60},
        "checksum": checksum}))
    ids = study.plan.run_ids()
    for run_id in ids[: (len(ids) if train is True else int(train))]:
        train_planned_run(study, run_id, threads=1, progress=False)
    return study


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Study:
    return tiny_study(tmp_path_factory.mktemp("extract"), train=2)


def _copy_run(study: Study, tmp_path: Path) -> Path:
    src = study.paths.run_dir(study.plan.run_ids()[0])
    dst = tmp_path / src.name
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("scalars.csv", "results.toml"))
    return dst


def test_round_trip_matches_metrics_and_config(study):
    run_id = study.plan.run_ids()[0]
    d = study.paths.run_dir(run_id)
    res = extract_run(d)
    metrics = json.loads((d / "metrics.json").read_text())
    config = json.loads((d / "config.json").read_text())

    scalars = pd.read_csv(d / "scalars.csv")
    assert list(scalars.columns) == ["tag", "step", "value", "wall_time"]
    assert set(EPOCH_TAGS) <= set(scalars["tag"])
    assert (scalars["tag"] == "train/loss_step").any()
    assert not scalars.duplicated(["tag", "step"]).any()
    val = scalars[scalars["tag"] == "val/acc"].set_index("step")["value"]
    assert list(val.index) == [1, 2]
    for row in metrics["history"]:  # every epoch of the events equals the trainer's history
        assert val[row["epoch"]] == pytest.approx(row["val_acc"], abs=1e-6)

    on_disk = tomli.loads((d / "results.toml").read_text())
    assert on_disk == tomli.loads((d / "results.toml").read_text())
    assert on_disk["best"]["val_acc"] == pytest.approx(metrics["best_val_acc"], abs=1e-6)
    assert on_disk["best"]["epoch"] == metrics["best_epoch"]
    assert on_disk["epochs"] == metrics["epochs_run"] == 2
    assert on_disk["final"]["val_acc"] == pytest.approx(metrics["final_val_acc"], abs=1e-6)
    assert on_disk["status"] == metrics["status"] and on_disk["run_id"] == run_id
    assert on_disk["seed"] == config["seed"]
    assert on_disk["hyperparameters"]["train.lr"] == config["train"]["lr"]
    assert on_disk["hyperparameters"]["model.width"] == config["model"]["width"]
    assert on_disk["model"]["n_params"] == metrics["n_params"]
    assert res["best"] == on_disk["best"]


@pytest.mark.parametrize("key,delta,needle", [("best_val_acc", 0.01, "best_val_acc"),
                                              ("epochs_run", 1, "epochs")])
def test_mismatch_with_metrics_raises_and_writes_nothing(study, tmp_path, key, delta, needle):
    d = _copy_run(study, tmp_path)
    metrics = json.loads((d / "metrics.json").read_text())
    metrics[key] += delta
    (d / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(ExtractionMismatch, match=needle):
        extract_run(d)
    assert not (d / "scalars.csv").exists() and not (d / "results.toml").exists()


def test_no_events_or_no_metrics_is_a_clear_error(study, tmp_path):
    d = _copy_run(study, tmp_path)
    shutil.rmtree(d / "tb")
    (d / "tb").mkdir()
    with pytest.raises(ExtractionError, match="no TensorBoard event files"):
        extract_run(d)
    (d / "metrics.json").unlink()
    with pytest.raises(ExtractionError, match="not complete"):
        extract_run(d)


def test_resumed_session_replaces_redone_steps(tmp_path):
    """A killed session's events at/after the resume point are dropped, as TensorBoard does."""
    from torch.utils.tensorboard import SummaryWriter

    first = SummaryWriter(str(tmp_path))
    for step, acc in ((1, 0.5), (2, 0.6), (3, 0.99)):  # step 3 was never checkpointed
        first.add_scalar("val/acc", acc, step, walltime=1000.0 + step)
    first.add_scalar("train/loss_step", 1.0, 40, walltime=1003.0)
    first.close()
    second = SummaryWriter(str(tmp_path))
    for step, acc in ((3, 0.7), (4, 0.8)):
        second.add_scalar("val/acc", acc, step, walltime=2000.0 + step)
    second.add_scalar("train/loss_step", 0.9, 30, walltime=2003.0)
    second.close()
    s = read_scalars(tmp_path)
    acc = s[s["tag"] == "val/acc"].set_index("step")["value"]
    assert acc.round(6).to_dict() == {1: 0.5, 2: 0.6, 3: 0.7, 4: 0.8}
    assert s[s["tag"] == "train/loss_step"]["step"].tolist() == [30]


def test_results_files_name_every_planned_run(study):
    files = results_files(study)
    assert len(files) == len(study.plan.run_ids())
    assert all(f.endswith("/results.toml") for f in files)
