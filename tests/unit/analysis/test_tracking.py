"""Optional MLflow tracking: finished runs logged to a real MLflow store (SQLite)."""

from __future__ import annotations

import json
import sys

import pytest
from tunefixtures import make_study

from hpsweep.analysis.tracking import TrackingError, export_study, tracking_uri
from hpsweep.core.layout import export_marker
from hpsweep.training.runner import train_planned_run

mlflow = pytest.importorskip("mlflow")  # a dev dependency: `make test` installs it


def tracked_study(root, lrs):
    return make_study(root, sweeps={"lr": {"param": "train.lr", "values": lrs}},
                      tracking={"mlflow": True})


def train_all(study):
    for run_id in study.plan.run_ids():
        train_planned_run(study, run_id, threads=1, progress=False)


def test_runs_are_logged_once_with_params_curves_and_artifacts(tmp_path):
    study = tracked_study(tmp_path, [0.01, 0.05])
    train_all(study)
    first = export_study(study)
    assert sorted(first["logged"]) == study.plan.run_ids() and not first["already_there"]
    assert tracking_uri(study).startswith("sqlite:///") and "mlflow.db" in tracking_uri(study)

    client = mlflow.tracking.MlflowClient(tracking_uri(study))
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 2
    for r in runs:
        run_id = r.data.tags["hpsweep.run_id"]
        metrics = json.loads((study.paths.run_dir(run_id) / "metrics.json").read_text())
        assert r.data.tags["hpsweep.status"] == metrics["status"]
        cfg = study.plan.runs[run_id].config
        assert r.data.params["train.lr"] == str(cfg["train"]["lr"])
        assert r.data.params["model.width"] == str(cfg["model"]["width"])
        assert r.data.metrics["best_val_acc"] == pytest.approx(metrics["best_val_acc"])
        curve = client.get_metric_history(r.info.run_id, "val_acc")
        assert [m.step for m in curve] == [h["epoch"] for h in metrics["history"]]
        assert [m.value for m in curve] == pytest.approx([h["val_acc"]
                                                          for h in metrics["history"]])
        names = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert {"best.pt", "metrics.json", "config.json", "confusion.csv"} <= names
        assert r.info.status == "FINISHED" and "lr:" in r.info.run_name

    again = export_study(study)  # nothing new: nothing logged twice
    assert again["logged"] == [] and sorted(again["already_there"]) == study.plan.run_ids()
    assert len(client.search_runs([exp.experiment_id])) == 2
    assert json.loads(export_marker(study).read_text())["experiment"] == "tiny"


def test_a_new_sweep_value_logs_only_its_run(tmp_path):
    study = tracked_study(tmp_path, [0.01])
    train_all(study)
    export_study(study)
    bigger = tracked_study(tmp_path, [0.01, 0.05])
    train_all(bigger)
    out = export_study(bigger)
    assert len(out["logged"]) == 1 and out["logged"][0] not in study.plan.run_ids()


def test_missing_mlflow_is_a_clear_error(tmp_path, monkeypatch):
    study = tracked_study(tmp_path, [0.01])
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    with pytest.raises(TrackingError, match="pip install mlflow-skinny"):
        export_study(study)
    assert not export_marker(study).exists()


def test_tracking_off_logs_nothing_and_needs_no_mlflow(tmp_path, monkeypatch):
    # `dvc repro` runs the tracking stage whatever params.toml says.
    study = make_study(tmp_path, sweeps={"lr": {"param": "train.lr", "values": [0.01]}})
    assert study.params.tracking.mlflow is False
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    assert export_study(study) == {"mlflow": False, "logged": [], "already_there": []}
    assert json.loads(export_marker(study).read_text())["mlflow"] is False
    assert export_marker(study).name != export_marker(tracked_study(tmp_path / "on", [0.01])).name
    assert not (export_marker(study).parent / "mlflow.db").exists()


def test_training_never_imports_mlflow(tmp_path):
    import subprocess

    code = ("import sys; import hpsweep.training.engine, hpsweep.tuning.worker, "
            "hpsweep.final.retrain; print('mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
