"""Figures of a study (reports/figures/*.png), headless.

Built on ``matplotlib.figure.Figure`` (Agg canvas, no pyplot state), so it runs
on machines without a display and inside parallel jobs. Every figure of
:func:`figure_paths` is always written, as a "no data" panel where a study
has nothing to show yet, so a Snakemake rule can declare them all as outputs.
Each file is written atomically.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from hpsweep.analysis.extract import epoch_frame
from hpsweep.analysis.tables import (
    ACC,
    CI,
    MEAN,
    config_table,
    experiment_table,
    grid_long,
    read_experiment_summary,
    sweep_table,
)
from hpsweep.core.atomic import atomic_path
from hpsweep.core.layout import experiment_summary_path, figure_paths
from hpsweep.core.metric_names import EPOCH_SCALARS
from hpsweep.core.plan import format_value
from hpsweep.core.study import Study

LOG_PARAMS = ("lr", "weight_decay")
GROUP_COLORS = {"baseline": "black", "sweep": "tab:blue", "grid": "tab:orange",
                "config": "tab:green"}
MAX_CURVES = 6
MAX_RANKED = 25


# ------------------------------------------------------------------ paths


def save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def _empty(title: str, why: str) -> Figure:
    fig = Figure(figsize=(5, 2.5))
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", wrap=True, color="0.4")
    return fig


def _err(mean: pd.Series, half: pd.Series) -> np.ndarray:
    """Error bars of mean ± half clipped to [0, 1]: an accuracy interval ends there (a t
    interval from two seeds can reach far beyond it)."""
    m = mean.to_numpy(float)
    h = half.fillna(0).to_numpy(float)
    return np.vstack([m - np.clip(m - h, 0, 1), np.clip(m + h, 0, 1) - m])


def _pct(ax, axis: str = "y") -> None:
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(1.0))


# ------------------------------------------------------------------ figures


def _numeric(values: list[Any]) -> bool:
    return bool(values) and all(isinstance(v, int | float) and not isinstance(v, bool)
                                for v in values)


def _log_axis(param: str, values: list[Any]) -> bool:
    if not _numeric(values) or min(values) <= 0:
        return False
    return param.split(".")[-1] in LOG_PARAMS or max(values) / min(values) >= 50


def sweep_figure(table: pd.DataFrame, name: str, param: str, values: list[Any],
                 baseline_value: Any = None) -> Figure:
    """Mean best validation accuracy per value with 95 % CI bars and each seed's dot."""
    agg = sweep_table(table, name)
    runs = table[(table["group"] == "sweep") & (table["name"] == name)]
    if agg.empty or agg[MEAN].isna().all():
        return _empty(f"sweep {name}: {param}", "no completed runs")
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    labels = [format_value(v) for v in values]
    numeric = _numeric(values)
    pos = {lab: (float(v) if numeric else i) for i, (lab, v) in
           enumerate(zip(labels, values, strict=True))}
    agg = agg[agg["value"].isin(pos)]
    xs = agg["value"].map(pos).to_numpy(float)
    ax.errorbar(xs, agg[MEAN], yerr=_err(agg[MEAN], agg[CI]), marker="o", capsize=4, lw=1.5,
                label="mean ± 95 % CI" if agg[CI].notna().any() else "mean (one seed)")
    seeds = runs[runs["value"].isin(pos)]
    if len(seeds):
        ax.scatter(seeds["value"].map(pos).to_numpy(float), pd.to_numeric(seeds[ACC]),
                   s=12, color="0.5", alpha=0.7, zorder=3, label="seeds")
    best = agg[agg["best"]]
    if len(best):
        ax.scatter(best["value"].map(pos).to_numpy(float), best[MEAN], s=140,
                   facecolors="none", edgecolors="tab:red", lw=1.5, zorder=4, label="best")
    if baseline_value is not None and format_value(baseline_value) in pos:
        ax.axvline(pos[format_value(baseline_value)], color="0.6", ls=":", lw=1,
                   label="baseline value")
    if _log_axis(param, values):
        ax.set_xscale("log")
    if numeric:
        ax.set_xticks([float(v) for v in values], labels=labels)
        ax.minorticks_off()
    else:
        ax.set_xticks(range(len(labels)), labels=labels, rotation=30 if len(labels) > 5 else 0)
    ax.set_xlabel(param)
    ax.set_ylabel("best validation accuracy")
    _pct(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"sweep {name}: {param}")
    return fig


