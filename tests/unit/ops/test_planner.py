"""study.budget: the planner fits the fidelities into the budget, and its frozen plan (the
lock) fixes what trains until the params change or `hpsweep plan --update`.

Costs are a fake calibration (seconds per sample proportional to the model's width), so
a "slower machine" is the same function times a factor; job start-ups are fixed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import tomli_w
from tunefixtures import make_study, tiny_params

from hpsweep.core import budget
from hpsweep.core.atomic import write_json
from hpsweep.core.schema import ParamsError, parse_params
from hpsweep.core.study import Study
from hpsweep.ops import estimate as est
from hpsweep.ops import planner
from hpsweep.ops.jobs import freeze_plan

BOUNDS = {"train": {"epochs": 10}, "optuna": {"n_trials": 20, "epochs": 10}}


def fake_cost(factor: float = 1.0):
    def cost_of(cfg, shape, num_classes, cache):
        return est.Cost(factor * 2e-6 * cfg["model"]["width"], factor * 1e-6)
    return cost_of


def fixed_startups(root) -> None:
    """Cached job start-ups of 1 s: no subprocess timing in the tests."""
    for kind in est.STARTUP_IMPORTS:
        write_json(root / "results" / "calibration" / f"job_startup_{kind}.json",
                   {"seconds": 1.0})


@pytest.fixture
def written(tmp_path):
    make_study(tmp_path, **BOUNDS)
    fixed_startups(tmp_path)
    return Study.as_written(tmp_path / "params.toml", root=tmp_path)


def with_budget(study: Study, minutes: float) -> Study:
    doc = study.params.model_dump(mode="json", exclude_none=True)
    doc["study"]["budget"] = minutes
    study.params_path.write_text(tomli_w.dumps(doc))
    return Study.as_written(study.params_path, root=study.params_path.parent)


def as_written_minutes(study: Study) -> float:
    return planner.make_plan(with_budget(study, 10_000), cost_of=fake_cost(),
                             slots=1)["as_written_minutes"]


def test_plan_fits_the_budget_and_is_deterministic(written):
    full = as_written_minutes(written)
    study = with_budget(written, round(0.6 * full, 1))
    lock = planner.make_plan(study, cost_of=fake_cost(), slots=1)
    assert lock == planner.make_plan(study, cost_of=fake_cost(), slots=1)
    assert lock["total_minutes"] <= study.params.study.budget
    assert sum(s["minutes"] for s in lock["stages"]) == pytest.approx(lock["total_minutes"],
                                                                      abs=0.05)
    chosen = lock["chosen"]
    assert chosen["train.epochs"] < 10 or chosen["optuna.n_trials"] < 20
    # trials short of the bound: each worker stops when Optuna's share is spent
    if chosen["optuna.n_trials"] < 20:
        assert chosen["optuna.minutes"] > 0
    # one more epoch or trial than chosen would not have fitted
    bigger = {**chosen, "optuna.n_trials": chosen["optuna.n_trials"] + 1}
    priced = planner._Pricing(study, 1, fake_cost()).stages(bigger)
    assert sum(s.wall_min(1) for s in priced) > study.params.study.budget


def test_a_budget_the_study_fits_changes_nothing(written):
    study = with_budget(written, 10_000)
    lock = planner.make_plan(study, cost_of=fake_cost(), slots=1)
    assert lock["chosen"] == lock["bounds"] == budget.planned_values(written.params)
    planned = Study.load(study.params_path, root=study.params_path.parent, lock=lock)
    assert planned.plan.run_ids() == written.plan.run_ids()


def test_a_budget_too_small_for_one_run_names_the_minimum(written):
    study = with_budget(written, 0.01)
    with pytest.raises(ParamsError) as e:
        planner.make_plan(study, cost_of=fake_cost(), slots=1)
    msg = str(e.value)
    assert "\n" not in msg and "too small" in msg and "set study.budget >= " in msg
    assert "one sweep epoch, one Optuna trial, the final seeds, their control" in msg
    minimum = int(msg.split("set study.budget >= ")[1].split()[0])
    assert planner.make_plan(with_budget(written, minimum), cost_of=fake_cost(), slots=1)


def test_workers_cut_short_get_a_time_limit_however_small_their_share(tmp_path):
    """Eight workers on one job slot share a minute's Optuna: under a tenth each, which
    must not round to optuna.minutes = 0 (no limit)."""
    make_study(tmp_path, train={"epochs": 10}, optuna={"n_trials": 20, "epochs": 10,
                                                       "n_workers": 8})
    fixed_startups(tmp_path)
    study = Study.as_written(tmp_path / "params.toml", root=tmp_path)
    with pytest.raises(ParamsError) as e:
        planner.make_plan(with_budget(study, 0.01), cost_of=fake_cost(), slots=1)
    minimum = int(str(e.value).split("set study.budget >= ")[1].split()[0])
    lock = planner.make_plan(with_budget(study, minimum), cost_of=fake_cost(), slots=1)
    assert lock["chosen"]["optuna.n_trials"] < 20 and lock["chosen"]["optuna.minutes"] > 0


def test_the_minimum_names_only_the_stages_the_study_runs(tmp_path):
    make_study(tmp_path, optuna={"enabled": False}, final={"control": False})
    fixed_startups(tmp_path)
    study = with_budget(Study.as_written(tmp_path / "params.toml", root=tmp_path), 0.01)
    with pytest.raises(ParamsError, match="machine: one sweep epoch, the final seeds and the "
                                          "report need"):
        planner.make_plan(study, cost_of=fake_cost(), slots=1)


def test_the_lock_survives_a_slower_machine_until_update(written):
    study = with_budget(written, round(0.5 * as_written_minutes(written), 1))
    lock, made = planner.plan_and_freeze(study, cost_of=fake_cost(), slots=1)
    assert made and budget.read_lock(study.paths.plan_lock) == lock
    root = study.params_path.parent
    run_ids = Study.load(study.params_path, root=root).plan.run_ids()
    # A machine three times slower reuses the frozen plan: the same runs train.
    again, made = planner.plan_and_freeze(study, cost_of=fake_cost(3.0), slots=1)
    assert not made and again == lock
    assert Study.load(study.params_path, root=root).plan.run_ids() == run_ids
    # --update re-plans for it: less fits.
    slower, made = planner.plan_and_freeze(study, update=True, cost_of=fake_cost(3.0), slots=1)
    assert made and slower != lock
    assert (slower["chosen"]["train.epochs"], slower["chosen"]["optuna.n_trials"]) < \
        (lock["chosen"]["train.epochs"], lock["chosen"]["optuna.n_trials"])


def test_changed_params_outdate_the_plan_report_keys_do_not(written):
    study = with_budget(written, round(0.5 * as_written_minutes(written), 1))
    planner.plan_and_freeze(study, cost_of=fake_cost(), slots=1)
    root = study.params_path.parent
    doc = study.params.model_dump(mode="json", exclude_none=True)
    doc["report"]["top_k"] += 1
    study.params_path.write_text(tomli_w.dumps(doc))
    assert Study.load(study.params_path, root=root).plan_lock is not None
    doc["train"]["lr"] *= 2
    study.params_path.write_text(tomli_w.dumps(doc))
    with pytest.raises(budget.NoPlanError) as e:
        Study.load(study.params_path, root=root)
    assert "\n" not in str(e.value) and "run `hpsweep plan`" in str(e.value)
    assert "made for other params" in str(e.value)


def test_only_a_real_run_freezes_a_plan(written):
    study = with_budget(written, round(0.5 * as_written_minutes(written), 1))
    lock = planner.make_plan(study, cost_of=fake_cost(), slots=1)
    loaded = Study.load(study.params_path, root=study.params_path.parent, lock=lock)
    assert not study.paths.plan_lock.exists()
    freeze_plan(loaded)  # the Snakefile's onstart
    assert budget.read_lock(study.paths.plan_lock) == lock
    freeze_plan(Study.load(study.params_path, root=study.params_path.parent))  # unchanged
    assert budget.read_lock(study.paths.plan_lock) == lock


def test_budget_zero_reads_no_lock_and_the_cli_freezes_a_constant_one(tmp_path):
    make_study(tmp_path)
    params = tmp_path / "params.toml"
    out = subprocess.run([sys.executable, "-m", "hpsweep.cli", "plan", "--params",
                          str(params)], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lock = json.loads((tmp_path / "results/plan/lock.json").read_text())
    assert lock == {"version": budget.LOCK_VERSION, "budget": 0, "chosen": {}}
    assert "Budget plan" not in out.stdout
    assert Study.load(params, root=tmp_path).plan_lock is None


def test_planned_keys_are_params_keys():
    params = parse_params(tiny_params())
    for key in budget.PLANNED:
        section, leaf = key.split(".")
        assert leaf in type(getattr(params, section)).model_fields


def test_status_shows_the_frozen_plan(written):
    from hpsweep.ops.status import collect_status
    from hpsweep.ops.status_text import render

    study = with_budget(written, round(0.5 * as_written_minutes(written), 1))
    lock, _ = planner.plan_and_freeze(study, cost_of=fake_cost(), slots=1)
    root = study.params_path.parent
    text = render(collect_status(Study.load(study.params_path, root=root), workdir=root))
    assert f"Budget: {lock['budget']:g} min, planned {lock['total_minutes']:.1f} min" in text
    changed = [f"{k} = {v}" for k, v in lock["chosen"].items() if v != lock["bounds"][k]]
    assert changed and all(c in text for c in changed)


@pytest.mark.parametrize("section", ["optuna", "final"])
def test_trials_or_final_seeds_at_the_sweeps_epochs_are_priced_at_the_chosen_ones(
        tmp_path, section):
    """With optuna.epochs = 0 the trials train train.epochs, and without Optuna (final.epochs
    = 0) the final seeds and the control do: each candidate is priced at its own epochs,
    not at the bound, so the plan fills the budget and fits it."""
    sections = {"train": {"epochs": 10}, "optuna": {"n_trials": 20, "epochs": 0},
                "final": {"epochs": 0}}
    if section == "final":
        sections["optuna"] = {"enabled": False}
    make_study(tmp_path, **sections)
    fixed_startups(tmp_path)
    study = Study.as_written(tmp_path / "params.toml", root=tmp_path)
    study = with_budget(study, round(0.25 * as_written_minutes(study), 2))
    lock = planner.make_plan(study, cost_of=fake_cost(), slots=1)
    chosen, b = lock["chosen"], study.params.study.budget
    assert lock["total_minutes"] <= b
    assert chosen["train.epochs"] < 10
    cut = section == "optuna" and chosen["optuna.n_trials"] < 20
    more = {**chosen, "optuna.n_trials": chosen["optuna.n_trials"] + 1} if cut \
        else {**chosen, "train.epochs": chosen["train.epochs"] + 1}
    priced = planner._Pricing(study, 1, fake_cost()).stages(more)
    assert sum(s.wall_min(1) for s in priced) > b, "one more trial or epoch would have fitted"
