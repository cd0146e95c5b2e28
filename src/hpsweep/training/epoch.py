"""One epoch of training and one evaluation pass: the fast path.

The dataset sits on the device as one normalised tensor, a batch is an index slice of a
device-side randperm, loss and accuracy accumulate on the device and are read once per
epoch. The only host syncs inside an epoch are the step-loss reads every
``train.log_every_steps`` steps, which also catch a diverging run early.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from hpsweep.core.runstatus import RunStatus
from hpsweep.core.sections import TrainConfig
from hpsweep.training.device import DeviceData, autocast
from hpsweep.training.schedule import Schedule
from hpsweep.training.writer import TBLog


@dataclass
class TrainState:
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


def plan_batches(n: int, batch_size: int) -> tuple[int, int, int]:
    """(batch size, steps per epoch, samples per epoch). A last batch of one sample is
    dropped (BatchNorm cannot train on it); any other remainder is a short last batch."""
    bs = max(1, min(batch_size, n))
    steps, rem = divmod(n, bs)
    if rem >= 2 or steps == 0:
        steps += 1
    return bs, steps, min(n, steps * bs) if rem != 1 else n - 1


def train_epoch(model: nn.Module, opt: torch.optim.Optimizer, sched: Schedule, dd: DeviceData,
                 t: TrainConfig, aug, bf16: bool, state: TrainState, tb: TBLog,
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
