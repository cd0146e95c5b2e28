"""End-to-end on a real single-node SLURM cluster: `snakemake --profile profiles/slurm`.

tests/slurm/cluster.sh starts the cluster (Debian's Slurm, munge, slurmdbd on a private
MariaDB; it installs them when missing, which needs root and apt). Where it cannot
start, these tests are skipped, except in CI (CI=true), where that is a failure.

    .venv/bin/python -m pytest -m slurm       only these tests (about 5 min on 2 cores)
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import tomli
from studyfixtures import BIN, ROOT, needs_real_data, shrunk_params, snakemake

from hpsweep.core.study import Study

pytestmark = [
    pytest.mark.slurm,
    needs_real_data,
]

CLUSTER_SH = ROOT / "tests" / "slurm" / "cluster.sh"
PARTITION = "hpsweep"  # cluster.sh's default partition (HPSWEEP_SLURM_PARTITION)
IN_CI = os.environ.get("CI") == "true"
# Seconds a whole `snakemake --profile profiles/slurm` run may take before `timeout` ends it.
STUDY_LIMIT_S = 480
# Test-friendly overrides of profiles/slurm: first status check after 2 s (not 20), and
# one CPU per job so that two jobs share this 2-core node.
FAST = ["--slurm-init-seconds-before-status-checks", "2", "--jobs", "4",
        "--set-threads", "train_run=1", "optuna_worker=1", "final_run=1", "control_run=1"]


def cluster(action: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLUSTER_SH), action], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running cluster; stopped afterwards unless it was already running."""
    was_up = cluster("status", 30).returncode == 0
    try:
        res = cluster("start", 660)
        ok, out = res.returncode == 0, res.stdout + res.stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        ok, out = False, repr(exc)
    if not ok:
        msg = f"cannot start the SLURM test cluster (tests/slurm/cluster.sh start):\n{out[-3000:]}"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    yield
    if not was_up:
        cluster("stop", 120)


def slurm_snakemake(workdir: Path, *args: str, limit: int) -> subprocess.Popen:
    """Start `snakemake --profile profiles/slurm` on the study in `workdir`, killed after
    `limit` s (a Snakemake whose status checks hang ignores SIGTERM: -k sends SIGKILL)."""
    cmd = ["timeout", "-k", "10", str(limit), str(BIN / "snakemake"),
           "--profile", str(ROOT / "profiles" / "slurm"), "-s", str(ROOT / "Snakefile"),
           "-d", str(workdir), "--config", f"params={workdir / 'params.toml'}", *FAST, *args]
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    with (workdir / "snakemake.out").open("w") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)


def finish(proc: subprocess.Popen, workdir: Path, limit: int) -> str:
    """Wait for `proc`; assert it succeeded; return its output."""
    proc.wait(timeout=limit + 30)
    out = (workdir / "snakemake.out").read_text()
    assert proc.returncode == 0, f"snakemake exited {proc.returncode}:\n{out[-6000:]}"
    return out


def sacct_jobs(workdir: Path) -> pd.DataFrame:
    """Allocations (not steps) that SLURM accounting holds for jobs run in `workdir`."""
    fields = ["JobID", "State", "Comment", "AllocTRES", "WorkDir"]
    res = subprocess.run(["sacct", "-X", "-n", "-P", "--delimiter", "\t", "-S", "now-1days",
                          "-o", ",".join(f"{f}%400" for f in fields)],
                         capture_output=True, text=True, timeout=30, check=True)
    rows = [line.split("\t") for line in res.stdout.splitlines() if line.strip()]
    jobs = pd.DataFrame(rows, columns=fields)
    jobs = jobs[jobs["WorkDir"] == str(workdir)].copy()
    jobs["rule"] = jobs["Comment"].str.extract(r"^rule_(.+?)(?:_wildcards_|$)")[0]
    jobs["wildcards"] = jobs["Comment"].str.extract(r"_wildcards_(.*)$")[0]
    return jobs


def summary(workdir: Path) -> pd.DataFrame:
    return pd.read_csv(workdir / "results" / "summary" / "experiment_summary.csv")


