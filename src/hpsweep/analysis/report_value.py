"""The report's value sections: what each stage cost and what it bought, the baseline
control beside the final seeds, and the verdict (did the study's compute buy a
significant gain over the baseline trained the same way)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from hpsweep.analysis.markdown import Doc, duration, finite, md_table, pct
from hpsweep.analysis.tables import MEAN
from hpsweep.core.budget import changed
from hpsweep.core.layout import STAGE_KEY, STAGES
from hpsweep.core.stats import format_mean_ci


def points(x: float) -> str:
    """An accuracy difference in percentage points, signed."""
    return f"{100 * x:+.2f}"


def verdict(final: dict) -> str:
    """One line: did the study's compute buy a significant gain over the baseline."""
    gain = final["gain_vs_control"]
    if gain is None:
        return ("no control was trained (`final.control = false`), so nothing here says "
                "what tuning bought over the baseline.")
    if gain["significant"] is None:
        return (f"tuned − baseline is {points(gain['mean'])} points with one seed: no "
                "interval, no verdict (give `final.seeds` two or more seeds).")
    interval = f"paired 95 % CI {points(gain['low'])} to {points(gain['high'])}"
    if gain["significant"]:
        return (f"tuning bought **{points(gain['mean'])} points** of test accuracy over the "
                f"baseline trained the same way ({interval}): a significant gain.")
    return (f"tuning did **not** buy a significant gain over the baseline trained the same "
            f"way: {points(gain['mean'])} points ({interval}, which includes 0 or lies "
            "below it).")


def control_section(doc: Doc, final: dict) -> None:
    """The baseline control beside the final seeds, and tuned − control paired by seed."""
    control, gain = final["control"], final["gain_vs_control"]
    if control is None:
        doc.add(verdict(final).capitalize())
        return
    epochs = control["overrides"].get("train.epochs")
    doc.add("**Control:** the baseline (`[model]` and `[train]` as the params file sets "
            "them" + (f", {epochs} epochs" if epochs else "") + ") trained with the same "
            "seeds and data and tested the same way: "
            f"**{format_mean_ci(control['test_acc_mean'], control['test_acc_ci95'])}**. "
            "Tuned − control, seed by seed (points):")
    rows = [[t["seed"], pct(t["test_acc"]), pct(c["test_acc"]),
             points(gain["per_seed"][str(t["seed"])])]
            for t, c in zip(final["per_seed"], control["per_seed"], strict=True)]
    doc.add(md_table(["seed", "tuned", "control", "tuned − control"], rows, "rrrr"))
    doc.add(f"**Verdict:** {verdict(final)}")


def _seconds(rows: list[dict[str, Any]]) -> float:
    return sum(float(r["total_time_s"]) for r in rows if finite(r.get("total_time_s")))


