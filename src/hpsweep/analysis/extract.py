"""TensorBoard event files of a run -> tidy scalars.csv + results.toml, checked.

The trainer logs every epoch to TensorBoard (tb/) and writes metrics.json
last. Extraction reads the events back with TensorBoard's own
``EventAccumulator`` (no TensorFlow), writes

    scalars.csv    one row per (tag, step): tag, step, value, wall_time
    results.toml   final/best metrics derived from the events, the run's
                   hyperparameters (config.json) and its status

and checks the events against metrics.json: the best validation accuracy
(within 1e-6; events hold float32) and the number of epochs must agree, or
:class:`ExtractionMismatch` is raised. A mismatch means the event files and
the metrics describe different training sessions (a stale tb/ folder, a
second writer, a truncated file), so nothing derived from them is written.

A resumed run leaves one event file per session. As TensorBoard does when it
purges orphaned data, the events of an earlier session at or after the
first step a later session wrote for the same tag are dropped: the later
session redid those steps.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import tomli_w

from hpsweep.core.atomic import atomic_path, write_text
from hpsweep.core.metric_names import EPOCH_TAGS, STEP_TAG, TAG_METRIC

SCALAR_COLUMNS = ("tag", "step", "value", "wall_time")
TOLERANCE = 1e-6  # float32 events vs float64 metrics: rounding is < 1e-7 on [0, 1]


class ExtractionError(RuntimeError):
    """A run directory cannot be extracted (no events, unreadable files)."""


class ExtractionMismatch(ExtractionError):
    """The TensorBoard events disagree with metrics.json."""


# ------------------------------------------------------------------ reading


def event_files(tb_dir: Path) -> list[Path]:
    return sorted(p for p in Path(tb_dir).rglob("events.out.tfevents.*") if p.is_file())


def _read_file(path: Path) -> pd.DataFrame:
    from tensorboard.backend.event_processing.event_accumulator import (
        SCALARS,
        EventAccumulator,
    )

    acc = EventAccumulator(str(path), size_guidance={SCALARS: 0})  # 0 = keep every event
    acc.Reload()
    rows = [(tag, int(e.step), float(e.value), float(e.wall_time))
            for tag in acc.Tags().get("scalars", []) for e in acc.Scalars(tag)]
    return pd.DataFrame(rows, columns=list(SCALAR_COLUMNS))


def read_scalars(tb_dir: str | Path) -> pd.DataFrame:
    """Every scalar of every event file under ``tb_dir`` as a tidy frame.

    Sorted by tag then step; one row per (tag, step): a later session's value
    replaces an earlier one, and an earlier session's steps at or beyond a later
    session's first step of that tag are dropped (they were redone).
    """
    tb_dir = Path(tb_dir)
    files = event_files(tb_dir)
    if not files:
        raise ExtractionError(f"{tb_dir}: no TensorBoard event files; the run wrote no "
                              "events (retrain it: delete its metrics.json)")
    sessions = []
    for path in files:
        df = _read_file(path)
        if len(df):
            sessions.append(df)
    if not sessions:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in
                             zip(SCALAR_COLUMNS, ("str", "int64", "float64", "float64"),
                                 strict=True)})
    # Sessions in the order they started (file names carry a second-resolution
    # timestamp; the first event's wall time orders files of the same second).
    sessions.sort(key=lambda df: df["wall_time"].min())
    kept: list[pd.DataFrame] = []
    for i, df in enumerate(sessions):
        later = pd.concat(sessions[i + 1:]) if i + 1 < len(sessions) else None
        if later is not None and len(later):
            first = later.groupby("tag")["step"].min()
            cut = df["tag"].map(first)
            df = df[cut.isna() | (df["step"] < cut)]
        kept.append(df)
    out = pd.concat(kept, ignore_index=True)
    out = (out.sort_values(["tag", "step", "wall_time"])
              .drop_duplicates(["tag", "step"], keep="last")
              .reset_index(drop=True))
    return out


def epoch_frame(scalars: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch curves: index epoch (1-based), one column per epoch tag present."""
    df = scalars[scalars["tag"].isin(EPOCH_TAGS)]
    if df.empty:
        return pd.DataFrame(index=pd.Index([], name="epoch", dtype="int64"))
    wide = df.pivot(index="step", columns="tag", values="value").sort_index()
    wide.index.name = "epoch"
    return wide[[t for t in EPOCH_TAGS if t in wide.columns]]


