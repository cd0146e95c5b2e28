"""Packs: N same-shape runs trained as one batched model vs N runs one after another.

`hpsweep bench --pack` (issue: many trials per device). Both sides train the params.toml
baseline's model (MLP, or the CNN study's) on real Fashion-MNIST images with the fast
path's step: bf16 autocast where the CPU has it, cross-entropy with label smoothing,
fused AdamW, OneCycle. Each member has its own initialisation (its seed) and its own
shuffled batches; what differs is how the N members' steps run:

    separate   N models, each stepped alone (today: one run per job)
    vmap       torch.func.stack_module_state + vmap(functional_call): one batched
               forward/backward for the N members, one fused AdamW over stacked weights
    bmm        (MLP only) the members' weights stacked by hand, each layer one
               torch.baddbmm over [N, batch, features]; BatchNorm per member

Member-samples/s = N x steps x batch / training seconds, the median of ``--repeats``
interleaved repeats (min-max beside it). The three ways above time the
packing itself (no checkpoints, no evaluation; BatchNorm's running statistics are not
tracked under vmap). For the MLP, two more rows time the trainer whole, an epoch of
N runs with evaluation and files:

    engine alone   hpsweep.training.engine.train_run, N runs one after another
    engine pack    hpsweep.training.pack_trainer.train_pack, the N runs as one pack
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hpsweep.core.layout import StudyPaths
from hpsweep.core.schema import Params, load_params
from hpsweep.data.prepared import load_prepared
from hpsweep.training.device import autocast, bf16_enabled, sync
from hpsweep.training.models import build_model


def _models(model_cfg: dict, n: int, shape, classes: int) -> list[nn.Module]:
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        out.append(build_model(model_cfg, shape, classes))
    return out


def _onecycle(opt: torch.optim.Optimizer, lr: float, steps: int):
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps + 1)


def separate(models: list[nn.Module], x, y, bs: int, steps: int, lr: float, ls: float,
             bf16: bool) -> float:
    """Seconds for ``steps`` steps of each model, one model after another."""
    dev = x.device
    total = 0.0
    for m in models:
        m.to(dev).train()
        opt = torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=5e-4, fused=True)
        sched = _onecycle(opt, lr, steps)
        perm = torch.randperm(len(y), device=dev)
        sync(dev)
        t0 = time.perf_counter()
        for i in range(steps):
            idx = perm[(i * bs) % (len(y) - bs):][:bs]
            with autocast(dev, bf16):
                out = m(x[idx])
            loss = F.cross_entropy(out.float(), y[idx], label_smoothing=ls)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        sync(dev)
        total += time.perf_counter() - t0
    return total


def _pack_loop(forward: Callable, params: list[torch.Tensor], n: int, x, y, bs: int,
               steps: int, lr: float, ls: float, bf16: bool) -> float:
    dev = x.device
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=5e-4, fused=True)
    sched = _onecycle(opt, lr, steps)
    # each member its own order
    perms = torch.stack([torch.randperm(len(y), device=dev) for _ in range(n)])
    sync(dev)
    t0 = time.perf_counter()
    for i in range(steps):
        idx = perms[:, (i * bs) % (len(y) - bs):][:, :bs]  # [n, bs]
        with autocast(dev, bf16):
            out = forward(x[idx])  # [n, bs, classes]
        # the sum of the members' mean losses: each member's gradient is its own
        loss = F.cross_entropy(out.float().flatten(0, 1), y[idx].flatten(),
                               label_smoothing=ls, reduction="sum") / bs
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    sync(dev)
    return time.perf_counter() - t0


def packed_vmap(models: list[nn.Module], x, y, bs: int, steps: int, lr: float, ls: float,
                bf16: bool) -> float:
    from torch.func import (
        functional_call,
        replace_all_batch_norm_modules_,
        stack_module_state,
        vmap,
    )

    models = [m.to(x.device) for m in models]
    params, _ = stack_module_state(models)  # BN buffers left out: not tracked under vmap
    base = copy.deepcopy(models[0])
    replace_all_batch_norm_modules_(base)
    base.train()

    def one(p, xb):
        return functional_call(base, p, (xb,))

    batched = vmap(one, in_dims=(0, 0), randomness="different")
    leaves = [p.requires_grad_() for p in params.values()]
    return _pack_loop(lambda xb: batched(params, xb), leaves, len(models), x, y, bs, steps,
                      lr, ls, bf16)


class StackedMLP(nn.Module):
    """N hpsweep MLPs (Flatten, [Linear, BatchNorm1d?, act, Dropout?] x depth, Linear) as
    stacked weights: every Linear one baddbmm/bmm, BatchNorm over each member's batch."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        self.kinds: list[tuple[str, int]] = []
        self.weights = nn.ParameterList()
        self.shared = nn.ModuleList()  # activations and dropouts: elementwise
        for layers in zip(*(list(m) for m in models), strict=True):
            first = layers[0]
            if isinstance(first, nn.Linear):
                self.weights.append(nn.Parameter(torch.stack([m.weight.T for m in layers])))
                if first.bias is not None:
                    self.weights.append(nn.Parameter(torch.stack(
                        [m.bias[None] for m in layers])))
                self.kinds.append(("linear_bias" if first.bias is not None else "linear", -1))
            elif isinstance(first, nn.BatchNorm1d):
                self.weights.append(nn.Parameter(torch.stack([m.weight[None] for m in layers])))
                self.weights.append(nn.Parameter(torch.stack([m.bias[None] for m in layers])))
                self.kinds.append(("bn", -1))
            elif isinstance(first, nn.Flatten):
                self.kinds.append(("flatten", -1))
            else:
                self.kinds.append(("elementwise", len(self.shared)))
                self.shared.append(first)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [n, bs, ...]
        it = iter(self.weights)
        for kind, k in self.kinds:
            if kind == "flatten":
                x = x.flatten(2)
            elif kind == "linear":
                x = torch.bmm(x, next(it))
            elif kind == "linear_bias":
                w = next(it)
                x = torch.baddbmm(next(it), x, w)
            elif kind == "bn":
                mean, var = x.mean(1, keepdim=True), x.var(1, unbiased=False, keepdim=True)
                x = (x - mean) * torch.rsqrt(var + 1e-5) * next(it) + next(it)
            else:
                x = self.shared[k](x)
        return x


