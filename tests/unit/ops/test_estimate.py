"""`hpsweep plan --estimate`: calibrated per shape with the real trainer, cached, and
counting completed runs with the time they took."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
from tunefixtures import fake_complete_run, make_study

from hpsweep.core.layout import OptunaLayout
from hpsweep.core.plan import make_run
from hpsweep.data.prepared import load_prepared
from hpsweep.ops import estimate as est


def with_manifest(study):
    """The sizes `prepare` records in the manifest, for the synthetic prepared data."""
    data = load_prepared(study.paths.prepared)
    study.paths.manifest.write_text(json.dumps({
        "counts": {s: len(data.split(s)[1]) for s in ("train", "val", "test")},
        "input_shape": list(data.input_shape), "num_classes": data.num_classes}))
    return study


@pytest.fixture
def study(tmp_path):
    return with_manifest(make_study(tmp_path, sweeps={"lr": {"param": "train.lr",
                                                             "values": [0.01, 0.1]}}))


def test_stages_cover_the_study_and_calibration_is_cached(study, monkeypatch):
    stages = {s.stage: s for s in est.estimate(study)}
    assert list(stages) == ["sweeps, grids, configs", "optuna", "final", "control", "report"]
    sweeps = stages["sweeps, grids, configs"]
    assert sweeps.runs == len(study.plan.runs) and sweeps.done == 0 and sweeps.job_min > 0
    assert stages["optuna"].runs == 4 and stages["final"].runs == stages["control"].runs == 2
    assert stages["final"].jobs == 4  # the 2 seeds and the 2 controls run side by side
    cache = study.paths.results_dir / "calibration"
    assert len(list(cache.glob("*.json"))) >= 2  # a shape and the job start-up

    def no_training(*args, **kwargs):
        raise AssertionError("calibrated twice")

    monkeypatch.setattr("hpsweep.training.engine.train_run", no_training)
    again = {s.stage: s for s in est.estimate(study)}
    assert again["final"].job_min == pytest.approx(stages["final"].job_min)


def test_the_control_is_its_own_stage_priced_at_the_final_seeds_epochs(study):
    stages = {s.stage: s for s in est.estimate(study)}
    assert stages["control"].epochs == stages["final"].epochs and stages["control"].job_min > 0
    study.params.final.control = False
    without = {s.stage: s for s in est.estimate(study)}
    assert "control" not in without and without["final"].jobs == 2
    assert without["final"].job_min == pytest.approx(stages["final"].job_min)


def test_before_optuna_chooses_final_and_control_are_priced_at_the_longest_draw(study):
    """With train.epochs in the space, the final seeds and the control train the
    winner's epochs: until it is known, both are priced at the longest the space allows."""
    x = est.study_inputs(study)
    short, long = copy.deepcopy(x.base), copy.deepcopy(x.base)
    short["train"]["epochs"], long["train"]["epochs"] = 1, 5
    x.draws = [short, long]
    study.params.final.epochs = 0
    counts, n_tr = x.counts, x.counts["train"] + (
        x.counts["val"] if study.params.final.train_on_val else 0)
    seeds = len(study.params.final.seeds)
    at_5 = x.seconds(x.base, 5, n_tr, counts["val"], counts["test"])
    control = est.control_stage(x)
    assert control.epochs == "1-5"
    assert control.job_min == pytest.approx(seeds * (at_5 + x.startup) / 60)
    assert est.final_stage(x).job_min == pytest.approx((seeds * (at_5 + x.startup)
                                                        + x.startup) / 60)