def drill_params(tmp: Path) -> list[str]:
    """A study of two runs trained as one pack (study.pack_size = 2), 60 epochs: slow
    enough for its job to be cancelled midway; returns the runs' ids."""
    baseline_lr = tomli.loads((ROOT / "params.toml").read_text())["train"]["lr"]
    shrunk_params(tmp, subset=300, epochs=60, sweeps=1, grids=False, configs=False,
                  sweeps__lr={"param": "train.lr", "values": [baseline_lr, baseline_lr / 2]},
                  study__pack_size=2, optuna__enabled=False, final__enabled=False)
    study = Study.load(tmp / "params.toml", root=tmp)
    assert [p.run_ids for p in study.packs] == [tuple(sorted(study.plan.run_ids()))]
    return sorted(study.plan.run_ids())


def cancel_when_training(workdir: Path, rule: str, run_ids: list[str],
                         proc: subprocess.Popen) -> str:
    """scancel the job of `rule` once it runs and each of `run_ids` has saved a checkpoint."""
    checkpoints = [workdir / "results" / "runs" / r / "last.pt" for r in run_ids]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        queue = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k|%Z"],
                               capture_output=True, text=True, timeout=10).stdout
        running = [line.split("|")[0] for line in queue.splitlines()
                   if line.endswith(f"|{workdir}") and f"|rule_{rule}|" in line]
        if running and all(c.exists() for c in checkpoints):  # mid-training: epochs saved
            subprocess.run(["scancel", running[0]], check=True, timeout=10)
            return running[0]
        time.sleep(0.2)
    raise AssertionError(f"no running {rule} job with checkpoints to cancel; snakemake "
                         f"output:\n{(workdir / 'snakemake.out').read_text()[-3000:]}")


@pytest.fixture(scope="module")
def slurm_runs(slurm_cluster, tmp_path_factory):
    """Two studies submitted side by side (their jobs share the node, their status-check
    waits overlap): the shrunk study through every stage, one job asking for the fake
    GPU; and the scancel drill, whose pack job (two runs) is cancelled while it runs."""
    study = tmp_path_factory.mktemp("slurm-study")
    # Two training runs (the baseline and one lr): one wave of jobs on the 2-core node.
    shrunk_params(study, subset=300, epochs=1, values=1, sweeps=1, grids=False, configs=False,
                  optuna__n_trials=2, optuna__n_workers=2, final__seeds=[0])
    drill = tmp_path_factory.mktemp("slurm-drill")
    drill_runs = drill_params(drill)
    start = time.monotonic()
    main_proc = slurm_snakemake(
        study, "--default-resources", f"slurm_partition={PARTITION}", "runtime=10",
        "mem_mb=1000",
        # The study trains on the CPU here (gpu=0 in the rules); ask one GPU for the final
        # retrain to see `resources: gpu=1` reach SLURM as --gpus=1.
        "--set-resources", "final_run:gpu=1", limit=STUDY_LIMIT_S)
    # The drill keeps the profile's own resources and partition choice (the default one).
    drill_proc = slurm_snakemake(drill, limit=STUDY_LIMIT_S)
    try:
        cancelled = cancel_when_training(drill, "train_pack_1", drill_runs, drill_proc)
        study_out = finish(main_proc, study, STUDY_LIMIT_S)
        drill_out = finish(drill_proc, drill, STUDY_LIMIT_S)
    finally:
        for proc in (main_proc, drill_proc):
            if proc.poll() is None:  # `timeout` passes SIGTERM on, and SIGKILLs 10 s later
                proc.terminate()
                proc.wait(timeout=30)
    print(f"SLURM study and drill: {time.monotonic() - start:.0f} s")
    return {"study": study, "study_out": study_out, "drill": drill, "drill_out": drill_out,
            "drill_runs": drill_runs, "cancelled": cancelled}


@pytest.fixture(scope="module")
def slurm_study(slurm_runs):
    return slurm_runs["study"], slurm_runs["study_out"]


def test_cluster_jobs_went_through_sbatch(slurm_study):
    tmp, _ = slurm_study
    study = Study.load(tmp / "params.toml", root=tmp)
    jobs = sacct_jobs(tmp)
    assert set(jobs["State"]) == {"COMPLETED"}, jobs.to_string()
    per_rule = jobs["rule"].value_counts().to_dict()
    # summarize is cheap: a cluster job today, it may become a localrule.
    assert per_rule.pop("summarize", 0) <= 1
    # Only these are cluster jobs; the localrules (data, extraction, tables, Optuna
    # setup/collect, plots, report) run on the submit host.
    assert per_rule == {"train_run": len(study.plan.run_ids()), "optuna_worker": 2,
                        "final_run": 1, "control_run": 1}, jobs.to_string()
    assert set(jobs.loc[jobs["rule"] == "train_run", "wildcards"]) == set(study.plan.run_ids())


