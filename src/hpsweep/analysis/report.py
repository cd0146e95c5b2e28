"""reports/report.md: the study as a practitioner would write it up.

Built only from files (the summary tables, the figures, the runs' metrics and
the optional Optuna and final-retrain results), so it can be regenerated at
any time. Sections whose inputs do not exist yet say "not run" instead of
failing: the Optuna section needs results/optuna/<study>/best_params.json
(and uses trials.csv and the Optuna figures when present), the final retrain
section results/final/summary.json. Every figure it shows lies under reports/
(the Optuna ones are copied to reports/figures/optuna/) and links are relative
to the report, so reports/ can be moved or published as a folder.
"""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from hpsweep.analysis.markdown import Doc, duration, finite, md_table, num, pct
from hpsweep.analysis.plots import load_table
from hpsweep.analysis.report_sweeps import (
    _configs,
    _confusion,
    _cost,
    _failures,
    _grids,
    _shortlist,
    _sweeps,
    _swing,
)
from hpsweep.analysis.report_value import control_section, stages_section, verdict
from hpsweep.analysis.tables import (
    CI,
    MEAN,
    config_table,
    failures,
    swing_table,
)
from hpsweep.core.atomic import atomic_path, write_text
from hpsweep.core.layout import (
    OptunaLayout,
    figure_paths,
    model_card_path,
    model_path,
    program_path,
    report_optuna_figures,
    report_path,
    summary_path,
)
from hpsweep.core.params_deps import made_from
from hpsweep.core.plan import format_value
from hpsweep.core.stats import format_mean_ci
from hpsweep.core.study import Study
from hpsweep.training.runstore import read_metrics

# ------------------------------------------------------------------ paths


def final_model_files(study: Study) -> list[Path]:
    return [model_path(study), program_path(study), model_card_path(study)]


# ------------------------------------------------------------------ formatting


# ------------------------------------------------------------------ readers


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _runs_metrics(study: Study) -> list[dict]:
    return [m for r in study.plan.run_ids()
            if (m := read_metrics(study.paths.run_dir(r))) is not None]


def _manifest(study: Study) -> dict:
    return _read_json(study.paths.manifest) or {}


# ------------------------------------------------------------------ sections


def _summary(doc: Doc, study: Study, configs: pd.DataFrame, swing: pd.DataFrame,
             fails: pd.DataFrame, table: pd.DataFrame, final: dict | None) -> None:
    runs = table.drop_duplicates("run_id")
    lines = []
    if len(configs) and configs[MEAN].notna().any():
        b = configs.iloc[0]
        lines.append(f"- **Best configuration:** {b['label']} ({b['where']}): best validation "
                     f"accuracy {format_mean_ci(b[MEAN], b[CI])} over {int(b['n'])} seed(s).")
        base = configs[configs["where"].str.startswith("baseline")]
        if len(base):
            r = base.iloc[0]
            lines.append(f"- **Baseline:** {format_mean_ci(r[MEAN], r[CI])} "
                         f"(rank {int(r['rank'])} of {len(configs)} configurations).")
    else:
        lines.append("- No completed runs yet.")
    # Statements about single parameters come from the sweeps (a grid moves two at once).
    single = swing[swing["kind"] == "sweep"] if len(swing) else swing
    single = single if len(single) else swing
    if len(single):
        top = single.iloc[0]
        lines.append(f"- **Most influential:** `{top['param']}` ({top['kind']} {top['name']}): "
                     f"{100 * top['swing']:.1f} points between {top['best_value']} and "
                     f"{top['worst_value']}.")
        if len(single) > 1:
            low = single.iloc[-1]
            lines.append(f"- **Least influential:** `{low['param']}`: "
                         f"{100 * low['swing']:.1f} points.")
    nfail = int((fails["status"] != "missing").sum()) if len(fails) else 0
    nmiss = int((runs["status"] == "missing").sum())
    lines.append(f"- **Failures:** {nfail} of {len(runs)} runs" +
                 (f"; {nmiss} not run yet" if nmiss else "") + ".")
    total = pd.to_numeric(runs["total_time_s"], errors="coerce").sum()
    lines.append(f"- **Compute:** {duration(total)} of training over "
                 f"{int((runs['status'] != 'missing').sum())} runs.")
    if final and finite(final.get("test_acc_mean")):
        lines.append(f"- **Final retrain (test split):** "
                     f"{format_mean_ci(final['test_acc_mean'], final.get('test_acc_ci95'))}.")
        lines.append(f"- **Verdict:** {verdict(final)}")
    doc.add("## Summary", "\n".join(lines))


