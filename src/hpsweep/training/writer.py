"""What a run leaves on disk besides checkpoints: TensorBoard events, metrics.json,
confusion.csv."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import torch

from hpsweep.core.atomic import write_text
from hpsweep.core.dotted import flatten
from hpsweep.core.metric_names import EPOCH_SCALARS, HPARAM_METRICS, STEP_TAG


def finite_or_none(obj: Any) -> Any:
    """NaN/inf are not JSON: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_none(v) for v in obj]
    return obj


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    write_text(path, json.dumps(finite_or_none(metrics), indent=2, sort_keys=False,
                                allow_nan=False) + "\n")


def write_confusion(path: Path, conf: torch.Tensor, classes: list[str]) -> None:
    """Rows: true class, columns: predicted class; header row and first column name them."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["true\\pred", *classes])
    for name, row in zip(classes, conf.tolist(), strict=True):
        w.writerow([name, *row])
    write_text(path, buf.getvalue())


class TBLog:
    """TensorBoard scalars of one run: per-epoch curves (step = epoch, 1-based),
    the step loss (step = global step) and the hparams plugin entry."""

    def __init__(self, log_dir: Path):
        from torch.utils.tensorboard import SummaryWriter  # slow import; only when training

        self.log_dir = log_dir
        self.w = SummaryWriter(log_dir=str(log_dir))

    def step_loss(self, value: float, step: int) -> None:
        self.w.add_scalar(STEP_TAG, value, step)

    def epoch(self, epoch: int, row: dict[str, float]) -> None:
        for key, tag in EPOCH_SCALARS.items():
            self.w.add_scalar(tag, row[key], epoch)

    def hparams(self, run_cfg: dict[str, Any], metrics: dict[str, Any]) -> None:
        # TensorBoard takes scalars and text: lists as their JSON text
        hp = {k: json.dumps(list(v)) if isinstance(v, list | tuple) else v
              for k, v in flatten(run_cfg).items()}
        hp = {k: v for k, v in hp.items() if isinstance(v, bool | int | float | str)}
        hp["seed"] = metrics["seed"]
        hp["status"] = metrics["status"]
        md = {f"hparam/{k}": float(metrics[k]) for k in HPARAM_METRICS
              if isinstance(metrics.get(k), int | float) and math.isfinite(metrics[k])}
        # run_name="." keeps the hparams events in tb/ itself, not a timestamped subdir.
        self.w.add_hparams(hp, md, run_name=".")

    def flush(self) -> None:
        self.w.flush()

    def close(self) -> None:
        self.w.close()
