"""Optuna refinement on real storages (SQLite, PostgreSQL), real worker processes and the
real trainer, on a tiny synthetic study (tests/tunefixtures.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from pg import postgres_url  # noqa: F401  (fixture)
from tunefixtures import (
    fake_complete_run,
    kill_when,
    make_study,
    start_worker,
    wait_all,
    worker_env,
)

from hpsweep.core.layout import optuna_figure_path as figure_path
from hpsweep.core.plan import make_run
from hpsweep.core.schema import ParamsError, parse_params
from hpsweep.data.prepared import load_prepared
from hpsweep.data.split import stratified_folds
from hpsweep.tuning.counting import admitted, trial_counts
from hpsweep.tuning.objective import Objective, _Surplus
from hpsweep.tuning.promotion import promote
from hpsweep.tuning.results import collect
from hpsweep.tuning.space import SearchSpace, family_of
from hpsweep.tuning.storage import StorageError, expand_env, mask, open_storage, storage_url
from hpsweep.tuning.tuner import Tuner
from hpsweep.tuning.worker import run_worker, setup_study

optuna.logging.set_verbosity(optuna.logging.WARNING)

COND_SPACE = {
    "model.arch": {"type": "categorical", "choices": ["mlp", "cnn"]},
    "model.channels": {"type": "categorical", "choices": [[4], [4, 8]]},
    "model.kernel_size": {"type": "int", "low": 1, "high": 3, "step": 2},
    "model.depth": {"type": "int", "low": 1, "high": 2},
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
    "train.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
}


# -- storage ----------------------------------------------------------------------------------

def test_storage_url_env_expansion_and_masking(tmp_path):
    url = "postgresql+psycopg2://alice:${PGPASS}@db.example:5432/optuna"
    assert expand_env(url, {"PGPASS": "s3cr3t"}) == (
        "postgresql+psycopg2://alice:s3cr3t@db.example:5432/optuna")
    assert mask(expand_env(url, {"PGPASS": "s3cr3t"})) == (
        "postgresql+psycopg2://alice:***@db.example:5432/optuna")
    assert mask("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    with pytest.raises(StorageError, match=r"\$\{PGPASS\}, which is not set") as e:
        expand_env(url, {})
    assert "s3cr3t" not in str(e.value)
    with pytest.raises(StorageError, match="not a storage"):
        open_storage("mysecret-not-a-url")
    # a connection failure names the URL with the password masked
    with pytest.raises(StorageError) as e:
        open_storage("postgresql+psycopg2://bob:hunter2@127.0.0.1:1/x")
    assert "hunter2" not in str(e.value) and "bob:***@" in str(e.value)

    study = make_study(tmp_path)
    assert storage_url(study) == f"sqlite:///{(tmp_path / 'results/optuna/tiny.db').resolve()}"


def test_journal_storage_study(tmp_path):
    journal = tmp_path / "shared" / "study.journal"
    study = make_study(tmp_path, optuna={"n_trials": 2, "n_workers": 1,
                                         "storage": f"journal:{journal}"})
    info = run_worker(study, 0, threads=1)
    assert info["counts"]["finished"] == 2 and journal.is_file()
    assert info["storage"] == f"journal:{journal}"


# -- search space -----------------------------------------------------------------------------

def test_space_sampling_with_conditional_keys(tmp_path):
    params = parse_params({"optuna": {"space": COND_SPACE}})  # validated like params.toml
    space = SearchSpace(params.optuna.space, params.model.arch)
    assert space.keys[0] == "model.arch" and space.conditional
    assert family_of("model.channels") == "cnn" and family_of("model.depth") == "mlp"
    assert family_of("model.dropout") is None and family_of("train.lr") is None
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1),
                                direction="maximize")
    seen = set()
    for _ in range(30):
        trial = study.ask()
        values = space.suggest(trial)
        arch = values["model.arch"]
        seen.add(arch)
        keys = set(values)
        if arch == "cnn":
            assert {"model.channels", "model.kernel_size"} <= keys
            assert "model.depth" not in keys and "model.width" not in keys
            assert values["model.channels"] in ([4], [4, 8])  # decoded from JSON text
            assert values["model.kernel_size"] in (1, 3)
        else:
            assert "model.depth" in keys
            assert not keys & {"model.channels", "model.kernel_size"}
        assert 1e-3 <= values["train.lr"] <= 1e-1
        assert round(values["model.dropout"] * 10, 6).is_integer()
        # every sample is a valid run config
        spec = make_run(params, values, 0)
        assert spec.config["model"]["arch"] == arch
        assert set(trial.params) == keys  # only active keys were suggested
        study.tell(trial, 0.5)
    assert seen == {"mlp", "cnn"}


def test_space_membership_and_bad_dimensions():
    params = parse_params({"optuna": {"space": COND_SPACE}})
    space = SearchSpace(params.optuna.space, "mlp")
    cnn = make_run(params, {"model.arch": "cnn", "model.channels": [4, 8],
                            "model.kernel_size": 3, "model.dropout": 0.2,
                            "train.lr": 0.01}, 0).config
    assert space.values_of(cnn) == {"model.arch": "cnn", "model.channels": [4, 8],
                                    "model.kernel_size": 3, "model.dropout": 0.2,
                                    "train.lr": 0.01}
    outside = make_run(params, {"model.arch": "cnn", "model.channels": [32, 64]}, 0).config
    assert space.values_of(outside) is None
    off_grid = make_run(params, {"model.dropout": 0.25}, 0).config
    assert space.values_of(off_grid) is None
    bad = parse_params({"optuna": {"space": {"train.lr": {
        "type": "float", "low": 1e-3, "high": 1e-1, "log": True, "step": 0.01}}}})
    with pytest.raises(ParamsError, match="log = true cannot be combined with step"):
        SearchSpace(bad.optuna.space, "mlp")


# -- warm start -------------------------------------------------------------------------------

def test_warm_start_adds_completed_sweep_runs_once(tmp_path):
    study = make_study(
        tmp_path,
        sweeps={"lr": {"param": "train.lr", "values": [0.003, 0.01, 0.3]},
                "epochs": {"param": "train.epochs", "values": [1]}},
        optuna={"warm_start": True, "epochs": 0})
    accs = {}
    for m in study.plan.members:
        accs.setdefault(m.run_id, 0.5 + 0.1 * len(accs))
    for run_id, acc in accs.items():
        fake_complete_run(study, run_id, acc)
    first = setup_study(study)
    # lr 0.01 (= baseline) and 0.003 qualify; 0.3 lies outside the space; the epochs
    # sweep run trains 1 epoch where a trial trains 2.
    assert first["warm_start"] == {"found": 2, "added": 2, "present": 0}
    second = setup_study(study)
    assert second["warm_start"] == {"found": 2, "added": 0, "present": 2}
    ostudy = Tuner(study).open()
    warm = [t for t in ostudy.trials if t.user_attrs.get("warm_start")]
    assert len(warm) == 2 and len(ostudy.trials) == 2
    by_lr = {t.params["train.lr"]: t for t in warm}
    assert set(by_lr) == {0.003, 0.01}
    base_id = study.plan.members_of("baseline")[0].run_id
    assert by_lr[0.01].value == pytest.approx(accs[base_id])
    assert by_lr[0.01].intermediate_values == {1: pytest.approx(accs[base_id] - 0.05),
                                               2: pytest.approx(accs[base_id])}
    assert by_lr[0.01].params["model.width"] == 16
    # warm-start trials do not count towards n_trials
    assert trial_counts(ostudy)["finished"] == 0 and trial_counts(ostudy)["warm"] == 2


def test_promotion_enqueues_the_best_sweep_configurations_at_the_trials_epochs(tmp_path):
    """Sweeps at 2 epochs, trials at 1: warm start carries nothing over, promotion
    retrains the best configurations the space can express, best first, once."""
    study = make_study(
        tmp_path,
        sweeps={"lr": {"param": "train.lr", "values": [0.003, 0.01, 0.03, 0.3]},
                "bs": {"param": "train.batch_size", "values": [16]},
                "epochs": {"param": "train.epochs", "values": [3]}},
        optuna={"warm_start": True, "epochs": 1, "promote": 2, "n_trials": 3,
                "n_workers": 1})
    acc_of = {0.003: 0.6, 0.01: 0.7, 0.03: 0.8, 0.3: 0.95}
    for m in study.plan.members:
        cfg = study.plan.runs[m.run_id].config
        # batch size 16 is the best run, but a trial cannot express it (not in the space);
        # the baseline at 3 epochs is another fidelity: neither ranked nor averaged in
        acc = 0.99 if (cfg["train"]["batch_size"] == 16 or cfg["train"]["epochs"] == 3) \
            else acc_of[cfg["train"]["lr"]]
        fake_complete_run(study, m.run_id, acc)
    first = setup_study(study)
    assert first["warm_start"]["added"] == 0  # other epochs: nothing to carry over
    # lr 0.3 (outside the space) and batch size 16 (a key outside it) cannot be promoted
    assert first["promotion"] == {"promoted": 2, "present": 0, "candidates": 3}
    assert setup_study(study)["promotion"] == {"promoted": 0, "present": 2, "candidates": 3}
    ostudy = Tuner(study).open()
    waiting = ostudy.get_trials(states=(TrialState.WAITING,))
    # best first: lr 0.03 (0.8), then lr 0.01 (0.7, the baseline)
    assert [t.user_attrs["sweep_val_acc"] for t in waiting] == pytest.approx([0.8, 0.7])
    assert trial_counts(ostudy)["waiting"] == 2 and trial_counts(ostudy)["finished"] == 0
    run_worker(study, 0, threads=1)
    trained = Tuner(study).load().get_trials(states=(TrialState.COMPLETE,))
    assert len(trained) == 3  # the promoted two count towards n_trials, then one sampled
    assert [t.params["train.lr"] for t in trained[:2]] == [0.03, 0.01]
    # a finished study has no room: setting up again (say, promote raised) queues nothing
    # that would wait forever
    assert promote(Tuner(study).load(), study, Tuner(study).space, 3)["promoted"] == 0
    for t in trained[:2]:
        assert t.user_attrs["promoted"]
        cfg = json.loads((Path(t.user_attrs["run_dir"]) / "config.json").read_text())
        assert cfg["train"]["epochs"] == 1 and cfg["train"]["lr"] == t.params["train.lr"]


def _scripted_clock(monkeypatch, times: list[float]) -> None:
    """The worker's clock reads ``times`` in turn, then stays at the last one. It reads it
    once when it starts, once before each trial it may start, and before and after each
    trial it trains."""
    it = iter(times)
    last = [times[-1]]

    def now() -> float:
        last[0] = next(it, last[0])
        return float(last[0])

    monkeypatch.setattr("hpsweep.tuning.worker._now", now)


def test_a_worker_starts_no_trial_after_optuna_minutes(tmp_path, monkeypatch):
    study = make_study(tmp_path, optuna={"n_trials": 50, "n_workers": 1, "minutes": 1})
    # start at 0 (deadline 60); trial 1 from 0 to 10; at 20, a 10-s trial still fits: trial
    # 2 from 20 to 30; at 70 the deadline has passed
    _scripted_clock(monkeypatch, [0, 0, 0, 10, 20, 20, 30, 70])
    info = run_worker(study, 0, threads=1)
    assert info["stopped_by"] == "optuna.minutes"
    assert info["counts"]["finished"] == 2 and info["counts"]["running"] == 0
    assert len(info["trials_run"]) == 2


def test_a_worker_starts_no_trial_it_would_not_finish_within_optuna_minutes(tmp_path,
                                                                            monkeypatch):
    """The budget's plan counts on Optuna's stage ending after optuna.minutes: a trial
    started with less left than this worker's trials take would end past it."""
    study = make_study(tmp_path, optuna={"n_trials": 50, "n_workers": 1, "minutes": 1})
    # start at 0 (deadline 60); trial 1 from 0 to 40; at 45, 15 s are left for a trial
    # of 40: none starts (before, one did, and ended at 85)
    _scripted_clock(monkeypatch, [0, 0, 0, 40, 45])
    info = run_worker(study, 0, threads=1)
    assert info["stopped_by"] == "optuna.minutes"
    assert info["counts"]["finished"] == 1 and len(info["trials_run"]) == 1


