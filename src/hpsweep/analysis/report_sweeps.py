"""The report's sections on the sweep stage: sweeps, grids, swing, configs, failures,
shortlist, cost, confusion matrix."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from hpsweep.analysis.markdown import Doc, duration, finite, md_table, num, pct, t_975
from hpsweep.analysis.tables import (
    ACC,
    CI,
    MEAN,
    baseline_config_id,
    grid_long,
    sweep_table,
)
from hpsweep.core.layout import (
    figure_paths,
)
from hpsweep.core.plan import format_value
from hpsweep.core.stats import format_mean_ci
from hpsweep.core.study import Study


def _sweep_rows(df: pd.DataFrame, base_value: str | None) -> list[list[Any]]:
    rows = []
    for _, r in df.iterrows():
        label = str(r["value"])
        if base_value is not None and label == base_value:
            label += " (baseline)"
        if r.get("best"):
            label = f"**{label}** ★"
        gap = (r.get("final_train_acc_mean", math.nan) - r.get("final_val_acc_mean", math.nan))
        rows.append([label, f"{int(r['n_ok'])}/{int(r['n'])}", format_mean_ci(r[MEAN], r[CI]),
                     pct(r.get("final_val_acc_mean")),
                     f"{100 * gap:+.1f}" if finite(gap) else "–",
                     duration(r.get("total_time_s_mean")), num(r.get("n_params"), 0),
                     r.get("statuses", "")])
    return rows


SWEEP_HEADERS = ["value", "ok runs", "best val acc (mean ± 95 % CI)", "final val acc",
                 "train − val (pts)", "time/run", "params", "statuses"]


def _sweeps(doc: Doc, study: Study, table: pd.DataFrame) -> None:
    p = study.params
    doc.add("## Single-parameter sweeps")
    if not p.sweeps:
        doc.add("No sweeps in params.toml.")
        return
    k = len(p.study.seeds)
    doc.add("Each sweep changes one key of the baseline. Accuracy is the best epoch's "
            "validation accuracy, mean over seeds ± the 95 % Student-t interval "
            + (f"(t = {t_975(k):.2f} for {k} seeds; " if k > 1 else "(none with one seed; ")
            + "intervals shrink with more seeds in `study.seeds`); ★ marks the best value; "
            "*train − val* is the final epoch's generalisation gap (large: overfitting).")
    base = p.run_base()
    base_cid = baseline_config_id(study)
    figs = figure_paths(study)
    for name, sw in p.sweeps.items():
        section, leaf = sw.param.split(".", 1)
        bv = base[section].get(leaf)
        df = sweep_table(table, name, base_cid)
        doc.add(f"### Sweep `{name}`: `{sw.param}`")
        if df.empty:
            doc.add("No runs yet.")
            continue
        doc.add(md_table(SWEEP_HEADERS, _sweep_rows(df, format_value(bv)), "lrrrrrrl"))
        doc.fig(figs[f"sweep_{name}"], f"accuracy vs {sw.param}")


def _grids(doc: Doc, study: Study, table: pd.DataFrame) -> None:
    p = study.params
    if not p.grids:
        return
    doc.add("## Two-parameter grids")
    figs = figure_paths(study)
    for name, g in p.grids.items():
        doc.add(f"### Grid `{name}`: `{g.y.param}` (rows) × `{g.x.param}` (columns)")
        long = grid_long(table, name)
        if long.empty:
            doc.add("No runs yet.")
            continue
        xl = [format_value(v) for v in g.x.values]
        yl = [format_value(v) for v in g.y.values]
        cell = {(r["y"], r["x"]): (("**" if r["best"] else "") + format_mean_ci(r[MEAN], r[CI])
                                   + ("**" if r["best"] else ""))
                for _, r in long.iterrows()}
        rows = [[y, *(cell.get((y, x), "–") for x in xl)] for y in yl]
        doc.add(md_table([f"{g.y.param} \\ {g.x.param}", *xl], rows))
        doc.fig(figs[f"grid_{name}"], f"heatmap {name}")


def _swing(doc: Doc, swing: pd.DataFrame) -> None:
    doc.add("## Which parameters matter")
    if swing.empty:
        doc.add("No sweep has results yet.")
        return
    doc.add("Swing = best − worst mean accuracy over a parameter's values (the rest at the "
            "baseline). A swing below twice the widest seed interval is within seed noise.")
    rows = []
    for i, r in swing.iterrows():
        noise = r["max_ci95"]
        verdict = ("n/a (one seed)" if not finite(noise) else
                   "yes" if r["swing"] > 2 * noise else "no, within seed noise")
        rows.append([i + 1, f"`{r['param']}`", f"{r['kind']} {r['name']}",
                     f"{r['best_value']} ({pct(r['best_mean'])})",
                     f"{r['worst_value']} ({pct(r['worst_mean'])})",
                     f"{100 * r['swing']:.2f}", pct(noise) if finite(noise) else "–", verdict])
    doc.add(md_table(["#", "parameter", "from", "best value", "worst value", "swing (pts)",
                      "widest CI", "beyond noise?"], rows, "rllllrrl"))


def _configs(doc: Doc, study: Study, configs: pd.DataFrame) -> None:
    if not study.params.configs or configs.empty:
        return
    named = configs[configs["where"].str.contains("config ")]
    rows = [[r["label"], r["params"], f"{int(r['n_ok'])}/{int(r['n'])}",
             format_mean_ci(r[MEAN], r[CI]), int(r["rank"]), duration(r.get("total_time_s_mean"))]
            for _, r in named.iterrows()]
    doc.add("## Named configurations",
            md_table(["name", "overrides", "ok runs", "best val acc", "rank", "time/run"],
                     rows, "llrrrr"))


def _failures(doc: Doc, fails: pd.DataFrame) -> None:
    doc.add("## Failures")
    if fails.empty:
        doc.add("None: every run finished (`ok` or early-stopped) above the accuracy floor "
                "(twice chance, 2/number of classes).")
        return
    rows = [[r["run_id"], r["label"], r["where"], r["seed"], r["status"], pct(r[ACC]),
             r["reason"]] for _, r in fails.iterrows()]
    doc.add("Runs that diverged, were pruned or are missing, or whose best validation "
            "accuracy is below twice chance (2/number of classes).",
            md_table(["run", "configuration", "in", "seed", "status", "best val acc", "reason"],
                     rows, "lllrlrl"))


def _shortlist(doc: Doc, study: Study, short: pd.DataFrame) -> None:
    k = study.params.report.top_k
    doc.add(f"## Shortlist: top {k} configurations")
    if short.empty:
        doc.add("No completed runs yet.")
        return
    rows = []
    for _, r in short.iterrows():
        gap = r.get("final_train_acc_mean", math.nan) - r.get("final_val_acc_mean", math.nan)
        rows.append([int(r["rank"]), r["label"], r["where"], f"{int(r['n_ok'])}/{int(r['n'])}",
                     format_mean_ci(r[MEAN], r[CI]), pct(r.get("final_train_acc_mean")),
                     pct(r.get("final_val_acc_mean")),
                     f"{100 * gap:+.1f}" if finite(gap) else "–",
                     duration(r.get("total_time_s_mean")), num(r.get("n_params"), 0)])
    figs = figure_paths(study)
    doc.add(md_table(["#", "configuration", "in", "ok runs", "best val acc (mean ± CI)",
                      "final train acc", "final val acc", "gap (pts)", "time/run", "params"],
                     rows, "rllrrrrrrr"))
    doc.fig(figs["ranking"], "ranking of configurations")
    doc.add("Training curves of the shortlist, mean over seeds (train dashed, validation "
            "solid). A validation curve that falls while training keeps rising is "
            "overfitting; two low, still-rising curves are underfitting. Training accuracy "
            "and loss are accumulated during the epoch with dropout and label smoothing on, "
            "so they can sit below the validation numbers.")
    doc.fig(figs["curves_shortlist"], "train vs validation curves")


def _cost(doc: Doc, study: Study, table: pd.DataFrame) -> None:
    runs = table.drop_duplicates("run_id")
    done = runs[runs["status"] != "missing"]
    t = pd.to_numeric(done["total_time_s"], errors="coerce")
    sps = pd.to_numeric(done["samples_per_s"], errors="coerce")
    figs = figure_paths(study)
    doc.add("## Cost",
            f"Total training time {duration(t.sum())} over {len(done)} runs "
            f"(mean {duration(t.mean())} per run, median throughput "
            f"{num(sps.median(), 0)} samples/s). Times are wall-clock seconds on the devices "
            "in *Study setup*; runs that shared a machine slow each other down.")
    doc.fig(figs["acc_vs_time"], "accuracy vs training time")
    doc.fig(figs["acc_vs_params"], "accuracy vs number of parameters")


def _confusion(doc: Doc, study: Study, configs: pd.DataFrame) -> None:
    if configs.empty or not configs.iloc[0].get("best_run_id"):
        return
    run_id = configs.iloc[0]["best_run_id"]
    path = study.paths.run_dir(run_id) / "confusion.csv"
    doc.add("## Best run: confusion matrix",
            f"Run `{run_id}` ({configs.iloc[0]['label']}), validation split, best epoch.")
    doc.fig(figure_paths(study)["confusion_best"], "confusion matrix of the best run")
    if path.is_file():
        cm = pd.read_csv(path, index_col=0)
        pairs = [(int(cm.iat[i, j]), cm.index[i], cm.columns[j])
                 for i in range(len(cm)) for j in range(len(cm)) if i != j and cm.iat[i, j]]
        pairs.sort(key=lambda p: -p[0])
        if pairs:
            doc.add("Most frequent confusions: " + "; ".join(
                f"{t} → {pd_} ({n})" for n, t, pd_ in pairs[:5]) + ".")
