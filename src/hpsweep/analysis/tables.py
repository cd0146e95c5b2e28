"""Aggregate the study's runs into tidy tables (results/summary/).

    experiment_summary.csv  one row per plan member (group, name, value, seed) with
                            its run's metrics; a run shared by several sweeps (the
                            baseline value) appears in each, `run_id` shows the sharing
    configs.csv             one row per distinct configuration (seeds pooled)
    sweep_<name>.csv        one row per swept value: mean ± 95 % CI over seeds, best marked
    grid_<name>.csv         2-D grid as a pivot table of mean accuracy (rows y, columns x)
    swing.csv               per sweep/grid: best − worst mean accuracy, largest first
    failures.csv            runs that diverged/were pruned/are missing, or learned
                            too little (accuracy below a floor, 2/num_classes by default)
    shortlist.csv           the top-k configurations by mean best validation accuracy
    metrics.json            study-level numbers for `dvc metrics show`

The accuracy that ranks everything is ``best_val_acc`` (the best epoch's
validation accuracy, the checkpoint a run keeps); the test split is left to
the final retrain.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from hpsweep.core.atomic import atomic_path, write_text
from hpsweep.core.layout import table_outputs
from hpsweep.core.params_deps import made_from
from hpsweep.core.plan import format_value, plan_id
from hpsweep.core.runstatus import USABLE
from hpsweep.core.stats import mean_ci
from hpsweep.core.study import Study
from hpsweep.training.runstore import read_metrics

METRIC_COLUMNS = ("status", "best_val_acc", "best_val_loss", "best_epoch", "final_val_acc",
                  "final_val_loss", "final_train_acc", "test_acc", "test_loss", "epochs_run",
                  "epoch_time_s", "total_time_s", "samples_per_s", "peak_mem_mb", "n_params")
ACC = "best_val_acc"
# A configuration's mean and 95 % CI half-width of ACC over its seeds (config/sweep tables).
MEAN, CI = f"{ACC}_mean", f"{ACC}_ci95"
# Statuses of a run that finished as asked; anything else (diverged, pruned, missing)
# is a failure. Early stopping is a planned ending, not a failure.
# Columns read back as text: "0.001" must stay the label it was, "128x64" is a width list.
TEXT_COLUMNS = ("group", "name", "label", "value", "x", "y", "params", "run_id", "config_id",
                "status")


# ------------------------------------------------------------------ paths


# ------------------------------------------------------------------ the member table


def config_id(run_cfg: dict[str, Any]) -> str:
    """Seed-independent id of a configuration (its seeds share it)."""
    return hashlib.sha256(json.dumps(run_cfg, sort_keys=True, default=str).encode()
                          ).hexdigest()[:10]


def num_classes_of(study: Study) -> int | None:
    """From the prepared data's manifest, else from a run's confusion.csv header."""
    if study.paths.manifest.is_file():
        n = json.loads(study.paths.manifest.read_text()).get("num_classes")
        if n:
            return int(n)
    for run_id in study.plan.run_ids():
        conf = study.paths.run_dir(run_id) / "confusion.csv"
        if conf.is_file():
            return len(conf.read_text().splitlines()[0].split(",")) - 1
    return None


def _cell(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, list | dict) else v


def experiment_table(study: Study) -> pd.DataFrame:
    """One row per (group, name, value, seed) of the plan, with its run's metrics.

    A run shared by several sweeps (the baseline value) appears in each, so
    every sweep's table is complete on its own; `run_id` shows the sharing and
    `config_id` names the configuration across seeds.
    """
    params = study.params
    n_classes = num_classes_of(study)
    rows = []
    for m in study.plan.members:
        metrics = read_metrics(study.paths.run_dir(m.run_id)) or {"status": "missing"}
        ov = dict(m.overrides)
        value = x = y = ""
        if m.group == "sweep":
            value = format_value(ov[params.sweeps[m.name].param])
        elif m.group == "grid":
            g = params.grids[m.name]
            x, y = format_value(ov[g.x.param]), format_value(ov[g.y.param])
            value = m.label
        elif m.group == "config":
            value = m.name
        hist = metrics.get("history") or []
        row = {"group": m.group, "name": m.name, "label": m.label, "value": value, "x": x,
               "y": y, "params": json.dumps(ov, sort_keys=False), "seed": m.seed,
               "run_id": m.run_id, "config_id": config_id(study.plan.runs[m.run_id].config)}
        row.update({f"param:{k}": _cell(v) for k, v in m.overrides})
        metrics = {**metrics, "final_train_acc": hist[-1].get("train_acc") if hist else None}
        row.update({k: metrics.get(k) for k in METRIC_COLUMNS})
        row["num_classes"] = n_classes
        rows.append(row)
    return pd.DataFrame(rows)


def read_experiment_summary(path: str | Path) -> pd.DataFrame:
    df = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS}, keep_default_na=False,
                     na_values=[""])
    for c in TEXT_COLUMNS:
        if c in df:
            df[c] = df[c].fillna("")
    return df


def write_experiment_summary(study: Study, out: str | Path) -> pd.DataFrame:
    table = experiment_table(study)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    return table


# ------------------------------------------------------------------ aggregation


def _num(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce")


def aggregate(table: pd.DataFrame, by: str | list[str]) -> pd.DataFrame:
    """Seeds pooled per group: n, mean ± 95 % t CI of best_val_acc, other means.

    Group order is the order of first appearance (the order of params.toml).
    """
    rows = []
    for key, g in table.groupby(by, sort=False, dropna=False):
        ci = mean_ci(_num(g[ACC]))
        first = g.iloc[0]
        row = dict(zip([by] if isinstance(by, str) else by,
                       [key] if isinstance(by, str) else key, strict=True))
        row.update({
            "label": first.get("label"), "config_id": first.get("config_id"),
            "n": len(g), "n_ok": int(g["status"].isin(list(USABLE)).sum()),
            f"{ACC}_mean": ci.mean, f"{ACC}_std": ci.std, f"{ACC}_ci_low": ci.low,
            f"{ACC}_ci_high": ci.high, f"{ACC}_ci95": ci.half,
            f"{ACC}_min": _num(g[ACC]).min(), f"{ACC}_max": _num(g[ACC]).max(),
        })
        for col in ("final_val_acc", "final_train_acc", "best_val_loss", "test_acc",
                    "epochs_run", "epoch_time_s", "total_time_s", "samples_per_s", "n_params"):
            if col in g:
                row[f"{col}_mean" if col != "n_params" else col] = _num(g[col]).mean()
        row["statuses"] = ";".join(f"{s}:{c}" for s, c in g["status"].value_counts().items())
        row["run_ids"] = ";".join(g["run_id"])
        vals = _num(g[ACC])
        row["best_run_id"] = g.at[vals.idxmax(), "run_id"] if vals.notna().any() else ""
        rows.append(row)
    return pd.DataFrame(rows)


def _mark_best(df: pd.DataFrame) -> pd.DataFrame:
    col = MEAN
    df["best"] = False
    if len(df) and df[col].notna().any():
        df.loc[df[col].idxmax(), "best"] = True
    return df


def sweep_table(table: pd.DataFrame, name: str, baseline_config: str | None = None
                ) -> pd.DataFrame:
    """One row per value of sweep `name` (params order), best value marked."""
    t = table[(table["group"] == "sweep") & (table["name"] == name)]
    df = aggregate(t, "value")
    if len(df) and baseline_config is not None:
        df["is_baseline"] = df["config_id"] == baseline_config
    return _mark_best(df)


def grid_long(table: pd.DataFrame, name: str) -> pd.DataFrame:
    t = table[(table["group"] == "grid") & (table["name"] == name)]
    return _mark_best(aggregate(t, ["y", "x"]))


def grid_pivot(table: pd.DataFrame, name: str, value: str = MEAN) -> pd.DataFrame:
    """Rows: y values, columns: x values (params order), cells: mean accuracy."""
    long = grid_long(table, name)
    if long.empty:
        return pd.DataFrame()
    xs = list(dict.fromkeys(long["x"]))
    ys = list(dict.fromkeys(long["y"]))
    return long.pivot(index="y", columns="x", values=value).reindex(index=ys, columns=xs)


def _display_label(g: pd.DataFrame) -> str:
    first = g.iloc[0]
    if first["group"] == "config":
        return f"{first['name']}"
    return str(first["label"])


def config_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct configuration, ranked by mean best_val_acc.

    The baseline value of a sweep is the baseline configuration: it is pooled
    once, whatever sweeps list it. `where` lists every sweep/grid/config it is in.
    """
    if table.empty:
        return pd.DataFrame()
    runs = table.drop_duplicates(["config_id", "seed"])
    agg = aggregate(runs, "config_id")
    labels, where, params = {}, {}, {}
    for cid, g in table.groupby("config_id", sort=False):
        labels[cid] = _display_label(g)
        where[cid] = "; ".join(dict.fromkeys(
            "baseline" if r.group == "baseline" else f"{r.group} {r.name}"
            for r in g.itertuples()))
        params[cid] = g.iloc[0]["params"]
    agg["label"] = agg["config_id"].map(labels)
    agg["where"] = agg["config_id"].map(where)
    agg["params"] = agg["config_id"].map(params)
    agg = agg.sort_values(MEAN, ascending=False, na_position="last", kind="stable")
    agg.insert(0, "rank", range(1, len(agg) + 1))
    return agg.reset_index(drop=True)