def grid_figure(table: pd.DataFrame, name: str, xparam: str, yparam: str,
                xvalues: list[Any], yvalues: list[Any]) -> Figure:
    """Annotated heatmap of mean accuracy (± CI half-width when there are seeds)."""
    long = grid_long(table, name)
    if long.empty or long[MEAN].isna().all():
        return _empty(f"grid {name}", "no completed runs")
    xl, yl = [format_value(v) for v in xvalues], [format_value(v) for v in yvalues]
    mean = long.pivot(index="y", columns="x", values=MEAN).reindex(index=yl, columns=xl)
    ci = long.pivot(index="y", columns="x", values=CI).reindex(index=yl, columns=xl)
    m = mean.to_numpy(float)
    fig = Figure(figsize=(1.3 * len(xl) + 2.5, 1.0 * len(yl) + 1.8))
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap="viridis", aspect="auto", origin="lower")
    fig.colorbar(im, ax=ax, label="mean best validation accuracy", format=PercentFormatter(1.0))
    finite = m[np.isfinite(m)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0
    for i in range(len(yl)):
        for j in range(len(xl)):
            v = m[i, j]
            if not math.isfinite(v):
                ax.text(j, i, "–", ha="center", va="center", color="0.5")
                continue
            text = f"{100 * v:.1f}"
            h = ci.iat[i, j]
            if pd.notna(h):
                text += f"\n±{100 * h:.1f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="black" if v > mid else "white")
    if finite.size:
        i, j = np.unravel_index(np.nanargmax(m), m.shape)
        ax.add_patch(_box(j, i))
    ax.set_xticks(range(len(xl)), labels=xl)
    ax.set_yticks(range(len(yl)), labels=yl)
    ax.set_xlabel(xparam)
    ax.set_ylabel(yparam)
    ax.set_title(f"grid {name}: accuracy (%)")
    return fig


def _box(x: float, y: float):
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, ec="tab:red", lw=2)


def _group_of(where: str) -> str:
    return (where or "sweep").split(";")[0].split(" ")[0]


def scatter_figure(configs: pd.DataFrame, xcol: str, xlabel: str, title: str) -> Figure:
    """Configurations: mean accuracy (± CI) against cost (time or parameters)."""
    df = configs[configs[MEAN].notna() & pd.to_numeric(configs.get(xcol), errors="coerce")
                 .notna()] if len(configs) and xcol in configs else pd.DataFrame()
    if df.empty:
        return _empty(title, "no completed runs")
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.add_subplot()
    groups = df["where"].map(_group_of)
    for grp in dict.fromkeys(groups):
        d = df[groups == grp]
        ax.errorbar(d[xcol].astype(float), d[MEAN], yerr=_err(d[MEAN], d[CI]), fmt="o",
                    ms=5, capsize=2, color=GROUP_COLORS.get(grp, "tab:purple"), label=grp)
    for i, (_, r) in enumerate(df.head(3).iterrows()):  # the three best, named
        ax.annotate(f"#{i + 1} {str(r['label'])[:36]}", (float(r[xcol]), r[MEAN]), fontsize=7,
                    xytext=(6, -4 - 11 * i), textcoords="offset points",
                    arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6})
    x = df[xcol].astype(float)
    if (x > 0).all() and x.max() / x.min() >= 20:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mean best validation accuracy")
    _pct(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return fig


def ranking_figure(configs: pd.DataFrame, baselines: dict[str, float] | None = None,
                   top: int = MAX_RANKED) -> Figure:
    """Horizontal bars: the best configurations, best on top, published numbers as lines."""
    df = configs[configs[MEAN].notna()].head(top) if len(configs) else pd.DataFrame()
    if df.empty:
        return _empty("ranking", "no completed runs")
    fig = Figure(figsize=(7.5, 0.32 * len(df) + 1.6))
    ax = fig.add_subplot()
    y = np.arange(len(df))[::-1]
    colors = [GROUP_COLORS.get(_group_of(w), "tab:purple") for w in df["where"]]
    ax.barh(y, df[MEAN], xerr=_err(df[MEAN], df[CI]), color=colors, alpha=0.85, capsize=2)
    ax.set_yticks(y, labels=[str(s)[:45] for s in df["label"]], fontsize=8)
    lo = float((df[MEAN] - df[CI].fillna(0)).min())
    vals = list((baselines or {}).values())
    lo = min([lo, *vals]) if vals else lo
    hi = max([float(df[MEAN].max()), *vals]) if vals else float(df[MEAN].max())
    ax.set_xlim(max(0.0, lo - 0.05 * max(hi - lo, 0.02) - 0.01), min(1.0, hi + 0.01))
    for i, (label, acc) in enumerate((baselines or {}).items()):
        ax.axvline(acc, color=f"C{(i + 3) % 10}", ls="--", lw=1, label=f"{label}: {acc:.1%}")
    _pct(ax, "x")
    ax.set_xlabel("mean best validation accuracy (± 95 % CI)")
    ax.grid(axis="x", alpha=0.3)
    if baselines:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                  title="published", title_fontsize=7)
    shown = f"top {len(df)} of {len(configs)}" if len(configs) > len(df) else f"all {len(df)}"
    ax.set_title(f"{shown} configurations (colour: where the configuration comes from)")
    return fig