def packed_bmm(models: list[nn.Module], x, y, bs: int, steps: int, lr: float, ls: float,
               bf16: bool) -> float:
    net = StackedMLP(models).to(x.device).train()
    return _pack_loop(net, list(net.parameters()), len(models), x, y, bs, steps, lr, ls,
                      bf16)


def _rate(n: int, bs: int, steps: int, seconds: float) -> float:
    return n * steps * bs / seconds


def run(params: Params, data_path: Path, n: int, batches: list[int], steps: int,
        repeats: int, threads: int, subset: int, device: str = "cpu") -> list[list]:
    torch.set_num_threads(threads)
    dev = torch.device(device)
    data = load_prepared(data_path)
    x = data.x_train[:subset].float().div_(255.0)
    x = ((x - x.mean()) / x.std()).to(dev)
    y = data.y_train[:subset].to(dev)
    base = params.run_base()
    cfg, t = base["model"], base["train"]
    bf16 = bf16_enabled(t["bf16"], dev)
    ways = {"separate": separate, "vmap": packed_vmap}
    if cfg["arch"] == "mlp":
        ways["bmm"] = packed_bmm
    rows = []
    for bs in batches:
        took: dict[str, list[float]] = {w: [] for w in ways}
        for _ in range(repeats + 1):  # the first round warms caches and kernels up
            for name, way in ways.items():
                models = _models(cfg, n, data.input_shape, data.num_classes)
                took[name].append(way(models, x, y, bs, steps, t["lr"],
                                      t["label_smoothing"], bf16))
        rates = {w: sorted(_rate(n, bs, steps, s) for s in v[1:]) for w, v in took.items()}
        if cfg["arch"] == "mlp":
            rates |= engine(params, data, n, bs, repeats, threads, subset, device)
        med = {w: statistics.median(r) for w, r in rates.items()}
        for w, r in rates.items():
            ref = "engine alone" if w.startswith("engine") else "separate"
            rows.append([cfg["arch"], bs, n, w, f"{med[w]:,.0f}", f"{r[0]:,.0f}-{r[-1]:,.0f}",
                         f"{med[w] / med[ref]:.2f}x"])
    return rows


def engine(params: Params, data, n: int, bs: int, repeats: int, threads: int, subset: int,
           device: str) -> dict[str, list[float]]:
    """Member-samples/s of one epoch of N runs (the baseline, seeds 0..N-1) through the
    trainer: one after another (train_run) and as one pack (train_pack), interleaved;
    evaluation on 2,000 validation images and the run files included."""
    from hpsweep.core.schema import resolve_run
    from hpsweep.training.engine import train_run
    from hpsweep.training.pack_trainer import PackMember, train_pack

    part = data.derive(x_train=data.x_train[:subset], y_train=data.y_train[:subset],
                       x_val=data.x_val[:2000], y_val=data.y_val[:2000])
    cfg = resolve_run(params.run_base(), {"train.batch_size": bs, "train.epochs": 1})
    cfg["device"] = device
    took: dict[str, list[float]] = {"engine alone": [], "engine pack": []}
    for _ in range(repeats + 1):  # the first round warms up
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            for i in range(n):
                train_run(cfg, part, Path(tmp) / f"alone{i}", seed=i, threads=threads,
                          progress=False)
            took["engine alone"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            train_pack([PackMember(cfg, i, Path(tmp) / f"pack{i}") for i in range(n)], part,
                       threads=threads, progress=False)
            took["engine pack"].append(time.perf_counter() - t0)
    samples = n * len(part.y_train)
    return {w: sorted(samples / s for s in v[1:]) for w, v in took.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hpsweep bench --pack",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--params", type=Path, default=Path("params.toml"),
                   help="the baseline model to pack (default params.toml)")
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    p.add_argument("--steps", type=int, default=100, help="timed steps per member")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--subset", type=int, default=20000)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--width", type=int, default=None,
                   help="model.width for the members instead of the params file's (on a "
                        "CPU packs pay where members are small)")
    args = p.parse_args(argv)
    params = load_params(args.params)
    if args.width:
        params = params.model_copy(update={
            "model": params.model.model_copy(update={"width": args.width})})
    prepared = StudyPaths.from_params(params).prepared
    if not prepared.is_file():
        print(f"hpsweep bench --pack: {prepared} not found; run `make data`")
        return 2
    from tabulate import tabulate

    rows = run(params, prepared, args.members, args.batch, args.steps, args.repeats,
               args.threads, args.subset, args.device)
    shape = f" with model.width = {args.width}" if args.width else ""
    print(f"{args.params}{shape}: {args.members} members, {args.steps} steps each, on "
          f"{args.device} ({args.threads} threads), median of {args.repeats} interleaved "
          "repeats")
    print(tabulate(rows, ["model", "batch", "members", "how", "member-samples/s", "min-max",
                          "vs separate"], colalign=("left", "right", "right", "left",
                                                     "right", "right", "right")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