# -- counting ---------------------------------------------------------------------------------

def test_admission_never_overshoots_racing_claims():
    s = optuna.create_study(direction="maximize")
    s.add_trial(optuna.trial.create_trial(value=0.9, user_attrs={"warm_start": True}))
    t1 = s.ask()
    s.tell(t1, 0.5)  # one trained trial finished
    a, b, c = s.ask(), s.ask(), s.ask()  # three workers race for the 2 slots left of 3
    assert admitted(s, a.number, 3) and admitted(s, b.number, 3)
    assert admitted(s, c.number, 3) is False  # whatever order the checks run in
    assert admitted(s, b.number, 3) and admitted(s, a.number, 3)
    s.tell(c, state=TrialState.FAIL)  # the surplus claim
    d = s.ask()
    assert admitted(s, d.number, 3) is False  # a and b still hold the slots
    s.tell(d, state=TrialState.FAIL)
    s.tell(a, state=TrialState.FAIL)  # a's worker died: its slot frees up
    e = s.ask()
    assert admitted(s, e.number, 3)
    s.tell(b, 0.6)
    s.tell(e, 0.7)
    assert trial_counts(s)["finished"] == 3


def test_a_surplus_claim_still_records_its_worker(tmp_path):
    # Racing workers can claim a trial past n_trials; that claim is failed, and its worker
    # attr must still say who claimed it (a 4-worker CI run once found it missing).
    tuner = Tuner(make_study(tmp_path, optuna={"n_trials": 1}))
    s = optuna.create_study(direction="maximize")
    s.tell(s.ask(), 0.5)
    late = s.ask()
    with pytest.raises(_Surplus):
        Objective(tuner, data=None, worker=3)(late)
    assert s.trials[late.number].user_attrs == {"worker": 3, "surplus": True}


