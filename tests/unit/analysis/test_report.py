"""Summary tables, figures and report.md of a tiny real study (trained, extracted)."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from test_extract import BASELINES, tiny_study

from hpsweep.analysis.extract import extract_run
from hpsweep.analysis.plots import make_figures
from hpsweep.analysis.report import build_report, write_report
from hpsweep.analysis.report_value import verdict
from hpsweep.analysis.tables import write_experiment_summary, write_summary_tables
from hpsweep.core.layout import (
    OptunaLayout,
    experiment_summary_path,
    figure_paths,
    summary_path,
    table_outputs,
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    study = tiny_study(tmp_path_factory.mktemp("report"))
    for run_id in study.plan.run_ids():
        extract_run(study.paths.run_dir(run_id))
    summary = experiment_summary_path(study)
    write_experiment_summary(study, summary)
    tables = {"experiment_summary": summary, **write_summary_tables(study, summary)}
    figures = make_figures(study)
    report = write_report(study)
    return study, tables, figures, report


def test_summary_tables(built):
    study, tables, _, _ = built
    assert set(tables) == {"experiment_summary", *table_outputs(study)}
    summary = pd.read_csv(tables["experiment_summary"])
    assert len(summary) == len(study.plan.members) == 2 * (1 + 2 + 2 + 4)
    assert summary["run_id"].nunique() == len(study.plan.run_ids()) == 2 * (1 + 1 + 2 + 4)
    assert set(summary["status"]) <= {"ok", "early_stopped"}
    lr = pd.read_csv(tables["sweep_lr"])
    assert len(lr) == 2 and lr["n"].tolist() == [2, 2] and lr["best"].sum() == 1
    assert lr["best_val_acc_ci95"].notna().all()  # two seeds -> an interval
    grid = pd.read_csv(tables["grid_bs_x_lr"], index_col=0)
    assert grid.shape == (2, 2)
    swing = pd.read_csv(tables["swing"])
    assert set(swing["name"]) == {"lr", "width", "bs_x_lr"}
    assert swing["swing"].is_monotonic_decreasing
    assert len(pd.read_csv(tables["shortlist"])) == 3  # report.top_k
    metrics = json.loads(tables["metrics"].read_text())
    assert metrics["n_runs"] == len(study.plan.run_ids()) == metrics["n_complete"]
    assert 0 < metrics["best_val_acc_mean"] <= 1 and metrics["total_compute_s"] > 0


def test_figures_are_nonempty_pngs(built):
    study, _, figures, _ = built
    assert sorted(figures) == sorted(figure_paths(study).values())
    assert {p.name for p in figures} >= {"sweep_lr.png", "sweep_width.png",
                                         "grid_bs_x_lr.png", "ranking.png", "acc_vs_time.png",
                                         "acc_vs_params.png", "curves_shortlist.png",
                                         "confusion_best.png", "samples.png"}
    for p in figures:
        data = p.read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, p
    assert not list(figures[0].parent.glob(".*.tmp"))  # atomic: no temp files left


def test_report_sections_links_and_comparison(built):
    study, _, _, report = built
    text = re.sub(r" {2,}", " ", report.read_text())  # table cells are padded
    for heading in ("# Tiny study", "## Summary", "## Study setup", "### Baseline configuration",
                    "## Single-parameter sweeps", "### Sweep `lr`: `train.lr`",
                    "### Sweep `width`: `model.width`", "## Two-parameter grids",
                    "## Which parameters matter", "## Failures", "## Shortlist: top 3",
                    "## Cost", "## Best run: confusion matrix", "## Optuna refinement",
                    "## Final retrain", "## Comparison with published results"):
        assert f"\n{heading}" in "\n" + text, heading
    assert "train 150, val 60, test 60" in text  # split sizes from the manifest
    assert "0.003 (baseline)" in text
    # Optional stages: not run yet.
    assert re.search(r"## Optuna refinement\n\nNot run", text)
    assert re.search(r"## Final retrain\n\nNot run", text)
    # One comparison row per published number, with its accuracy.
    for label, acc in BASELINES.items():
        assert re.search(rf"\| {re.escape(label)} \| {100 * acc:.2f} % \| as published \|",
                         text), label
    # Figure links are relative to reports/ and resolve.
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert "figures/sweep_lr.png" in links and "figures/grid_bs_x_lr.png" in links
    for link in links:
        assert not link.startswith("/") and (report.parent / link).is_file(), link


def test_optuna_and_final_sections_render_when_their_files_exist(built):
    study = built[0]
    od, fs = OptunaLayout(study).out_dir, summary_path(study)
    od.mkdir(parents=True)
    fs.parent.mkdir(parents=True)
    try:
        # The shapes hpsweep's Optuna collect and final write_final_summary write.
        (od / "best_params.json").write_text(json.dumps(
            {"optuna_study": "tiny-abc", "trial_number": 1, "value": 0.9, "warm_start": False,
             "params": {"train.lr": 0.002, "model.width": 32},
             "overrides": {"train.lr": 0.002, "model.width": 32},
             "config": {"model": {"width": 32}, "train": {"lr": 0.002}},
             "counts": {"COMPLETE": 2, "PRUNED": 1}}))
        pd.DataFrame({"number": [0, 1, 2], "state": ["COMPLETE", "COMPLETE", "PRUNED"],
                      "value": [0.8, 0.9, None], "params_train.lr": [0.001, 0.002, 0.02],
                      "warm_start": [True, False, False], "promoted": [False, True, False],
                      "duration_s": [1.0, 2.0, 0.5]}
                     ).to_csv(od / "trials.csv", index=False)
        per_seed = [{"seed": s, "run_id": f"r{s}", "status": "ok", "test_acc": a,
                     "test_loss": 0.3, "best_val_acc": 0.9, "epochs_run": 2,
                     "total_time_s": 1.5, "n_params": 1107} for s, a in ((0, 0.87), (1, 0.89))]
        fs.write_text(json.dumps({
            "test_acc_mean": 0.88, "test_acc_std": 0.014, "test_acc_ci95": 0.01,
            "val_acc_mean": 0.9, "n_seeds": 2, "n_params": 1107, "tuned_val_acc": 0.9,
            "exported_seed": 0, "per_seed": per_seed,
            "control": {"overrides": {"train.epochs": 2}, "test_acc_mean": 0.86,
                        "test_acc_ci95": 0.02,
                        "per_seed": [{**r, "test_acc": r["test_acc"] - 0.02} for r in per_seed]},
            "gain_vs_control": {"mean": 0.02, "ci95": 0.004, "low": 0.016, "high": 0.024,
                                "n": 2, "per_seed": {"0": 0.02, "1": 0.02},
                                "significant": True},
            "best": {"source": "optuna", "val_acc": 0.9},
            "config": {"model.width": 32, "train.lr": 0.002},
            "run_config": {"model": {"width": 32}, "train": {"lr": 0.002}}}))
        # table cells are padded to their column's width: compare with single spaces
        text = re.sub(r" {2,}", " ", build_report(study))
        # switched off, a stage's results of an earlier run are not shown as this study's
        study.params.optuna.enabled = study.params.final.enabled = False
        off = build_report(study)
    finally:
        study.params.optuna.enabled = study.params.final.enabled = True
        for p in (od / "best_params.json", od / "trials.csv", fs):
            p.unlink(missing_ok=True)
    assert "Not run (`optuna.enabled = false`)." in off and "Best trial" not in off
    assert "Not run (`final.enabled = false`)." in off and "88.00 ± 1.00" not in off
    assert "Best trial: validation accuracy **90.00 %** (trial 1)." in text
    assert "| `train.lr` | 0.002 |" in text
    assert ("3 trials: COMPLETE 2, PRUNED 1. 1 warm-started from sweep/grid runs; 1 promoted "
            "from them") in text
    assert "**88.00 ± 1.00 %**" in text
    assert "| 1 | 89.00 % | 90.00 % | 0.3000 | 2 | 1.50 s |" in text  # per seed
    assert "| `model.width` | 32 |" in text  # the retrained configuration
    assert "trained with the same seeds and data and tested the same way: **86.00 ± 2.00 %**" \
        in text
    assert "| 1 | 89.00 % | 87.00 % | +2.00 |" in text  # tuned, control, difference
    assert text.count("tuning bought **+2.00 points** of test accuracy over the baseline "
                      "trained the same way (paired 95 % CI +1.60 to +2.40)") == 2  # + summary
    # what each stage cost and bought: trained trials only (not the warm-start one)
    # (no budget: no planned column)
    assert re.search(r"\| sweeps, grids, configs \| \d+ runs \| [\d.]+ s \| [\d.]+ % "
                     r"validation \(best configuration\) \|", text)
    assert "| Optuna | 2 trials (1 promoted) | 2.50 s | 90.00 % validation (best trial) |" \
        in text
    assert "| final retrain | 2 seeds | 3.00 s | 88.00 ± 1.00 % test |" in text
    assert "| control (baseline) | 2 seeds | 3.00 s | 86.00 ± 2.00 % test |" in text
    assert "| this study: final retrain, mean over seeds | 88.00 % | test | – |" in text
    # Δ is measured from the headline (final test) number.
    assert "| hand recipe | 90.80 % | as published | -2.80 |" in text


@pytest.mark.parametrize(("gain", "says"), [
    (None, "no control was trained (`final.control = false`)"),
    ({"mean": 0.001, "low": None, "high": None, "significant": None},
     "+0.10 points with one seed: no interval, no verdict"),
    ({"mean": 0.001, "low": -0.002, "high": 0.004, "significant": False},
     "did **not** buy a significant gain over the baseline trained the same way: +0.10 "
     "points (paired 95 % CI -0.20 to +0.40"),
    ({"mean": 0.004, "low": 0.001, "high": 0.007, "significant": True},
     "tuning bought **+0.40 points** of test accuracy"),
])
def test_the_verdict_says_whether_tuning_bought_a_significant_gain(gain, says):
    assert says in verdict({"gain_vs_control": gain})


def test_a_budgeted_studys_stages_show_their_planned_minutes(tmp_path):
    from hpsweep.analysis.markdown import Doc
    from hpsweep.analysis.report_value import stages_section
    from hpsweep.analysis.tables import MEAN

    lock = {"budget": 20.0, "total_minutes": 19.5, "as_written_minutes": 30.0,
            "machine": {"job_slots": 1, "cpus": 2}, "chosen": {}, "bounds": {},
            "stages": [{"stage": "sweeps, grids, configs", "runs": 2, "epochs": "2",
                        "minutes": 6.4},
                       {"stage": "final", "runs": 1, "epochs": "4", "minutes": 3.0},
                       {"stage": "control", "runs": 1, "epochs": "4", "minutes": 2.5},
                       {"stage": "report", "runs": 0, "epochs": "-", "minutes": 0.1}]}
    table = pd.DataFrame({"run_id": ["a", "b"], "status": ["ok", "ok"],
                          "total_time_s": [100.0, 200.0]})
    configs = pd.DataFrame({MEAN: [0.9]})
    final = {"per_seed": [{"total_time_s": 150.0}], "test_acc_mean": 0.91,
             "test_acc_ci95": None,
             "control": {"per_seed": [{"total_time_s": 140.0}], "test_acc_mean": 0.9,
                         "test_acc_ci95": None}}
    doc = Doc(tmp_path / "report.md")
    stages_section(doc, table, configs, None, final, lock)
    text = re.sub(r" {2,}", " ", doc.text())
    assert "| stage | runs | planned | training | best accuracy after it |" in text
    assert "| sweeps, grids, configs | 2 runs | 6.4 min | 5.0 min |" in text
    assert "| final retrain | 1 seeds | 3.0 min | 2.5 min |" in text
    assert "| control (baseline) | 1 seeds | 2.5 min | 2.3 min |" in text
    assert "with 1 training job(s) at once" in text and "**Budget**: 20 min" in text


def test_the_stages_section_says_how_finely_the_validation_split_ranks(tmp_path):
    """At 91 % on 6,000 validation images one accuracy's standard error is 0.37 points
    (sqrt(0.91 x 0.09 / 6000)), taken at the best of the sweeps and the trials."""
    from hpsweep.analysis.markdown import Doc
    from hpsweep.analysis.report_value import stages_section
    from hpsweep.analysis.tables import MEAN

    table = pd.DataFrame({"run_id": ["a"], "status": ["ok"], "total_time_s": [100.0]})
    configs = pd.DataFrame({MEAN: [0.85]})
    optuna = {"value": 0.91, "trials": pd.DataFrame({
        "warm_start": [False], "state": ["COMPLETE"], "promoted": [False],
        "duration_s": [60.0]})}

    def section(**kwargs):
        doc = Doc(tmp_path / "report.md")
        stages_section(doc, table, configs, optuna, None, **kwargs)
        return re.sub(r" {2,}", " ", doc.text())

    text = section(n_val=6000)
    assert ("the sweep and trial accuracies above are measured on 6,000 validation images; "
            "at 91.00 % one has a standard error of 0.37 points") in text
    # trials scored by cross-validation: the sweeps' best (85 %) on the split alone
    assert ("the sweep accuracies above are measured on 6,000 validation images; at 85.00 % "
            "one has a standard error of 0.46 points") in section(n_val=6000,
                                                                  trials_on_val=False)
    assert "Resolution" not in section()  # no manifest: no line