def stages_section(doc: Doc, table: pd.DataFrame, configs: pd.DataFrame,
                   optuna: dict | None, final: dict | None,
                   plan_lock: dict | None = None, n_val: int | None = None,
                   trials_on_val: bool = True) -> None:
    """Per stage: its runs, the minutes planned for it (a budgeted study), their summed
    training time, and the best accuracy after it. ``optuna``: the best trial's value
    and trials.csv as the report's Optuna section read them (None: not run).
    ``plan_lock``: a budgeted study's frozen plan (core.budget). ``n_val``: the
    validation images the sweeps (and, ``trials_on_val``, the trials) are ranked on,
    for the resolution line."""
    planned = {STAGE_KEY.get(s["stage"]): s["minutes"]
               for s in (plan_lock or {}).get("stages", [])}

    def cost(stage: str) -> list[str]:
        """The stage's planned minutes: a cell with a budget, none without."""
        if not plan_lock:
            return []
        return [f"{planned[stage]:.1f} min" if stage in planned else "–"]

    rows = []
    runs = table.drop_duplicates("run_id")
    done = runs[runs["status"] != "missing"]
    best = configs.iloc[0][MEAN] if len(configs) and configs[MEAN].notna().any() else None
    rows.append([STAGES["sweeps"], f"{len(done)} runs", *cost("sweeps"),
                 duration(pd.to_numeric(done["total_time_s"], errors="coerce").sum()),
                 f"{pct(best)} validation (best configuration)"])
    trials = optuna["trials"] if optuna is not None else None
    if trials is not None:
        trained = trials[~trials["warm_start"].astype(str).eq("True")
                         & trials["state"].isin(["COMPLETE", "PRUNED"])]
        promoted = int(trained["promoted"].astype(str).eq("True").sum())
        rows.append(["Optuna", f"{len(trained)} trials ({promoted} promoted)",
                     *cost("optuna"),
                     duration(pd.to_numeric(trained["duration_s"], errors="coerce").sum()),
                     f"{pct(optuna['value'])} validation (best trial)"])
    if final is not None:
        control = final["control"]
        rows.append(["final retrain", f"{len(final['per_seed'])} seeds", *cost("final"),
                     duration(_seconds(final["per_seed"])),
                     format_mean_ci(final["test_acc_mean"], final["test_acc_ci95"]) + " test"])
        if control is not None:
            rows.append(["control (baseline)", f"{len(control['per_seed'])} seeds",
                         *cost("control"),
                         duration(_seconds(control["per_seed"])),
                         format_mean_ci(control["test_acc_mean"], control["test_acc_ci95"])
                         + " test"])
    slots = plan_lock["machine"]["job_slots"] if plan_lock else None
    doc.add("## What each stage cost and bought",
            ("*Planned*: the budget plan's minutes for the stage (wall time with "
             f"{slots} training job(s) at once, job start-ups included). " if plan_lock
             else "")
            + "*Training*: the training loops alone, summed over the stage's runs (jobs "
            "that ran side by side overlap in wall time). The "
            "best accuracy once the stage was done: the sweeps and the trials may train "
            "for different epochs, so their validation accuracies compare configurations "
            "at their own fidelity; the final and control rows are test accuracy, mean "
            "± 95 % CI over the seeds.",
            md_table(["stage", "runs", *(["planned"] if plan_lock else []),
                      "training", "best accuracy after it"], rows,
                     "ll" + "r" * (2 if plan_lock else 1) + "l"))
    if plan_lock is not None:
        doc.add(budget_text(plan_lock))
    trials_ranked = trials_on_val and optuna is not None
    ranked = [a for a in (best, optuna["value"] if trials_ranked else None) if finite(a)]
    if n_val and ranked:
        doc.add(resolution_text(n_val, max(ranked), trials_ranked))


def resolution_text(n_val: int, acc: float, trials: bool) -> str:
    """How finely the validation split ranks configurations: one accuracy's binomial
    standard error at the best accuracy. The default study's best trials lie within
    about that of each other, so its choice among them is partly chance, and only the
    final and control rows say what the choice bought."""
    se = 100 * math.sqrt(acc * (1 - acc) / n_val)
    which = "sweep and trial" if trials else "sweep"
    return (f"**Resolution**: the {which} accuracies above are measured on {n_val:,} "
            f"validation images; at {pct(acc)} one has a standard error of {se:.2f} "
            "points, so configurations that differ by less are not told apart. The final "
            "and control rows, on the test split over seeds, say what the choice bought.")


def budget_text(lock: dict) -> str:
    """A budgeted study's plan in one paragraph: the budget, the planned minutes per
    stage and the values the planner chose (params.toml's are the bounds)."""
    stages = ", ".join(f"{s['stage']} {s['minutes']:.1f}" for s in lock["stages"])
    chosen = [f"`{k} = {v}` (params.toml: {bound})"
              for k, (v, bound) in changed(lock).items()]
    return (f"**Budget**: {lock['budget']:g} min of wall time on a machine with "
            f"{lock['machine']['job_slots']} training job(s) at once; planned "
            f"{lock['total_minutes']:.1f} min ({stages}), against "
            f"{lock['as_written_minutes']:.1f} min for the study as written. "
            + ("The planner chose " + ", ".join(chosen) + "." if chosen
               else "The study as written fits: nothing was lowered."))