def run_curves(study: Study, run_id: str) -> pd.DataFrame:
    """Per-epoch curves of a run: scalars.csv if extracted, else metrics.json history."""
    d = study.paths.run_dir(run_id)
    if (d / "scalars.csv").is_file():
        return epoch_frame(pd.read_csv(d / "scalars.csv"))
    if (d / "metrics.json").is_file():
        hist = json.loads((d / "metrics.json").read_text()).get("history") or []
        if hist:
            h = pd.DataFrame(hist).set_index("epoch")
            return h.rename(columns=EPOCH_SCALARS)
    return pd.DataFrame()


def curves_figure(study: Study, shortlist: pd.DataFrame, top: int = MAX_CURVES) -> Figure:
    """Train vs validation accuracy and loss per epoch for the shortlist (seed mean,
    each seed faint): a widening gap is overfitting, two low curves underfitting."""
    df = shortlist.head(top) if len(shortlist) else shortlist
    if df.empty:
        return _empty("training curves", "no shortlist yet")
    k = len(df)
    fig = Figure(figsize=(3.3 * k, 5.6))
    axes = fig.subplots(2, k, squeeze=False, sharex="col", sharey="row")
    for j, (_, row) in enumerate(df.iterrows()):
        curves = [c for c in (run_curves(study, r) for r in str(row["run_ids"]).split(";") if r)
                  if len(c)]
        last = 0
        for i, metric in enumerate(("acc", "loss")):
            ax = axes[i, j]
            for split, style in (("train", "--"), ("val", "-")):
                tag = f"{split}/{metric}"
                series = [c[tag] for c in curves if tag in c]
                if not series:
                    continue
                for s in series if len(series) > 1 else []:
                    ax.plot(s.index, s.values, style, color="0.75", lw=0.8)
                mean = pd.concat(series, axis=1).mean(axis=1)
                ax.plot(mean.index, mean.values, style, lw=1.8, marker="o",
                        ms=3 if len(mean) > 1 else 5,
                        color="tab:blue" if split == "train" else "tab:orange", label=split)
                last = max(last, int(mean.index.max()))
            ax.grid(alpha=0.3)
            if metric == "acc":
                _pct(ax)
                ax.set_title(f"#{int(row['rank'])} {str(row['label'])[:32]}", fontsize=8)
            else:
                ax.set_xlabel("epoch")
                if last:
                    ax.set_xlim(0.5, last + 0.5)
                    if last <= 10:
                        ax.set_xticks(range(1, last + 1))
                    else:
                        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if j == 0:
                ax.set_ylabel("accuracy" if metric == "acc" else "loss")
                ax.legend(fontsize=7)
    fig.suptitle("train (dashed) vs validation (solid), shortlist", fontsize=10)
    return fig


