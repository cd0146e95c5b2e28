"""Packs: runs that differ only in member-level keys, trained in one process as one model.

A pack's members share the model's shape (every ``model`` key but ``dropout``), the
batch size, bf16 and the data; anything else may differ between them: the seed,
``model.dropout`` and the rest of ``train`` (lr, weight decay, momentum, optimizer,
schedule, epochs, label smoothing, augmentation, clipping, early stopping). Why the
others cannot, and which runs of a study form packs: hpsweep.core.packs.

Each Linear layer of the members is one stacked tensor [members, out, in], trained
with one batched matmul (``torch.bmm``/``baddbmm`` over [members, batch, features]):
that is where an MLP's time goes. The members' own parameters are views into those
tensors, and everything else runs per member on its slice: its BatchNorm, activation
and dropout modules, its loss, its optimizer (the same fused AdamW etc. a run alone
uses) and its schedule. So each member is a whole run: its own run directory with
today's files (metrics.json, best.pt, last.pt, confusion.csv, tb/), its own random
streams (its generator state is swapped in for its draws, so it draws the
initialisation, shuffles, augmentations and dropout masks it would draw alone), its own
stops (divergence, early stop, its Optuna trial's pruning) and checkpoints: a killed
pack resumes every member from its last.pt, and a member may resume alone or in a pack.

What differs from training alone is the matmul kernel (bmm instead of mm), whose float
rounding may differ in the last bits; tests/unit/training/test_pack_trainer.py states and
checks how far a member's metrics may drift from the same run trained alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from hpsweep.core.packs import PACKABLE_ARCHS, SHARED_TRAIN_KEYS, pack_key
from hpsweep.core.runstatus import RunStatus
from hpsweep.data.prepared import PreparedData
from hpsweep.training.checkpoint import capture_rng, restore_rng
from hpsweep.training.device import DeviceData, autocast
from hpsweep.training.engine import (
    EpochResult,
    TrainingRun,
    close_epoch,
    complete_run,
    mark_diverged,
    still_training,
)
from hpsweep.training.epoch import TrainState
from hpsweep.training.writer import TBLog

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class PackMember:
    """One run of a pack: what train_run would get (``on_epoch`` as train_run's: an
    Optuna trial's report, whose Pruned stops this member alone)."""

    run_cfg: dict[str, Any]
    seed: int
    out_dir: Path
    on_epoch: Callable[[int, float], None] | None = None


def check_packable(members: Sequence[PackMember]) -> None:
    """ValueError naming the first member that cannot share the first one's pack."""
    if not members:
        raise ValueError("a pack needs at least one member")
    first = members[0]
    arch = first.run_cfg["model"].get("arch")
    if arch not in PACKABLE_ARCHS:
        raise ValueError(f"model.arch {arch!r} cannot train in a pack (packs train "
                         f"{', '.join(PACKABLE_ARCHS)} models); train its runs alone")
    dirs = [Path(m.out_dir).resolve() for m in members]
    if len(set(dirs)) < len(dirs):
        raise ValueError("two members of a pack share a run directory; each needs its own")
    key = pack_key(first.run_cfg)
    for m in members[1:]:
        if pack_key(m.run_cfg) != key:
            raise ValueError(f"{m.out_dir.name} cannot share a pack with {first.out_dir.name}: "
                             "they differ in a model key other than dropout, in "
                             f"{' or '.join('train.' + k for k in SHARED_TRAIN_KEYS)}, "
                             "or in the data or device")


@dataclass
class _Member:
    """A pack member between epochs: its run and what the engine's loop would hold."""

    index: int
    run: TrainingRun
    state: TrainState
    best_model: dict | None
    resumed: bool
    rng: dict[str, Any]
    tb: TBLog
    on_epoch: Callable[[int, float], None] | None = None
    diverged_at: dict[str, int] | None = None
    linears: list[nn.Linear] = field(default_factory=list)
    segments: list[list[nn.Module]] = field(default_factory=list)


@contextmanager
def _own_rng(m: _Member) -> Iterator[None]:
    """The member's random stream in place of the process's, for the draws inside."""
    outer = capture_rng(m.run.device)
    restore_rng(m.rng, m.run.device)
    try:
        yield
    finally:
        m.rng = capture_rng(m.run.device)
        restore_rng(outer, m.run.device)


def _split_at_linears(model: nn.Module) -> tuple[list[nn.Linear], list[list[nn.Module]]]:
    """(the Linear layers, the modules before, between and after them)."""
    linears: list[nn.Linear] = []
    segments: list[list[nn.Module]] = [[]]
    for layer in model:
        if isinstance(layer, nn.Linear):
            linears.append(layer)
            segments.append([])
        else:
            segments[-1].append(layer)
    return linears, segments


class _Stacked:
    """The group's Linear weights as stacked leaves; the members' own weights become
    views into them, so each member's optimizer updates its slice in place."""

    def __init__(self, group: list[_Member]):
        self.group = group
        self.weights: list[torch.Tensor] = []
        self.biases: list[torch.Tensor | None] = []
        for k in range(len(group[0].linears)):
            layers = [m.linears[k] for m in group]
            self.weights.append(self._stack([lin.weight for lin in layers]))
            self.biases.append(self._stack([lin.bias for lin in layers])
                               if layers[0].bias is not None else None)

    @staticmethod
    def _stack(params: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack([p.detach() for p in params]).requires_grad_()
        for i, p in enumerate(params):
            p.data = stacked.data[i]
        return stacked

    def leaves(self) -> list[torch.Tensor]:
        return self.weights + [b for b in self.biases if b is not None]

    def hand_grads(self) -> None:
        """Each member's slice of the stacked gradients, as its own parameters' .grad."""
        for k, w in enumerate(self.weights):
            b = self.biases[k]
            for i, m in enumerate(self.group):
                m.linears[k].weight.grad = w.grad[i]
                if b is not None:
                    m.linears[k].bias.grad = b.grad[i]

    def _segment(self, k: int, h: torch.Tensor) -> torch.Tensor:
        """The members' own modules between two Linear layers, each on its slice (the
        same kernels, and for dropout the same draws, as the member alone)."""
        if not any(m.segments[k] for m in self.group):
            return h
        out = []
        for m, x in zip(self.group, h.unbind(0), strict=True):
            draws = any(isinstance(mod, nn.Dropout) for mod in m.segments[k])
            with _own_rng(m) if draws else nullcontext():
                for mod in m.segments[k]:
                    x = mod(x)
            out.append(x)
        return torch.stack(out)

    def forward(self, xb: torch.Tensor) -> torch.Tensor:
        """[members, batch, ...] -> [members, batch, classes]."""
        h = self._segment(0, xb)
        kind = xb.device.type
        dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            # h @ W^T computed as (W @ h^T)^T: the weights' gradient then comes out of bmm
            # in their own [out, in] layout. The other way round it came out transposed
            # and casting it back from bf16 (a strided copy of the largest tensor) took a
            # third of a packed step on the CPU.
            # Made contiguous again: a member's dropout draws its mask in memory order,
            # and must draw it in the layout it has alone.
            wd, ht = (w if dtype is None else w.to(dtype)), h.transpose(1, 2)
            out_t = torch.bmm(wd, ht) if b is None else torch.baddbmm(b.unsqueeze(2), wd, ht)
            h = self._segment(k + 1, out_t.transpose(1, 2).contiguous())
        return h


def _packed_epoch(group: list[_Member], dd: DeviceData) -> list[EpochResult | None]:
    """One epoch of the group, trained together; each member's EpochResult (None: diverged).
    Each member is charged an equal share of the training seconds, so the members' times
    add up to the pack's (what the planner counts), plus its own evaluation."""
    lead = group[0].run
    device, bf16, bs, steps, used = lead.device, lead.bf16, lead.bs, lead.steps, lead.used
    n = len(group)
    started = time.perf_counter()
    lrs = [m.run.sched.lr for m in group]
    perms = []
    for m in group:
        m.run.model.train()
        with _own_rng(m):
            perms.append(torch.randperm(dd.size("train"), device=device))
    perm = torch.stack(perms)
    net = _Stacked(group)
    leaves = net.leaves()
    alive = [True] * n
    loss_sum = torch.zeros(n, device=device)
    correct = torch.zeros(n, device=device, dtype=torch.long)
    for step in range(steps):
        idx = perm[:, step * bs:(step + 1) * bs]
        b = idx.shape[1]
        xb, yb = dd.batch("train", idx.reshape(-1))
        xb, yb = xb.view(n, b, *xb.shape[1:]), yb.view(n, b)
        if any(m.run.aug is not None for m in group):
            rows = []
            for m, x in zip(group, xb.unbind(0), strict=True):
                if m.run.aug is not None:
                    with _own_rng(m):
                        x = m.run.aug(x)
                rows.append(x)
            xb = torch.stack(rows)
        with autocast(device, bf16):
            out = net.forward(xb)
        losses = torch.stack([F.cross_entropy(out[i].float(), yb[i],
                                              label_smoothing=m.run.t.label_smoothing)
                              for i, m in enumerate(group)])
        for leaf in leaves:
            leaf.grad = None
        for m in group:
            m.run.opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        net.hand_grads()
        for i, m in enumerate(group):
            if not alive[i]:
                continue
            if m.run.t.grad_clip > 0:
                nn.utils.clip_grad_norm_(list(m.run.model.parameters()), m.run.t.grad_clip)
            m.run.opt.step()
            m.run.sched.after_batch()
            m.state.global_step += 1
        with torch.no_grad():
            loss_sum += losses.detach() * b
            correct += (out.argmax(-1) == yb).sum(1)
        logging_now = [alive[i] and m.state.global_step % m.run.t.log_every_steps == 0
                       for i, m in enumerate(group)]
        if any(logging_now):
            values = losses.tolist()
            for i, m in enumerate(group):
                if not logging_now[i]:
                    continue
                if not values[i] <= m.run.limit:  # NaN compares False
                    alive[i] = False
                else:
                    m.tb.step_loss(values[i], m.state.global_step)
    share = (time.perf_counter() - started) / n
    totals, hits = loss_sum.tolist(), correct.tolist()
    # epoch_s of each member: its share, then its own validation and bookkeeping
    return [m.run.validate(m.state.epoch + 1, time.perf_counter() - share, lrs[i],
                           totals[i] / used, hits[i] / used, share) if alive[i] else None
            for i, m in enumerate(group)]


def _start(members: Sequence[PackMember], data: PreparedData, *, evaluate_test: bool,
           threads: int | None, keep: str) -> tuple[list[_Member], dict[int, dict]]:
    """Members built (one copy of the data on the device) and resumed or started;
    completed ones are not retrained: their metrics."""
    done: dict[int, dict] = {}
    live: list[_Member] = []
    dd: DeviceData | None = None
    try:
        for i, pm in enumerate(members):
            run = TrainingRun(pm.run_cfg, data, pm.out_dir, seed=pm.seed,
                              evaluate_test=evaluate_test, threads=threads, keep=keep)
            if (metrics := run.completed()) is not None:
                log.info("%s: already complete (%s); nothing to train", run.out_dir,
                         metrics["status"])
                done[i] = metrics
                continue
            run.build(dd)
            dd = run.dd
            state, best_model, resumed = run.resume_or_start()
            live.append(_Member(i, run, state, best_model, resumed, capture_rng(run.device),
                                TBLog(run.out_dir / "tb"), pm.on_epoch))
            live[-1].linears, live[-1].segments = _split_at_linears(run.model)
    except BaseException:
        for m in live:
            m.tb.close()
        raise
    return live, done


def train_pack(members: Sequence[PackMember], data: PreparedData, *,
               evaluate_test: bool = False, threads: int | None = None,
               progress: bool = True, max_epochs_this_call: int | None = None,
               keep: str = "best") -> list[dict[str, Any]]:
    """Train the members as one pack; each one's metrics, in order (what train_run
    returns for it: a completed member is not retrained). ``max_epochs_this_call``
    counts the pack's rounds (one epoch of every member training in it; members behind
    after a kill train their round first); an unfinished member then returns
    ``{"status": "incomplete", ...}``."""
    check_packable(members)
    live, results = _start(members, data, evaluate_test=evaluate_test, threads=threads,
                           keep=keep)
    provenance = {"pack": {"members": len(members), "kernel": "bmm"}}
    if live:
        lead = live[0].run
        log.info("pack of %d (%d to train): %s, %d params each, %s, bf16=%s, %d threads, "
                 "%d x %d steps/epoch", len(members), len(live), lead.mcfg.get("arch"),
                 lead.n_params, lead.device, lead.bf16, torch.get_num_threads(), lead.steps,
                 lead.bs)
    bar = tqdm(total=max((m.run.t.epochs for m in live), default=0), disable=not progress,
               unit="epoch", desc=f"pack of {len(members)}", leave=False, dynamic_ncols=True)
    calls = 0

    def complete(m: _Member) -> None:
        # last.pt stays until the whole pack has ended: if the job then fails, Snakemake
        # deletes every output of it, this member's metrics.json included, and the next
        # run completes the member again from its last.pt instead of training it anew.
        results[m.index] = complete_run(m.run, m.state, m.best_model, m.tb, m.state.elapsed_s,
                                        m.diverged_at, m.resumed, provenance, drop_last=False)

    try:
        for m in live:  # resumed at its end (its pack's job failed after it had finished)
            if not still_training(m.run, m.state):
                complete(m)
        while max_epochs_this_call is None or calls < max_epochs_this_call:
            training = [m for m in live if still_training(m.run, m.state)]
            if not training:
                break
            # A pack killed between two members' last.pt: the ones behind catch up first.
            low = min(m.state.epoch for m in training)
            group = [m for m in training if m.state.epoch == low]
            for m, ep in zip(group, _packed_epoch(group, group[0].run.dd), strict=True):
                if ep is None:
                    m.diverged_at = mark_diverged(m.run, m.state)
                    continue
                with _own_rng(m):  # last.pt keeps the member's own stream
                    m.best_model, _ = close_epoch(
                        m.run, m.state, ep, m.best_model, m.tb, m.on_epoch,
                        lambda m=m, ep=ep: m.state.elapsed_s + time.perf_counter() - ep.started)
            for m in group:  # a stopped member is complete at once, whatever comes after
                if not still_training(m.run, m.state):
                    complete(m)
            calls += 1
            bar.n = max(m.state.epoch for m in live)
            bar.refresh()
    except BaseException:
        for m in live:
            if m.index not in results:
                m.tb.close()
        raise
    finally:
        bar.close()
    for m in live:
        if m.index not in results:  # stopped by max_epochs_this_call
            m.tb.close()
            results[m.index] = {"status": RunStatus.INCOMPLETE, "epochs_run": m.state.epoch,
                                "seed": m.run.seed}
        else:  # completed in this call, and the pack has ended: as complete_run does
            m.run.last_path.unlink(missing_ok=True)
    return [results[i] for i in range(len(members))]