def test_stratified_folds_partition_and_balance():
    y = np.array([0] * 10 + [1] * 7 + [2] * 5)
    folds = stratified_folds(y, 3, seed=0)
    assert np.array_equal(np.sort(np.concatenate(folds)), np.arange(len(y)))
    assert sorted(len(f) for f in folds) == [7, 7, 8]
    for f in folds:
        counts = np.bincount(y[f], minlength=3)
        assert (counts >= [3, 2, 1]).all() and (counts <= [4, 3, 2]).all()
    assert stratified_folds(y, 3, seed=0)[1].tolist() == folds[1].tolist()
    assert stratified_folds(y, 3, seed=1)[1].tolist() != folds[1].tolist()


# -- pruning, cross-validation, samplers (one in-process worker) -------------------------------

class _PruneAfterFirstEpoch(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return bool(trial.intermediate_values)


def test_pruned_trials_count_as_finished_and_stop_training(tmp_path, monkeypatch):
    study = make_study(tmp_path, optuna={"n_trials": 2, "epochs": 3, "n_workers": 1})
    monkeypatch.setattr(Tuner, "pruner", lambda self: _PruneAfterFirstEpoch())
    info = run_worker(study, 0, threads=1)
    assert info["counts"]["pruned"] == 2 and info["counts"]["finished"] == 2
    tuner = Tuner(study)
    for t in tuner.load().trials:
        assert t.state == TrialState.PRUNED and list(t.intermediate_values) == [1]
        metrics = json.loads((tuner.trial_dir(t.number) / "metrics.json").read_text())
        assert metrics["status"] == "pruned" and metrics["epochs_run"] == 1


def test_a_trial_failed_as_stale_while_training_is_dropped_not_fatal(tmp_path, monkeypatch):
    # An overloaded worker misses its heartbeats; another worker fails its trial as
    # stale meanwhile. Telling that trial's result must not crash this worker.
    import hpsweep.tuning.objective as objective

    study = make_study(tmp_path, optuna={"n_trials": 2, "n_workers": 1})
    real = objective._train
    failed: list[int] = []

    def train_then_lose_the_trial(*args, **kwargs):
        metrics = real(*args, **kwargs)
        if not failed:
            ostudy = Tuner(study).load()
            running = [t for t in ostudy.trials if t.state == TrialState.RUNNING]
            ostudy._storage.set_trial_state_values(running[0]._trial_id, TrialState.FAIL)
            failed.append(running[0].number)
        return metrics

    monkeypatch.setattr(objective, "_train", train_then_lose_the_trial)
    info = run_worker(study, 0, threads=1)
    assert failed and failed[0] not in info["trials_run"]
    assert info["counts"]["finished"] == 2 and len(info["trials_run"]) == 2


def test_invalid_combinations_fail_and_do_not_count(tmp_path):
    # each value is valid alone (params validation probes them one at a time);
    # adam + nesterov together is not
    space = {"train.optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
             "train.nesterov": {"type": "categorical", "choices": [True, False]}}
    study = make_study(tmp_path, train={"optimizer": "sgd"},
                       optuna={"n_trials": 3, "n_workers": 1, "space": space, "seed": 5})
    info = run_worker(study, 0, threads=1)
    assert info["counts"]["finished"] == 3 and info["counts"]["invalid"] >= 1
    for t in Tuner(study).load().trials:
        bad = t.params["train.optimizer"] == "adam" and t.params["train.nesterov"]
        assert (t.state == TrialState.FAIL) == bad
        assert ("nesterov" in t.user_attrs.get("invalid", "")) == bad


def test_cross_validation_objective_is_the_mean_over_folds(tmp_path):
    study = make_study(tmp_path, optuna={"n_trials": 1, "n_workers": 1, "cv_folds": 2,
                                         "pruner": "median"})
    run_worker(study, 0, threads=1)
    tuner = Tuner(study)
    (t,) = tuner.load().trials
    folds = t.user_attrs["fold_val_acc"]
    assert len(folds) == 2 and t.value == pytest.approx(sum(folds) / 2)
    assert sorted(t.intermediate_values) == [1, 2]  # step = fold * epochs + epoch
    for f in range(2):
        m = json.loads((tuner.trial_dir(0) / f"fold_{f}" / "metrics.json").read_text())
        assert m["best_val_acc"] == pytest.approx(folds[f])
        assert m["provenance"]["data_checksum"] != load_prepared(study.paths.prepared).checksum


def test_nsga2_is_multi_objective_with_a_pareto_front(tmp_path):
    study = make_study(tmp_path, optuna={"n_trials": 3, "n_workers": 1, "sampler": "nsga2",
                                         "pruner": "median"})
    run_worker(study, 0, threads=1)
    tuner = Tuner(study)
    ostudy = tuner.load()
    assert len(ostudy.directions) == 2
    for t in ostudy.trials:
        assert t.values[1] == t.user_attrs["n_params"]
    best = collect(study)
    assert set(best["values"]) == {"accuracy", "n_params"}
    assert figure_path(tuner.figures_dir, "pareto").is_file()


@pytest.mark.parametrize("sampler", ["tpe", "random", "gp", "nsga2"])
def test_samplers_and_pruners_build(tmp_path, sampler):
    for pruner in ("median", "successive_halving", "hyperband", "none"):
        study = make_study(tmp_path / f"{sampler}-{pruner}",
                           optuna={"sampler": sampler, "pruner": pruner})
        tuner = Tuner(study)
        tuner.validate()
        assert tuner.sampler(0) is not None and tuner.pruner() is not None


def test_multi_fidelity_pruners_run_from_the_sweeps_epochs_to_the_trials(tmp_path):
    study = make_study(tmp_path / "hb", train={"epochs": 3},
                       optuna={"pruner": "hyperband", "epochs": 12})
    hb = Tuner(study).pruner()
    assert (hb._min_resource, hb._max_resource) == (3, 12)
    sh = Tuner(make_study(tmp_path / "sh", train={"epochs": 3},
                          optuna={"pruner": "successive_halving", "epochs": 12})).pruner()
    assert sh._min_resource == 3
    # with folds a trial reports folds x epochs steps; short trials start at their length
    folds = Tuner(make_study(tmp_path / "f", train={"epochs": 8},
                             optuna={"pruner": "hyperband", "epochs": 4, "cv_folds": 2})).pruner()
    assert (folds._min_resource, folds._max_resource) == (4, 8)


def test_the_median_pruner_waits_for_five_trials_beyond_the_promoted(tmp_path):
    """The promoted trials are the sweeps' best: a median over them and two sampled trials
    would prune most new configurations in their first epochs (tuning.algorithms)."""
    study = make_study(tmp_path / "m", optuna={"pruner": "median", "epochs": 6, "promote": 3})
    ostudy = optuna.create_study(direction="maximize", pruner=Tuner(study).pruner())
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}

    def finished(acc: float) -> None:
        ostudy.add_trial(optuna.trial.create_trial(
            params={"x": 0.5}, distributions=dist, value=acc,
            intermediate_values={e: acc for e in range(1, 7)}))

    def slow_start_is_pruned() -> bool:
        trial = ostudy.ask()
        trial.report(0.5, 4)  # past the warm-up (a third of 6 epochs), far below the others
        pruned = trial.should_prune()
        ostudy.tell(trial, state=optuna.trial.TrialState.PRUNED if pruned else
                    optuna.trial.TrialState.FAIL)
        return pruned

    for acc in (0.91, 0.90, 0.90, 0.80, 0.80):  # 3 promoted, 2 sampled
        finished(acc)
    assert not slow_start_is_pruned()
    for acc in (0.80, 0.80, 0.80):  # now 5 beyond the 3 promoted
        finished(acc)
    assert slow_start_is_pruned()
    # without promotion it starts after 5
    plain = make_study(tmp_path / "p", optuna={"pruner": "median", "epochs": 6, "promote": 0})
    assert Tuner(plain).pruner()._n_startup_trials == 5
    assert Tuner(study).pruner()._n_startup_trials == 8


