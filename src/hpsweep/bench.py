"""Training throughput: the write-ups' loop vs hpsweep's fast path, side by side in one run.

(a) seed-style: a torchvision-style Dataset (PIL image -> ToTensor -> Normalize per
    sample), DataLoader(batch 64, shuffle), fp32, ``loss.item()`` every step;
(b) hpsweep.train.train_run: the dataset as one normalised tensor, randperm index
    slices, no per-step host sync; fp32 and bf16 autocast (+ channels_last for CNNs),
    batch 64 and 256.

Both train the same models (build_model) with Adam: the MLP 784-512-512-10 and the
CNN 32/64 + FC 128. Each variant runs a warm-up epoch, then two timed epochs and
reports the faster (less disturbed by other processes); the fast path's time is its
training phase (evaluation excluded), read from metrics.json.

    python benchmarks/bench_train.py --quick          # < 1 min on 2 cores
    python benchmarks/bench_train.py --data data/prepared/fashion-mnist.pt --n 20000

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

from hpsweep.config import Params, resolve_run
from hpsweep.data.prepared import PreparedData, load_prepared, tensor_checksum
from hpsweep.models import build_model
from hpsweep.train import train_run
from hpsweep.training.device import bf16_enabled, channel_stats, device_name, resolve_device

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
    return PreparedData(**t, classes=[str(i) for i in range(10)], dataset="synthetic",
                        checksum=tensor_checksum(t))


def subset(data: PreparedData, n_train: int, n_val: int) -> PreparedData:
    t = {"x_train": data.x_train[:n_train], "y_train": data.y_train[:n_train],
         "x_val": data.x_val[:n_val], "y_val": data.y_val[:n_val],
         "x_test": data.x_test[:16], "y_test": data.y_test[:16]}
    return PreparedData(**t, classes=data.classes, dataset=data.dataset,
                        checksum=tensor_checksum(t))


def run_config(model: dict, batch: int, bf16: bool, epochs: int) -> dict:
    cfg = resolve_run(Params().run_base(), {
        **model, "train.epochs": epochs, "train.batch_size": batch, "train.optimizer": "adam",
        "train.lr": 1e-3, "train.weight_decay": 0.0, "train.scheduler": "none",
        "train.label_smoothing": 0.0, "train.bf16": "on" if bf16 else "off",
        "train.log_every_steps": 50, "train.eval_batch_size": 4096})
    cfg["device"] = "cpu"
    return cfg


def seed_style(cfg: dict, data: PreparedData, batch: int) -> tuple[float, float]:
    """The loop the write-ups use; returns (samples/s, epoch seconds) of the timed epoch."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    mean, std = channel_stats(data.x_train)
    tf = transforms.Compose([transforms.ToTensor(),
                             transforms.Normalize(mean.tolist(), std.tolist())])

    class ImageDataset(Dataset):
        def __init__(self, x, y):
            self.x = x.permute(0, 2, 3, 1).squeeze(-1).numpy()  # HW or HWC uint8, like PIL wants
            self.y = y

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return tf(Image.fromarray(self.x[i])), int(self.y[i])

    torch.manual_seed(0)
    model = build_model(cfg["model"], data.input_shape, data.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(ImageDataset(data.x_train, data.y_train), batch_size=batch,
                        shuffle=True, num_workers=0)

    def epoch() -> float:
        model.train()
        t0 = time.perf_counter()
        running = 0.0
        for xb, yb in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            running += loss.item()
        return time.perf_counter() - t0

    epoch()  # warm-up
    s = min(epoch() for _ in range(TIMED_EPOCHS))
    return len(data.y_train) / s, s


def fast_path(cfg: dict, data: PreparedData, workdir: Path) -> tuple[float, float]:
    out = Path(tempfile.mkdtemp(dir=workdir))
    m = train_run(cfg, data, out, seed=0, progress=False)
    s = min(r["train_s"] for r in m["history"][1:])  # epoch 1 is the warm-up
    return len(data.y_train) / s, s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hpsweep bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="prepared dataset (.pt); default: synthetic "
                   "MNIST-shaped tensors")
    p.add_argument("--n", type=int, default=20000, help="training images per epoch "
                   "(default 20000; --quick uses 4096)")
    p.add_argument("--quick", action="store_true", help="small epochs: under a minute")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--models", nargs="+", choices=["mlp", "cnn"], default=["mlp", "cnn"])
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    n = 4096 if args.quick else args.n
    n_val = 1024
    data = subset(load_prepared(args.data), n, n_val) if args.data else synthetic(n, n_val)
    n = len(data.y_train)

    cpu = torch.device("cpu")
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))
    print(f"date:    {dt.datetime.now().isoformat(timespec='seconds')}")
    print(f"machine: {device_name(cpu)}, {os.cpu_count()} logical cores, "
          f"{torch.get_num_threads()} torch threads, native bf16: {bf16_enabled('auto', cpu)}, "
          f"{platform.system()} {platform.machine()}")
    print(f"torch:   {torch.__version__}, python {platform.python_version()}; "
          f"device for (b): cpu (auto would pick {resolve_device('auto')})")
    print(f"data:    {args.data or 'synthetic'} ({data.dataset}), {n} train images "
          f"{tuple(data.input_shape)}, {len(data.y_val)} val; "
          f"1 warm-up + best of {TIMED_EPOCHS} timed epochs each")
    print()
    header = f"{'model':<20} {'loop':<22} {'prec':<5} {'batch':>5} {'samples/s':>10} " \
             f"{'epoch_s':>8} {'vs (a)':>7}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        for name, mcfg in MODELS.items():
            if mcfg["model.arch"] not in args.models:
                continue
            base_sps, s = seed_style(run_config(mcfg, 64, False, 1 + TIMED_EPOCHS), data, 64)
            print(f"{name:<20} {'(a) seed-style':<22} {'fp32':<5} {64:>5} {base_sps:>10.0f} "
                  f"{s:>8.2f} {1.0:>6.1f}x", flush=True)
            for bf16, batch in ((False, 64), (True, 64), (True, 256)):
                sps, s = fast_path(run_config(mcfg, batch, bf16, 1 + TIMED_EPOCHS), data, Path(tmp))
                prec = "bf16" if bf16 else "fp32"
                print(f"{name:<20} {'(b) hpsweep fast path':<22} {prec:<5} {batch:>5} "
                      f"{sps:>10.0f} {s:>8.2f} {sps / base_sps:>6.1f}x", flush=True)
    print(f"\nsamples/s and epoch_s ({n} images): training phase of the fastest timed epoch "
          "(no evaluation). (b) always uses channels_last for CNNs and fused Adam.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