def shortlist(table: pd.DataFrame, k: int) -> pd.DataFrame:
    configs = config_table(table)
    return configs.head(k).reset_index(drop=True) if len(configs) else configs


def swing_table(table: pd.DataFrame, sweeps: dict[str, str],
                grids: dict[str, str] | None = None) -> pd.DataFrame:
    """How much each swept parameter moves the mean accuracy: best − worst value.

    `sweeps` maps sweep name -> parameter, `grids` grid name -> "x × y". Rows are
    sorted by swing, largest first; `max_ci95` (the widest seed interval among the
    values) says whether a swing is larger than seed noise.
    """
    rows = []
    for kind, named in (("sweep", sweeps), ("grid", grids or {})):
        for name, param in named.items():
            df = sweep_table(table, name) if kind == "sweep" else grid_long(table, name)
            col = MEAN
            df = df[df[col].notna()] if len(df) else df
            if df.empty:
                continue
            best, worst = df.loc[df[col].idxmax()], df.loc[df[col].idxmin()]
            key = (lambda r: r["value"]) if kind == "sweep" else (
                lambda r: f"{r['x']} × {r['y']}")
            rows.append({"kind": kind, "name": name, "param": param, "n_values": len(df),
                         "best_value": key(best), "best_mean": best[col],
                         "worst_value": key(worst), "worst_mean": worst[col],
                         "swing": best[col] - worst[col],
                         "max_ci95": df[CI].max()})
    cols = ["kind", "name", "param", "n_values", "best_value", "best_mean", "worst_value",
            "worst_mean", "swing", "max_ci95"]
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values("swing", ascending=False, kind="stable").reset_index(drop=True)