def test_wilcoxon_needs_folds_and_cmaes_its_package(tmp_path):
    study = make_study(tmp_path / "w", optuna={"pruner": "wilcoxon"})
    with pytest.raises(ParamsError, match="cv_folds >= 2"):
        Tuner(study).validate()
    make_study(tmp_path / "w2", optuna={"pruner": "wilcoxon", "cv_folds": 2})
    try:
        import cmaes  # noqa: F401
    except ImportError:
        with pytest.raises(ParamsError, match="needs the `cmaes` package"):
            Tuner(make_study(tmp_path / "c", optuna={"sampler": "cmaes"})).validate()


# -- workers on real storages -------------------------------------------------------------------

def _check_exact(study, n_trials):
    tuner = Tuner(study)
    ostudy = tuner.load()
    c = trial_counts(ostudy)
    assert c["finished"] == n_trials, c
    assert c["running"] == 0 and c["waiting"] == 0, c
    for t in ostudy.trials:
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            run_dir = tuner.trial_dir(t.number)
            cfg = json.loads((run_dir / "config.json").read_text())
            assert cfg["trial"] == t.number and cfg["train"]["epochs"] == 1
            metrics = json.loads((run_dir / "metrics.json").read_text())
            assert metrics["best_val_acc"] == pytest.approx(t.value)
    return ostudy, c