def test_before_optuna_chooses_the_final_is_priced_at_the_spaces_costliest_corner(tmp_path):
    """No draw need hold the corner (here every draw is made the cheapest config): the
    final seeds are priced with each discrete dimension at its costliest value, the
    high end of an int range, the small batch, the wide choice; floats keep the draw's."""
    space = {"train.lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
             "train.batch_size": {"type": "categorical", "choices": [16, 32]},
             "model.width": {"type": "categorical", "choices": [8, 16]},
             "model.depth": {"type": "int", "low": 1, "high": 4, "step": 2}}
    study = with_manifest(make_study(tmp_path, optuna={"space": space}))

    def cost_of(cfg, shape, num_classes, cache, members=1):  # wide, deep, small batches
        m = cfg["model"]
        return est.Cost(1e-6 * m["width"] * m["depth"] / cfg["train"]["batch_size"], 0.0)

    x = est.study_inputs(study, cost_of=cost_of)
    cheapest = make_run(study.params, {"train.lr": 0.01, "train.batch_size": 32,
                                       "model.width": 8, "model.depth": 1}, 0).config
    x.draws = [cheapest]
    final = est.final_runs(x)
    corner = final.candidates[-1][0]
    assert len(final.candidates) == 2  # the draw, and the one arch's corner
    assert (corner["model"]["width"], corner["model"]["depth"], corner["train"]["batch_size"],
            corner["train"]["lr"]) == (16, 3, 16, 0.01)  # 4 is off the int's step grid
    seeds, n_train = len(study.params.final.seeds), final.n_train
    at_corner = x.seconds(corner, study.params.final.epochs, n_train, 0, 0)
    assert at_corner == pytest.approx(12 * x.seconds(cheapest, 1, n_train, 0, 0))
    assert est.final_stage(x, final).job_min == pytest.approx(
        (seeds * (at_corner + x.startup) + x.startup) / 60)


def test_a_completed_run_counts_with_its_measured_time(study):
    before = est.estimate(study)[0]
    run_id = study.plan.run_ids()[0]
    fake_complete_run(study, run_id, 0.9)
    metrics = study.paths.run_dir(run_id) / "metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "total_time_s": 600.0}))
    after = est.estimate(study)[0]
    assert after.done == 1 and after.jobs == before.jobs - 1
    assert after.job_min > before.job_min + 9  # its 10 measured minutes replace an estimate


def test_trials_are_priced_over_the_space_and_the_final_by_the_chosen_config(study):
    draws = est._space_draws(study)
    assert len(draws) == est.SPACE_DRAWS
    assert {c["model"]["width"] for c in draws} <= {8, 16} and len({c["train"]["lr"]
                                                                   for c in draws}) > 1
    before = {s.stage: s for s in est.estimate(study)}["final"]
    best = OptunaLayout(study).best_params_path
    best.parent.mkdir(parents=True, exist_ok=True)
    wide = make_run(study.params, {"model.width": 1024, "model.depth": 3}, 0).config
    best.write_text(json.dumps({"config": wide}))
    after = {s.stage: s for s in est.estimate(study)}["final"]
    assert after.job_min > before.job_min  # Optuna chose: the final stage prices its choice


def per_member(speedup: float):
    """A fake calibration: every shape costs the same alone, and a pack member
    ``speedup`` times less (a GPU's packs; about 1 on this CPU)."""
    def cost_of(cfg, shape, num_classes, cache, members=1):
        return est.Cost(1e-3 / (speedup if members > 1 else 1.0), 1e-4)
    return cost_of


def test_a_pack_is_priced_as_one_job_of_its_members_at_the_pack_calibration(tmp_path):
    """study.pack_size: a pack's job pays one start-up and trains its members at the
    packed rate; the final seeds and the control's are one job each."""
    sweeps = {"lr": {"param": "train.lr", "values": [0.01, 0.03, 0.1]}}
    alone = with_manifest(make_study(tmp_path / "alone", sweeps=sweeps))
    packed = with_manifest(make_study(tmp_path / "packed", sweeps=sweeps,
                                      study={"pack_size": 4}))
    assert packed.packs and alone.plan.runs.keys() == packed.plan.runs.keys()
    x = est.study_inputs(packed, cost_of=per_member(4.0))
    p = {s.stage: s for s in est.estimate(packed, x)}
    xa = est.study_inputs(alone, cost_of=per_member(4.0))
    xa.startup, xa.light = x.startup, x.light  # each study measured its own start-ups
    a = {s.stage: s for s in est.estimate(alone, xa)}
    in_packs = sum(len(k.run_ids) for k in packed.packs)
    runs = len(packed.plan.runs)
    assert p["sweeps, grids, configs"].jobs == len(packed.packs) + runs - in_packs
    counts = x.counts
    train_s = {r: x.seconds(spec.config, spec.config["train"]["epochs"], counts["train"],
                            counts["val"]) for r, spec in packed.plan.runs.items()}
    packed_s = {r: x.seconds(packed.plan.runs[r].config, packed.plan.runs[r].config["train"]
                             ["epochs"], counts["train"], counts["val"], members=2)
                for r in train_s}
    saved = sum(train_s[r] - packed_s[r] for k in packed.packs for r in k.run_ids)
    fewer_startups = (in_packs - len(packed.packs)) * x.startup
    assert (a["sweeps, grids, configs"].job_min - p["sweeps, grids, configs"].job_min
            == pytest.approx((saved + fewer_startups) / 60))
    seeds = len(packed.params.final.seeds)
    assert p["final"].jobs == 2 and a["final"].jobs == 2 * seeds
    final = est.final_runs(x)
    cfg, epochs = final.candidates[0]  # the fake prices every candidate alike
    assert {e for _, e in final.candidates} == {epochs}
    seed_s = {k: x.seconds(cfg, epochs, final.n_train, counts["val"], counts["test"],
                           members=k) for k in (1, seeds)}
    assert p["final"].job_min == pytest.approx(  # one pack job, then final_summary
        (seeds * seed_s[seeds] + 2 * x.startup) / 60)
    assert a["final"].job_min == pytest.approx((seeds * (seed_s[1] + x.startup) + x.startup) / 60)