def confusion_figure(conf_csv: Path | None, title: str = "confusion matrix") -> Figure:
    if conf_csv is None or not Path(conf_csv).is_file():
        return _empty(title, "no confusion.csv for the best run")
    cm = pd.read_csv(conf_csv, index_col=0)
    counts = cm.to_numpy(float)
    rows = counts.sum(axis=1, keepdims=True)
    frac = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    n = len(cm)
    size = min(12.0, 2.5 + 0.55 * n)
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, label="fraction of the true class", shrink=0.8)
    if n <= 30:
        names = [str(c) for c in cm.columns]
        ax.set_xticks(range(n), labels=names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(n), labels=[str(c) for c in cm.index], fontsize=8)
    if n <= 15:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center",
                            fontsize=7, color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = np.trace(counts) / counts.sum() if counts.sum() else math.nan
    ax.set_title(f"{title} (accuracy {acc:.2%})")
    return fig


def samples_figure(prepared: Path, n: int = 4, seed: int = 0) -> Figure:
    """An n x n grid of training images with their class names."""
    if not Path(prepared).is_file():
        return _empty("sample images", f"prepared data not found: {prepared}")
    import torch

    from hpsweep.data.prepared import load_prepared

    data = load_prepared(prepared)
    x, y = data.x_train, data.y_train
    k = min(n * n, len(x))
    if k == 0:
        return _empty("sample images", "the training split is empty")
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:k]
    fig = Figure(figsize=(1.8 * n, 1.95 * n))
    axes = fig.subplots(n, n, squeeze=False)
    for a, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if a >= k:
            continue
        img = x[idx[a]]
        if img.shape[0] == 1:
            ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(img.permute(1, 2, 0).numpy())
        ax.set_title(str(data.classes[int(y[idx[a]])])[:18], fontsize=8)
    fig.suptitle(f"{data.dataset}: training samples", fontsize=10)
    return fig


# ------------------------------------------------------------------ all of them


def load_table(study: Study) -> pd.DataFrame:
    path = experiment_summary_path(study)
    return read_experiment_summary(path) if path.is_file() else experiment_table(study)


def make_figures(study: Study, out: Mapping[str, str | Path] | None = None) -> list[Path]:
    """Write every figure, ``out[key]`` (the rule's named outputs; default the layout's
    figure_paths); return their paths."""
    params = study.params
    paths = {k: Path(v) for k, v in (out or figure_paths(study)).items()}
    table = load_table(study)
    configs = config_table(table)
    base = params.run_base()
    written = []

    def put(key: str, fig: Figure) -> None:
        written.append(save(fig, paths[key]))

    for name, sw in params.sweeps.items():
        section, leaf = sw.param.split(".", 1)
        put(f"sweep_{name}", sweep_figure(table, name, sw.param, list(sw.values),
                                          base[section].get(leaf)))
    for name, g in params.grids.items():
        put(f"grid_{name}", grid_figure(table, name, g.x.param, g.y.param,
                                        list(g.x.values), list(g.y.values)))
    put("ranking", ranking_figure(configs, params.report.baselines))
    put("acc_vs_time", scatter_figure(configs, "total_time_s_mean", "train time per run (s)",
                                      "accuracy vs training time"))
    put("acc_vs_params", scatter_figure(configs, "n_params", "trainable parameters",
                                        "accuracy vs model size"))
    short = configs.head(params.report.top_k) if len(configs) else configs
    put("curves_shortlist", curves_figure(study, short))
    conf = None
    if len(configs) and configs[MEAN].notna().any() and configs.iloc[0]["best_run_id"]:
        conf = study.paths.run_dir(configs.iloc[0]["best_run_id"]) / "confusion.csv"
    title = f"best run: {configs.iloc[0]['label']}" if conf is not None else "best run"
    put("confusion_best", confusion_figure(conf, title))
    put("samples", samples_figure(study.paths.prepared))
    return written
