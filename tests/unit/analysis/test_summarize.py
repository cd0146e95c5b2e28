"""Seed statistics and the summary tables on a small hand-made experiment table."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from hpsweep.analysis.tables import (
    accuracy_floor,
    config_table,
    failures,
    grid_pivot,
    read_experiment_summary,
    shortlist,
    study_metrics,
    sweep_table,
    swing_table,
)
from hpsweep.core.stats import format_mean_ci, mean_ci

# t(0.975, df=2) from a printed t table: 4.303 (4.302652729911275).
T_975_DF2 = 4.302652729911275


def test_mean_ci_against_hand_computed_interval():
    ci = mean_ci([0.80, 0.82, 0.84])
    # mean 0.82, s = 0.02, sem = 0.02 / sqrt(3), half = t * sem
    half = T_975_DF2 * 0.02 / math.sqrt(3)
    assert ci.n == 3 and ci.mean == pytest.approx(0.82)
    assert ci.std == pytest.approx(0.02)
    assert ci.half == pytest.approx(half, rel=1e-9)  # 0.049683...
    assert ci.low == pytest.approx(0.82 - half) and ci.high == pytest.approx(0.82 + half)
    assert format_mean_ci(ci.mean, ci.half) == "82.00 ± 4.97 %"
    assert format_mean_ci(ci.mean, ci.half, pct=False, digits=4) == "0.8200 ± 0.0497"


def test_mean_ci_one_seed_none_and_constant():
    one = mean_ci([0.9])
    assert one.mean == 0.9 and math.isnan(one.half) and math.isnan(one.std)
    assert format_mean_ci(one.mean, one.half) == "90.00 %"
    assert format_mean_ci(None, None) == "–"
    assert mean_ci([None, float("nan")]).n == 0
    const = mean_ci([0.5, 0.5])
    assert const.half == 0.0 and const.low == const.high == 0.5
    assert mean_ci([0.8, None, 0.84]).n == 2  # missing values are skipped, not zeros


def row(group, name, value, seed, acc, cid, status="ok", t=10.0, label=None, x="", y=""):
    return {"group": group, "name": name, "label": label or (value or group),
            "value": value, "x": x, "y": y, "params": "{}", "seed": seed,
            "run_id": f"{cid}-{seed}", "config_id": cid, "status": status,
            "best_val_acc": acc, "final_val_acc": acc, "final_train_acc": acc,
            "total_time_s": t, "epoch_time_s": t / 2, "samples_per_s": 100.0,
            "n_params": 1000, "num_classes": 10}


@pytest.fixture
def table() -> pd.DataFrame:
    """Baseline (b) shared by two sweeps; lr swing 0.30, width swing 0.02; a 2x2 grid."""
    rows = []
    for s, acc in ((0, 0.80), (1, 0.82)):
        rows.append(row("baseline", "baseline", "", s, acc, "b"))
    for s in (0, 1):
        rows.append(row("sweep", "lr", "0.001", s, [0.50, 0.52][s], "lr1"))
        rows.append(row("sweep", "lr", "0.003", s, [0.80, 0.82][s], "b"))
        rows.append(row("sweep", "lr", "0.01", s, [0.10, 0.80][s], "lr3",
                        status=["diverged", "ok"][s]))
        rows.append(row("sweep", "width", "256", s, [0.80, 0.82][s], "b"))
        rows.append(row("sweep", "width", "512", s, [0.82, 0.84][s], "w2", t=20.0))
    for s in (0, 1):
        for xv, yv, acc in (("64", "0.001", 0.70), ("128", "0.001", 0.72),
                            ("64", "0.01", 0.60), ("128", "0.01", 0.90)):
            rows.append(row("grid", "g", f"bs={xv},lr={yv}", s, acc + 0.01 * s,
                            f"g{xv}{yv}", x=xv, y=yv))
    rows.append(row("config", "small", "small", 1, None, "c1", status="missing"))
    rows.append(row("config", "small", "small", 0, 0.15, "c1"))  # below 2/10 classes
    rows.append(row("config", "stopped", "stopped", 0, 0.83, "c2", status="early_stopped"))
    return pd.DataFrame(rows)


def test_sweep_table_mean_ci_order_and_best(table):
    df = sweep_table(table, "lr", baseline_config="b")
    assert df["value"].tolist() == ["0.001", "0.003", "0.01"]  # params order, not sorted
    assert df["best_val_acc_mean"].tolist() == pytest.approx([0.51, 0.81, 0.45])
    expected_half = mean_ci([0.50, 0.52]).half  # t(0.975, 1) * 0.01414 / sqrt(2) = 0.127
    assert df["best_val_acc_ci95"].iloc[0] == pytest.approx(expected_half)
    assert df["best"].tolist() == [False, True, False]
    assert df["is_baseline"].tolist() == [False, True, False]
    assert df["n"].tolist() == [2, 2, 2] and df["n_ok"].tolist() == [2, 2, 1]


def test_swing_sorted_largest_first(table):
    sw = swing_table(table, {"lr": "train.lr", "width": "model.width"}, {"g": "bs × lr"})
    assert sw["name"].tolist() == ["lr", "g", "width"]
    lr = sw.iloc[0]
    assert lr["best_value"] == "0.003" and lr["worst_value"] == "0.01"
    assert lr["swing"] == pytest.approx(0.81 - 0.45)
    assert sw.set_index("name").at["width", "swing"] == pytest.approx(0.02)
    assert sw.set_index("name").at["g", "best_value"] == "128 × 0.01"


def test_shortlist_pools_the_shared_baseline_once(table):
    configs = config_table(table)
    assert configs["config_id"].is_unique
    base = configs.set_index("config_id").loc["b"]
    assert base["n"] == 2  # two seeds, not six sweep entries
    assert base["label"] == "baseline"
    assert base["where"] == "baseline; sweep lr; sweep width"
    top = shortlist(table, 3)
    assert top["config_id"].tolist() == ["g1280.01", "w2", "c2"]
    assert top["rank"].tolist() == [1, 2, 3]
    assert top["best_run_id"].iloc[0] == "g1280.01-1"
    assert top["label"].iloc[2] == "stopped"  # a named config shows its name
    small = configs.set_index("config_id").loc["c1"]
    assert small["best_run_id"] == "c1-0" and small["n_ok"] == 1  # NaN is never "best"


def test_failures_status_floor_and_missing(table):
    f = failures(table).set_index("run_id")
    assert set(f.index) == {"lr3-0", "c1-0", "c1-1"}  # early_stopped is not a failure
    assert f.at["lr3-0", "reason"].startswith("status diverged")
    assert "< floor 0.2000" in f.at["c1-0", "reason"]
    assert f.at["c1-1", "reason"].startswith("missing")
    assert accuracy_floor(10) == 0.2 and math.isnan(accuracy_floor(None))
    assert failures(table, floor=0.6).index.size > 3  # an explicit floor overrides 2/classes


def test_grid_pivot_keeps_params_order(table):
    piv = grid_pivot(table, "g")
    assert list(piv.index) == ["0.001", "0.01"] and list(piv.columns) == ["64", "128"]
    assert piv.loc["0.01", "128"] == pytest.approx(0.905)


def test_study_metrics_are_plain_numbers(table):
    configs = config_table(table)
    sweeps = {n: sweep_table(table, n) for n in ("lr", "width")}
    m = study_metrics(table, configs, failures(table), sweeps)
    assert m["best_val_acc_mean"] == pytest.approx(0.905)
    assert m["best_sweep_val_acc"] == pytest.approx(0.83)
    assert m["baseline_val_acc_mean"] == pytest.approx(0.81)
    assert m["n_runs"] == table["run_id"].nunique() and m["failures"] == 2
    assert m["n_complete"] == m["n_runs"] - 1
    json.dumps(m, allow_nan=False)  # DVC reads it: no NaN, no numpy types


def test_experiment_summary_csv_round_trip_keeps_labels(table, tmp_path):
    path = tmp_path / "experiment_summary.csv"
    table.to_csv(path, index=False)
    back = read_experiment_summary(path)
    assert back["value"].tolist() == table["value"].tolist()  # "0.010" stays text
    assert sweep_table(back, "lr")["best_val_acc_mean"].tolist() == pytest.approx(
        [0.51, 0.81, 0.45])
