"""Packs: members trained as one stacked model are the runs they would be alone.

The synthetic task of test_train.py (512 train images, 1x28x28), real files, real
checkpoints. Equality with training alone is checked in fp32 on one thread (as the
engine's golden numbers are): there a member's numbers differ from the same run trained
alone only by the batched matmul's rounding.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from synthdata import write_data

from hpsweep.core.packs import pack_key
from hpsweep.core.schema import Params, resolve_run
from hpsweep.training.engine import train_run
from hpsweep.training.pack_trainer import PackMember, check_packable, train_pack

# How far a member's per-epoch losses may be from the run trained alone (relative), and
# its accuracies (absolute: one validation image of the 128 is 0.0078).
LOSS_RTOL = 1e-4
ACC_ATOL = 1 / 128 + 1e-9
FIELDS = ("train_loss", "val_loss")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_data(tmp_path_factory.mktemp("data") / "synthetic.pt")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cfg(**overrides) -> dict:
    small = {"model.arch": "mlp", "model.depth": 2, "model.width": 32, "model.dropout": 0.2,
             "train.epochs": 3, "train.batch_size": 64, "train.lr": 3e-3,
             "train.eval_batch_size": 128, "train.bf16": "off", "train.augment": "shift",
             "train.scheduler": "onecycle", "train.optimizer": "adamw"}
    out = resolve_run(Params().run_base(), {**small, **overrides})
    out["device"] = "cpu"
    return out


# Members that differ in every kind of member-level key: seed, lr, weight decay,
# dropout (one without: no Dropout module at all), label smoothing, optimizer and
# schedule, augmentation, epochs.
MEMBERS = [
    ({}, 0),
    ({"train.lr": 1e-2, "train.weight_decay": 5e-2}, 1),
    ({"model.dropout": 0.0, "train.label_smoothing": 0.0, "train.augment": "none"}, 2),
    ({"train.optimizer": "sgd", "train.lr": 0.05, "train.scheduler": "cosine",
      "train.grad_clip": 1.0, "train.epochs": 2}, 3),
]


def alone_and_packed(data, tmp_path, members=MEMBERS, **kw):
    alone = [train_run(cfg(**o), data, tmp_path / f"alone{i}", seed=s, progress=False, **kw)
             for i, (o, s) in enumerate(members)]
    pack = [PackMember(cfg(**o), s, tmp_path / f"pack{i}") for i, (o, s) in enumerate(members)]
    return alone, pack


def assert_same_run(a: dict, b: dict) -> None:
    assert a["status"] == b["status"] and a["epochs_run"] == b["epochs_run"]
    assert a["best_epoch"] == b["best_epoch"] and a["global_steps"] == b["global_steps"]
    for ra, rb in zip(a["history"], b["history"], strict=True):
        for f in FIELDS:
            assert rb[f] == pytest.approx(ra[f], rel=LOSS_RTOL), (f, ra, rb)
        assert abs(ra["val_acc"] - rb["val_acc"]) <= ACC_ATOL
        assert ra["lr"] == pytest.approx(rb["lr"], rel=1e-12)


def test_a_member_trains_as_it_would_alone(data, tmp_path):
    alone, pack = alone_and_packed(data, tmp_path, evaluate_test=True)
    packed = train_pack(pack, data, evaluate_test=True, progress=False)
    for a, b, pm in zip(alone, packed, pack, strict=True):
        assert_same_run(a, b)
        assert b["test_acc"] == pytest.approx(a["test_acc"], abs=0.02)
        assert b["provenance"]["pack"] == {"members": len(pack), "kernel": "bmm"}
        assert b["provenance"]["run_config"] == pm.run_cfg and b["seed"] == pm.seed
        # today's files, each member in its own directory
        assert {"metrics.json", "best.pt", "confusion.csv", "tb"} <= {
            p.name for p in pm.out_dir.iterdir()}
        assert not (pm.out_dir / "last.pt").exists()  # complete: the resume state is gone
        assert json.loads((pm.out_dir / "metrics.json").read_text())["status"] == "ok"
    # different members really trained differently
    assert len({round(b["history"][-1]["train_loss"], 6) for b in packed}) == len(pack)


def test_the_same_seed_in_two_packs_gives_the_same_numbers(data, tmp_path):
    """Each member's random streams are its own: its neighbours do not change them."""
    one = train_pack([PackMember(cfg(), 5, tmp_path / "a")], data, progress=False)[0]
    with_others = train_pack([PackMember(cfg(**{"train.lr": 1e-2}), 1, tmp_path / "b"),
                              PackMember(cfg(), 5, tmp_path / "c")], data, progress=False)[1]
    # a neighbour's draws in this member's stream would move its loss by ~1e-2
    assert [r["train_loss"] for r in with_others["history"]] == pytest.approx(
        [r["train_loss"] for r in one["history"]], rel=LOSS_RTOL)