@pytest.fixture(scope="module")
def sqlite_study(tmp_path_factory):
    """Four worker processes on the default SQLite storage (racing on one file)."""
    study = make_study(tmp_path_factory.mktemp("sqlite"),
                       optuna={"n_trials": 9, "n_workers": 4})
    setup_study(study)
    # A long grace: under load a busy worker's heartbeat can lag; retry is tested elsewhere.
    env = worker_env(HPSWEEP_OPTUNA_GRACE_S="60")
    procs = [start_worker(study, i, env) for i in range(4)]
    wait_all(procs)
    return study


def test_four_workers_on_sqlite_finish_exactly_n_trials(sqlite_study):
    ostudy, counts = _check_exact(sqlite_study, 9)
    tuner = Tuner(sqlite_study)
    markers = [json.loads(tuner.worker_marker(i).read_text()) for i in range(4)]
    ran = sorted(n for m in markers for n in m["trials_run"])
    finished = sorted(t.number for t in ostudy.trials if t.state == TrialState.COMPLETE)
    assert ran == finished  # every finished trial was run by exactly one worker
    assert "tiny.db" in markers[0]["storage"]


def test_collect_writes_table_best_params_and_figures(sqlite_study):
    tuner = Tuner(sqlite_study)
    best = collect(sqlite_study)
    table = pd.read_csv(tuner.trials_csv)
    done = table[table.state == "COMPLETE"]
    assert len(done) == 9 and {"value", "params_train.lr", "params_model.width"} <= set(table)
    saved = json.loads(tuner.best_params_path.read_text())
    assert saved["value"] == pytest.approx(done.value.max())
    assert saved["trial_number"] in set(done.number[done.value == done.value.max()])
    assert set(saved["overrides"]) == {"train.lr", "model.width", "train.epochs"}
    assert saved["overrides"]["train.epochs"] == 1
    assert best["config"]["train"]["lr"] == saved["overrides"]["train.lr"]
    for path in tuner.figure_paths():
        assert path.is_file() and path.stat().st_size > 1000, path
    assert best["figures"]["history"] == "ok" and best["figures"]["slice"] == "ok"