def test_a_pack_is_calibrated_with_the_pack_trainer_and_cached_apart(study, monkeypatch):
    x = est.study_inputs(study)
    alone = est.calibrate(x.base, x.shape, x.num_classes, x.cache)
    packed = est.calibrate(x.base, x.shape, x.num_classes, x.cache, members=2)
    assert alone.train_s > 0 and packed.train_s > 0
    assert len([p for p in x.cache.glob("*.json") if not p.name.startswith("job_startup")]) == 2

    def no_training(*args, **kwargs):
        raise AssertionError("calibrated twice")

    monkeypatch.setattr("hpsweep.training.pack_trainer.train_pack", no_training)
    assert est.calibrate(x.base, x.shape, x.num_classes, x.cache, members=2) == packed


def test_wall_time_divides_by_the_jobs_that_run_at_once():
    s = est.StageEstimate("sweeps", runs=8, epochs="2", samples=100, job_min=8.0, jobs=8)
    assert s.wall_min(1) == 8.0 and s.wall_min(4) == 2.0 and s.wall_min(16) == 1.0


def test_a_running_snakemake_plans_for_its_own_cores_and_gpus(tmp_path, monkeypatch):
    """ops.jobs.workflow_slots reads what Snakemake's workflow object holds at parse time:
    .cores, .local_exec and .global_resources (`--resources`)."""
    from types import SimpleNamespace

    from hpsweep.ops.jobs import workflow_slots

    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    study = make_study(tmp_path)  # study.device = "cpu": the gpu resource does not bind
    box = SimpleNamespace(cores=16, local_exec=True, global_resources={"gpu": 2})
    assert workflow_slots(study, box) == 8
    study.params.study.device = "cuda"
    assert workflow_slots(study, box) == 2
    assert workflow_slots(study, SimpleNamespace(cores=16, local_exec=False,
                                                 global_resources={})) is None  # a cluster
    assert workflow_slots(study, None) is None


def test_without_prepared_data_idx_sizes_are_known_others_say_what_to_run(tmp_path):
    # Fashion-MNIST's sizes are fixed: priced before its data is prepared.
    counts, shape, classes = est.dataset_sizes(make_study(tmp_path / "idx"))
    assert counts == {"train": 54000, "val": 6000, "test": 10000}
    assert shape == (1, 28, 28) and classes == 10
    study = make_study(tmp_path, data={"dataset": "csv", "csv_path": "digits.csv"})
    out = subprocess.run([sys.executable, "-m", "hpsweep.cli", "plan", "--estimate",
                          "--params", str(study.params_path)], cwd=tmp_path,
                         capture_output=True, text=True)
    assert out.returncode != 0
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and "hpsweep data fetch" in err[0] and "Traceback" not in out.stderr