def test_a_killed_pack_resumes_every_member_from_its_last_checkpoint(data, tmp_path):
    members = [PackMember(cfg(), 0, tmp_path / "m0"),
               PackMember(cfg(**{"train.lr": 1e-2}), 1, tmp_path / "m1")]
    whole = train_pack([PackMember(m.run_cfg, m.seed, tmp_path / f"whole{i}")
                        for i, m in enumerate(members)], data, progress=False)
    first = train_pack(members, data, progress=False, max_epochs_this_call=1)
    assert [r["status"] for r in first] == ["incomplete", "incomplete"]
    for m in members:  # as after kill -9 at an epoch's end: last.pt, no metrics.json
        assert (m.out_dir / "last.pt").is_file() and not (m.out_dir / "metrics.json").exists()
    # one member's last.pt a step further, as if killed between two members' saves
    train_run(members[1].run_cfg, data, members[1].out_dir, seed=1, progress=False,
              max_epochs_this_call=1)
    resumed = train_pack(members, data, progress=False)
    for w, r in zip(whole, resumed, strict=True):
        assert r["provenance"]["resumed"] is True
        assert [h["train_loss"] for h in r["history"]] == pytest.approx(
            [h["train_loss"] for h in w["history"]], rel=LOSS_RTOL)


# Trains a pack but hangs in the middle of its second epoch (after the first epoch's
# last.pt of every member), after writing a flag file, so the test can SIGKILL it there.
HANGING_PACK = """
import json, pathlib, sys, time
import torch
import hpsweep.training.pack_trainer as pt
from hpsweep.data.prepared import load_prepared

torch.set_num_threads(1)
real, calls = pt._Stacked.hand_grads, []
def hanging(self):
    real(self)
    if self.group[0].state.epoch == 1:  # in epoch 2
        calls.append(1)
        if len(calls) == 3:
            pathlib.Path(sys.argv[3], "hung").write_text("epoch 2, step 3")
            time.sleep(600)
pt._Stacked.hand_grads = hanging
members = [pt.PackMember(m["cfg"], m["seed"], pathlib.Path(m["dir"]))
           for m in json.loads(pathlib.Path(sys.argv[2]).read_text())]
pt.train_pack(members, load_prepared(sys.argv[1]), progress=False)
"""


def test_kill_9_mid_epoch_resumes_every_member(data, tmp_path):
    members = [PackMember(cfg(), 0, tmp_path / "m0"),
               PackMember(cfg(**{"train.lr": 1e-2}), 1, tmp_path / "m1")]
    spec = tmp_path / "members.json"
    spec.write_text(json.dumps([{"cfg": m.run_cfg, "seed": m.seed, "dir": str(m.out_dir)}
                                for m in members]))
    data_path = tmp_path / "data.pt"
    from hpsweep.data.prepared import save_prepared
    save_prepared(data_path, {f"{xy}_{s}": getattr(data, f"{xy}_{s}") for s in
                              ("train", "val", "test") for xy in "xy"}, data.classes,
                  data.dataset)
    victim = subprocess.Popen([sys.executable, "-c", HANGING_PACK, str(data_path), str(spec),
                               str(tmp_path)], env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                   sys.path)}, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "hung").exists():
        assert victim.poll() is None, victim.stderr.read()
        assert time.time() < deadline, "the pack never reached epoch 2"
        time.sleep(0.1)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    for m in members:  # killed mid-epoch: each member's epoch-1 last.pt, no metrics.json
        assert (m.out_dir / "last.pt").is_file() and not (m.out_dir / "metrics.json").exists()
    resumed = train_pack(members, data, progress=False)
    whole = train_pack([PackMember(m.run_cfg, m.seed, tmp_path / f"whole{i}")
                        for i, m in enumerate(members)], data, progress=False)
    for w, r in zip(whole, resumed, strict=True):
        assert r["status"] == "ok" and r["provenance"]["resumed"] is True
        assert_same_run(w, r)


def test_a_failed_pack_loses_no_finished_member(data, tmp_path, monkeypatch):
    """A member that finished before its pack's job failed keeps its last.pt: Snakemake
    deletes every output of a failed job, and the rerun completes the member again from
    last.pt without training it."""
    from hpsweep.training import pack_trainer

    short, long = PackMember(cfg(**{"train.epochs": 1}), 0, tmp_path / "short"), \
        PackMember(cfg(), 1, tmp_path / "long")
    real, trained = pack_trainer._packed_epoch, []

    def recorded(group, dd):  # the job dies in the pack's second epoch
        trained.append([m.run.out_dir.name for m in group])
        if len(trained) == 2:
            raise RuntimeError("the job dies (out of memory, a node lost)")
        return real(group, dd)

    monkeypatch.setattr(pack_trainer, "_packed_epoch", recorded)
    with pytest.raises(RuntimeError, match="the job dies"):
        train_pack([short, long], data, progress=False)
    finished = json.loads((short.out_dir / "metrics.json").read_text())
    assert (short.out_dir / "last.pt").is_file()
    (short.out_dir / "metrics.json").unlink()  # what Snakemake's cleanup does
    again = train_pack([short, long], data, progress=False)
    # the rerun trains "long" alone from its epoch 1 (epochs 2 and 3); "short" not at all
    assert trained == [["short", "long"], ["long"], ["long"], ["long"]]
    assert again[0]["history"] == finished["history"] and again[1]["status"] == "ok"
    assert not (short.out_dir / "last.pt").exists() and not (long.out_dir / "last.pt").exists()


def test_a_completed_member_is_not_retrained(data, tmp_path):
    done = train_run(cfg(), data, tmp_path / "done", seed=0, progress=False)
    before = (tmp_path / "done" / "metrics.json").stat().st_mtime_ns
    out = train_pack([PackMember(cfg(), 0, tmp_path / "done"),
                      PackMember(cfg(), 1, tmp_path / "new")], data, progress=False)
    assert out[0] == json.loads(json.dumps(done))
    assert (tmp_path / "done" / "metrics.json").stat().st_mtime_ns == before
    assert out[1]["status"] == "ok"


def test_a_diverged_member_stops_alone(data, tmp_path):
    plain = {"model.batch_norm": False}  # without BatchNorm, SGD at lr 10 blows up at once
    wild = {**plain, "train.optimizer": "sgd", "train.lr": 10.0, "train.scheduler": "none",
            "train.label_smoothing": 0.0, "train.log_every_steps": 2}
    out = train_pack([PackMember(cfg(**wild), 0, tmp_path / "wild"),
                      PackMember(cfg(**plain), 0, tmp_path / "calm")], data, progress=False)
    assert out[0]["status"] == "diverged" and out[0]["epochs_run"] < 3
    assert out[1]["status"] == "ok" and out[1]["epochs_run"] == 3
    alone = train_run(cfg(**wild), data, tmp_path / "wild_alone", seed=0, progress=False)
    assert alone["diverged_at"] == out[0]["diverged_at"]
    calm = train_run(cfg(**plain), data, tmp_path / "calm_alone", seed=0, progress=False)
    assert_same_run(calm, out[1])


def test_a_pruned_member_stops_alone(data, tmp_path):
    """An Optuna trial's on_epoch raising Pruned stops its member, as it stops a run
    alone; the others train on with the numbers they get alone."""
    from hpsweep.training.engine import Pruned

    seen: dict[str, list[int]] = {"pruned": [], "kept": []}

    def reporter(name: str, prune_at: int | None):
        def on_epoch(epoch: int, val_acc: float) -> None:
            seen[name].append(epoch)
            if epoch == prune_at:
                raise Pruned(f"{name} at {epoch}")
        return on_epoch

    out = train_pack([PackMember(cfg(), 0, tmp_path / "pruned", reporter("pruned", 1)),
                      PackMember(cfg(), 1, tmp_path / "kept", reporter("kept", None))],
                     data, progress=False)
    assert out[0]["status"] == "pruned" and out[0]["epochs_run"] == 1
    assert out[1]["status"] == "ok" and out[1]["epochs_run"] == 3
    assert seen == {"pruned": [1], "kept": [1, 2, 3]}
    assert json.loads((tmp_path / "pruned" / "metrics.json").read_text())["status"] == "pruned"
    kept = train_run(cfg(), data, tmp_path / "kept_alone", seed=1, progress=False)
    assert_same_run(kept, out[1])


def test_only_member_level_keys_may_differ(tmp_path):
    base = cfg()
    assert pack_key(base) == pack_key(cfg(**{"train.lr": 0.1, "model.dropout": 0.5,
                                             "train.optimizer": "sgd", "train.epochs": 9}))
    for shape in ({"model.width": 64}, {"train.batch_size": 32}, {"train.bf16": "on"},
                  {"model.activation": "gelu"}):
        with pytest.raises(ValueError, match="cannot share a pack"):
            check_packable([PackMember(base, 0, tmp_path / "a"),
                            PackMember(cfg(**shape), 0, tmp_path / "b")])
    with pytest.raises(ValueError, match="share a run directory"):
        check_packable([PackMember(base, 0, tmp_path / "a"), PackMember(base, 1, tmp_path / "a")])
    conv = resolve_run(Params().run_base(), {"model.arch": "cnn", "model.channels": [8],
                                             "model.fc": [16]})
    with pytest.raises(ValueError, match="'cnn' cannot train in a pack"):
        check_packable([PackMember(conv, 0, tmp_path / "c")])


def test_a_member_can_finish_alone_what_a_pack_started(data, tmp_path):
    """last.pt is a run's own checkpoint: the engine alone resumes it."""
    m = PackMember(cfg(), 3, tmp_path / "m")
    train_pack([m, PackMember(cfg(), 4, tmp_path / "other")], data, progress=False,
               max_epochs_this_call=1)
    finished = train_run(m.run_cfg, data, m.out_dir, seed=3, progress=False)
    whole = train_run(m.run_cfg, data, tmp_path / "whole", seed=3, progress=False)
    assert finished["provenance"]["resumed"] is True
    assert [h["train_loss"] for h in finished["history"]] == pytest.approx(
        [h["train_loss"] for h in whole["history"]], rel=LOSS_RTOL)