def accuracy_floor(num_classes: int | float | None) -> float:
    """Twice chance accuracy: below it a run has learned next to nothing."""
    if num_classes is None or not math.isfinite(float(num_classes)) or num_classes <= 0:
        return math.nan
    return 2.0 / float(num_classes)


def failures(table: pd.DataFrame, floor: float | None = None) -> pd.DataFrame:
    """One row per failed run (not per member): status, accuracy, reason."""
    cols = ["run_id", "group", "name", "label", "seed", "status", ACC, "floor", "reason",
            "where"]
    if table.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for run_id, g in table.groupby("run_id", sort=False):
        r = g.iloc[0]
        fl = floor if floor is not None else accuracy_floor(_num(g["num_classes"]).iloc[0]
                                                            if "num_classes" in g else None)
        acc = _num(g[ACC]).iloc[0]
        reasons = []
        if r["status"] == "missing":
            reasons.append("missing: no metrics.json (not trained yet, or killed)")
        elif r["status"] not in USABLE:
            reasons.append(f"status {r['status']}")
        if r["status"] != "missing":
            if pd.isna(acc):
                reasons.append("no validation accuracy")
            elif math.isfinite(fl) and acc < fl:
                reasons.append(f"accuracy {acc:.4f} < floor {fl:.4f}")
        if reasons:
            where = "; ".join(dict.fromkeys(f"{x.group} {x.name}" for x in g.itertuples()))
            rows.append({"run_id": run_id, "group": r["group"], "name": r["name"],
                         "label": r["label"], "seed": r["seed"], "status": r["status"],
                         ACC: acc, "floor": fl, "reason": "; ".join(reasons), "where": where})
    return pd.DataFrame(rows, columns=cols)