def test_a_space_that_chooses_the_arch_has_a_costliest_corner_per_arch(tmp_path):
    """With model.arch in the space, each family's corner moves only its own keys."""
    space = {"model.arch": {"type": "categorical", "choices": ["mlp", "cnn"]},
             "model.channels": {"type": "categorical", "choices": [[4], [4, 8]]},
             "model.kernel_size": {"type": "int", "low": 1, "high": 3, "step": 2},
             "model.depth": {"type": "int", "low": 1, "high": 2},
             "model.dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
             "train.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}
    study = with_manifest(make_study(tmp_path, optuna={"space": space}))

    def cost_of(cfg, shape, num_classes, cache, members=1):
        m = cfg["model"]
        size = (10 * m["depth"] if m["arch"] == "mlp"
                else sum(m["channels"]) * m["kernel_size"])
        return est.Cost(1e-6 * size, 0.0)

    x = est.study_inputs(study, cost_of=cost_of)
    assert {c["model"]["arch"] for c in x.draws} == {"mlp", "cnn"}  # seeded draws
    corners = {c["model"]["arch"]: c["model"]
               for c, _ in est.final_runs(x).candidates[len(x.draws):]}
    assert corners.keys() == {"mlp", "cnn"}
    assert (corners["cnn"]["channels"], corners["cnn"]["kernel_size"]) == ([4, 8], 3)
    assert corners["mlp"]["depth"] == 2 and "channels" not in corners["mlp"]
    # draws that miss a family: it gets a corner of its own all the same
    x.draws = [c for c in x.draws if c["model"]["arch"] == "mlp"]
    corners = {c["model"]["arch"]: c["model"]
               for c, _ in est.final_runs(x).candidates[len(x.draws):]}
    assert corners.keys() == {"mlp", "cnn"}
    assert (corners["cnn"]["channels"], corners["cnn"]["kernel_size"]) == ([4, 8], 3)


def test_a_calibration_is_cached_per_input_shape_and_classes(study, tmp_path):
    """One results folder may price studies of several datasets: a 28 x 28 MLP's cost is
    not a 64 x 64 x 3 one's, so the cache keys on the input shape and classes too."""
    cfg, cache = est.study_inputs(study).base, tmp_path / "cache"
    est.calibrate(cfg, (1, 8, 8), 4, cache)
    est.calibrate(cfg, (3, 8, 8), 4, cache)
    est.calibrate(cfg, (3, 8, 8), 6, cache)
    shapes = [json.loads(p.read_text())["shape"] for p in cache.glob("*.json")]
    assert sorted((s["input_shape"], s["num_classes"]) for s in shapes) == [
        ([1, 8, 8], 4), ([3, 8, 8], 4), ([3, 8, 8], 6)]


def test_without_optuna_the_final_is_priced_at_the_costliest_member_until_one_is_chosen(
        tmp_path):
    """Without Optuna the final seeds retrain the best sweep/grid/config member
    (final.select), which may be the widest or the longest: until the sweeps are done
    they are priced at the costliest member, then at the one chosen."""
    study = with_manifest(make_study(tmp_path, optuna={"enabled": False}, sweeps={
        "width": {"param": "model.width", "values": [8, 64]}}))

    def cost_of(cfg, shape, num_classes, cache, members=1):  # the width decides
        return est.Cost(1e-6 * cfg["model"]["width"], 0.0)

    x = est.study_inputs(study, cost_of=cost_of)
    widths = {c["model"]["width"] for c, _ in est.final_runs(x).candidates}
    assert widths == {s.config["model"]["width"] for s in study.plan.runs.values()} >= {8, 64}
    n_train = est.final_runs(x).n_train
    at_64 = max(est._seed_seconds(x, c, n_train) for c, _ in est.final_runs(x).candidates
                if c["model"]["width"] == 64)
    seeds = len(study.params.final.seeds)
    assert est.final_stage(x).job_min == pytest.approx(
        (seeds * (at_64 + x.startup) + x.startup) / 60)
    for run_id, spec in study.plan.runs.items():  # the narrow one validated best
        fake_complete_run(study, run_id, 0.9 if spec.config["model"]["width"] == 8 else 0.8)
    chosen = est.final_runs(x).candidates
    assert [c["model"]["width"] for c, _ in chosen] == [8]


def test_jobs_run_in_rounds_and_workers_without_a_trial_train_nothing(study):
    """3 equal jobs on 2 slots take two jobs' time; one trial left keeps one worker busy
    however many there are."""
    assert est.StageEstimate("s", 3, "-", 0, 3.0, 3).wall_min(2) == pytest.approx(2.0)
    assert est.StageEstimate("s", 4, "-", 0, 4.0, 4).wall_min(2) == pytest.approx(2.0)
    assert est.StageEstimate("s", 2, "-", 0, 2.0, 2).wall_min(4) == pytest.approx(1.0)
    study.params.optuna.n_trials, study.params.optuna.n_workers = 1, 2
    assert est.optuna_stage(est.study_inputs(study)).jobs == 1
