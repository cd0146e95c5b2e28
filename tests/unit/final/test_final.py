"""Final retrain: seeds trained with the real trainer on the tiny synthetic study,
summary statistics, model export, and the choice of configuration."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tunefixtures import fake_complete_run, make_study

from hpsweep.core import layout
from hpsweep.core.stats import mean_ci
from hpsweep.data.prepared import load_prepared
from hpsweep.final import export, retrain, select
from hpsweep.tuning.tuner import Tuner


def test_mean_ci_as_json_is_the_student_t_interval():
    ci = mean_ci([0.90, 0.92, 0.94]).as_json()
    # s = 0.02, t(0.975, df=2) = 4.302652729749464
    assert ci["mean"] == pytest.approx(0.92)
    assert ci["std"] == pytest.approx(0.02)
    assert ci["half"] == pytest.approx(4.302652729749464 * 0.02 / math.sqrt(3))
    assert ci["low"] == pytest.approx(0.92 - ci["half"])
    assert ci["high"] == pytest.approx(0.92 + ci["half"])
    one = mean_ci([0.9]).as_json()
    assert one["mean"] == 0.9 and one["half"] is None and one["low"] is None
    same = mean_ci([0.9, 0.9]).as_json()
    assert same["half"] == 0.0
    assert mean_ci([]).as_json() == {"mean": None, "std": None, "half": None, "low": None,
                                     "high": None, "n": 0}


def _write_best(study, overrides, value=0.9, trial=3):
    path = Tuner(study).best_params_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"optuna_study": Tuner(study).name, "trial_number": trial,
                                "value": value, "overrides": overrides}))


def test_final_retrain_summary_and_exported_model(tmp_path):
    study = make_study(tmp_path, final={"seeds": [0, 1], "epochs": 2})
    _write_best(study, {"train.lr": 0.02, "model.width": 8, "train.epochs": 1})
    assert layout.best_input(study) == Tuner(study).best_params_path
    for seed in (0, 1):
        m = retrain.run_final_seed(study, seed, threads=1, progress=False)
        assert m["status"] == "ok" and m["epochs_run"] == 2  # final.epochs wins
        assert m["test_acc"] is not None
    with pytest.raises(FileNotFoundError, match="run the control_run job for seed 0"):
        retrain.write_final_summary(study)  # final.control is on by default
    for seed in (0, 1):
        c = retrain.run_control_seed(study, seed, threads=1, progress=False)
        # the baseline (lr 0.01, width 16 in the tiny params) at the final seeds' epochs
        cfg = c["provenance"]["run_config"]
        assert (cfg["train"]["lr"], cfg["model"]["width"], c["epochs_run"]) == (0.01, 16, 2)
    summary = retrain.write_final_summary(study)
    saved = json.loads(layout.summary_path(study).read_text())
    assert saved["n_seeds"] == 2 and [r["seed"] for r in saved["per_seed"]] == [0, 1]
    accs = [r["test_acc"] for r in saved["per_seed"]]
    ci = mean_ci(accs).as_json()
    assert saved["test_acc_mean"] == pytest.approx(sum(accs) / 2)
    assert saved["test_acc_ci95"] == pytest.approx(ci["half"])
    assert saved["config"]["train.lr"] == 0.02 and saved["config"]["model.width"] == 8
    assert saved["run_config"]["train"]["epochs"] == 2
    assert saved["best"]["trial_number"] == 3 and saved["tuned_val_acc"] == 0.9
    assert json.loads(layout.config_path(study).read_text()) == saved["run_config"]
    # the gain over the control is paired by seed: the mean and t interval of the
    # per-seed differences, not the difference of two means' intervals
    control = [r["test_acc"] for r in saved["control"]["per_seed"]]
    diffs = [t - c for t, c in zip(accs, control, strict=True)]
    gain = saved["gain_vs_control"]
    assert gain["per_seed"] == {str(s): pytest.approx(d)
                                for s, d in zip((0, 1), diffs, strict=True)}
    assert gain["mean"] == pytest.approx(sum(diffs) / 2)
    assert gain["ci95"] == pytest.approx(mean_ci(diffs).as_json()["half"], nan_ok=True)
    assert gain["significant"] == (gain["low"] > 0 if gain["low"] is not None else None)
    assert saved["control"]["overrides"] == {"train.epochs": 2}

    # the exported model reproduces its seed's test accuracy
    model, blob = export.load_exported(layout.model_path(study))
    assert blob["seed"] == summary["exported_seed"] and blob["config"] == saved["run_config"]
    data = load_prepared(study.paths.prepared)
    mean = torch.tensor(blob["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(blob["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        pred = model((data.x_test.float() / 255 - mean) / std).argmax(1)
    acc = (pred == data.y_test).float().mean().item()
    row = next(r for r in saved["per_seed"] if r["seed"] == blob["seed"])
    assert acc == pytest.approx(row["test_acc"], abs=1.5 / len(data.y_test))

    # the torch.export program needs no hpsweep: raw [0, 1] pixels in, same predictions
    program = torch.export.load(str(layout.program_path(study))).module()
    with torch.no_grad():
        assert torch.equal(program(data.x_test.float() / 255).argmax(1), pred)
    card = json.loads(layout.model_card_path(study).read_text())
    assert card["data_checksum"] == data.checksum and card["config"] == saved["run_config"]
    assert card["test_accuracy"]["mean"] == pytest.approx(saved["test_acc_mean"])
    assert card["test_accuracy"]["exported_seed"] == blob["seed"]

    # a changed best configuration makes the seed runs stale, never silently reused
    _write_best(study, {"train.lr": 0.05, "model.width": 8, "train.epochs": 1})
    with pytest.raises(RuntimeError, match="another configuration"):
        retrain.write_final_summary(study)


def test_without_optuna_the_best_sweep_configuration_is_retrained(tmp_path):
    study = make_study(tmp_path, optuna={"enabled": False},
                       sweeps={"lr": {"param": "train.lr", "values": [0.003, 0.01, 0.03]}},
                       study={"seeds": [0, 1]})
    lr_of = {m.run_id: dict(m.overrides).get("train.lr") for m in study.plan.members
             if m.group == "sweep"}
    for run_id, lr in lr_of.items():
        fake_complete_run(study, run_id, {0.003: 0.6, 0.01: 0.7, 0.03: 0.8}[lr])
    assert layout.best_input(study).name == "experiment_summary.csv"
    best = select.best_choice(study)
    assert best["source"] == "sweeps" and best["overrides"] == {"train.lr": 0.03}
    assert best["val_acc"] == pytest.approx(0.8) and len(best["run_ids"]) == 2
    spec = select.final_spec(study, 5)
    assert spec.config["train"]["lr"] == 0.03 and spec.config["train"]["epochs"] == 1


def test_train_on_val_trains_on_both_splits_and_keeps_the_last_epoch(tmp_path):
    study = make_study(tmp_path, final={"seeds": [0, 1], "epochs": 3, "train_on_val": True,
                                        "control": False})
    _write_best(study, {"train.lr": 0.02, "model.width": 8, "train.epochs": 1})
    data = load_prepared(study.paths.prepared)
    for seed in (0, 1):
        m = retrain.run_final_seed(study, seed, threads=1, progress=False)
        assert m["kept_epoch"] == "last" and m["best_epoch"] == 3
        assert m["samples_per_s"] and m["global_steps"] == 3 * -(-(len(data.y_train)
                                                                  + len(data.y_val)) // 32)
        assert m["provenance"]["data_checksum"] != data.checksum
    summary = retrain.write_final_summary(study)
    assert summary["trained_on"] == "train+val" and summary["val_acc_mean"] is None
    assert summary["control"] is None and summary["gain_vs_control"] is None
    assert summary["exported_seed"] == 0
    assert all(r["best_val_acc"] is None for r in summary["per_seed"])
    card = json.loads(layout.model_card_path(study).read_text())
    assert card["trained_on"] == "train+val" and card["val_accuracy_of_exported_seed"] is None
    # the same seed without train_on_val is another run: never mistaken for this one
    plain = make_study(tmp_path, final={"seeds": [0], "epochs": 3})
    m = retrain.run_final_seed(plain, 0, threads=1, progress=False)
    assert m["kept_epoch"] == "best" and m["provenance"]["data_checksum"] == data.checksum