@pytest.mark.postgres
def test_four_workers_on_postgres(tmp_path, postgres_url):  # noqa: F811
    # The URL comes from the environment, as credentials would.
    study = make_study(tmp_path, optuna={"n_trials": 7, "n_workers": 4,
                                         "storage": "${HPSWEEP_TEST_PG}"})
    env = worker_env(HPSWEEP_TEST_PG=postgres_url, HPSWEEP_OPTUNA_GRACE_S="60")
    os.environ["HPSWEEP_TEST_PG"] = postgres_url
    try:
        assert Tuner(study).url.startswith("postgresql+psycopg2://")
        setup_study(study)
        procs = [start_worker(study, i, env) for i in range(4)]
        wait_all(procs)
        ostudy, _ = _check_exact(study, 7)
        assert {t.user_attrs["worker"] for t in ostudy.trials} <= {0, 1, 2, 3}
    finally:
        os.environ.pop("HPSWEEP_TEST_PG", None)


# Trains normally but hangs in epoch 2 (after epoch 1's checkpoint), after writing a flag
# file, so the test can SIGKILL it mid-trial.
HANGING_WORKER = """
import pathlib, sys, time
import hpsweep.tuning.objective as objective
from hpsweep.core.study import Study
from hpsweep.tuning.worker import run_worker

real = objective._train
def hanging(*args, on_epoch, **kwargs):
    def cb(epoch, acc):
        on_epoch(epoch, acc)
        if epoch == 2:
            pathlib.Path(sys.argv[2], "hung").write_text("epoch 2")
            time.sleep(600)
    return real(*args, on_epoch=cb, **kwargs)
objective._train = hanging
run_worker(Study.load(sys.argv[1], root=sys.argv[2]), int(sys.argv[3]), threads=1)
"""


