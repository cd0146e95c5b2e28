"""The training loop: one run = one config, one seed, one output directory.

train_run orchestrates named steps (TrainingRun: set up, resume or start, one epoch, its
bookkeeping, finish, metrics); the fast path of an epoch lives in epoch.py.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from hpsweep.core.ids import canonical_json, code_version, same_code
from hpsweep.core.runstatus import RunStatus
from hpsweep.core.sections import TrainConfig
from hpsweep.data.prepared import PreparedData
from hpsweep.training.augment import get_augment
from hpsweep.training.checkpoint import (
    CKPT_FORMAT,
    capture_rng,
    load_resume,
    restore_rng,
    save_atomic,
)
from hpsweep.training.device import (
    DeviceData,
    bf16_enabled,
    device_name,
    resolve_device,
    sync,
)
from hpsweep.training.epoch import TrainState, evaluate, plan_batches, train_epoch
from hpsweep.training.models import build_model, count_params, is_conv
from hpsweep.training.schedule import Schedule, build_optimizer, optimizer_impl
from hpsweep.training.writer import TBLog, write_confusion, write_metrics

log = logging.getLogger(__name__)

# A training loss this many times the chance-level loss ln(num_classes) counts as diverged,
# like NaN/inf: SGD at lr=10 on a BatchNorm MLP sits at losses of 1e3..1e13 for epochs
# without ever producing a NaN, and no such run recovers into a useful model.
DIVERGE_FACTOR = 100.0
OWN_FILES = ("metrics.json", "best.pt", "last.pt", "confusion.csv")


class Pruned(Exception):  # noqa: N818 - the name callers (Optuna objectives) raise
    """Raise from ``on_epoch`` to stop the run; it ends with status "pruned"."""


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource
    except ImportError:  # Windows
        return math.nan
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes vs KiB


def _clean(out_dir: Path) -> None:
    """A fresh start owns tb/ and the result files; config.json etc. of others stay."""
    shutil.rmtree(out_dir / "tb", ignore_errors=True)
    for name in OWN_FILES:
        (out_dir / name).unlink(missing_ok=True)


def _plain_state(state: TrainState) -> dict[str, Any]:
    """The bookkeeping as plain types (a weights_only checkpoint loads no enum)."""
    return {**asdict(state), "status": str(state.status)}


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _completed_metrics(path: Path, identity: dict[str, Any], evaluate_test: bool
                       ) -> dict[str, Any] | None:
    """metrics.json of this very run (config, seed, data, code), if it completed."""
    try:
        metrics = json.loads(path.read_text())
        prov = metrics["provenance"]
        same = (canonical_json(prov["run_config"]) == identity["run_cfg"]
                and metrics["seed"] == identity["seed"]
                and prov["data_checksum"] == identity["data_checksum"]
                and same_code(prov["code_version"])
                and metrics.get("kept_epoch", "best") == identity.get("keep", "best"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not same or (evaluate_test and metrics.get("test_acc") is None):
        return None
    return metrics


@dataclass
class EpochResult:
    """One trained and validated epoch, before its bookkeeping."""

    number: int
    started: float  # perf_counter() at its start: epoch_s spans the bookkeeping too
    lr: float
    train_loss: float
    train_acc: float
    train_s: float
    val_loss: float
    val_acc: float
    conf: torch.Tensor


class TrainingRun:
    """One run's fixed parts (config, device, model, data, optimizer) and its named
    steps; train_run is the orchestrator. The steps consume random numbers in the order
    the engine always has (ENGINE_VERSION; tests/unit/training/test_engine_golden.py checks it)."""

    def __init__(self, run_cfg: dict[str, Any], data: PreparedData, out_dir: Path, *,
                 seed: int, evaluate_test: bool, threads: int | None, keep: str):
        if keep not in ("best", "last"):
            raise ValueError(f"keep must be 'best' or 'last', got {keep!r}")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if threads:
            torch.set_num_threads(int(threads))
        self.run_cfg, self.data, self.seed, self.keep = run_cfg, data, int(seed), keep
        self.evaluate_test = evaluate_test
        self.t = TrainConfig.model_validate(run_cfg["train"])
        self.mcfg = run_cfg["model"]
        self.device = resolve_device(run_cfg.get("device", "auto"))
        self.bf16 = bf16_enabled(self.t.bf16, self.device)
        self.conv = is_conv(self.mcfg)
        self.identity = {"run_cfg": canonical_json(run_cfg), "seed": self.seed,
                         "data_checksum": data.checksum, "code_version": code_version()}
        if keep == "last":
            self.identity["keep"] = "last"
        self.last_path, self.best_path = self.out_dir / "last.pt", self.out_dir / "best.pt"

    def completed(self) -> dict[str, Any] | None:
        """metrics.json of this very run, if it already completed."""
        return _completed_metrics(self.out_dir / "metrics.json", self.identity,
                                  self.evaluate_test)

    def build(self, dd: DeviceData | None = None) -> None:
        """The seeded model, the data on the device (``dd``: already there, shared by a
        pack's members), optimizer and schedule."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        torch.manual_seed(self.seed)
        model = build_model(self.mcfg, self.data.input_shape, self.data.num_classes)
        model = model.to(self.device)
        if self.conv:
            model = model.to(memory_format=torch.channels_last)
        self.model, self.n_params = model, count_params(model)
        splits = ("train", "val", "test") if self.evaluate_test else ("train", "val")
        self.dd = dd or DeviceData(self.data, self.device, splits=splits,
                                   channels_last=self.conv)
        self.bs, self.steps, self.used = plan_batches(self.dd.size("train"), self.t.batch_size)
        self.opt = build_optimizer(model, self.t)
        self.sched = Schedule(self.opt, self.t, self.steps)
        self.aug = get_augment(self.t.augment)
        self.limit = DIVERGE_FACTOR * math.log(self.data.num_classes)

    def resume_or_start(self) -> tuple[TrainState, dict | None, bool]:
        """(state, best model so far, resumed): from a matching last.pt, else fresh."""
        # From here on the directory holds a run in progress: nothing may say "complete".
        (self.out_dir / "metrics.json").unlink(missing_ok=True)
        ckpt = load_resume(self.last_path, self.identity)
        if ckpt is None:
            _clean(self.out_dir)
            return TrainState(), None, False
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["schedule"])
        state = TrainState(**{**ckpt["state"], "status": RunStatus(ckpt["state"]["status"])})
        restore_rng(ckpt["rng"], self.device)
        log.info("%s: resuming after epoch %d of %d", self.out_dir, state.epoch, self.t.epochs)
        return state, ckpt.get("best_model"), True

    def train_epoch(self, state: TrainState, tb: TBLog) -> EpochResult | None:
        """Train and validate the next epoch; None when its loss diverged."""
        started, lr = time.perf_counter(), self.sched.lr
        res = train_epoch(self.model, self.opt, self.sched, self.dd, self.t, self.aug,
                           self.bf16, state, tb, self.bs, self.steps, self.used, self.limit)
        train_s = time.perf_counter() - started
        if res is None:
            return None
        return self.validate(state.epoch + 1, started, lr, res[0], res[1], train_s)

    def validate(self, number: int, started: float, lr: float, train_loss: float,
                 train_acc: float, train_s: float) -> EpochResult | None:
        """A trained epoch validated; None when its mean training loss is above the
        divergence limit or its validation loss is not finite."""
        if not train_loss <= self.limit:
            return None
        val_loss, val_acc, conf = evaluate(self.model, self.dd, "val", self.t.eval_batch_size,
                                           self.bf16, self.data.num_classes)
        if not math.isfinite(val_loss):
            return None
        return EpochResult(number, started, lr, train_loss, train_acc, train_s, val_loss,
                           val_acc, conf)

    def keep_best(self, state: TrainState, ep: EpochResult, best_model: dict | None) -> dict | None:
        """best.pt: the first epoch with the highest val accuracy (strictly better wins,
        the notion early stopping counts from), or every epoch with keep = "last"."""
        if not (ep.val_acc > state.best_val_acc or self.keep == "last"):
            return best_model
        state.best_val_acc, state.best_val_loss, state.best_epoch = (ep.val_acc, ep.val_loss,
                                                                     ep.number)
        state.best_conf = ep.conf.tolist()
        best_model = _cpu_state(self.model)
        save_atomic({"model": best_model, "epoch": ep.number, "val_acc": ep.val_acc,
                     "val_loss": ep.val_loss, "model_cfg": canonical_json(self.mcfg),
                     "input_shape": list(self.data.input_shape),
                     "classes": list(self.data.classes), "mean": self.dd.mean_list,
                     "std": self.dd.std_list, "seed": self.seed}, self.best_path)
        return best_model

    def record(self, state: TrainState, ep: EpochResult, tb: TBLog) -> dict[str, float]:
        """The schedule's epoch step, then the epoch's history row (and its events)."""
        self.sched.after_epoch(ep.val_loss)
        sync(self.device)
        row = {"epoch": ep.number, "train_loss": ep.train_loss, "train_acc": ep.train_acc,
               "val_loss": ep.val_loss, "val_acc": ep.val_acc, "lr": ep.lr,
               "epoch_s": time.perf_counter() - ep.started, "train_s": ep.train_s}
        state.history.append(row)
        state.epoch = ep.number
        state.train_s += ep.train_s
        state.samples += self.used
        tb.epoch(ep.number, row)
        return row

    def check_stop(self, state: TrainState, epoch: int,
                   on_epoch: Callable[[int, float], None] | None, val_acc: float) -> None:
        """Pruned by the caller's on_epoch, or early-stopped by train.early_stopping_patience."""
        if on_epoch is not None:
            try:
                on_epoch(epoch, val_acc)
            except Pruned as e:
                state.status = RunStatus.PRUNED
                log.info("%s: pruned after epoch %d%s", self.out_dir, epoch,
                         f" ({e})" if str(e) else "")
        pat = self.t.early_stopping_patience
        if (state.status == RunStatus.RUNNING and pat and epoch < self.t.epochs
                and epoch - state.best_epoch >= pat):
            state.status = RunStatus.EARLY_STOPPED
            log.info("%s: no val-accuracy gain for %d epochs; early stop at epoch %d",
                     self.out_dir, pat, epoch)

    def save_last(self, state: TrainState, best_model: dict | None) -> None:
        """last.pt: everything a killed run resumes from."""
        save_atomic({"format": CKPT_FORMAT, "identity": self.identity, "epoch": state.epoch,
                     # copies: a pack member's weights are views into the pack's
                     # stacked tensors, and torch.save would write all of their storage
                     "model": _cpu_state(self.model), "optimizer": self.opt.state_dict(),
                     "schedule": self.sched.state_dict(), "rng": capture_rng(self.device),
                     "state": _plain_state(state), "best_model": best_model}, self.last_path)

    def finish(self, state: TrainState, best_model: dict | None) -> dict[str, float | None]:
        """The kept epoch's test evaluation (when asked) and confusion.csv."""
        test: dict[str, float | None] = (
            {"test_acc": None, "test_loss": None} if self.evaluate_test else {})
        if best_model is None:
            return test
        conf = torch.tensor(state.best_conf)
        if self.evaluate_test:
            self.model.load_state_dict(best_model)
            test_loss, test_acc, conf = evaluate(self.model, self.dd, "test",
                                                 self.t.eval_batch_size, self.bf16,
                                                 self.data.num_classes)
            test = {"test_acc": test_acc, "test_loss": test_loss}
        write_confusion(self.out_dir / "confusion.csv", conf, list(self.data.classes))
        return test

    def metrics(self, state: TrainState, test: dict[str, float | None], total_s: float,
                diverged_at: dict[str, int] | None, resumed: bool) -> dict[str, Any]:
        """metrics.json's content: results, timing and provenance."""
        hist, have_best = state.history, state.best_epoch > 0
        return {
            "status": RunStatus.OK if state.status == RunStatus.RUNNING else state.status,
            "best_val_acc": state.best_val_acc if have_best else None,
            "best_val_loss": state.best_val_loss if have_best else None,
            "best_epoch": state.best_epoch,
            "final_val_acc": hist[-1]["val_acc"] if hist else None,
            "final_val_loss": hist[-1]["val_loss"] if hist else None,
            **test,
            "evaluated_split": "test" if self.evaluate_test else "val",
            "kept_epoch": self.keep,
            "epochs_run": state.epoch,
            "epochs_planned": self.t.epochs,
            "epoch_time_s": sum(r["epoch_s"] for r in hist) / len(hist) if hist else None,
            "total_time_s": total_s,
            "samples_per_s": state.samples / state.train_s if state.train_s > 0 else None,
            "peak_mem_mb": _peak_mem_mb(self.device),
            "n_params": self.n_params,
            "seed": self.seed,
            "global_steps": state.global_step,
            **({"diverged_at": diverged_at} if diverged_at else {}),
            "history": hist,
            "provenance": {
                "run_config": self.run_cfg,
                "data_checksum": self.data.checksum,
                "data_dataset": self.data.dataset,
                "code_version": self.identity["code_version"],
                "torch": torch.__version__,
                "python": platform.python_version(),
                "device": str(self.device),
                "device_name": device_name(self.device),
                "bf16": self.bf16,
                "channels_last": self.conv,
                "optimizer_impl": optimizer_impl(self.opt),
                "threads": torch.get_num_threads(),
                "resumed": resumed,
                "host": platform.node(),
            },
        }