def study_metrics(table: pd.DataFrame, configs: pd.DataFrame, fails: pd.DataFrame,
                  sweep_tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Study-level numbers for DVC (`dvc metrics show/diff`): numbers only."""
    runs = table.drop_duplicates("run_id")
    col = MEAN
    best = configs.iloc[0] if len(configs) and configs[col].notna().any() else None
    sweep_best = [t[col].max() for t in sweep_tables.values() if len(t)]
    base = configs[configs["where"].str.startswith("baseline")] if len(configs) else configs
    out = {
        "best_val_acc_mean": best[col] if best is not None else None,
        "best_val_acc_ci95": best[CI] if best is not None else None,
        "best_sweep_val_acc": max(sweep_best) if sweep_best else None,
        "baseline_val_acc_mean": base[col].iloc[0] if len(base) else None,
        "n_runs": int(len(runs)),
        "n_complete": int((runs["status"] != "missing").sum()),
        "n_configs": int(len(configs)),
        "failures": int((fails["status"] != "missing").sum()) if len(fails) else 0,
        "total_compute_s": float(_num(runs["total_time_s"]).sum()),
    }
    out["total_compute_h"] = out["total_compute_s"] / 3600.0
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else
                (float(v) if hasattr(v, "item") and not isinstance(v, int) else v))
            for k, v in out.items()}


def _csv(df: pd.DataFrame, path: Path, index: bool = False) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=index)


def baseline_config_id(study: Study) -> str | None:
    base = study.plan.members_of("baseline")
    return config_id(study.plan.runs[base[0].run_id].config) if base else None


def write_summary_tables(study: Study, summary_csv: str | Path | None = None,
                         out: Mapping[str, str | Path] | None = None) -> dict[str, Path]:
    """All tables but experiment_summary.csv, from it (or from the run dirs). ``out``:
    the files by key (the rule's named outputs; default the layout's table_outputs)."""
    path = Path(summary_csv) if summary_csv else None
    table = read_experiment_summary(path) if path and path.is_file() else experiment_table(study)
    outs = {k: Path(v) for k, v in (out or table_outputs(study)).items()}
    params = study.params
    base_cid = baseline_config_id(study)
    sweeps = {name: sweep_table(table, name, base_cid) for name in params.sweeps}
    for name, df in sweeps.items():
        _csv(df, outs[f"sweep_{name}"])
    for name, g in params.grids.items():
        piv = grid_pivot(table, name)
        if not piv.empty:
            piv.index.name = f"{g.y.param} \\ {g.x.param}"
        _csv(piv, outs[f"grid_{name}"], index=True)
    configs = config_table(table)
    _csv(configs, outs["configs"])
    swing = swing_table(table, {n: s.param for n, s in params.sweeps.items()},
                        {n: f"{g.x.param} × {g.y.param}" for n, g in params.grids.items()})
    _csv(swing, outs["swing"])
    fails = failures(table)
    _csv(fails, outs["failures"])
    _csv(configs.head(params.report.top_k), outs["shortlist"])
    metrics = study_metrics(table, configs, fails, sweeps)
    metrics["plan_id"] = plan_id(study.plan)
    # the params these tables were made from (hpsweep.core.params_deps): checkable later
    metrics["made_from"] = made_from(study.params, "summary_tables")
    write_text(outs["metrics"], json.dumps(metrics, indent=2) + "\n")
    return outs
