"""Fault drills on the real pipeline: real snakemake, real jobs, real SIGKILLs.

One shrunk real study (Fashion-MNIST, 300 training images, 3 epochs, CPU) with three
runs: the baseline, one other learning rate, and a named config that diverges (SGD at
lr = 10, no clipping; prioritized, so it is the run completed before the kills). One
scenario, several checks:

1. snakemake starts; once a run has saved an epoch (last.pt) its job's python
   process gets SIGKILL mid-training (drill a). Snakemake keeps going (profile
   keep-going) and trains the other runs.
2. `hpsweep status` while it runs: the killed run is "stopped".
3. When the last run has saved an epoch, the whole snakemake process group gets
   SIGKILL (drill b); that run's last.pt is then truncated (drill c).
4. A rerun refuses: Snakemake's lock is left. `hpsweep status` says so and names
   `snakemake --unlock`; after it, a rerun with the local profile
   (--rerun-incomplete) completes the study.

Then: the run killed in 1 resumed from its checkpoint and ends with exactly the
metrics of an uninterrupted run of the same config (trained here, in another
directory, same threads); the run with the truncated checkpoint restarted with a
warning and also matches; the run completed before the kills was not redone
(metrics.json bytes and mtime unchanged); the diverged run is recorded with status
diverged and listed in failures.csv and the report (drill d).

Drill 4 (concurrency): two snakemake processes started at once in the finished
study's directory (both forced to redo one extraction); one refuses with Snakemake's
lock message, the other finishes, nothing is left half-written or locked.

Timings (2-core VM, shared): about two and a half minutes for the module, most of it
process start-up (each snakemake and each job imports torch).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from studyfixtures import BIN, ROOT, needs_real_data, shrunk_params

from hpsweep.core.study import Study
from hpsweep.data.prepared import load_prepared
from hpsweep.training.engine import train_run

psutil = pytest.importorskip("psutil")

pytestmark = [
    pytest.mark.slow,
    needs_real_data,
    pytest.mark.skipif(not sys.platform.startswith("linux"),
                       reason="process-group signals and /proc: Linux only"),
]

PROFILE = ROOT / "profiles" / "local"
DIVERGE = {"train.optimizer": "sgd", "train.lr": 10.0, "train.scheduler": "none",
           "train.batch_size": 64}
# Compared between the resumed/restarted run and an uninterrupted one: everything
# computed (not timings).
SAME = ("status", "best_val_acc", "best_val_loss", "best_epoch", "final_val_acc",
        "final_val_loss", "epochs_run", "global_steps", "n_params")
HISTORY = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")


def _cmd(workdir: Path, *args: str) -> list[str]:
    return [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
            "--config", f"params={workdir / 'params.toml'}", "--profile", str(PROFILE),
            "--cores", "2", *args]


def _wait(cond, what: str, proc: subprocess.Popen | None = None, log: Path | None = None,
          timeout: float = 120):
    deadline = time.time() + timeout
    while True:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-4000:] if log else ""
            pytest.fail(f"snakemake exited ({proc.returncode}) before {what}:\n{tail}")
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _train_jobs(sm: subprocess.Popen) -> list:
    """Live train_run job processes of this snakemake (children running the script)."""
    try:
        kids = psutil.Process(sm.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for k in kids:
        try:
            if any(a.endswith(".train_run.py") for a in k.cmdline()):
                out.append(k)
        except psutil.Error:
            pass
    return out


def _status(workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "hpsweep"), "status", "--params", "params.toml"],
                          cwd=workdir, capture_output=True, text=True, timeout=120)


def _jobs(snakemake_output: str, rule: str) -> set[str]:
    """The `run` wildcards of the jobs of ``rule`` a snakemake run scheduled."""
    found, current = set(), None
    for line in snakemake_output.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if m:
            current = m.group(1)
        m = re.match(r"^\s+wildcards: run=([0-9a-f]+)", line)
        if m and current == rule:
            found.add(m.group(1))
    return found


def _stamp(path: Path) -> tuple[int, bytes]:
    return path.stat().st_mtime_ns, path.read_bytes()


@pytest.fixture(scope="module")
def drill(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("drill")
    shrunk_params(tmp, subset=300, epochs=3, values=1, sweeps=1, grids=False, configs=False,
                  study__device="cpu", optuna__enabled=False, final__enabled=False,
                  configs__diverge=DIVERGE)
    study = Study.load(tmp / "params.toml", root=tmp)
    diverge = study.plan.members_of("config", "diverge")[0].run_id
    normal = [r for r in study.plan.run_ids() if r != diverge]
    assert len(normal) == 2
    runs = {r: study.paths.run_dir(r) for r in study.plan.run_ids()}
    facts: dict = {"study": study, "dir": tmp, "diverge": diverge, "t": {}}
    t0 = time.time()

    log1 = tmp / "snakemake-1.log"
    with open(log1, "w") as out:
        sm = subprocess.Popen(_cmd(tmp, "--prioritize", f"results/runs/{diverge}/metrics.json"),
                              stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # (a) a training job saves an epoch: SIGKILL its python process mid-training.
        def saved_epoch():
            jobs = _train_jobs(sm)
            with_ckpt = [r for r in normal if (runs[r] / "last.pt").exists()]
            return (with_ckpt[0], jobs) if len(jobs) == 1 and with_ckpt else None

        a, jobs = _wait(saved_epoch, "a run saving an epoch", sm, log1)
        assert (runs[diverge] / "metrics.json").exists(), "the prioritized run is not done"
        jobs[0].kill()
        jobs[0].wait(10)
        assert not (runs[a] / "metrics.json").exists(), "the run finished before the kill"
        facts["a"] = a
        facts["t"]["kill job"] = time.time() - t0

        c = _wait(lambda: next((r for r in normal if r != a and
                                (runs[r] / "last.pt").exists() and _train_jobs(sm)), None),
                  "the last run saving an epoch", sm, log1)
        # Freeze that job mid-training while `hpsweep status` looks at the running study.
        jobs = _train_jobs(sm)
        for job in jobs:
            job.suspend()
        assert not (runs[c] / "metrics.json").exists(), "the run finished before the stop"
        facts["status_during"] = _status(tmp)
        # (b) kill snakemake and its jobs at once, like a lost terminal or a node reboot.
        os.killpg(sm.pid, signal.SIGKILL)
        sm.wait(10)
    finally:
        if sm.poll() is None:
            os.killpg(sm.pid, signal.SIGKILL)
            sm.wait(10)
    _wait(lambda: not any(p.info["cwd"] == str(tmp) for p in
                          psutil.process_iter(["cwd"]) if p.info.get("cwd")),
          "the killed jobs to disappear", timeout=20)
    facts["t"]["kill snakemake"] = time.time() - t0
    facts.update(b=diverge, c=c)
    facts["done_before"] = {r: _stamp(runs[r] / "metrics.json")
                            for r in runs if (runs[r] / "metrics.json").exists()}

    # (c) a truncated checkpoint, as a full disk or a copy cut short would leave.
    last = runs[c] / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])

    facts["refused"] = subprocess.run(_cmd(tmp), capture_output=True, text=True, timeout=300)
    facts["status_locked"] = _status(tmp)
    facts["unlock"] = subprocess.run(_cmd(tmp, "--unlock"), capture_output=True, text=True,
                                     timeout=300)
    facts["t"]["unlocked"] = time.time() - t0
    facts["rerun"] = subprocess.run(_cmd(tmp), capture_output=True, text=True, timeout=600)
    assert facts["rerun"].returncode == 0, (facts["rerun"].stdout[-3000:] +
                                            facts["rerun"].stderr[-5000:])
    facts["t"]["rerun"] = time.time() - t0
    status = subprocess.Popen([str(BIN / "hpsweep"), "status", "--params", "params.toml"],
                              cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    # The same configs trained without interruption, elsewhere, with the job's threads.
    data = load_prepared(study.paths.prepared)
    facts["clean"] = {
        r: train_run(study.plan.runs[r].config, data, tmp / "clean" / r,
                     seed=study.plan.runs[r].seed, threads=2, progress=False)
        for r in (a, c)}
    out, err = status.communicate(timeout=120)
    facts["status_after"] = subprocess.CompletedProcess(status.args, status.returncode, out, err)
    facts["t"]["clean runs"] = time.time() - t0
    print("drill timings (s since start):", {k: round(v) for k, v in facts["t"].items()})
    return facts


def _metrics(facts, run_id) -> dict:
    return json.loads((facts["study"].paths.run_dir(run_id) / "metrics.json").read_text())


def _assert_same_result(got: dict, clean: dict) -> None:
    for key in SAME:
        assert got[key] == clean[key], (key, got[key], clean[key])
    assert [{k: h[k] for k in HISTORY} for h in got["history"]] == \
        [{k: h[k] for k in HISTORY} for h in clean["history"]]


def test_killed_job_resumes_from_its_checkpoint_with_the_same_metrics(drill):
    a = drill["a"]
    metrics = _metrics(drill, a)
    assert metrics["provenance"]["resumed"] is True
    log = (drill["study"].paths.logs / "train" / f"{a}.log").read_text()
    assert "resuming after epoch" in log
    _assert_same_result(metrics, drill["clean"][a])
    assert not (drill["study"].paths.run_dir(a) / "last.pt").exists()


def test_truncated_checkpoint_restarts_cleanly_with_a_warning(drill):
    c = drill["c"]
    log = (drill["study"].paths.logs / "train" / f"{c}.log").read_text()
    assert "is unreadable" in log and "training from scratch" in log
    assert "Traceback" not in log
    metrics = _metrics(drill, c)
    assert metrics["provenance"]["resumed"] is False
    _assert_same_result(metrics, drill["clean"][c])


def test_completed_runs_are_never_redone(drill):
    study = drill["study"]
    for run_id, stamp in drill["done_before"].items():
        assert _stamp(study.paths.run_dir(run_id) / "metrics.json") == stamp, run_id
    trained = _jobs(drill["rerun"].stdout + drill["rerun"].stderr, "train_run")
    assert drill["b"] not in trained
    assert {drill["a"], drill["c"]} <= trained


def test_killed_snakemake_leaves_a_lock_that_status_explains(drill):
    refused = drill["refused"]
    assert refused.returncode != 0
    assert "Directory cannot be locked" in refused.stdout + refused.stderr
    assert "--unlock" in refused.stdout + refused.stderr
    status = drill["status_locked"]
    assert status.returncode == 0, status.stderr
    assert "its lock is left" in status.stdout
    assert "If none runs, remove it: snakemake --unlock" in status.stdout
    stopped = status.stdout.split("Stopped")[1]
    assert drill["a"] in stopped and drill["c"] in stopped
    assert "last.pt unreadable (restarts from scratch)" in stopped
    assert drill["unlock"].returncode == 0, drill["unlock"].stderr[-2000:]


def test_status_while_the_study_runs(drill):
    status = drill["status_during"]
    assert status.returncode == 0, status.stderr
    out = status.stdout
    assert "Snakemake: running (pid" in out and "1 job(s) active" in out
    assert "0 done, 1 running, 1 stopped, 1 failed, 0 pending" in out
    running = out.split("Running:")[1].split("Stopped")[0]
    stopped = out.split("Stopped")[1].split("\n\n")[0]
    assert drill["c"] in running and drill["a"] in stopped
    for section in (running, stopped):
        assert "epoch 1/3 saved" in section or "epoch 2/3 saved" in section
    assert "diverged at epoch" in out.split("Failed runs")[1]
    assert not status.stderr


def test_diverged_run_is_a_failure_and_the_study_completes(drill):
    study, d = drill["study"], drill["diverge"]
    metrics = _metrics(drill, d)
    assert metrics["status"] == "diverged" and metrics["diverged_at"]["epoch"] >= 1
    fails = pd.read_csv(study.paths.results_dir / "summary" / "failures.csv", dtype=str)
    assert list(fails.loc[fails["status"] == "diverged", "run_id"]) == [d]
    report = (study.paths.reports_dir / "report.md").read_text()
    section = report.split("## Failures", 1)[1].split("\n## ", 1)[0]
    assert any(d in line and "diverged" in line for line in section.splitlines()), section
    after = drill["status_after"]
    assert after.returncode == 0, after.stderr
    assert "2 done, 0 running, 0 stopped, 1 failed, 0 pending" in after.stdout
    assert f"{d}  config diverge" in after.stdout and "diverged at epoch" in after.stdout
    assert "Snakemake: not running" in after.stdout


def _locked_outputs(locks: Path) -> set[str]:
    """The paths Snakemake's output lock files name (a file may go between list and read)."""
    out: set[str] = set()
    for p in locks.glob("*.output.lock"):
        with contextlib.suppress(FileNotFoundError):
            out.update(p.read_text().split())
    return out