def test_killed_worker_trial_is_retried_and_resumed(tmp_path):
    study = make_study(tmp_path, optuna={"n_trials": 2, "epochs": 3})
    setup_study(study)
    env = worker_env()
    victim = start_worker(study, 0, env, code=HANGING_WORKER)
    kill_when(victim, tmp_path / "hung", "the worker never reached epoch 2")
    tuner = Tuner(study)
    running = [t for t in tuner.load().trials if t.state == TrialState.RUNNING]
    assert len(running) == 1
    killed = running[0]

    wait_all([start_worker(study, 1, env)])  # the rerun

    ostudy = tuner.load()
    c = trial_counts(ostudy)
    assert c["finished"] == 2 and c["running"] == 0 and c["waiting"] == 0, c
    assert ostudy.trials[killed.number].state == TrialState.FAIL
    retry = [t for t in ostudy.trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == killed.params
    # the retry trained in the killed trial's directory, resuming its checkpoint
    assert retry[0].user_attrs["run_dir"] == str(tuner.trial_dir(killed.number))
    metrics = json.loads((tuner.trial_dir(killed.number) / "metrics.json").read_text())
    assert metrics["provenance"]["resumed"] is True and metrics["epochs_run"] == 3
    assert sorted(retry[0].intermediate_values) == [1, 2, 3]


# -- the Snakemake rules ------------------------------------------------------------------------

@pytest.mark.slow
def test_snakemake_sweeps_then_optuna_then_final(tmp_path):
    """The project's Snakefile, up to the final model: sweeps -> warm-started study with
    two worker jobs -> collect -> final seeds -> summary; a second run has nothing to do."""
    import subprocess
    import sys
    from pathlib import Path

    from studyfixtures import ROOT

    study = make_study(tmp_path, sweeps={"lr": {"param": "train.lr", "values": [0.003, 0.01]}},
                       optuna={"n_trials": 3, "epochs": 0, "warm_start": True})
    study.paths.manifest.write_text("{}")  # the synthetic data stands in for prepare_data
    # Rule names as targets: everything the study needs up to the final model (no report).
    cmd = [str(Path(sys.executable).parent / "snakemake"), "summarize", "optuna_collect",
           "final_summary", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--cores", "2",
           "--config", f"params={study.params_path}"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=worker_env(), timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    tuner = Tuner(study)
    table = pd.read_csv(tuner.trials_csv)
    assert table.warm_start.sum() == 2  # baseline (lr 0.01) and lr 0.003, never retrained
    trained = table[~table.warm_start]
    assert trained.state.isin(["COMPLETE", "PRUNED"]).sum() == 3
    assert not (table.state == "RUNNING").any()
    summary = json.loads((tmp_path / "results/final/summary.json").read_text())
    assert summary["n_seeds"] == 2 and summary["test_acc_mean"] > 0.25
    assert (tmp_path / "results/final/model.pt").is_file()
    for path in tuner.figure_paths():
        assert path.is_file()
    assert (tmp_path / "results/logs/optuna/worker_1.log").is_file()
    again = subprocess.run([*cmd, "-n"], capture_output=True, text=True, env=worker_env())
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr
