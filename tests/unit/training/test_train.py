"""The training engine on a tiny learnable synthetic task (512 train images, 1x28x28).

Real files throughout: PreparedData written with save_prepared and read back, real
TensorBoard event files read with TensorBoard's EventAccumulator, real checkpoints.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import pytest
import torch
from synthdata import CLASSES, write_data

from hpsweep.core.ids import code_version
from hpsweep.core.schema import Params, resolve_run
from hpsweep.training import augment
from hpsweep.training.device import DeviceData, bf16_enabled, resolve_device
from hpsweep.training.engine import Pruned, train_run
from hpsweep.training.epoch import plan_batches

METRIC_KEYS = {
    "status", "best_val_acc", "best_val_loss", "best_epoch", "final_val_acc", "final_val_loss",
    "epochs_run", "epoch_time_s", "total_time_s", "samples_per_s", "peak_mem_mb", "n_params",
    "seed", "provenance", "history",
}
PROVENANCE_KEYS = {"run_config", "data_checksum", "data_dataset", "code_version", "torch",
                   "python", "device", "bf16", "threads"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_data(tmp_path_factory.mktemp("data") / "synthetic.pt")


@pytest.fixture(scope="module")
def rgb16(tmp_path_factory):
    return write_data(tmp_path_factory.mktemp("data") / "rgb16.pt", c=3, hw=16, n_train=256)


def run_cfg(**overrides) -> dict:
    """A validated run config: a small MLP on the CPU, overridable by dotted keys."""
    small = {"train.epochs": 2, "train.batch_size": 64, "train.lr": 3e-3,
             "train.eval_batch_size": 100}
    if overrides.get("model.arch", "mlp") == "mlp":
        small |= {"model.arch": "mlp", "model.depth": 1, "model.width": 64}
    cfg = resolve_run(Params().run_base(), {**small, **overrides})
    cfg["device"] = "cpu"
    return cfg


def train(cfg, data, out: Path, **kw):
    return train_run(cfg, data, out, seed=kw.pop("seed", 0), progress=False, **kw)


def read_metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def test_learns_and_writes_everything(data, tmp_path):
    out = tmp_path / "run"
    m = train(run_cfg(**{"train.epochs": 4, "train.optimizer": "adam"}), data, out,
              evaluate_test=True)
    assert m["status"] == "ok"
    assert m["best_val_acc"] >= 0.95 and m["test_acc"] >= 0.95
    on_disk = read_metrics(out)
    assert on_disk == json.loads(json.dumps(m))
    assert METRIC_KEYS | {"test_acc", "test_loss"} <= set(on_disk)
    assert PROVENANCE_KEYS <= set(on_disk["provenance"])
    assert on_disk["provenance"]["data_checksum"] == data.checksum
    assert on_disk["provenance"]["run_config"]["model"]["width"] == 64
    assert on_disk["provenance"]["code_version"] == code_version()
    assert on_disk["epochs_run"] == 4 and len(on_disk["history"]) == 4
    assert on_disk["n_params"] == 784 * 64 + 2 * 64 + 64 * 4 + 4
    assert on_disk["samples_per_s"] > 0 and on_disk["peak_mem_mb"] > 0
    # best.pt loads with weights_only=True (no pickled code); the resume state (last.pt)
    # is dropped once the run is complete.
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["epoch"] == m["best_epoch"] and best["classes"] == CLASSES
    assert not (out / "last.pt").exists()
    # confusion.csv: test split (evaluate_test), rows true, columns predicted.
    rows = list(csv.reader((out / "confusion.csv").open()))
    assert rows[0] == ["true\\pred", *CLASSES]
    counts = [[int(v) for v in r[1:]] for r in rows[1:]]
    assert sum(map(sum, counts)) == len(data.y_test)
    assert sum(counts[i][i] for i in range(4)) / len(data.y_test) == pytest.approx(m["test_acc"])
    assert not list(out.glob(".*tmp*")), "temp files left behind"


def test_event_files_have_expected_tags(data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    train_run(run_cfg(**{"train.epochs": 3, "train.log_every_steps": 2}), data, out, seed=0,
              progress=True)  # the tqdm bar must not get in the way
    assert not [p for p in (out / "tb").iterdir() if p.is_dir()], "hparams in a subdir"
    ea = EventAccumulator(str(out / "tb"))
    ea.Reload()
    scalars = set(ea.Tags()["scalars"])
    for tag in ("train/loss", "train/acc", "val/loss", "val/acc", "lr", "time/epoch_s"):
        assert tag in scalars
        assert [e.step for e in ea.Scalars(tag)] == [1, 2, 3]
    assert [e.step for e in ea.Scalars("train/loss_step")] == list(range(2, 25, 2))
    history = read_metrics(out)["history"]
    assert [e.value for e in ea.Scalars("val/acc")] == pytest.approx(
        [r["val_acc"] for r in history])
    hp = ea.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(hp)
    assert "hparam/best_val_acc" in scalars


@pytest.mark.parametrize("optimizer,extra", [
    ("sgd", {"train.momentum": 0.9, "train.nesterov": True}),
    ("sgd", {"train.momentum": 0.0}),
    ("adam", {}),
    ("adamw", {"train.weight_decay": 0.05}),
    ("rmsprop", {"train.lr": 1e-3}),
])
def test_each_optimizer_runs(data, tmp_path, optimizer, extra):
    m = train(run_cfg(**{"train.optimizer": optimizer, "train.epochs": 1,
                         "train.grad_clip": 1.0, **extra}), data, tmp_path)
    assert m["status"] == "ok" and math.isfinite(m["history"][0]["train_loss"])


@pytest.mark.parametrize("scheduler", ["none", "step", "plateau", "onecycle", "cosine"])
def test_each_scheduler_runs(data, tmp_path, scheduler):
    lr = 1e-2
    m = train(run_cfg(**{"train.scheduler": scheduler, "train.epochs": 3, "train.lr": lr,
                         "train.step_size": 1, "train.gamma": 0.5, "train.plateau_patience": 0,
                         "train.optimizer": "sgd"}), data, tmp_path)
    assert m["status"] == "ok"
    lrs = [r["lr"] for r in m["history"]]  # the lr at the start of each epoch
    if scheduler == "none":
        assert lrs == [lr] * 3
    elif scheduler == "step":
        assert lrs == pytest.approx([lr, lr / 2, lr / 4])
    elif scheduler == "onecycle":
        assert lrs[0] == pytest.approx(lr / 25) and lrs[1] > lrs[0]  # warm-up to the peak
    elif scheduler == "cosine":
        assert lrs[0] == lr and lrs[2] < lrs[1] < lrs[0]
    else:
        assert all(v <= lr for v in lrs)


@pytest.mark.parametrize("aug", ["shift", "shift_rotate", "shift_flip", "crop_flip"])
def test_augmentations_train_a_residual_cnn(rgb16, tmp_path, aug):
    cfg = run_cfg(**{"model.arch": "cnn", "model.channels": [8, 16], "model.residual": True,
                     "model.head": "gap", "model.fc": [16], "train.augment": aug,
                     "train.epochs": 1, "train.label_smoothing": 0.1})
    m = train(cfg, rgb16, tmp_path)
    assert m["status"] == "ok" and m["provenance"]["channels_last"] is True


def test_augment_functions_move_pixels_within_bounds():
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 12, 12)
    x[:, :, 6, 6] = 1.0
    s = augment.shift(x)
    assert s.shape == x.shape
    ys, xs = (s[:, 0] == 1).nonzero()[:, 1:].T
    assert ((ys - 6).abs() <= 2).all() and ((xs - 6).abs() <= 2).all()
    assert len(set(zip(ys.tolist(), xs.tolist(), strict=True))) > 5  # per-sample offsets
    r = augment.shift_rotate(x)
    assert r.shape == x.shape and torch.isfinite(r).all()
    assert torch.allclose(r.sum(dim=(1, 2, 3)), torch.ones(64), atol=0.05)
    img = torch.rand(2, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    assert augment.crop_flip(img).shape == img.shape
    with pytest.raises(ValueError, match="augment"):
        augment.get_augment("mixup")


@pytest.mark.parametrize("aug", ["crop_flip", "shift_flip"])
def test_flips_mirror_about_half(aug):
    torch.manual_seed(1)
    x = torch.linspace(0, 1, 16).expand(200, 1, 16, 16).contiguous()  # increasing along W
    y = augment.get_augment(aug)(x)
    flipped = (y[:, 0, 8, 12] < y[:, 0, 8, 3]).float().mean().item()
    assert 0.3 < flipped < 0.7


def test_the_schema_accepts_exactly_the_trainers_augmentations():
    from hpsweep.core.sections import AUGMENTATIONS
    assert set(AUGMENTATIONS) == set(augment.AUGMENTS)


def test_divergence_stops_with_status(data, tmp_path):
    cfg = run_cfg(**{"train.optimizer": "sgd", "train.lr": 10.0, "train.scheduler": "none",
                     "train.grad_clip": 0.0, "train.epochs": 5, "train.log_every_steps": 2,
                     "model.batch_norm": False, "train.label_smoothing": 0.0})
    m = train(cfg, data, tmp_path)
    assert m["status"] == "diverged"
    assert m["epochs_run"] < 5 and m["diverged_at"]["epoch"] <= 2
    assert read_metrics(tmp_path)["status"] == "diverged"


def test_divergence_with_batchnorm_exploding_loss(data, tmp_path):
    # With BatchNorm the loss explodes (1e3..1e13) without ever becoming NaN.
    cfg = run_cfg(**{"train.optimizer": "sgd", "train.lr": 10.0, "train.scheduler": "none",
                     "train.epochs": 5, "model.width": 512, "train.label_smoothing": 0.0})
    assert train(cfg, data, tmp_path)["status"] == "diverged"


RESUME_CASES = {
    "mlp-onecycle": ("data", {"model.dropout": 0.3, "train.augment": "shift",
                              "train.scheduler": "onecycle", "train.batch_size": 100}),
    "cnn-plateau": ("rgb16", {"model.arch": "cnn", "model.channels": [8, 16],
                              "model.residual": True, "model.fc": [16], "model.dropout": 0.2,
                              "train.augment": "crop_flip", "train.scheduler": "plateau",
                              "train.optimizer": "sgd", "train.nesterov": True,
                              "train.plateau_patience": 0, "train.grad_clip": 1.0}),
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_gives_identical_results(request, tmp_path, case):
    # Dropout, augmentation, schedules: every RNG and every state must be restored.
    fixture, overrides = RESUME_CASES[case]
    data = request.getfixturevalue(fixture)
    cfg = run_cfg(**{"train.epochs": 3, **overrides})
    full = train(cfg, data, tmp_path / "full")
    part = train(cfg, data, tmp_path / "resumed", max_epochs_this_call=2)
    assert part["status"] == "incomplete" and part["epochs_run"] == 2
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    assert torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["epoch"] == 2
    resumed = train(cfg, data, tmp_path / "resumed")
    assert resumed["provenance"]["resumed"] is True and full["provenance"]["resumed"] is False
    assert resumed["epochs_run"] == 3
    for key in ("val_acc", "val_loss", "train_loss", "lr"):
        assert [r[key] for r in resumed["history"]] == [r[key] for r in full["history"]], key
    assert resumed["best_val_acc"] == full["best_val_acc"]
    # Calling again on the finished directory redoes nothing and gives the same result.
    again = train(cfg, data, tmp_path / "resumed")
    assert again["history"] == resumed["history"]


def test_corrupt_checkpoint_restarts(data, tmp_path, caplog):
    cfg = run_cfg()
    train(cfg, data, tmp_path, max_epochs_this_call=1)
    last = tmp_path / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # truncated
    with caplog.at_level(logging.WARNING):
        m = train(cfg, data, tmp_path)
    assert m["status"] == "ok" and m["provenance"]["resumed"] is False
    assert m["epochs_run"] == 2
    assert "unreadable" in caplog.text
    last.write_bytes(b"not a checkpoint")
    assert train(cfg, data, tmp_path)["status"] == "ok"


def test_checkpoint_of_other_run_is_not_resumed(data, tmp_path, caplog):
    train(run_cfg(), data, tmp_path, max_epochs_this_call=1)
    with caplog.at_level(logging.WARNING):
        m = train(run_cfg(**{"train.lr": 1e-3}), data, tmp_path)
    assert m["provenance"]["resumed"] is False and "different run" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        train(run_cfg(), data, tmp_path, seed=1, max_epochs_this_call=1)
        m = train(run_cfg(), data, tmp_path, seed=2)
    assert m["provenance"]["resumed"] is False and "seed" in caplog.text


def test_early_stopping(data, tmp_path):
    # The task saturates at 100 % val accuracy within a few epochs; nothing beats that.
    cfg = run_cfg(**{"train.epochs": 30, "train.early_stopping_patience": 2,
                     "train.scheduler": "none", "train.optimizer": "adam"})
    m = train(cfg, data, tmp_path)
    assert m["status"] == "early_stopped"
    assert m["epochs_run"] == m["best_epoch"] + 2 < 30
    assert read_metrics(tmp_path)["status"] == "early_stopped"


def test_pruned_via_on_epoch(data, tmp_path):
    seen = []

    def on_epoch(epoch, val_acc):
        seen.append((epoch, val_acc))
        if epoch == 2:
            raise Pruned("below median")

    m = train(run_cfg(**{"train.epochs": 5}), data, tmp_path, on_epoch=on_epoch)
    assert m["status"] == "pruned" and m["epochs_run"] == 2
    assert seen == [(r["epoch"], r["val_acc"]) for r in m["history"]]
    assert read_metrics(tmp_path)["status"] == "pruned"
    assert (tmp_path / "best.pt").exists() and (tmp_path / "confusion.csv").exists()


def test_other_exceptions_from_on_epoch_propagate(data, tmp_path):
    def boom(epoch, val_acc):
        raise RuntimeError("storage down")

    with pytest.raises(RuntimeError, match="storage down"):
        train(run_cfg(), data, tmp_path, on_epoch=boom)
    assert not (tmp_path / "metrics.json").exists()


def test_same_seed_same_result_other_seed_differs(data, tmp_path):
    cfg = run_cfg(**{"train.epochs": 1, "model.dropout": 0.2})
    a = train(cfg, data, tmp_path / "a", seed=3)["history"][0]
    b = train(cfg, data, tmp_path / "b", seed=3)["history"][0]
    c = train(cfg, data, tmp_path / "c", seed=4)["history"][0]
    assert a["train_loss"] == b["train_loss"] and a["val_loss"] == b["val_loss"]
    assert a["train_loss"] != c["train_loss"]


def test_threads_and_bf16_recorded(data, tmp_path):
    threads = torch.get_num_threads()
    m = train(run_cfg(**{"train.bf16": "off", "train.epochs": 1}), data, tmp_path,
              threads=threads)
    assert m["provenance"]["threads"] == threads and m["provenance"]["bf16"] is False
    assert bf16_enabled("on", torch.device("cpu")) and not bf16_enabled("off",
                                                                       torch.device("cpu"))


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda"):
            resolve_device("cuda")


def test_uint8_path_matches_float_path(data):
    dev = torch.device("cpu")
    fast = DeviceData(data, dev)
    lazy = DeviceData(data, dev, float_limit=0)
    assert fast.normalised and not lazy.normalised and lazy.x["train"].dtype == torch.uint8
    idx = torch.tensor([5, 0, 17])
    torch.testing.assert_close(fast.batch("train", idx)[0], lazy.batch("train", idx)[0])
    x = fast.x["train"]
    assert x.mean().abs() < 1e-3 and (x.std() - 1).abs() < 1e-2


@pytest.mark.parametrize("n,bs,expected", [
    (512, 64, (64, 8, 512)), (500, 64, (64, 8, 500)), (513, 64, (64, 8, 512)),
    (10, 64, (10, 1, 10)), (65, 64, (64, 1, 64)),
])
def test_plan_batches(n, bs, expected):
    assert plan_batches(n, bs) == expected