def test_two_snakemakes_at_once_one_refuses(drill):
    """A second snakemake started while the first holds the study's lock is refused; both
    are asked to redo one run's extraction (the cheapest job). The first is frozen (SIGSTOP)
    as soon as its lock names the target, so the overlap does not depend on how fast a DAG
    builds.
    (Run last: it leaves that results.toml newer.)"""
    tmp, study, run_id = drill["dir"], drill["study"], drill["a"]
    run_dir = study.paths.run_dir(run_id)
    runs = {r: _stamp(study.paths.run_dir(r) / "metrics.json") for r in study.plan.run_ids()}
    target = f"results/runs/{run_id}/results.toml"
    cmd = _cmd(tmp, "--forcerun", "extract_run", "--", target)
    locks = tmp / ".snakemake" / "locks"
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Snakemake writes its input lock, then its output lock; only the output lock
        # (naming the target) refuses the second. Stopped after the input lock alone,
        # the first let the second run (the flake this test had: 1 in ~8 runs).
        _wait(lambda: target in _locked_outputs(locks), "the first snakemake's output lock",
              first)
        first.send_signal(signal.SIGSTOP)
        second = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, timeout=300)
    finally:
        first.send_signal(signal.SIGCONT)
    outs = [first.communicate(timeout=300)[0], second.stdout]
    codes = [first.returncode, second.returncode]
    # the whole output of the one that failed (an assertion's repr would cut it short)
    assert codes[0] == 0, f"the first snakemake exited {codes[0]}:\n{outs[0][-6000:]}"
    assert codes[1] != 0, f"the second was not refused:\n{outs[1][-6000:]}"
    refused = outs[1]
    assert "Directory cannot be locked" in refused and "--unlock" in refused
    assert "Traceback" not in refused
    assert f"run={run_id}" in outs[0]
    # nothing redone or half-written, and the winner released its lock
    assert {r: _stamp(study.paths.run_dir(r) / "metrics.json") for r in runs} == runs
    assert "best_val_acc" in (run_dir / "results.toml").read_text()
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]
    assert not list((tmp / ".snakemake" / "locks").glob("*.lock"))