def _setup(doc: Doc, study: Study, metrics: list[dict], table: pd.DataFrame) -> None:
    p = study.params
    man = _manifest(study)
    counts = man.get("counts") or {}
    counts = {k: counts[k] for k in ("train", "val", "test", *counts) if k in counts}
    rows = [["dataset", p.data.dataset],
            ["classes", f"{man.get('num_classes', '–')}"
             + (f" ({', '.join(map(str, man['classes'][:12]))}"
                f"{', …' if len(man['classes']) > 12 else ''})" if man.get("classes") else "")],
            ["input shape", " × ".join(map(str, man["input_shape"]))
             if man.get("input_shape") else "–"],
            ["split sizes", ", ".join(f"{k} {v:,}" for k, v in counts.items()) or "–"],
            ["validation split", f"{p.data.val_fraction:g} of train, split seed "
                                 f"{p.data.split_seed}"
             + (f", stratified subset of {p.data.train_subset:,}" if p.data.train_subset else "")],
            ["seeds per configuration",
             f"{len(p.study.seeds)} (seed {', '.join(map(str, p.study.seeds))})"],
            ["runs / configurations", f"{table['run_id'].nunique()} runs, "
                                      f"{table['config_id'].nunique()} configurations, "
                                      f"{len(table)} sweep/grid entries"]]
    prov = [m.get("provenance") or {} for m in metrics]

    def distinct(key: str) -> str:
        vals = [str(v) for v in dict.fromkeys(x.get(key) for x in prov) if v is not None]
        return ", ".join(vals) or "–"

    if prov:
        rows += [["device", f"{distinct('device')} ({distinct('device_name')})"],
                 ["torch / python", f"{distinct('torch')} / {distinct('python')}"],
                 ["CPU threads", distinct("threads")],
                 ["bf16 autocast", distinct("bf16")],
                 ["hosts", distinct("host")],
                 ["training code version", distinct("code_version")[:40]],
                 ["data checksum", distinct("data_checksum")[:16] + "…"]]
    else:
        rows.append(["report machine", f"{platform.node()} (no run has finished yet)"])
    doc.add("## Study setup", md_table(["", ""], rows, "ll"))
    base = p.run_base()
    brow = [[f"model.{k}", format_value(v)] for k, v in base["model"].items()]
    brow += [[f"train.{k}", format_value(v)] for k, v in base["train"].items()]
    doc.add("### Baseline configuration",
            "Every sweep varies one key of this configuration; grids vary two.",
            md_table(["key", "value"], brow, "ll"))
    doc.fig(figure_paths(study)["samples"], "sample training images")


