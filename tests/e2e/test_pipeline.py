"""End-to-end: the real Snakemake DAG on the shipped quick study (real Fashion-MNIST)."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from studyfixtures import needs_real_data, shrunk_params, snakemake

from hpsweep.core.study import Study

pytestmark = [
    pytest.mark.slow,
    needs_real_data,
]


@pytest.fixture(scope="module")
def study_dir(quick_study):
    return quick_study


def test_study_runs_end_to_end(study_dir):
    study = Study.load(study_dir / "params.toml", root=study_dir)
    table = pd.read_csv(study.paths.results_dir / "summary/experiment_summary.csv")
    assert len(table) == len(study.plan.members)
    assert set(table["status"]) <= {"ok", "early_stopped"}
    assert table["best_val_acc"].min() > 0.5  # 1 epoch on 600 images still learns
    for run_id in study.plan.run_ids():
        metrics = json.loads((study.paths.run_dir(run_id) / "metrics.json").read_text())
        assert metrics["provenance"]["data_checksum"]
        assert (study.paths.logs / "train" / f"{run_id}.log").is_file()
    for name in ("report.md", "figures/grid_lr_x_batch.png"):
        assert (study.paths.reports_dir / name).is_file(), name
    final = json.loads((study.paths.results_dir / "final/summary.json").read_text())
    assert len(final["per_seed"]) == 2
    # the baseline control, trained with the same seeds and epochs, paired by seed
    assert [r["seed"] for r in final["control"]["per_seed"]] == [0, 1]
    assert final["control"]["overrides"] == {"train.epochs": 1}
    assert final["gain_vs_control"]["n"] == 2
    assert "**Verdict:**" in (study.paths.reports_dir / "report.md").read_text()
    exported = json.loads((study.paths.results_dir / "mlflow/exported.json").read_text())
    assert len(exported["logged"]) == len(study.plan.runs) + 2  # the runs + final seeds


def test_every_training_job_trained_on_a_gpu_slot(study_dir):
    """The fixture ran as on a two-GPU box: each job that trains claimed a slot first."""
    logs = Study.load(study_dir / "params.toml", root=study_dir).paths.logs
    jobs = [*logs.glob("train/*.log"), *logs.glob("optuna/worker_*.log"),
            *logs.glob("final/seed_*.log")]
    assert len(jobs) > 3
    for log in jobs:
        assert re.search(r"gpu slot: device [01] \(slot 0 of 1", log.read_text()), log
    for log in [*logs.glob("extract/*.log"), logs / "report.log"]:
        assert "gpu slot" not in log.read_text(), log  # jobs that do not train claim none


def test_reports_folder_stands_alone(study_dir):
    """Every figure the report shows lies under reports/ (the Optuna ones are copies)."""
    study = Study.load(study_dir / "params.toml", root=study_dir)
    reports = study.paths.reports_dir
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (reports / "report.md").read_text())
    assert any(link.startswith("figures/optuna/") for link in links), links
    for link in links:
        target = (reports / link).resolve()
        assert target.is_file() and target.is_relative_to(reports.resolve()), link


def test_second_run_has_nothing_to_do(study_dir):
    res = snakemake(study_dir, "-n")
    assert res.returncode == 0
    assert "Nothing to be done" in res.stdout + res.stderr


def test_invalid_params_stop_before_any_job(tmp_path):
    shrunk_params(tmp_path, train__lr=-1.0)
    res = snakemake(tmp_path)
    assert res.returncode != 0
    assert "train.lr = -1.0" in res.stderr + res.stdout
    assert not (tmp_path / "results").exists()
