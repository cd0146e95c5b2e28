"""Training throughput: the write-ups' loop vs hpsweep's fast path, side by side in one run.

(a) seed-style: a torchvision-style Dataset (PIL image -> ToTensor -> Normalize per
    sample), DataLoader(batch 64, shuffle), fp32, ``loss.item()`` every step;
(b) hpsweep.training.engine.train_run: the dataset as one normalised tensor, randperm index
    slices, no per-step host sync; fp32 and bf16 autocast (+ channels_last for CNNs),
    batch 64 and 256.

Both train the same models (build_model) with Adam: the MLP 784-512-512-10 and the
CNN 32/64 + FC 128. The loops are interleaved epoch by epoch so machine noise hits
all of them; each reports its fastest timed epoch after a warm-up, training phase
only (evaluation excluded). `speedup` compares equal batch sizes (64).

Then, on the full training split, the wall time until 88 % validation accuracy:
(a) with its usual batch 64 / Adam 1e-3, (b) with the trainer's recommended recipe
(batch 256, bf16, AdamW + OneCycle), same MLP. Evaluation time counts for both.

    hpsweep bench --quick            # synthetic or real subset, < 1 min on 2 cores
    hpsweep bench                    # real Fashion-MNIST (after `make run`), 3 repeats

Benchmark on a quiet machine: anything else running (an install, a test suite) can
make numbers several times lower.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from hpsweep.core.layout import StudyPaths
from hpsweep.core.schema import Params, resolve_run
from hpsweep.data.prepared import PreparedData, load_prepared
from hpsweep.training.device import bf16_enabled, channel_stats, device_name, resolve_device
from hpsweep.training.engine import Pruned, train_run
from hpsweep.training.models import build_model

MODELS = {
    "MLP 784-512-512-10": {"model.arch": "mlp", "model.depth": 2, "model.width": 512,
                           "model.batch_norm": False, "model.dropout": 0.0,
                           "model.activation": "relu"},
    "CNN 32/64 + FC128": {"model.arch": "cnn", "model.channels": [32, 64], "model.fc": [128],
                          "model.batch_norm": False, "model.dropout": 0.0,
                          "model.activation": "relu"},
}


TIMED_EPOCHS = 2


def synthetic(n_train: int, n_val: int) -> PreparedData:
    g = torch.Generator().manual_seed(0)
    t = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", 16)):
        t[f"x_{split}"] = torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
        t[f"y_{split}"] = torch.randint(0, 10, (n,), generator=g)
    return PreparedData.from_tensors(t, [str(i) for i in range(10)], "synthetic")


def subset(data: PreparedData, n_train: int, n_val: int) -> PreparedData:
    return data.derive(x_train=data.x_train[:n_train], y_train=data.y_train[:n_train],
                       x_val=data.x_val[:n_val], y_val=data.y_val[:n_val],
                       x_test=data.x_test[:16], y_test=data.y_test[:16])


def run_config(model: dict, batch: int, bf16: bool, epochs: int) -> dict:
    cfg = resolve_run(Params().run_base(), {
        **model, "train.epochs": epochs, "train.batch_size": batch, "train.optimizer": "adam",
        "train.lr": 1e-3, "train.weight_decay": 0.0, "train.scheduler": "none",
        "train.label_smoothing": 0.0, "train.bf16": "on" if bf16 else "off",
        "train.log_every_steps": 50, "train.eval_batch_size": 4096})
    cfg["device"] = "cpu"
    return cfg


class SeedLoop:
    """The loop the write-ups use: a torchvision-style Dataset (PIL image -> ToTensor ->
    Normalize per sample), DataLoader with shuffle, fp32 Adam, ``loss.item()`` every step."""

    def __init__(self, cfg: dict, data: PreparedData, batch: int, lr: float = 1e-3):
        from PIL import Image
        from torch.utils.data import DataLoader, Dataset
        from torchvision import transforms

        mean, std = channel_stats(data.x_train)
        tf = transforms.Compose([transforms.ToTensor(),
                                 transforms.Normalize(mean.tolist(), std.tolist())])

        class ImageDataset(Dataset):
            def __init__(self, x, y):
                self.x = x.permute(0, 2, 3, 1).squeeze(-1).numpy()  # HW/HWC uint8 for PIL
                self.y = y

            def __len__(self):
                return len(self.y)

            def __getitem__(self, i):
                return tf(Image.fromarray(self.x[i])), int(self.y[i])

        torch.manual_seed(0)
        self.n = len(data.y_train)
        self.model = build_model(cfg["model"], data.input_shape, data.num_classes)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.train = DataLoader(ImageDataset(data.x_train, data.y_train), batch_size=batch,
                                shuffle=True, num_workers=0)
        self.val = DataLoader(ImageDataset(data.x_val, data.y_val), batch_size=1000)

    def epoch(self) -> float:
        """One training epoch; returns its seconds."""
        self.model.train()
        t0 = time.perf_counter()
        running = 0.0
        for xb, yb in self.train:
            self.opt.zero_grad()
            loss = F.cross_entropy(self.model(xb), yb)
            loss.backward()
            self.opt.step()
            running += loss.item()  # the per-batch logging the write-ups do
        return time.perf_counter() - t0

    @torch.no_grad()
    def val_acc(self) -> float:
        self.model.eval()
        correct = sum(int((self.model(xb).argmax(1) == yb).sum()) for xb, yb in self.val)
        return correct / len(self.val.dataset)


class FastLoop:
    """hpsweep's trainer, one epoch per call: train_run resumes from last.pt, so it can
    be interleaved with the seed loop; epoch times are read from its history (training
    phase only, like SeedLoop.epoch)."""

    def __init__(self, cfg: dict, data: PreparedData, workdir: Path):
        self.cfg, self.data = cfg, data
        self.out = Path(tempfile.mkdtemp(dir=workdir))
        self.history: list[dict] = []

    def epoch(self) -> None:
        m = train_run(self.cfg, self.data, self.out, seed=0, progress=False,
                      max_epochs_this_call=1)
        self.history = m.get("history", self.history)


def throughput(data: PreparedData, models: list[str], workdir: Path
               ) -> dict[str, dict[str, float]]:
    """Print samples/s per loop; returns {arch: {"seed": sps, "fast64": sps}}."""
    n = len(data.y_train)
    header = f"{'model':<20} {'loop':<22} {'prec':<5} {'batch':>5} {'samples/s':>10} " \
             f"{'epoch_s':>8} {'vs (a)':>7}"
    print(header)
    print("-" * len(header))
    out: dict[str, dict[str, float]] = {}
    for name, mcfg in MODELS.items():
        arch = mcfg["model.arch"]
        if arch not in models:
            continue
        epochs = 1 + TIMED_EPOCHS  # a warm-up epoch, then the timed ones
        seed = SeedLoop(run_config(mcfg, 64, False, epochs), data, 64)
        variants = {(bf16, batch): FastLoop(run_config(mcfg, batch, bf16, epochs), data, workdir)
                    for bf16, batch in ((False, 64), (True, 64), (True, 256))}
        seed_times = []
        for _ in range(epochs):  # interleaved: machine noise hits every loop alike
            seed_times.append(seed.epoch())
            for loop in variants.values():
                loop.epoch()
        s = min(seed_times[1:])
        base = n / s
        print(f"{name:<20} {'(a) seed-style':<22} {'fp32':<5} {64:>5} {base:>10.0f} "
              f"{s:>8.2f} {1.0:>6.1f}x", flush=True)
        best64 = 0.0
        for (bf16, batch), loop in variants.items():
            s = min(r["train_s"] for r in loop.history[1:])
            sps = n / s
            if batch == 64:
                best64 = max(best64, sps)
            print(f"{name:<20} {'(b) hpsweep fast path':<22} {'bf16' if bf16 else 'fp32':<5} "
                  f"{batch:>5} {sps:>10.0f} {s:>8.2f} {sps / base:>6.1f}x", flush=True)
        out[arch] = {"seed": base, "fast64": best64}
    return out


# The trainer's recommended recipe for time-to-accuracy: same model, larger batch,
# bf16, AdamW with a OneCycle schedule (what params.toml's baseline uses).
RECOMMENDED = {"train.batch_size": 256, "train.optimizer": "adamw", "train.lr": 3e-3,
               "train.weight_decay": 5e-4, "train.scheduler": "onecycle"}


def time_to_accuracy(data: PreparedData, target: float, max_epochs: int, workdir: Path
                     ) -> tuple[tuple[float, int] | None, tuple[float, int] | None]:
    """Wall seconds and epochs until validation accuracy >= target, for the seed loop
    (batch 64, Adam 1e-3) and the trainer (RECOMMENDED); None = not within max_epochs."""
    mlp = MODELS["MLP 784-512-512-10"]
    t0 = time.perf_counter()
    seed = SeedLoop(run_config(mlp, 64, False, max_epochs), data, 64)
    seed_hit = None
    for epoch in range(1, max_epochs + 1):
        seed.epoch()
        acc = seed.val_acc()
        print(f"  (a) seed-style epoch {epoch}: val {acc:.4f} at {time.perf_counter() - t0:.1f} s",
              flush=True)
        if acc >= target:
            seed_hit = (time.perf_counter() - t0, epoch)
            break

    cfg = resolve_run(Params().run_base(), {**mlp, **RECOMMENDED, "train.epochs": max_epochs,
                                            "train.bf16": "auto", "train.label_smoothing": 0.0,
                                            "train.eval_batch_size": 4096})
    cfg["device"] = "cpu"
    fast_hit = None
    t0 = time.perf_counter()

    def on_epoch(epoch: int, acc: float) -> None:
        nonlocal fast_hit
        print(f"  (b) hpsweep epoch {epoch}: val {acc:.4f} at {time.perf_counter() - t0:.1f} s",
              flush=True)
        if acc >= target:
            fast_hit = (time.perf_counter() - t0, epoch)
            raise Pruned(f"reached {target}")  # ends the run at once, cleanly

    train_run(cfg, data, Path(tempfile.mkdtemp(dir=workdir)), seed=0, progress=False,
              on_epoch=on_epoch)
    return seed_hit, fast_hit


def _print_setup(source: object, data: PreparedData) -> None:
    """What the figures below were measured on: command, date, machine, torch, data."""
    cpu = torch.device("cpu")
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))
    print(f"date:    {dt.datetime.now().isoformat(timespec='seconds')}")
    print(f"machine: {device_name(cpu)}, {os.cpu_count()} logical cores, "
          f"{torch.get_num_threads()} torch threads, native bf16: {bf16_enabled('auto', cpu)}, "
          f"{platform.system()} {platform.machine()}")
    print(f"torch:   {torch.__version__}, python {platform.python_version()}; "
          f"device for (b): cpu (auto would pick {resolve_device('auto')})")
    print(f"data:    {source} ({data.dataset}), {len(data.y_train)} train images "
          f"{tuple(data.input_shape)}, {len(data.y_val)} val; "
          f"1 warm-up + best of {TIMED_EPOCHS} timed epochs each, loops interleaved")
    print()


def _median_spread(values: list[float]) -> str:
    """'2.3x' for one value; '2.3x (2.1-2.6)' for the median and spread of several."""
    import statistics

    text = f"{statistics.median(values):.1f}x"
    return text if len(values) == 1 else f"{text} ({min(values):.1f}-{max(values):.1f})"


def default_data() -> Path | None:
    """The default study's prepared real Fashion-MNIST, when `make run` has made it."""
    path = StudyPaths.from_params(Params()).prepared
    return path if path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hpsweep bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=default_data(),
                   help="prepared dataset (.pt); default: data/prepared/fashion-mnist.pt "
                   "if present, else synthetic MNIST-shaped tensors")
    p.add_argument("--synthetic", action="store_true", help="use synthetic tensors")
    p.add_argument("--n", type=int, default=20000, help="training images per epoch "
                   "(default 20000; --quick uses 4096)")
    p.add_argument("--quick", action="store_true",
                   help="small epochs and no time-to-accuracy: under a minute")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--models", nargs="+", choices=["mlp", "cnn"], default=["mlp", "cnn"])
    p.add_argument("--target", type=float, default=0.88,
                   help="validation accuracy for time-to-accuracy (default 0.88)")
    p.add_argument("--repeats", type=int, default=3,
                   help="throughput measured this many times, one after another; the "
                   "speedup is their median with the min-max spread (default 3; --quick: 1)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    real = load_prepared(args.data) if args.data and not args.synthetic else None
    n = 4096 if args.quick else args.n
    n_val = 1024
    data = subset(real, n, n_val) if real is not None else synthetic(n, n_val)
    n = len(data.y_train)

    _print_setup(args.data if real is not None else "synthetic", data)
    repeats = 1 if args.quick else max(1, args.repeats)
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        speedups: dict[str, list[float]] = {}
        for r in range(repeats):
            if repeats > 1:
                print(f"{'' if r == 0 else chr(10)}repeat {r + 1} of {repeats}")
            for arch, v in throughput(data, args.models, Path(tmp)).items():
                speedups.setdefault(arch, []).append(v["fast64"] / v["seed"])
        print(f"\nsamples/s and epoch_s ({n} images): training phase of the fastest timed epoch "
              "(no evaluation). (b) uses channels_last for CNNs and fused Adam.")
        print("speedup " + " ".join(f"{arch}={_median_spread(v)}" for arch, v in speedups.items())
              + f"   (batch 64 both; median of {repeats} repeat(s)"
              + (", min-max)" if repeats > 1 else ")"))
        if args.quick or real is None or "mlp" not in args.models:
            print("time-to-accuracy: skipped (needs --data with real images, not --quick)")
            return 0
        print(f"\ntime to {args.target:.0%} validation accuracy, full training split "
              f"({len(real.y_train)} images): (a) batch 64 Adam 1e-3 fp32; (b) hpsweep "
              f"{RECOMMENDED}")
        seed_hit, fast_hit = time_to_accuracy(real, args.target, 15, Path(tmp))
        if seed_hit and fast_hit:
            ratio = f"{seed_hit[0] / fast_hit[0]:.1f}x"
        else:
            ratio = "n/a"
        def fmt(hit):
            return f"{hit[0]:.1f} s ({hit[1]} epochs)" if hit else "not reached in 15 epochs"
        print(f"seed-style {fmt(seed_hit)}, hpsweep {fmt(fast_hit)}")
        print(f"time-to-{args.target:.0%}: mlp={ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
