"""The text `hpsweep status` prints, from a StudyStatus (ops/status.py collects it)."""

from __future__ import annotations

from typing import Any

from hpsweep.core.budget import changed
from hpsweep.core.plan import format_value
from hpsweep.core.stats import format_mean_ci
from hpsweep.core.study import Study
from hpsweep.ops.status import STATES, StudyStatus


def _table(header: list[str], rows: list[list[Any]], indent: str = "  ") -> list[str]:
    from tabulate import tabulate

    text = tabulate([[str(c) for c in r] for r in rows], header, tablefmt="plain",
                    disable_numparse=True, stralign="left")
    return [indent + line.rstrip() for line in text.splitlines()]


def _unlock_hint(study: Study) -> str:
    cfg = "" if str(study.params_path) == "params.toml" else \
        f" --config params={study.params_path}"
    return f"snakemake --unlock{cfg}"


def _render_snakemake(st: StudyStatus) -> list[str]:
    """The study, Snakemake's state, stale outputs."""
    study, sm = st.study, st.snakemake
    out = [f"Study {study.params.study.name!r} ({study.params_path}; results in "
           f"{study.paths.results_dir}/)"]
    if sm.running:
        out.append(f"Snakemake: running (pid {', '.join(map(str, sm.pids or []))}), "
                   f"{len(sm.jobs)} job(s) active")
    elif sm.stale_lock:
        out.append("Snakemake: not running, but its lock is left (a killed snakemake, or one "
                   f"on another host). If none runs, remove it: {_unlock_hint(study)}")
    elif sm.locks:
        out.append("Snakemake: locked (cannot see its processes here)")
    else:
        out.append("Snakemake: not running")
    for rule, keys in st.stale.items():
        shown = ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")
        out.append(f"{rule} is stale: {shown} changed since it ran; run snakemake")
    if sm.log:
        out.append(f"Snakemake log: {sm.log}")
    return out


def _render_runs(st: StudyStatus) -> list[str]:
    """Run counts by group; failed, running and stopped runs."""
    out: list[str] = []
    lock = st.study.plan_lock
    if lock is not None:  # a budgeted study: what its frozen plan set
        chosen = ", ".join(f"{k} = {v}" for k, (v, _) in changed(lock).items()) \
            or "the study as written"
        out += ["", f"Budget: {lock['budget']:g} min, planned {lock['total_minutes']:.1f} min "
                f"({chosen}; frozen in {st.study.paths.plan_lock})"]
    t = st.totals
    out += ["", f"Runs: {len(st.runs)} distinct, " +
            ", ".join(f"{t[s]} {s}" for s in STATES)]
    out += _table(["group", "name", *STATES, "best val acc"],
                  [[g.group, g.name, *(g.counts[s] or "-" for s in STATES), g.best or "-"]
                   for g in st.groups])
    for state, title in (
            ("failed", "Failed runs (listed in the report's failures):"),
            ("running", "Running:"),
            ("stopped", "Stopped (killed or interrupted; rerun snakemake to resume):")):
        rows = [r for r in st.runs.values() if r.state == state]
        if rows:
            out += ["", title]
            out += [f"  {r.run_id}  {r.members[0] if r.members else ''}: {r.detail}"
                    f"\n      log: {r.log}" for r in rows]
    return out


def _render_optuna(st: StudyStatus) -> list[str]:
    """The Optuna study: trials, best so far, jobs."""
    out: list[str] = []
    o = st.optuna
    out.append("")
    if not o["enabled"]:
        out.append("Optuna: disabled (optuna.enabled = false)")
    else:
        out.append(f"Optuna: study {o['study']} on {o['storage']}, "
                   f"{o['n_trials']} trials wanted")
        if o["state"] == "error":
            out.append(f"  cannot read it: {o['error']}")
        elif o["state"] == "none":
            out.append(f"  no Optuna study yet ({o.get('why', '')})")
        else:
            c = o["counts"]
            out.append(f"  trials: {c['complete']} complete, {c['pruned']} pruned, "
                       f"{c['failed']} failed, {c['running']} running, {c['waiting']} waiting"
                       f" (+ {c['warm']} warm-start from the sweeps)")
            best = o.get("best")
            if best:
                params = ", ".join(f"{k}={format_value(v)}" for k, v in best["params"].items())
                warm = " (a warm-start sweep run)" if best["warm_start"] else ""
                out.append(f"  best so far: trial {best['number']}{warm}, "
                           f"val acc {best['value']:.4f}: {params}")
            else:
                out.append("  best so far: none (no complete trial yet)")
            for ft in o.get("failed_trials", []):
                out.append(f"  failed trial {ft['number']}: {ft['run_dir']}")
        out.append(f"  setup {'done' if o['setup'] else 'not done'}, workers done "
                   f"{len(o['workers_done'])}/{o['n_workers']}, results "
                   f"{'collected' if o['collected'] else 'not collected'}; "
                   f"logs in {o['logs']}/")
    return out


def _render_final(st: StudyStatus) -> list[str]:
    """The final retrain, seed by seed."""
    out: list[str] = []
    f = st.final
    out.append("")
    if not f["enabled"]:
        out.append("Final retrain: disabled (final.enabled = false)")
    else:
        out.append(f"Final retrain: seeds {', '.join(str(s['seed']) for s in f['seeds'])}"
                   + (", and the baseline control" if f["control"] is not None else ""))
        for kind, rows in (("seed", f["seeds"]), ("control seed", f["control"] or [])):
            for s in rows:
                acc = f", test acc {s['test_acc']:.4f}" if s.get("test_acc") is not None else ""
                detail = f" ({s['detail']})" if s["detail"] else ""
                log = f"; log: {s['log']}" if s["state"] in ("failed", "stopped") else ""
                out.append(f"  {kind} {s['seed']}: {s['state']}{acc}{detail}{log}")
        sm_ = f.get("summary")
        if sm_ and sm_.get("test_acc_mean") is not None:
            ci = sm_.get("test_acc_ci95")
            acc = format_mean_ci(sm_["test_acc_mean"], ci, pct=False, digits=4)
            out.append(f"  test acc {acc}" + (" (95 % CI)" if ci is not None else "") +
                       f" over {sm_['n_seeds']} seeds; {f['summary_path']}")
            gain = sm_.get("gain_vs_control")
            if gain is not None:
                diff = format_mean_ci(gain["mean"], gain["ci95"], pct=False, digits=4)
                word = {True: "significant", False: "not significant", None: "one seed"}
                out.append(f"  tuned - control {diff} (paired; {word[gain['significant']]})")
    return out


def _render_outputs(st: StudyStatus) -> list[str]:
    """The summary table, the report, logs of failed jobs."""
    out: list[str] = []
    out.append("")
    for key, title in (("summary", "Summary table"), ("report", "Report")):
        r = st.report[key]
        out.append(f"{title}: {r['path']} " +
                   (f"(written {r['written']})" if r["exists"] else "(not yet)"))

    if st.failed_logs:
        out += ["", "Logs of failed jobs:"]
        out += [f"  {path}: {reason}" for path, reason in st.failed_logs.items()]
    return out


def render(st: StudyStatus) -> str:
    return "\n".join(line for part in (_render_snakemake, _render_runs, _render_optuna,
                                         _render_final, _render_outputs) for line in part(st))