def test_gpu_resource_reaches_slurm_and_gpu0_does_not(slurm_study):
    tmp, _ = slurm_study
    jobs = sacct_jobs(tmp)
    gpu = jobs["AllocTRES"].str.contains("gres/gpu=1")
    assert set(jobs.loc[gpu, "rule"]) == {"final_run"}, jobs.to_string()
    # gpu=0 (a CPU study) is not sent as --gpus=0: those jobs have no GPU in their TRES.
    assert not jobs.loc[~gpu, "AllocTRES"].str.contains("gpu").any(), jobs.to_string()


def test_summary_has_every_member_ok(slurm_study):
    tmp, _ = slurm_study
    study = Study.load(tmp / "params.toml", root=tmp)
    table = summary(tmp)
    assert len(table) == len(study.plan.members)
    assert set(table["status"]) == {"ok"}, table[["run_id", "status"]]
    for stage in ("results/final/summary.json", "results/optuna/fmnist-mlp/best_params.json",
                  "reports/report.md"):
        assert (tmp / stage).is_file(), stage


def test_every_job_logs_under_results_logs(slurm_study):
    tmp, _ = slurm_study
    study = Study.load(tmp / "params.toml", root=tmp)
    logs = tmp / "results" / "logs"
    for run_id in study.plan.run_ids():
        assert "ok, best val acc" in (logs / "train" / f"{run_id}.log").read_text()
    for name in ("optuna/worker_0.log", "optuna/worker_1.log", "final/seed_0.log",
                 "summarize.log", "prepare_data.log"):
        assert (logs / name).is_file(), name
    # SLURM's own logs of successful jobs are removed by the plugin; nothing else is
    # written outside results/logs and .snakemake.
    assert not list(tmp.glob("slurm-*.out"))


def test_same_runs_and_results_as_a_local_run(slurm_study, tmp_path):
    tmp, _ = slurm_study
    (tmp_path / "params.toml").write_text((tmp / "params.toml").read_text())
    res = snakemake(tmp_path, "results/summary/experiment_summary.csv",
                    "--set-threads", "train_run=1")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    local, cluster_ = summary(tmp_path), summary(tmp)
    assert set(local["run_id"]) == set(cluster_["run_id"])
    # Same signature, same seed, same thread count: the same numbers.
    merged = local.merge(cluster_, on=["group", "name", "run_id"], suffixes=("_local", "_slurm"))
    assert len(merged) == len(local)
    pd.testing.assert_series_equal(merged["best_val_acc_local"], merged["best_val_acc_slurm"],
                                   check_names=False, atol=1e-6)


def test_scancelled_pack_job_is_retried(slurm_runs):
    """A pack is one SLURM job; the profile's `retries` resubmits it when cancelled, the
    retry (which parses the Snakefile again on the node) resumes every member from its
    checkpoint, and the study completes."""
    drill, run_ids, job_id = slurm_runs["drill"], slurm_runs["drill_runs"], slurm_runs["cancelled"]
    assert f"SLURM-job '{job_id}' failed" in slurm_runs["drill_out"]
    jobs = sacct_jobs(drill)
    assert set(jobs["rule"]) == {"train_pack_1"}, jobs.to_string()  # no train_run job
    assert jobs.loc[jobs["JobID"] == job_id, "State"].iloc[0].startswith("CANCELLED")
    assert [state.split()[0] for state in jobs["State"]] == ["CANCELLED", "COMPLETED"], \
        jobs.to_string()
    table = summary(drill)
    assert set(table["status"]) == {"ok"}
    assert set(table["run_id"]) == set(run_ids)
    for run_id in run_ids:
        metrics = json.loads((drill / "results" / "runs" / run_id / "metrics.json").read_text())
        assert metrics["provenance"]["resumed"] is True, run_id
        assert metrics["epochs_run"] == 60, run_id
    # The cancelled job's SLURM log is kept, under results/logs.
    kept = (drill / "results" / "logs" / "slurm").rglob(f"{job_id}.log")
    assert [p for p in kept if "rule_train_pack_1" in p.parts]