def close_epoch(run: TrainingRun, state: TrainState, ep: EpochResult, best_model: dict | None,
                tb: TBLog, on_epoch: Callable[[int, float], None] | None,
                elapsed: Callable[[], float]) -> tuple[dict | None, dict[str, float]]:
    """A trained epoch's bookkeeping: keep the best, record, check stops, save last.pt:
    (best model, the epoch's history row)."""
    best_model = run.keep_best(state, ep, best_model)
    row = run.record(state, ep, tb)
    run.check_stop(state, ep.number, on_epoch, ep.val_acc)
    tb.flush()  # events up to this epoch are on disk before last.pt says so
    state.elapsed_s = elapsed()
    run.save_last(state, best_model)
    return best_model, row


def mark_diverged(run: TrainingRun, state: TrainState) -> dict[str, int]:
    """Stop the run as diverged in the epoch after the last recorded one: diverged_at."""
    state.status = RunStatus.DIVERGED
    log.warning("%s: loss is not finite or > %.0f in epoch %d (step %d); stopping: diverged",
                run.out_dir, run.limit, state.epoch + 1, state.global_step)
    return {"epoch": state.epoch + 1, "step": state.global_step}


def still_training(run: TrainingRun, state: TrainState) -> bool:
    return state.status == RunStatus.RUNNING and state.epoch < run.t.epochs


