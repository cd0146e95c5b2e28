"""`hpsweep status` before, during and after a study (the synthetic tiny study of
tunefixtures: real trainer, real Optuna SQLite storage, real job logs; the live
snakemake and job processes are stand-ins with the same command lines). The real
pipeline's view (a killed job, a killed snakemake, a finished study) is checked in
test_drills.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tunefixtures import make_study

from hpsweep.core.layout import seed_dir
from hpsweep.core.plan import dumps_config
from hpsweep.data.prepared import load_prepared
from hpsweep.final.retrain import run_control_seed, run_final_seed, write_final_summary
from hpsweep.ops.jobs import job_log
from hpsweep.ops.status import _is_snakemake, collect_status, log_failure
from hpsweep.training.engine import train_run
from hpsweep.training.runner import train_planned_run
from hpsweep.tuning.results import collect
from hpsweep.tuning.tuner import Tuner
from hpsweep.tuning.worker import run_worker, setup_study

BIN = Path(sys.executable).parent
SLEEPER = "import sys, time\nf = open(sys.argv[1], 'a') if len(sys.argv) > 1 else None\n" \
          "print('ready', flush=True)\ntime.sleep(120)\n"


def status(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "hpsweep"), "status", "--params", "params.toml"],
                          cwd=root, capture_output=True, text=True, timeout=120)


def start(root: Path, script: Path, *args: str) -> subprocess.Popen:
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(SLEEPER)
    proc = subprocess.Popen([sys.executable, str(script), *args], cwd=root,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("status")
    study = make_study(root, sweeps={"lr": {"param": "train.lr", "values": [0.003, 0.03, 0.1]}},
                       configs={"wide": {"model.width": 32}, "deep": {"model.depth": 2}},
                       optuna={"n_trials": 2})
    ids = {m.name if m.group != "sweep" else m.label: m.run_id for m in study.plan.members}
    return root, study, ids


def test_before_anything_ran(tiny):
    root, study, _ = tiny
    res = status(root)
    assert res.returncode == 0 and not res.stderr, res.stderr
    out = res.stdout
    assert "Study 'tiny'" in out and "Snakemake: not running" in out
    assert "Runs: 6 distinct, 0 done, 0 running, 0 stopped, 0 failed, 6 pending" in out
    assert "no Optuna study yet" in out and "tiny.db does not exist yet" in out
    assert "seed 0: pending" in out and "seed 1: pending" in out
    assert "Report: reports/report.md (not yet)" in out
    assert not (root / "results").exists()  # status reads; it never creates the storage


def test_during_a_study(tiny):
    root, study, ids = tiny
    data = load_prepared(study.paths.prepared)
    logs = study.paths.logs / "train"
    # done
    with job_log(logs / f"{ids['baseline']}.log"):
        train_planned_run(study, ids["baseline"], threads=1, progress=False)
    # stopped after one of two epochs (as a killed job leaves it)
    stopped = ids["lr=0.003"]
    d = study.paths.run_dir(stopped)
    d.mkdir(parents=True)
    (d / "config.json").write_text(dumps_config(study.plan.runs[stopped]))
    train_run(study.plan.runs[stopped].config, data, d, seed=0, threads=1, progress=False,
              max_epochs_this_call=1)
    # a job that raised
    crashed = ids["lr=0.03"]
    d = study.paths.run_dir(crashed)
    d.mkdir(parents=True)
    (d / "config.json").write_text(dumps_config(study.plan.runs[crashed]))
    with pytest.raises(RuntimeError), job_log(logs / f"{crashed}.log"):
        raise RuntimeError("simulated crash: CUDA out of memory")
    # diverged (the real divergence is drilled in test_drills.py)
    diverged = ids["lr=0.1"]
    d = study.paths.run_dir(diverged)
    d.mkdir(parents=True)
    (d / "config.json").write_text(dumps_config(study.plan.runs[diverged]))
    (d / "metrics.json").write_text(json.dumps({"status": "diverged", "best_val_acc": None,
                                                "diverged_at": {"epoch": 1, "step": 3}}))
    # running: a live job (same command line shape as Snakemake's) holds its log open
    running = ids["wide"]
    d = study.paths.run_dir(running)
    d.mkdir(parents=True)
    (d / "config.json").write_text(dumps_config(study.plan.runs[running]))
    (logs / f"{running}.log").touch()
    # Optuna: one of two workers done
    setup_study(study)
    run_worker(study, 0, threads=1)
    # final retrain: seed 0 done, seed 1 started
    (seed_dir(study, 0)).mkdir(parents=True)
    (seed_dir(study, 0) / "metrics.json").write_text(json.dumps({"status": "ok",
                                                                 "test_acc": 0.9}))
    (seed_dir(study, 1)).mkdir(parents=True)
    (seed_dir(study, 1) / "config.json").write_text(json.dumps({"train": {"epochs": 1}}))
    # a snakemake holding its lock
    (root / ".snakemake" / "locks").mkdir(parents=True)
    (root / ".snakemake" / "locks" / "0.input.lock").write_text("params.toml\n")
    smk = start(root, root / "fakebin" / "snakemake")
    job = start(root, root / ".snakemake" / "scripts" / "tmpab12cd.train_run.py",
                str(logs / f"{running}.log"))
    try:
        res = status(root)
    finally:
        smk.kill()
        smk.wait()
    out = res.stdout
    assert res.returncode == 0 and not res.stderr, res.stderr
    assert f"Snakemake: running (pid {smk.pid}), 1 job(s) active" in out
    assert "Runs: 6 distinct, 1 done, 1 running, 1 stopped, 2 failed, 1 pending" in out
    rows = {line.split()[1]: line.split() for line in out.splitlines()
            if line.startswith("  sweep ") or line.startswith("  config ")}
    #                       done running stopped failed pending best
    assert rows["lr"][2:] == ["-", "-", "1", "2", "-", "-"], rows
    assert rows["wide"][2:] == ["-", "1", "-", "-", "-", "-"], rows
    assert rows["deep"][2:] == ["-", "-", "-", "-", "1", "-"], rows
    failed = out.split("Failed runs")[1].split("\n\n")[0]
    assert f"{crashed}" in failed and "job failed: RuntimeError: simulated crash" in failed
    assert f"{diverged}" in failed and "diverged at epoch 1" in failed
    assert f"log: results/logs/train/{crashed}.log" in failed
    assert running in out.split("Running:")[1].split("\n\n")[0]
    stopped_part = out.split("Stopped")[1].split("\n\n")[0]
    assert stopped in stopped_part and "epoch 1/2 saved" in stopped_part
    assert "trials: 2 complete, 0 pruned, 0 failed, 0 running" in out
    assert re.search(r"best so far: trial [01], val acc [01]\.\d{4}: train.lr=", out), out
    assert "setup done, workers done 1/2, results not collected" in out
    assert "seed 0: done, test acc 0.9000" in out and "seed 1: stopped" in out
    assert "Logs of failed jobs:" in out and f"results/logs/train/{crashed}.log" in \
        out.split("Logs of failed jobs:")[1]

    # snakemake gone, its lock left: status says how to clear it
    res = status(root)
    assert "its lock is left" in res.stdout and "snakemake --unlock" in res.stdout
    assert "1 running" in res.stdout  # the job stand-in still holds its log open
    job.kill()
    job.wait()
    res = status(root)
    assert "0 running, 2 stopped" in res.stdout


def test_after_the_study(tiny):
    root, study, ids = tiny
    (root / ".snakemake" / "locks" / "0.input.lock").unlink()
    for run_id in study.plan.run_ids():
        if (study.paths.run_dir(run_id) / "metrics.json").is_file():
            continue  # done, or the diverged run: complete runs are not redone
        with job_log(study.paths.logs / "train" / f"{run_id}.log"):
            train_planned_run(study, run_id, threads=1, progress=False)
    run_worker(study, 1, threads=1)
    collect(study)
    for seed in study.params.final.seeds:
        run_final_seed(study, seed, threads=1, progress=False)
        run_control_seed(study, seed, threads=1, progress=False)
    summary = write_final_summary(study)
    res = status(root)
    out = res.stdout
    assert res.returncode == 0 and not res.stderr, res.stderr
    assert "Snakemake: not running" in out
    assert "Runs: 6 distinct, 5 done, 0 running, 0 stopped, 1 failed, 0 pending" in out
    assert "Logs of failed jobs" not in out  # the crashed run's rerun succeeded
    assert "workers done 2/2, results collected" in out
    assert f"test acc {summary['test_acc_mean']:.4f} ± " in out
    assert "over 2 seeds" in out and "results/final/summary.json" in out
    assert "and the baseline control" in out
    assert "control seed 0: done, test acc" in out and "control seed 1: done" in out
    assert "tuned - control " in out and "(paired; " in out
    st = collect_status(study, root)
    assert st.optuna["counts"]["complete"] == 2 and st.optuna["best"]["number"] in (0, 1)
    assert Tuner(study).best_params_path.is_file()


def test_unreachable_storage_is_one_line_and_exit_1(tmp_path):
    make_study(tmp_path, optuna={"storage": "postgresql+psycopg2://u:pw123@127.0.0.1:1/x"})
    t0 = time.time()
    res = status(tmp_path)
    assert res.returncode == 1
    assert "Runs: 1 distinct, 0 done" in res.stdout and "cannot read it" in res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot open Optuna storage" in lines[0], res.stderr
    assert "pw123" not in res.stdout + res.stderr
    assert time.time() - t0 < 60


def test_log_failure_reads_the_latest_attempt(tmp_path):
    log = tmp_path / "job.log"
    assert log_failure(log) is None
    with pytest.raises(ValueError), job_log(log):
        raise ValueError("first attempt failed\nsecond line of the message")
    assert log_failure(log) == "second line of the message"
    with job_log(log):
        import logging

        logging.getLogger("hpsweep.training.engine").info("retried: ok")
    assert log_failure(log) is None  # a later attempt went on


@pytest.mark.parametrize(("cmd", "expected"), [
    (["/v/bin/python3", "/v/bin/snakemake", "--cores", "2"], True),
    (["/v/bin/snakemake", "-n"], True),
    (["python", "-m", "snakemake"], True),
    (["/v/bin/python3", "/w/.snakemake/scripts/tmpx.train_run.py"], False),
    (["/v/bin/python3", "-m", "pytest", "tests/test_snakemake.py"], False),
])
def test_is_snakemake(cmd, expected):
    assert _is_snakemake(cmd) is expected


def test_journal_storage_not_created_by_status(tmp_path):
    journal = tmp_path / "shared" / "study.journal"
    make_study(tmp_path, optuna={"storage": f"journal:{journal}"})
    res = status(tmp_path)
    assert res.returncode == 0, res.stderr
    assert "no Optuna study yet" in res.stdout and "does not exist yet" in res.stdout
    assert not journal.exists() and not journal.parent.exists()


def test_a_run_in_a_pack_is_followed_through_its_pack_log(tmp_path):
    """A pack's job logs its runs' ids; pack numbers change with the plan, so status finds
    a run's log by what the logs say, the newest first."""
    import os
    from types import SimpleNamespace

    from hpsweep.core.layout import StudyPaths
    from hpsweep.core.schema import Params
    from hpsweep.ops.status import _pack_logs, _train_log

    study = SimpleNamespace(paths=StudyPaths.from_params(Params(), tmp_path))
    logs = study.paths.logs / "train"
    logs.mkdir(parents=True)
    (logs / "pack_1.log").write_text("INFO pack of 2 runs: aaaaaaaaaaaa, bbbbbbbbbbbb\n")
    (logs / "pack_2.log").write_text("INFO pack of 2 runs: aaaaaaaaaaaa, dddddddddddd\n")
    (logs / "bbbbbbbbbbbb.log").write_text("trained alone once\n")
    (logs / "cccccccccccc.log").write_text("trained alone\n")
    os.utime(logs / "pack_1.log", (1000, 1000))
    os.utime(logs / "bbbbbbbbbbbb.log", (2000, 2000))  # alone after its pack
    os.utime(logs / "pack_2.log", (3000, 3000))
    packs = _pack_logs(study)
    assert _train_log(study, "aaaaaaaaaaaa", packs) == logs / "pack_2.log"  # the newest
    assert _train_log(study, "bbbbbbbbbbbb", packs) == logs / "bbbbbbbbbbbb.log"
    assert _train_log(study, "cccccccccccc", packs) == logs / "cccccccccccc.log"
    assert _train_log(study, "eeeeeeeeeeee", packs) == logs / "eeeeeeeeeeee.log"  # none yet
