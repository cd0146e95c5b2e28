"""The training loop: one run = one config, one seed, one output directory.

Fast path (it decides how fast a study is): the dataset sits on the device as one
normalised tensor, a batch is an index slice of a device-side randperm, loss and
accuracy accumulate on the device and are read once per epoch. The only host syncs
inside an epoch are the step-loss reads every ``train.log_every_steps`` steps, which
also catch a diverging run early.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from hpsweep.core.ids import code_version, same_code
from hpsweep.core.runstatus import RunStatus
from hpsweep.core.schema import TrainConfig
from hpsweep.data.prepared import PreparedData
from hpsweep.training.augment import get_augment
from hpsweep.training.checkpoint import (
    CKPT_FORMAT,
    canonical_json,
    capture_rng,
    load_resume,
    restore_rng,
    save_atomic,
)
from hpsweep.training.device import (
    DeviceData,
    autocast,
    bf16_enabled,
    device_name,
    resolve_device,
    sync,
)
from hpsweep.training.models import build_model, count_params, is_conv
from hpsweep.training.schedule import Schedule, build_optimizer, optimizer_impl
from hpsweep.training.writer import TBLog, write_confusion, write_metrics

log = logging.getLogger("hpsweep.training.engine")

# A training loss this many times the chance-level loss ln(num_classes) counts as diverged,
# like NaN/inf: SGD at lr=10 on a BatchNorm MLP sits at losses of 1e3..1e13 for epochs
# without ever producing a NaN, and no such run recovers into a useful model.
DIVERGE_FACTOR = 100.0
OWN_FILES = ("metrics.json", "best.pt", "last.pt", "confusion.csv")


class Pruned(Exception):  # noqa: N818 - the name callers (Optuna objectives) raise
    """Raise from ``on_epoch`` to stop the run; it ends with status "pruned"."""


@dataclass
class _State:
    """Bookkeeping saved in last.pt next to the model/optimizer/scheduler/RNG states."""

    epoch: int = 0
    global_step: int = 0
    status: RunStatus = RunStatus.RUNNING
    best_val_acc: float = -1.0
    best_val_loss: float = math.inf
    best_epoch: int = 0
    best_conf: list[list[int]] | None = None
    train_s: float = 0.0  # training-phase seconds (samples_per_s)
    elapsed_s: float = 0.0  # wall seconds of all calls so far
    samples: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def _plan_batches(n: int, batch_size: int) -> tuple[int, int, int]:
    """(batch size, steps per epoch, samples per epoch). A last batch of one sample is
    dropped (BatchNorm cannot train on it); any other remainder is a short last batch."""
    bs = max(1, min(batch_size, n))
    steps, rem = divmod(n, bs)
    if rem >= 2 or steps == 0:
        steps += 1
    return bs, steps, min(n, steps * bs) if rem != 1 else n - 1


def _train_epoch(model: nn.Module, opt: torch.optim.Optimizer, sched: Schedule, dd: DeviceData,
                 t: TrainConfig, aug, bf16: bool, state: _State, tb: TBLog,
                 bs: int, steps: int, used: int, limit: float) -> tuple[float, float] | None:
    """One pass over the train split; (mean loss, accuracy), or None when a step loss read
    every log_every_steps steps is not finite or above ``limit``."""
    device = dd.device
    model.train()
    perm = torch.randperm(dd.size("train"), device=device)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    params = list(model.parameters())
    for i in range(steps):
        xb, yb = dd.batch("train", perm[i * bs:(i + 1) * bs])
        if aug is not None:
            xb = aug(xb)
        with autocast(device, bf16):
            out = model(xb)
        loss = F.cross_entropy(out.float(), yb, label_smoothing=t.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if t.grad_clip > 0:
            nn.utils.clip_grad_norm_(params, t.grad_clip)
        opt.step()
        sched.after_batch()
        state.global_step += 1
        with torch.no_grad():
            loss_sum += loss.detach() * yb.shape[0]
            correct += (out.argmax(1) == yb).sum()
        if state.global_step % t.log_every_steps == 0:
            value = loss.item()
            if not value <= limit:  # NaN compares False
                return None
            tb.step_loss(value, state.global_step)
    total, hits = torch.stack([loss_sum, correct.to(loss_sum.dtype)]).tolist()
    return total / used, hits / used


@torch.inference_mode()
def evaluate(model: nn.Module, dd: DeviceData, split: str, batch_size: int, bf16: bool,
             num_classes: int) -> tuple[float, float, torch.Tensor]:
    """(mean cross-entropy without label smoothing, accuracy, confusion [true, pred])."""
    model.eval()
    device = dd.device
    n = dd.size(split)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    conf = torch.zeros(num_classes * num_classes, device=device, dtype=torch.long)
    for start in range(0, n, batch_size):
        xb, yb = dd.chunk(split, start, start + batch_size)
        with autocast(device, bf16):
            out = model(xb)
        out = out.float()
        loss_sum += F.cross_entropy(out, yb, reduction="sum")
        conf += torch.bincount(yb * num_classes + out.argmax(1), minlength=num_classes ** 2)
    conf = conf.view(num_classes, num_classes).cpu()
    if n == 0:
        return math.nan, math.nan, conf
    return loss_sum.item() / n, conf.diag().sum().item() / n, conf


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


def _plain_state(state: _State) -> dict[str, Any]:
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
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(int(threads))
    t = TrainConfig.model_validate(run_cfg["train"])
    mcfg = run_cfg["model"]
    device = resolve_device(run_cfg.get("device", "auto"))
    bf16 = bf16_enabled(t.bf16, device)
    conv = is_conv(mcfg)
    if keep not in ("best", "last"):
        raise ValueError(f"keep must be 'best' or 'last', got {keep!r}")
    identity = {"run_cfg": canonical_json(run_cfg), "seed": int(seed),
                "data_checksum": data.checksum, "code_version": code_version()}
    if keep == "last":
        identity["keep"] = "last"
    done = _completed_metrics(out_dir / "metrics.json", identity, evaluate_test)
    if done is not None:  # a completed run is never redone
        log.info("%s: already complete (%s); nothing to train", out_dir, done["status"])
        return done
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    torch.manual_seed(seed)
    model = build_model(mcfg, data.input_shape, data.num_classes).to(device)
    if conv:
        model = model.to(memory_format=torch.channels_last)
    n_params = count_params(model)
    splits = ("train", "val", "test") if evaluate_test else ("train", "val")
    dd = DeviceData(data, device, splits=splits, channels_last=conv)
    bs, steps, used = _plan_batches(dd.size("train"), t.batch_size)
    opt = build_optimizer(model, t)
    sched = Schedule(opt, t, steps)
    aug = get_augment(t.augment)
    state, best_model = _State(), None
    limit = DIVERGE_FACTOR * math.log(data.num_classes)

    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    # From here on the directory holds a run in progress: nothing may say "complete".
    (out_dir / "metrics.json").unlink(missing_ok=True)
    ckpt = load_resume(last_path, identity)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["schedule"])
        state = _State(**{**ckpt["state"], "status": RunStatus(ckpt["state"]["status"])})
        best_model = ckpt.get("best_model")
        restore_rng(ckpt["rng"], device)
        log.info("%s: resuming after epoch %d of %d", out_dir, state.epoch, t.epochs)
    else:
        _clean(out_dir)
    resumed = ckpt is not None
    del ckpt
    elapsed_before = state.elapsed_s
    log.info("%s: %s, %d params, %s, bf16=%s, %d threads, %d x %d steps/epoch", out_dir,
             mcfg.get("arch"), n_params, device, bf16, torch.get_num_threads(), steps, bs)

    tb = TBLog(out_dir / "tb")
    diverged_at: dict[str, int] | None = None
    interrupted = False
    bar = tqdm(total=t.epochs, initial=state.epoch, disable=not progress, unit="epoch",
               desc=out_dir.name, leave=False, dynamic_ncols=True)
    try:
        ran = 0
        while state.status == RunStatus.RUNNING and state.epoch < t.epochs:
            if max_epochs_this_call is not None and ran >= max_epochs_this_call:
                interrupted = True
                break
            epoch = state.epoch + 1
            te = time.perf_counter()
            lr = sched.lr
            res = _train_epoch(model, opt, sched, dd, t, aug, bf16, state, tb, bs, steps, used,
                               limit)
            train_s = time.perf_counter() - te
            val_loss = val_acc = math.nan
            if res is not None and res[0] <= limit:
                val_loss, val_acc, conf = evaluate(model, dd, "val", t.eval_batch_size, bf16,
                                                   data.num_classes)
            if res is None or not math.isfinite(val_loss):
                state.status = RunStatus.DIVERGED
                diverged_at = {"epoch": epoch, "step": state.global_step}
                log.warning("%s: loss is not finite or > %.0f in epoch %d (step %d); stopping: "
                            "diverged", out_dir, limit, epoch, state.global_step)
                break
            # Best = first epoch with the highest val accuracy (strictly better wins), the
            # same notion early stopping counts from.
            if val_acc > state.best_val_acc or keep == "last":
                state.best_val_acc, state.best_val_loss, state.best_epoch = val_acc, val_loss, epoch
                state.best_conf = conf.tolist()
                best_model = _cpu_state(model)
                save_atomic({"model": best_model, "epoch": epoch, "val_acc": val_acc,
                             "val_loss": val_loss, "model_cfg": canonical_json(mcfg),
                             "input_shape": list(data.input_shape), "classes": list(data.classes),
                             "mean": dd.mean_list, "std": dd.std_list, "seed": int(seed)},
                            best_path)
            sched.after_epoch(val_loss)
            sync(device)
            row = {"epoch": epoch, "train_loss": res[0], "train_acc": res[1],
                   "val_loss": val_loss, "val_acc": val_acc, "lr": lr,
                   "epoch_s": time.perf_counter() - te, "train_s": train_s}
            state.history.append(row)
            state.epoch, state.train_s, state.samples = epoch, state.train_s + train_s, \
                state.samples + used
            tb.epoch(epoch, row)
            bar.update(1)
            bar.set_postfix(val_acc=f"{val_acc:.4f}", loss=f"{res[0]:.4f}")
            if on_epoch is not None:
                try:
                    on_epoch(epoch, val_acc)
                except Pruned as e:
                    state.status = RunStatus.PRUNED
                    log.info("%s: pruned after epoch %d%s", out_dir, epoch, f" ({e})" if str(e)
                             else "")
            pat = t.early_stopping_patience
            if (state.status == RunStatus.RUNNING and pat and epoch < t.epochs
                    and epoch - state.best_epoch >= pat):
                state.status = RunStatus.EARLY_STOPPED
                log.info("%s: no val-accuracy gain for %d epochs; early stop at epoch %d",
                         out_dir, pat, epoch)
            tb.flush()  # events up to this epoch are on disk before last.pt says so
            state.elapsed_s = elapsed_before + time.perf_counter() - t0
            save_atomic({"format": CKPT_FORMAT, "identity": identity, "epoch": epoch,
                         "model": model.state_dict(), "optimizer": opt.state_dict(),
                         "schedule": sched.state_dict(), "rng": capture_rng(device),
                         "state": _plain_state(state), "best_model": best_model}, last_path)
            ran += 1
    except BaseException:
        bar.close()
        tb.close()
        raise
    bar.close()

    if interrupted:
        tb.close()
        return {"status": RunStatus.INCOMPLETE, "epochs_run": state.epoch, "seed": int(seed)}

    status = RunStatus.OK if state.status == RunStatus.RUNNING else state.status
    test: dict[str, float | None] = {}
    if evaluate_test:
        test = {"test_acc": None, "test_loss": None}
    if best_model is not None:
        conf = torch.tensor(state.best_conf)
        if evaluate_test:
            model.load_state_dict(best_model)
            test_loss, test_acc, conf = evaluate(model, dd, "test", t.eval_batch_size, bf16,
                                                 data.num_classes)
            test = {"test_acc": test_acc, "test_loss": test_loss}
        write_confusion(out_dir / "confusion.csv", conf, list(data.classes))

    hist = state.history
    total_s = elapsed_before + time.perf_counter() - t0
    have_best = state.best_epoch > 0
    metrics: dict[str, Any] = {
        "status": status,
        "best_val_acc": state.best_val_acc if have_best else None,
        "best_val_loss": state.best_val_loss if have_best else None,
        "best_epoch": state.best_epoch,
        "final_val_acc": hist[-1]["val_acc"] if hist else None,
        "final_val_loss": hist[-1]["val_loss"] if hist else None,
        **test,
        "evaluated_split": "test" if evaluate_test else "val",
        "kept_epoch": keep,
        "epochs_run": state.epoch,
        "epochs_planned": t.epochs,
        "epoch_time_s": sum(r["epoch_s"] for r in hist) / len(hist) if hist else None,
        "total_time_s": total_s,
        "samples_per_s": state.samples / state.train_s if state.train_s > 0 else None,
        "peak_mem_mb": _peak_mem_mb(device),
        "n_params": n_params,
        "seed": int(seed),
        "global_steps": state.global_step,
        **({"diverged_at": diverged_at} if diverged_at else {}),
        "history": hist,
        "provenance": {
            "run_config": run_cfg,
            "data_checksum": data.checksum,
            "data_dataset": data.dataset,
            "code_version": identity["code_version"],
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": str(device),
            "device_name": device_name(device),
            "bf16": bf16,
            "channels_last": conv,
            "optimizer_impl": optimizer_impl(opt),
            "threads": torch.get_num_threads(),
            "resumed": resumed,
            "host": platform.node(),
        },
    }
    tb.hparams(run_cfg, metrics)
    tb.close()
    write_metrics(out_dir / "metrics.json", metrics)  # last: its presence means "complete"
    # The resume state (optimizer moments, RNG) only serves an interrupted run; a complete
    # run keeps best.pt. Dropping it cuts each run's size (and DVC's cache) about 5x.
    last_path.unlink(missing_ok=True)
    log.info("%s: %s, best val acc %s at epoch %d, %.1f s", out_dir, status,
             f"{state.best_val_acc:.4f}" if have_best else "-", state.best_epoch, total_s)
    return metrics