# ------------------------------------------------------------------ deriving


def _f(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def derive_metrics(scalars: pd.DataFrame) -> dict[str, Any]:
    """Final and best metrics from the per-epoch events.

    The best epoch is the first epoch that reached the highest validation accuracy
    (the trainer keeps the checkpoint of that epoch). Only its accuracy is checked
    against metrics.json: a tie-break rule is the trainer's business.
    """
    ep = epoch_frame(scalars)
    out: dict[str, Any] = {"epochs": int(ep["val/acc"].notna().sum()) if "val/acc" in ep else 0}
    if "val/acc" in ep and ep["val/acc"].notna().any():
        v = ep.dropna(subset=["val/acc"])
        best = int(v["val/acc"].idxmax())  # the first epoch that reached the maximum
        out["best"] = {"val_acc": _f(v.at[best, "val/acc"]),
                       "val_loss": _f(v.at[best, "val/loss"]) if "val/loss" in v else None,
                       "epoch": best,
                       "train_acc": _f(v.at[best, "train/acc"]) if "train/acc" in v else None}
        out["min_val_loss"] = _f(v["val/loss"].min()) if "val/loss" in v else None
    if len(ep):
        last = ep.iloc[-1]
        names = {t: m for t, m in TAG_METRIC.items() if m != "epoch_s"}
        out["final"] = {"epoch": int(ep.index[-1]),
                        **{n: _f(last[t]) for t, n in names.items() if t in ep}}
        fin = out["final"]
        if fin.get("train_acc") is not None and fin.get("val_acc") is not None:
            # > 0: the model fits the training data better than it generalises.
            fin["generalization_gap"] = fin["train_acc"] - fin["val_acc"]
    if "time/epoch_s" in ep and ep["time/epoch_s"].notna().any():
        out["timing"] = {"epoch_s_mean": _f(ep["time/epoch_s"].mean()),
                         "epoch_s_sum": _f(ep["time/epoch_s"].sum())}
    steps = scalars[scalars["tag"] == STEP_TAG]
    if len(steps):
        out["steps"] = {"logged": len(steps), "last_step": int(steps["step"].max()),
                        "last_loss": _f(steps["value"].iloc[-1])}
    return out


def _drop_none(obj: Any) -> Any:
    """TOML has no null: leave missing values out."""
    if isinstance(obj, dict):
        out = {k: _drop_none(v) for k, v in obj.items()}
        return {k: v for k, v in out.items() if v is not None and v != {}}
    if isinstance(obj, list | tuple):
        return [v for v in (_drop_none(x) for x in obj) if v is not None]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def hyperparameters(run_cfg: dict[str, Any]) -> dict[str, Any]:
    """{"model": {...}, "train": {...}} -> {"model.width": 512, "train.lr": 0.003, ...}."""
    flat: dict[str, Any] = {}
    for section in ("data", "model", "train"):
        for k, v in (run_cfg.get(section) or {}).items():
            flat[f"{section}.{k}"] = v
    if "device" in run_cfg:
        flat["device"] = run_cfg["device"]
    return flat


def check_against_metrics(derived: dict[str, Any], metrics: dict[str, Any],
                          where: str = "run") -> None:
    """Raise :class:`ExtractionMismatch` naming every disagreement."""
    problems = []
    ev_best = (derived.get("best") or {}).get("val_acc")
    m_best = _f(metrics.get("best_val_acc"))
    if (ev_best is None) != (m_best is None) or (
            ev_best is not None and abs(ev_best - m_best) > TOLERANCE):
        problems.append(f"best_val_acc: events {ev_best}, metrics.json {m_best}")
    if "epochs_run" in metrics and int(metrics["epochs_run"]) != derived["epochs"]:
        problems.append(f"epochs: events have {derived['epochs']} epochs of val/acc, "
                        f"metrics.json epochs_run = {metrics['epochs_run']}")
    ev_final = (derived.get("final") or {}).get("val_acc")
    m_final = _f(metrics.get("final_val_acc"))
    if ev_final is not None and m_final is not None and abs(ev_final - m_final) > TOLERANCE:
        problems.append(f"final_val_acc: events {ev_final}, metrics.json {m_final}")
    if problems:
        raise ExtractionMismatch(
            f"{where}: TensorBoard events disagree with metrics.json ({'; '.join(problems)}); "
            "the tb/ folder holds events of another training session. Retrain the run "
            "(delete its directory) rather than trust either file.")


# ------------------------------------------------------------------ one run


def read_run_config(run_dir: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """config.json (written before training), else the config recorded in metrics.json."""
    path = run_dir / "config.json"
    if path.is_file():
        return json.loads(path.read_text())
    return dict((metrics.get("provenance") or {}).get("run_config") or {})


def build_results(run_dir: Path, scalars: pd.DataFrame, metrics: dict[str, Any],
                  config: dict[str, Any]) -> dict[str, Any]:
    derived = derive_metrics(scalars)
    check_against_metrics(derived, metrics, where=str(run_dir))
    prov = metrics.get("provenance") or {}
    res = {
        "run_id": config.get("run_id") or run_dir.name,
        "status": metrics.get("status"),
        "seed": metrics.get("seed", config.get("seed")),
        "signature": config.get("signature"),
        "epochs": derived["epochs"],
        "best": derived.get("best"),
        "final": derived.get("final"),
        "min_val_loss": derived.get("min_val_loss"),
        "timing": {**(derived.get("timing") or {}),
                   "total_time_s": _f(metrics.get("total_time_s")),
                   "samples_per_s": _f(metrics.get("samples_per_s"))},
        "steps": derived.get("steps"),
        "model": {"n_params": metrics.get("n_params"),
                  "peak_mem_mb": _f(metrics.get("peak_mem_mb"))},
        "test": {"acc": _f(metrics.get("test_acc")), "loss": _f(metrics.get("test_loss"))},
        "hyperparameters": hyperparameters(config),
        "provenance": {k: prov.get(k) for k in ("torch", "python", "device", "device_name",
                                                "bf16", "threads", "code_version",
                                                "data_checksum", "host")},
        "source": {"events": [str(p.relative_to(run_dir)) for p in event_files(run_dir / "tb")],
                   "tags": sorted(scalars["tag"].unique().tolist()),
                   "checked_against": "metrics.json"},
    }
    return _drop_none(res)


def extract_run(run_dir: str | Path, scalars_out: str | Path | None = None,
                results_out: str | Path | None = None) -> dict[str, Any]:
    """Extract one completed run; write scalars.csv and results.toml (atomically).

    Raises :class:`ExtractionError` when the run is incomplete or has no events and
    :class:`ExtractionMismatch` when the events disagree with metrics.json; in both
    cases nothing is written.
    """
    run_dir = Path(run_dir)
    mpath = run_dir / "metrics.json"
    if not mpath.is_file():
        raise ExtractionError(f"{run_dir}: no metrics.json; the run is not complete")
    metrics = json.loads(mpath.read_text())
    scalars = read_scalars(run_dir / "tb")
    results = build_results(run_dir, scalars, metrics, read_run_config(run_dir, metrics))
    with atomic_path(scalars_out or run_dir / "scalars.csv") as tmp:
        scalars.to_csv(tmp, index=False)
    write_text(results_out or run_dir / "results.toml",
               f"# Extracted from {run_dir.name}/tb by hpsweep.analysis.extract; checked against "
               "metrics.json.\n" + tomli_w.dumps(results))
    return results
