"""Promoted trials trained as one pack (tuning.trial_pack), on real SQLite storage, the real
pack trainer and real worker processes, on the tiny synthetic study of tunefixtures."""

from __future__ import annotations

import json
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from tunefixtures import (
    fake_complete_run,
    kill_when,
    make_study,
    start_worker,
    wait_all,
    worker_env,
)

from hpsweep.core.study import Study
from hpsweep.tuning.counting import trial_counts
from hpsweep.tuning.tuner import Tuner
from hpsweep.tuning.worker import run_worker, setup_study

optuna.logging.set_verbosity(optuna.logging.WARNING)

# How far a packed trial's numbers may be from the same trial trained alone (the batched
# matmul rounds differently; test_pack_trainer states why): losses relative, validation
# accuracy one image of the 48.
LOSS_RTOL = 1e-4
ACC_ATOL = 1 / 48 + 1e-9

# lr is member-level, so its values share a pack; width is the model's shape, so not.
SWEEPS = {"lr": {"param": "train.lr", "values": [0.003, 0.01, 0.03]},
          "width": {"param": "model.width", "values": [8]}}
SWEEP_ACC = {(0.03, 16): 0.8, (0.01, 8): 0.75, (0.01, 16): 0.7, (0.003, 16): 0.6}


def swept_study(root: Path, pack_size: int, sweeps=SWEEPS, **optuna_keys) -> Study:
    """Sweeps at 2 epochs, done (faked); trials at 3 epochs, the best 3 promoted: lr 0.03
    and the baseline (width 16, one pack group) around width 8 (another shape)."""
    study = make_study(root, study={"pack_size": pack_size}, sweeps=sweeps,
                       optuna={"epochs": 3, "promote": 3, "n_trials": 4, "n_workers": 1,
                               **optuna_keys})
    for m in study.plan.members:
        cfg = study.plan.runs[m.run_id].config
        fake_complete_run(study, m.run_id,
                          SWEEP_ACC[(cfg["train"]["lr"], cfg["model"]["width"])])
    return study


def metrics_of(trial) -> dict:
    return json.loads((Path(trial.user_attrs["run_dir"]) / "metrics.json").read_text())


def test_promoted_trials_of_one_shape_train_as_one_pack(tmp_path):
    study = swept_study(tmp_path / "packed", pack_size=4)
    setup_study(study)
    waiting = Tuner(study).open().get_trials(states=(TrialState.WAITING,))
    # the two of one shape stand together, the best first; width 8 after them
    assert [t.user_attrs["sweep_val_acc"] for t in waiting] == pytest.approx([0.8, 0.7, 0.75])
    groups = [t.user_attrs["pack_group"] for t in waiting]
    assert groups[0] == groups[1] != groups[2]

    info = run_worker(study, 0, threads=1)

    trials = Tuner(study).load().get_trials(states=(TrialState.COMPLETE,))
    assert [t.number for t in trials] == [0, 1, 2, 3] and sorted(info["trials_run"]) == [
        0, 1, 2, 3]
    assert trial_counts(Tuner(study).load())["finished"] == 4
    for t in trials[:2]:  # one pack of two, each trial with its own directory and reports
        m = metrics_of(t)
        assert m["provenance"]["pack"] == {"members": 2, "kernel": "bmm"}
        assert sorted(t.intermediate_values) == [1, 2, 3] and m["epochs_run"] == 3
        assert t.value == t.user_attrs["val_acc"] == m["best_val_acc"]
    assert "pack" not in metrics_of(trials[2])["provenance"]  # another shape: alone
    assert "pack" not in metrics_of(trials[3])["provenance"]  # sampled: alone

    # the same promoted trials in a study without packs: trained alone, the same numbers
    alone_study = swept_study(tmp_path / "alone", pack_size=1)
    setup_study(alone_study)
    assert not any("pack_group" in t.user_attrs for t in Tuner(alone_study).open().trials)
    run_worker(alone_study, 0, threads=1)
    alone = Tuner(alone_study).load().get_trials(states=(TrialState.COMPLETE,))
    by_params = {json.dumps(t.params, sort_keys=True): t for t in alone[:3]}
    for packed in trials[:3]:
        single = by_params[json.dumps(packed.params, sort_keys=True)]
        assert "pack" not in metrics_of(single)["provenance"]
        assert abs(packed.value - single.value) <= ACC_ATOL
        for a, b in zip(metrics_of(single)["history"], metrics_of(packed)["history"],
                        strict=True):
            assert b["train_loss"] == pytest.approx(a["train_loss"], rel=LOSS_RTOL)
            assert b["val_loss"] == pytest.approx(a["val_loss"], rel=LOSS_RTOL)