def _optuna(doc: Doc, study: Study) -> dict | None:
    doc.add("## Optuna refinement")
    if not study.params.optuna.enabled:  # an earlier run's results are not this study's
        doc.add("Not run (`optuna.enabled = false`).")
        return None
    optuna = OptunaLayout(study)
    best = _read_json(optuna.best_params_path)
    if best is None:
        doc.add(f"Not run: `{optuna.best_params_path}` does not exist yet.")
        return None
    # best_params.json and trials.csv as tuning.results writes them: a missing field is
    # drift between writer and reader, and fails here instead of reading as "not run".
    params, value = best["params"], best["value"]
    o = study.params.optuna
    doc.add(f"{o.sampler} sampler, {o.pruner} pruner, {o.n_trials} trials, "
            f"{o.n_workers} workers" + (f", {o.cv_folds}-fold CV" if o.cv_folds else "") + ".")
    how = f"trial {best['trial_number']}"
    if best["warm_start"]:
        how += ", a warm-start trial: an earlier sweep/grid run"
    doc.add(f"Best trial: validation accuracy **{pct(value)}** ({how}).")
    if params:
        doc.add(md_table(["parameter", "best value"],
                         [[f"`{k}`", format_value(v)] for k, v in params.items()], "ll"))
    tr = pd.read_csv(optuna.trials_csv) if optuna.trials_csv.is_file() else None
    if tr is not None:
        states = ", ".join(f"{s} {c}" for s, c in tr["state"].value_counts().items())
        warm = int(tr["warm_start"].astype(str).eq("True").sum())
        promoted = int(tr["promoted"].astype(str).eq("True").sum())
        doc.add(f"{len(tr)} trials: {states}. {warm} warm-started from sweep/grid runs; "
                f"{promoted} promoted from them (their best configurations, retrained at "
                f"the trials' epochs). "
                f"Trial time {duration(pd.to_numeric(tr['duration_s']).sum())}.")
        vcol = "values_0" if "values_0" in tr else "value"  # values_0: multi-objective
        top = tr[tr["state"] == "COMPLETE"].sort_values(vcol, ascending=False).head(5)
        pcols = [c for c in tr.columns if c.startswith("params_")]
        rows = [[int(r["number"]), pct(r[vcol]), *(format_value(r[c]) for c in pcols)]
                for _, r in top.iterrows()]
        doc.add("Top trials:", md_table(["trial", "val acc",
                                         *(c.removeprefix("params_") for c in pcols)], rows))
    for src, copy in report_optuna_figures(study).items():
        if src.is_file():
            with atomic_path(copy) as tmp:
                shutil.copyfile(src, tmp)
            doc.fig(copy, f"optuna {src.stem.removeprefix('optuna_')}")
    return {"value": value, "params": params, "trials": tr}


def _final(doc: Doc, study: Study, final: dict | None) -> dict | None:
    """The final retrain's section from its summary (``final``: _final_summary's)."""
    doc.add("## Final retrain")
    if not study.params.final.enabled:
        doc.add("Not run (`final.enabled = false`).")
        return None
    if final is None:
        doc.add(f"Not run: `{summary_path(study)}` does not exist yet.")
        return None
    doc.add(f"The selected configuration retrained with seeds "
            f"{', '.join(map(str, study.params.final.seeds))} and evaluated once on the "
            f"held-out test split: **{format_mean_ci(final.get('test_acc_mean'), final.get('test_acc_ci95'))}** "  # noqa: E501
            "(mean ± 95 % CI).")
    if final.get("trained_on") == "train+val":
        doc.add("The final seeds trained on the training *and* validation splits "
                "(`final.train_on_val`) and keep their last epoch; their validation "
                "accuracy is no holdout and is not reported.")
    # The fields final.retrain.write_final_summary writes: a missing one is drift, and fails.
    seeds = final["per_seed"]
    extra = [k for k in ("best_val_acc", "test_loss", "epochs_run", "total_time_s")
             if any(r[k] is not None for r in seeds)]
    fmt = {"best_val_acc": pct, "test_loss": lambda v: num(v, 4),
           "epochs_run": lambda v: num(v, 0), "total_time_s": duration}
    rows = [[r["seed"], pct(r["test_acc"]), *(fmt[k](r[k]) for k in extra)] for r in seeds]
    doc.add(md_table(["seed", "test acc", *extra], rows))
    control_section(doc, final)
    scalars = {k: v for k, v in final.items() if k not in ("test_acc_mean", "test_acc_ci95")
               and isinstance(v, str | int | float | bool)}
    if scalars:
        doc.add(md_table(["", ""], [[k, format_value(v)] for k, v in scalars.items()], "ll"))
    doc.add("Configuration:", md_table(["key", "value"], [[f"`{k}`", format_value(v)]
                                                          for k, v in final["config"].items()],
                                       "ll"))
    files = [f"`{p}`" for p in final_model_files(study) if p.is_file()]
    if files:
        doc.add("The exported model (the seed with the best validation accuracy): "
                + ", ".join(files) + ". `model.pt2` is a `torch.export` program that takes "
                "pixels / 255 and needs no hpsweep (`torch.export.load(path).module()`); "
                "the model card names its data checksum, config and accuracy.")
    return final