def _epochs(run: TrainingRun, state, best_model, tb: TBLog, on_epoch, progress: bool,
            max_epochs: int | None, elapsed: Callable[[], float]):
    """The epoch loop: train, keep the best, record, check stops, save last.pt, until the
    run stops or ``max_epochs`` epochs ran in this call: (best model, diverged_at)."""
    diverged_at: dict[str, int] | None = None
    bar = tqdm(total=run.t.epochs, initial=state.epoch, disable=not progress, unit="epoch",
               desc=run.out_dir.name, leave=False, dynamic_ncols=True)
    try:
        for _ in itertools.count() if max_epochs is None else range(max_epochs):
            if not still_training(run, state):
                break
            ep = run.train_epoch(state, tb)
            if ep is None:
                diverged_at = mark_diverged(run, state)
                break
            best_model, row = close_epoch(run, state, ep, best_model, tb, on_epoch, elapsed)
            bar.update(1)
            bar.set_postfix(val_acc=f"{row['val_acc']:.4f}", loss=f"{row['train_loss']:.4f}")
    finally:
        bar.close()
    return best_model, diverged_at


def complete_run(run: TrainingRun, state: TrainState, best_model: dict | None, tb: TBLog,
                 total_s: float, diverged_at: dict[str, int] | None, resumed: bool,
                 extra_provenance: dict[str, Any] | None = None,
                 drop_last: bool = True) -> dict[str, Any]:
    """A stopped run's end: test evaluation, confusion.csv, metrics.json (last: its
    presence means "complete"); last.pt removed (unless ``drop_last`` is false: a pack
    drops it when the whole pack has ended). Returns the metrics."""
    try:
        test = run.finish(state, best_model)
        metrics = run.metrics(state, test, total_s, diverged_at, resumed)
        metrics["provenance"].update(extra_provenance or {})
        tb.hparams(run.run_cfg, metrics)
    finally:
        tb.close()
    write_metrics(run.out_dir / "metrics.json", metrics)
    # The resume state (optimizer moments, RNG) only serves an interrupted run; a complete
    # run keeps best.pt. Dropping it cuts each run's size (and DVC's cache) about 5x.
    if drop_last:
        run.last_path.unlink(missing_ok=True)
    log.info("%s: %s, best val acc %s at epoch %d, %.1f s", run.out_dir, metrics["status"],
             f"{state.best_val_acc:.4f}" if state.best_epoch else "-", state.best_epoch,
             metrics["total_time_s"])
    return metrics