def test_a_claimed_trial_that_cannot_join_keeps_its_heartbeat_while_it_trains_alone(
        tmp_path, monkeypatch):
    """A trial claimed for a pack that turns out not to fit trains alone after it, and its
    heartbeat beats all the while (else another worker would fail it as stale and train
    it a second time)."""
    from contextlib import contextmanager

    from hpsweep.tuning import trial_pack
    from hpsweep.tuning.objective import Objective

    study = swept_study(tmp_path, pack_size=4, sweeps={"lr": SWEEPS["lr"]}, promote=2,
                        n_trials=2)
    setup_study(study)
    beaten: dict[str, list] = {}
    real_heartbeats, real_train = trial_pack.heartbeats, Objective.train_folds

    @contextmanager
    def spy(storage, trials):
        beaten["trials"] = trials
        with real_heartbeats(storage, trials):
            yield

    seen: list[bool] = []

    def train_folds(self, trial, spec, run_dir):
        seen.append(trial in beaten["trials"])
        return real_train(self, trial, spec, run_dir)

    monkeypatch.setattr(trial_pack, "heartbeats", spy)
    monkeypatch.setattr(trial_pack, "packable", lambda cfg: False)  # none can join
    monkeypatch.setattr(Objective, "train_folds", train_folds)
    run_worker(study, 0, threads=1)
    assert seen == [True, True]
    assert trial_counts(Tuner(study).load())["complete"] == 2


# A worker whose packed trials hang in their second epoch (after their first last.pt).
HANGING_PACK_WORKER = """
import dataclasses, pathlib, sys, time
from hpsweep.core.study import Study
from hpsweep.training import pack_trainer
from hpsweep.tuning.worker import run_worker
real = pack_trainer.train_pack
def hanging(members, *args, **kwargs):
    def wrap(on_epoch):
        def cb(epoch, acc):
            on_epoch(epoch, acc)
            if epoch == 2:
                pathlib.Path(sys.argv[2], "hung").write_text("epoch 2")
                time.sleep(600)
        return cb
    members = [dataclasses.replace(m, on_epoch=wrap(m.on_epoch)) for m in members]
    return real(members, *args, **kwargs)
pack_trainer.train_pack = hanging
run_worker(Study.load(sys.argv[1], root=sys.argv[2]), int(sys.argv[3]), threads=1)
"""


def test_a_killed_pack_of_trials_is_retried_as_a_pack_and_resumed(tmp_path):
    """kill -9 of a worker training promoted trials as a pack: their heartbeats stop, so
    the next worker fails them as stale, and their retries, queued together, train as a
    pack again from the killed trials' checkpoints. (Without this process's heartbeats
    they would never be stale: the rerun would wait for them for ever.)"""
    study = swept_study(tmp_path, pack_size=4, sweeps={"lr": SWEEPS["lr"]}, promote=2,
                        n_trials=2)
    setup_study(study)
    env = worker_env()
    victim = start_worker(study, 0, env, code=HANGING_PACK_WORKER)
    kill_when(victim, tmp_path / "hung", "the pack never reached epoch 2")
    tuner = Tuner(study)
    killed = [t for t in tuner.load().trials if t.state == TrialState.RUNNING]
    assert [t.number for t in killed] == [0, 1]

    # The rerun, once both are stale (grace 3 s), as a rerun after a kill comes. (A worker
    # polling beside it may find one stale a few ms before the other: those train apart.)
    time.sleep(4)
    wait_all([start_worker(study, 1, env)])

    ostudy = tuner.load()
    c = trial_counts(ostudy)
    assert c["finished"] == 2 and c["running"] == 0 and c["waiting"] == 0, c
    for k in killed:
        assert ostudy.trials[k.number].state == TrialState.FAIL
        retry = [t for t in ostudy.trials if t.system_attrs.get("failed_trial") == k.number]
        assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
        assert retry[0].params == k.params
        # in the killed trial's directory, from its checkpoint, in a pack again
        assert retry[0].user_attrs["run_dir"] == str(tuner.trial_dir(k.number))
        m = metrics_of(retry[0])
        assert m["provenance"]["resumed"] is True and m["epochs_run"] == 3
        assert m["provenance"]["pack"]["members"] == 2
