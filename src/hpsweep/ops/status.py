"""`hpsweep status`: where a study stands, read from its files; safe while it runs.

    collect_status(study, workdir)  -> StudyStatus (plain data, what the tests check)
    status_text.render(status)      -> the text `hpsweep status` prints

It only reads: run directories (config.json / metrics.json / last.pt), the job logs
under results/logs/, the Optuna storage (a missing default SQLite file is reported
as "no study yet", never created), the final retrain and report files, and
Snakemake's lock directory. A run is

    done      metrics.json with status ok / early_stopped
    failed    metrics.json with another status (diverged, pruned), or its job raised
              (the log's last entry is "job failed")
    running   config.json, no metrics.json, and a live job has its log open (or, where
              the jobs cannot be seen, e.g. SLURM jobs of a snakemake running here, the
              run's files changed within the last ACTIVE_WINDOW_S)
    stopped   config.json, no metrics.json, nothing running it: killed or
              interrupted; the next `snakemake` resumes it from last.pt
    pending   no directory yet (or one holding another run: retrained)
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpsweep.core import params_deps
from hpsweep.core.runstatus import USABLE, RunStatus
from hpsweep.core.study import Study
from hpsweep.training.runstore import inspect

STATES = ("done", "running", "stopped", "failed", "pending")
# Files of an unfinished run touched this recently count as "running" when no local
# process can be seen (jobs on cluster nodes).
ACTIVE_WINDOW_S = 600
_STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
_JOB_SCRIPT = re.compile(r"\.snakemake/scripts/tmp[^/]*?\.([A-Za-z0-9_]+)\.py$")


# -- Snakemake: live processes, lock --------------------------------------------------------

@dataclass
class SnakemakeState:
    pids: list[int] | None  # live snakemake processes in workdir; None: cannot tell
    jobs: list[dict[str, Any]]  # live job processes: pid, rule, open log files
    locks: list[str]  # lock files in .snakemake/locks
    log: str | None  # newest .snakemake/log/*.snakemake.log

    @property
    def running(self) -> bool:
        return bool(self.pids)

    @property
    def stale_lock(self) -> bool:
        """Locks but no snakemake here (killed, or running on another host)."""
        return bool(self.locks) and self.pids == []


def _is_snakemake(cmd: list[str]) -> bool:
    for i, arg in enumerate(cmd[:3]):
        if Path(arg).name == "snakemake":
            return True
        if arg == "-m" and i + 1 < len(cmd) and cmd[i + 1] == "snakemake":
            return True
    return False


def snakemake_state(workdir: Path) -> SnakemakeState:
    workdir = Path(workdir).resolve()
    locks_dir = workdir / ".snakemake" / "locks"
    locks = sorted(p.name for p in locks_dir.glob("*.lock")) if locks_dir.is_dir() else []
    logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))
    newest = str(logs[-1].relative_to(workdir)) if logs else None
    try:
        import psutil  # a dependency of snakemake
    except ImportError:
        return SnakemakeState(None, [], locks, newest)
    pids: list[int] = []
    jobs: list[dict[str, Any]] = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd", "status"]):
        info = proc.info
        if not info.get("cwd") or info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        try:
            if Path(info["cwd"]).resolve() != workdir:
                continue
        except OSError:
            continue
        cmd = info.get("cmdline") or []
        if _is_snakemake(cmd):
            pids.append(info["pid"])
            continue
        rule = next((m.group(1) for a in cmd[1:3] if (m := _JOB_SCRIPT.search(a))), None)
        if rule is None:
            continue
        try:
            files = [f.path for f in proc.open_files()]
        except psutil.Error:
            files = []
        jobs.append({"pid": info["pid"], "rule": rule,
                     "logs": [f for f in files if f.endswith(".log")]})
    return SnakemakeState(sorted(pids), jobs, locks, newest)


# -- job logs ---------------------------------------------------------------------------------

def log_failure(path: Path) -> str | None:
    """The error of a job whose latest attempt failed (its log's last timestamped entry
    is hpsweep's "job failed"); None if it did not fail or there is no log."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    stamped = [i for i, line in enumerate(lines) if _STAMP.match(line)]
    if not stamped or "job failed" not in lines[stamped[-1]]:
        return None
    tail = [line.strip() for line in lines[stamped[-1] + 1:] if line.strip()]
    reason = tail[-1] if tail else "job failed"
    return reason if len(reason) <= 200 else reason[:197] + "..."


def failed_logs(logs_dir: Path) -> dict[str, str]:
    """Every job log under results/logs/ whose latest attempt failed: path -> error."""
    if not logs_dir.is_dir():
        return {}
    out = {}
    for path in sorted(logs_dir.rglob("*.log")):
        reason = log_failure(path)
        if reason is not None:
            out[str(path)] = reason
    return out


# -- runs -------------------------------------------------------------------------------------

@dataclass
class RunRow:
    run_id: str
    state: str  # one of STATES
    detail: str = ""
    best_val_acc: float | None = None
    log: str = ""
    members: list[str] = field(default_factory=list)


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _checkpoint_epoch(path: Path) -> int | None:
    """The epoch last.pt was saved after (None: none, or unreadable: it restarts)."""
    if not path.is_file():
        return None
    try:
        import torch

        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(ckpt["epoch"])
    except Exception:  # truncated, half-replaced, another format: the trainer restarts
        return -1


def _unfinished(run_dir: Path, log: Path, epochs: int, sm: SnakemakeState) -> tuple[str, str]:
    """(state, detail) of a started run without metrics.json."""
    error = log_failure(log)
    if error is not None:
        return "failed", f"job failed: {error}"
    epoch = _checkpoint_epoch(run_dir / "last.pt")
    progress = ("no epoch finished yet" if epoch is None else
                "last.pt unreadable (restarts from scratch)" if epoch < 0 else
                f"epoch {epoch}/{epochs} saved")
    log_abs = str(log.resolve())
    if any(log_abs in {str(Path(f).resolve()) for f in j["logs"]} for j in sm.jobs):
        return "running", progress
    if (sm.pids is None and sm.locks) or (sm.pids and not sm.jobs):
        # Cannot see the jobs (no psutil; or snakemake runs here and its jobs on cluster
        # nodes): go by recent activity.
        touched = [p.stat().st_mtime for p in (run_dir, run_dir / "last.pt", log) if p.exists()]
        if touched and time.time() - max(touched) < ACTIVE_WINDOW_S:
            return "running", progress
    return "stopped", f"{progress}; the next snakemake run resumes it"


def _pack_logs(study: Study) -> list[tuple[Path, str]]:
    """The pack jobs' logs (newest first) and their text."""
    logs = sorted(study.paths.logs.glob("train/pack_*.log"), key=lambda p: p.stat().st_mtime,
                  reverse=True)
    return [(p, p.read_text(errors="replace")) for p in logs]


def _train_log(study: Study, run_id: str, pack_logs: list[tuple[Path, str]]) -> Path:
    """The log of the job that last trained ``run_id``: its own or a pack's, whichever
    was written last (a pack's job logs its runs' ids when it starts; pack numbers change
    with the plan, so a pack's log is found by what it says)."""
    own = study.paths.train_log(run_id)
    pack = next((p for p, text in pack_logs if run_id in text), None)
    if pack is None or (own.exists() and own.stat().st_mtime >= pack.stat().st_mtime):
        return own
    return pack


def run_rows(study: Study, sm: SnakemakeState) -> dict[str, RunRow]:
    rows: dict[str, RunRow] = {}
    pack_logs = _pack_logs(study)
    for run_id in study.plan.run_ids():
        st = inspect(study, run_id)
        d = study.paths.run_dir(run_id)
        log = _train_log(study, run_id, pack_logs)
        row = RunRow(run_id, "pending", log=str(log))
        if st.state == "invalid":
            row.detail = f"{st.why}; it will be retrained"
        elif st.state == RunStatus.INCOMPLETE:
            epochs = study.plan.runs[run_id].config["train"]["epochs"]
            row.state, row.detail = _unfinished(d, log, epochs, sm)
        elif st.state == "complete":
            metrics = _read_json(d / "metrics.json") or {}
            status = metrics.get("status", "unreadable metrics.json")
            acc = metrics.get("best_val_acc")
            row.best_val_acc = float(acc) if isinstance(acc, int | float) else None
            if status in USABLE:
                row.state, row.detail = "done", status
            else:
                row.state = "failed"
                at = metrics.get("diverged_at") or {}
                row.detail = status + (f" at epoch {at['epoch']}" if "epoch" in at else "")
        rows[run_id] = row
    for m in study.plan.members:
        rows[m.run_id].members.append(f"{m.group} {m.name} {m.label} seed={m.seed}")
    return rows


@dataclass
class GroupRow:
    group: str
    name: str
    counts: dict[str, int]
    best: str = ""  # "0.8512 (lr=0.001)"


def group_rows(study: Study, rows: dict[str, RunRow]) -> list[GroupRow]:
    """Per sweep/grid/config (baseline first): run states, best mean val acc by label."""
    out: dict[tuple[str, str], GroupRow] = {}
    seen: dict[tuple[str, str], set[str]] = {}
    accs: dict[tuple[str, str], dict[str, list[float]]] = {}
    for m in study.plan.members:
        key = (m.group, m.name)
        g = out.setdefault(key, GroupRow(m.group, m.name, dict.fromkeys(STATES, 0)))
        if m.run_id not in seen.setdefault(key, set()):
            seen[key].add(m.run_id)
            g.counts[rows[m.run_id].state] += 1
        r = rows[m.run_id]
        if r.state == "done" and r.best_val_acc is not None:
            accs.setdefault(key, {}).setdefault(m.label, []).append(r.best_val_acc)
    for key, by_label in accs.items():
        label, vals = max(by_label.items(), key=lambda kv: sum(kv[1]) / len(kv[1]))
        out[key].best = f"{sum(vals) / len(vals):.4f} ({label})"
    return list(out.values())


# -- Optuna -----------------------------------------------------------------------------------

def optuna_status(study: Study) -> dict[str, Any]:
    """Trial counts and the best trial so far; never creates a storage or a study."""
    o = study.params.optuna
    if not o.enabled:
        return {"enabled": False}
    import optuna

    from hpsweep.tuning.counting import trial_counts
    from hpsweep.tuning.results import best_trial
    from hpsweep.tuning.storage import JOURNAL_PREFIX, StorageError, default_sqlite, open_storage
    from hpsweep.tuning.tuner import Tuner

    tuner = Tuner(study)
    info: dict[str, Any] = {
        "enabled": True, "study": tuner.name, "n_trials": o.n_trials,
        "storage": tuner.storage_setting, "setup": tuner.setup_marker.is_file(),
        "workers_done": [i for i in range(o.n_workers) if tuner.worker_marker(i).is_file()],
        "n_workers": o.n_workers, "collected": tuner.best_params_path.is_file(),
        "logs": str(study.paths.logs / "optuna"), "state": "none"}
    # Files that do not exist yet are not created (opening a storage would).
    raw = o.storage.strip()
    db = default_sqlite(study) if not raw else \
        Path(raw[len(JOURNAL_PREFIX):]).expanduser() if raw.startswith(JOURNAL_PREFIX) else None
    if db is not None and not db.is_file():
        info["storage"] = str(db) if not raw else raw
        info["why"] = f"{db} does not exist yet"
        return info
    try:
        info["storage"] = tuner.masked_url
        storage = open_storage(tuner.url)
    except StorageError as e:
        info["state"], info["error"] = "error", str(e)
        return info
    try:
        ostudy = optuna.load_study(study_name=tuner.name, storage=storage)
    except KeyError:
        others = [s.study_name for s in storage.get_all_studies()]
        info["why"] = (f"no study {tuner.name!r} in the storage yet" +
                       (f" (it holds {', '.join(others)}: other params)" if others else ""))
        return info
    info["state"] = "present"
    info["counts"] = trial_counts(ostudy)
    info["failed_trials"] = [
        {"number": t.number, "run_dir": t.user_attrs.get("run_dir")}
        for t in ostudy.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
        if not (t.user_attrs.get("surplus") or t.user_attrs.get("invalid")
                or t.user_attrs.get("warm_start"))]
    try:
        best = best_trial(tuner, ostudy)
    except (RuntimeError, ValueError):
        info["best"] = None
    else:
        info["best"] = {"number": best.number, "value": best.values[0],
                        "warm_start": bool(best.user_attrs.get("warm_start")),
                        "params": tuner.space.decode(best.params)}
    return info


# -- final retrain and report ------------------------------------------------------------------

def final_status(study: Study, sm: SnakemakeState) -> dict[str, Any]:
    from hpsweep.core import layout

    f = study.params.final
    if not f.enabled:
        return {"enabled": False}
    info: dict[str, Any] = {
        "enabled": True,
        "seeds": _seed_states(study, sm, lambda s: layout.seed_dir(study, s), "seed"),
        "control": _seed_states(study, sm, lambda s: layout.control_dir(study, s),
                                "control_seed") if f.control else None}
    summary = _read_json(layout.summary_path(study))
    if summary is not None:
        info["summary"] = {k: summary.get(k) for k in (
            "test_acc_mean", "test_acc_ci95", "n_seeds", "exported_seed", "overrides",
            "gain_vs_control")}
        info["summary_path"] = str(layout.summary_path(study))
        info["model"] = str(layout.model_path(study)) if layout.model_path(study).is_file() \
            else None
    return info


def _seed_states(study: Study, sm: SnakemakeState, dir_of, log_name: str
                 ) -> list[dict[str, Any]]:
    """Each final seed's run (or the control's, by ``dir_of``): done, failed, running,
    stopped or pending, its test accuracy and log."""
    seeds = []
    for seed in study.params.final.seeds:
        d = dir_of(seed)
        log = study.paths.logs / "final" / f"{log_name}_{seed}.log"
        metrics = _read_json(d / "metrics.json")
        row: dict[str, Any] = {"seed": seed, "log": str(log), "detail": ""}
        if metrics is not None:
            ok = metrics.get("status") in USABLE and metrics.get("test_acc") is not None
            row["state"] = "done" if ok else "failed"
            row["test_acc"] = metrics.get("test_acc")
            row["detail"] = "" if ok else f"status {metrics.get('status')}"
        elif (d / "config.json").is_file():
            cfg = _read_json(d / "config.json") or {}
            epochs = (cfg.get("train") or {}).get("epochs", "?")
            row["state"], row["detail"] = _unfinished(d, log, epochs, sm)
        else:
            row["state"] = "pending"
        seeds.append(row)
    return seeds


def report_status(study: Study) -> dict[str, Any]:
    from hpsweep.core.layout import experiment_summary_path, report_path

    out = {}
    for key, path in (("summary", experiment_summary_path(study)),
                      ("report", report_path(study))):
        out[key] = {"path": str(path), "exists": path.is_file(),
                    "written": time.strftime("%Y-%m-%d %H:%M", time.localtime(
                        path.stat().st_mtime)) if path.is_file() else None}
    return out


# -- all of it ----------------------------------------------------------------------------------

@dataclass
class StudyStatus:
    study: Study
    snakemake: SnakemakeState
    runs: dict[str, RunRow]
    groups: list[GroupRow]
    optuna: dict[str, Any]
    final: dict[str, Any]
    report: dict[str, Any]
    failed_logs: dict[str, str]
    # rule -> the params keys that changed since its outputs were made
    stale: dict[str, list[str]] = field(default_factory=dict)

    @property
    def totals(self) -> dict[str, int]:
        t = dict.fromkeys(STATES, 0)
        for r in self.runs.values():
            t[r.state] += 1
        return t

    @property
    def problems(self) -> list[str]:
        """What `hpsweep status` reports on stderr (and exits 1 for)."""
        return [self.optuna["error"]] if self.optuna.get("error") else []


def collect_status(study: Study, workdir: str | Path = ".") -> StudyStatus:
    sm = snakemake_state(Path(workdir))
    runs = run_rows(study, sm)
    return StudyStatus(study, sm, runs, group_rows(study, runs), optuna_status(study),
                       final_status(study, sm), report_status(study),
                       failed_logs(study.paths.logs),
                       params_deps.stale_rules(study.params, study.paths.results_dir))


# -- text -------------------------------------------------------------------------------------