def _comparison(doc: Doc, study: Study, configs: pd.DataFrame, optuna: dict | None,
                final: dict | None) -> None:
    doc.add("## Comparison with published results")
    ours: list[tuple[str, Any, str]] = []
    if len(configs) and configs[MEAN].notna().any():
        b = configs.iloc[0]
        ours.append((f"this study: best sweep/grid configuration ({b['label']})", b[MEAN],
                     "validation"))
    if optuna and optuna.get("value") is not None:
        ours.append(("this study: best Optuna trial", optuna["value"], "validation"))
    if final and finite(final.get("test_acc_mean")):
        ours.append(("this study: final retrain, mean over seeds", final["test_acc_mean"],
                     "test"))
    headline = ours[-1][1] if ours else None
    rows = [[label, pct(acc), split, "–"] for label, acc, split in ours]
    for label, acc in study.params.report.baselines.items():
        diff = f"{100 * (float(headline) - acc):+.2f}" if finite(headline) else "–"
        rows.append([label, pct(acc), "as published", diff])
    if not study.params.report.baselines:
        doc.add("No published numbers in `[report.baselines]`.")
    else:
        doc.add(f"*Δ* is this study's headline number ({ours[-1][0] if ours else 'none yet'}) "
                "minus the published one, in points. Published numbers come from other "
                "splits, epochs and hardware: read Δ as an indication, not a test.")
    doc.add(md_table(["result", "accuracy", "split", "Δ vs this study (pts)"], rows, "lrlr"))


def _reproduce(doc: Doc, study: Study) -> None:
    doc.add("## Reproduce",
            "```bash\n"
            f"snakemake --cores 4 --config params={study.params_path}   # the whole study\n"
            "dvc repro                                  # the same, versioned by DVC\n"
            "```",
            f"Made from params digest `{made_from(study.params, 'report')}` (every key this "
            "report depends on; `hpsweep status` names any that changed since).")


# ------------------------------------------------------------------ entry point


def _final_summary(study: Study) -> dict | None:
    """The final retrain's summary; None where it did not run, or where final.enabled =
    false (a summary an earlier run left is not this study's)."""
    return _read_json(summary_path(study)) if study.params.final.enabled else None


def build_report(study: Study, out: str | Path | None = None) -> str:
    """The report's Markdown; figure links are relative to `out` (reports/report.md)."""
    params = study.params
    out = Path(out) if out else report_path(study)
    table = load_table(study)
    configs = config_table(table)
    swing = swing_table(table, {n: s.param for n, s in params.sweeps.items()},
                        {n: f"{g.x.param} × {g.y.param}" for n, g in params.grids.items()})
    fails = failures(table)
    metrics = _runs_metrics(study)
    final = _final_summary(study)
    doc = Doc(out)
    doc.add(f"# {params.report.title}",
            f"Study `{params.study.name}` ({params.data.dataset}, {params.model.arch.upper()}), "
            f"generated by hpsweep from `{study.params_path}`. Every number below is read from "
            f"the run directories under `{study.paths.results_dir}/runs/` and the tables in "
            f"`{study.paths.results_dir}/summary/`.")
    _summary(doc, study, configs, swing, fails, table, final)
    _setup(doc, study, metrics, table)
    _sweeps(doc, study, table)
    _grids(doc, study, table)
    _swing(doc, swing)
    _configs(doc, study, configs)
    _failures(doc, fails)
    _shortlist(doc, study, configs.head(params.report.top_k) if len(configs) else configs)
    _cost(doc, study, table)
    _confusion(doc, study, configs)
    opt = _optuna(doc, study)
    fin = _final(doc, study, final)
    stages_section(doc, table, configs, opt, fin, study.plan_lock,
                   (_manifest(study).get("counts") or {}).get("val"),
                   trials_on_val=not study.params.optuna.cv_folds)
    _comparison(doc, study, configs, opt, fin)
    _reproduce(doc, study)
    return doc.text()


def write_report(study: Study, out: str | Path | None = None) -> Path:
    out = Path(out) if out else report_path(study)
    write_text(out, build_report(study, out))
    return out