def train_run(run_cfg: dict[str, Any], data: PreparedData, out_dir: Path, *, seed: int,
              evaluate_test: bool = False, threads: int | None = None,
              on_epoch: Callable[[int, float], None] | None = None, progress: bool = True,
              max_epochs_this_call: int | None = None, keep: str = "best") -> dict[str, Any]:
    """Train ``run_cfg`` (a resolved run config: data/model/train/device) on ``data``.

    Writes into ``out_dir``: tb/ (TensorBoard events), best.pt, last.pt (resumable),
    confusion.csv and, last, metrics.json; returns the metrics dict. A matching last.pt
    in ``out_dir`` is resumed. ``on_epoch(epoch, val_acc)`` is called after each epoch;
    raising :class:`Pruned` from it ends the run with status "pruned". Divergence (a
    non-finite training loss, or one above DIVERGE_FACTOR x ln(num_classes)) ends the run
    at once with status "diverged"; neither raises. ``train.early_stopping_patience``
    epochs without a strictly higher val accuracy end it with "early_stopped".

    ``keep`` = "best" keeps (best.pt, test evaluation) the epoch with the highest
    validation accuracy; "last" keeps the last epoch, for a final model trained on the
    validation split too (there, validation accuracy is no holdout and must not choose).

    ``max_epochs_this_call`` trains at most that many epochs in this call and returns
    ``{"status": "incomplete", ...}`` without writing metrics.json, as if the process had
    been killed after last.pt was written (for tests and time-sliced schedulers).
    """
    t0 = time.perf_counter()
    run = TrainingRun(run_cfg, data, out_dir, seed=seed, evaluate_test=evaluate_test,
                      threads=threads, keep=keep)
    if (done := run.completed()) is not None:  # a completed run is never redone
        log.info("%s: already complete (%s); nothing to train", run.out_dir, done["status"])
        return done
    run.build()
    state, best_model, resumed = run.resume_or_start()
    elapsed_before = state.elapsed_s
    log.info("%s: %s, %d params, %s, bf16=%s, %d threads, %d x %d steps/epoch", run.out_dir,
             run.mcfg.get("arch"), run.n_params, run.device, run.bf16, torch.get_num_threads(),
             run.steps, run.bs)
    tb = TBLog(run.out_dir / "tb")
    try:
        best_model, diverged_at = _epochs(run, state, best_model, tb, on_epoch, progress,
                                          max_epochs_this_call,
                                          lambda: elapsed_before + time.perf_counter() - t0)
    except BaseException:
        tb.close()
        raise
    if still_training(run, state):  # stopped early by max_epochs_this_call
        tb.close()
        return {"status": RunStatus.INCOMPLETE, "epochs_run": state.epoch, "seed": run.seed}
    return complete_run(run, state, best_model, tb, elapsed_before + time.perf_counter() - t0,
                        diverged_at, resumed)
