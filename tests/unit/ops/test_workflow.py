"""Threads of training jobs and the jobs that run at once (hpsweep.ops.threads); the DAG
passes Snakemake's linter."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from studyfixtures import BIN, ROOT

from hpsweep.ops.threads import TRAIN_THREADS, job_slots, torch_threads, training_threads_for


@pytest.mark.parametrize("cores,cpus", [(1, 2), (2, 2), (4, 2), (3, 3), (4, 16), (16, 16),
                                        (32, 16), (64, 4), (5, 1)])
def test_jobs_running_at_once_never_oversubscribe_the_cpus(cores, cpus):
    reserved = training_threads_for(cores, local=True, cpus=cpus)
    # Snakemake scales a job's threads down to --cores when they exceed it.
    reserved = min(reserved, cores)
    at_once = max(1, cores // reserved)
    assert at_once * torch_threads(reserved, cpus) <= max(cpus, 1)


def test_normal_case_and_remote_executors_keep_two_threads():
    assert training_threads_for(4, local=True, cpus=16) == TRAIN_THREADS
    assert training_threads_for(2, local=True, cpus=2) == TRAIN_THREADS
    # A cluster job gets its own CPUs (sbatch --cpus-per-task = threads): no scaling.
    assert training_threads_for(400, local=False, cpus=2) == TRAIN_THREADS
    assert training_threads_for(None, local=True, cpus=2) == TRAIN_THREADS


def test_cores_above_cpus_run_one_job_at_a_time_on_a_small_machine():
    assert training_threads_for(4, local=True, cpus=2) == 4  # `--cores 4` on 2 CPUs
    assert torch_threads(4, cpus=2) == 2


def test_job_slots_count_cpus_and_on_a_gpu_the_gpu_resource(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert job_slots() == 8 and job_slots(cores=6) == 3
    assert job_slots(cores=16, gpus=4) == 4  # `--resources gpu=4`: four at once
    assert job_slots(cores=4, gpus=8) == 2  # the CPUs still bound them
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert job_slots(cores=4) == 1  # --cores above the CPUs: one job at a time


def unbudgeted_params(tmp_path) -> str:
    """The shipped params without their budget: the Snakefile's structure is under test,
    not the plan (planning would calibrate the machine first, ~35 s)."""
    path = tmp_path / "params.toml"
    path.write_text(re.sub(r"(?m)^budget = .*$", "budget = 0", (ROOT / "params.toml").read_text()))
    return f"params={path}"


def test_snakemake_lint_is_clean(tmp_path):
    lint = subprocess.run([str(BIN / "snakemake"), "--lint", "--config",
                           unbudgeted_params(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    out = lint.stdout + lint.stderr
    assert lint.returncode == 0 and "Lints for" not in out, out
    assert "good condition" in out, out


def test_rule_files_do_not_depend_on_their_include_order(tmp_path):
    """After common.smk, the rule files may come in any order: same jobs either way."""
    snakefile = (ROOT / "Snakefile").read_text()
    includes = re.findall(r'^include: "workflow/rules/(?!common)\w+\.smk"\n', snakefile, re.M)
    assert len(includes) >= 8
    reversed_ = snakefile
    for inc in includes:
        reversed_ = reversed_.replace(inc, "")
    common = 'include: "workflow/rules/common.smk"\n'
    reversed_ = reversed_.replace(common, common + "".join(reversed(includes)))
    (tmp_path / "Snakefile").write_text(reversed_.replace('"workflow/', f'"{ROOT}/workflow/'))

    config = unbudgeted_params(tmp_path)

    def jobs(snakefile_path):
        res = subprocess.run([str(BIN / "snakemake"), "-s", str(snakefile_path), "-n", "-q",
                              "rules", "-d", str(tmp_path), "--config", config],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-2000:]
        return sorted(re.findall(r"^(\w+)\s+(\d+)$", res.stdout, re.M))  # the job table

    expected = jobs(ROOT / "Snakefile")
    assert {r for r, _ in expected} >= {"train_run", "optuna_worker", "final_run", "report"}
    assert jobs(tmp_path / "Snakefile") == expected


def test_conda_post_deploy_refuses_to_run_outside_the_project(tmp_path):
    # Snakemake runs it inside a new conda env from the working directory; elsewhere it
    # must stop with one clear line rather than pip-install whatever is there.
    script = ROOT / "workflow" / "envs" / "hpsweep.post-deploy.sh"
    run = subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stderr.strip().endswith("run snakemake from the project root"), run.stderr
