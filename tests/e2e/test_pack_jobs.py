"""Packs under the real snakemake: one job trains a pack's runs, and afterwards every way
of running (plain, the local profile, dvc.yaml's rule list) sees them as up to date."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import tomli
import tomli_w
import yaml
from studyfixtures import BIN, ROOT, needs_real_data, shrunk_params, snakemake

from hpsweep.core.layout import control_dir, seed_dir
from hpsweep.core.study import Study

pytestmark = [pytest.mark.slow, needs_real_data]


def scheduled(res) -> dict[str, list[str]]:
    """A run's jobs (dry or real: "localrule"): {rule: [its output files, ...]}."""
    jobs: dict[str, list[str]] = {}
    text = res.stdout + res.stderr
    job = r"^(?:local)?rule (\w+):\n(?:.*\n)*?\s+output: (.*)$"
    for rule, outputs in re.findall(job, text, re.M):
        jobs.setdefault(rule, []).extend(o.strip() for o in outputs.split(","))
    return jobs


def seed_metrics(study) -> list[Path]:
    """The final seeds' and the control's metrics.json."""
    return [d(study, s) / "metrics.json" for d in (seed_dir, control_dir)
            for s in study.params.final.seeds]


def run_targets(tmp, study, seeds: bool = False) -> list[str]:
    """Every run's metrics.json (and with ``seeds`` every seed's), relative to the study
    folder, as Snakemake names them."""
    return [str(Path(m).relative_to(tmp))
            for m in [*study.run_metrics(), *(seed_metrics(study) if seeds else [])]]


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """A small MLP study with study.pack_size = 4 (its two final seeds, and the control's,
    are a pack each), trained once by snakemake up to the final summary."""
    tmp = tmp_path_factory.mktemp("packed")
    shrunk_params(tmp, sweeps=3, grids=False, configs=False, study__pack_size=4,
                  optuna__enabled=False)
    study = Study.load(tmp / "params.toml", root=tmp)
    assert study.packs, "the study should form at least one pack"
    dry = snakemake(tmp, "-n", "final_summary")
    assert dry.returncode == 0, dry.stderr[-3000:]
    real = snakemake(tmp, "final_summary")
    assert real.returncode == 0, real.stdout[-3000:] + real.stderr[-3000:]
    return tmp, study, scheduled(dry)


def test_each_pack_is_one_job_that_trains_all_its_runs(packed):
    _, study, jobs = packed
    for p in study.packs:
        outputs = sorted(jobs[p.rule])
        assert outputs == sorted(str((study.paths.run_dir(r) / "metrics.json")
                                     .relative_to(study.paths.results_dir.parent))
                                 for r in p.run_ids)
        for r in p.run_ids:
            metrics = json.loads((study.paths.run_dir(r) / "metrics.json").read_text())
            assert metrics["status"] == "ok"
            assert metrics["provenance"]["pack"]["members"] == len(p.run_ids)
            assert json.loads((study.paths.run_dir(r) / "config.json").read_text())
        log = study.paths.pack_log(p.number).read_text()
        assert f"pack of {len(p.run_ids)} runs" in log and "ok, best val acc" in log
    for rule, where in (("final_pack", seed_dir), ("control_pack", control_dir)):
        assert len(jobs[rule]) == 2 and rule.replace("pack", "run") not in jobs
        for s in study.params.final.seeds:
            metrics = json.loads((where(study, s) / "metrics.json").read_text())
            assert metrics["provenance"]["pack"]["members"] == 2 and metrics["test_acc"] > 0.3
    summary = json.loads((study.paths.results_dir / "final/summary.json").read_text())
    assert summary["gain_vs_control"]["n"] == 2
    packed_ids = {r for p in study.packs for r in p.run_ids}
    alone = set(study.plan.runs) - packed_ids
    assert alone, "the study should also have runs that train alone"
    assert len(jobs["train_run"]) == len(alone)


@pytest.mark.parametrize("how", [(), ("--profile", str(ROOT / "profiles/local"))],
                         ids=["plain", "profile"])
def test_runs_a_pack_made_are_up_to_date_afterwards(packed, how):
    """train_run now owns them (no pack has runs left): Snakemake's records of the pack
    job (input, params, environment, code) must match train_run's."""
    tmp, study, _ = packed
    assert study.pending_packs() == []
    res = snakemake(tmp, "-n", *how, *run_targets(tmp, study, seeds=True))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Nothing to be done" in res.stdout + res.stderr, res.stdout[-3000:]


def test_a_pack_retrains_only_what_is_missing(packed, tmp_path):
    tmp, study, _ = packed
    pack = study.packs[0]
    moved = []
    try:
        for r in pack.run_ids[:2]:  # two runs of the pack lost their metrics: a pack of two
            m = study.paths.run_dir(r) / "metrics.json"
            moved.append((m, tmp_path / r))
            m.rename(tmp_path / r)
        jobs = scheduled(snakemake(tmp, "-n", *run_targets(tmp, study)))
        assert set(jobs) == {pack.rule}
        assert len(jobs[pack.rule]) == 2 and all(r in " ".join(jobs[pack.rule])
                                                 for r in pack.run_ids[:2])
        # dvc.yaml's sweeps stage lets Snakemake use the pack rules
        stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["sweeps"]["cmd"]
        allowed = shlex.split(stage.split("--allowed-rules", 1)[1].split(" -- ", 1)[0])
        jobs = scheduled(snakemake(tmp, "-n", "--allowed-rules", *allowed, "--",
                                   *run_targets(tmp, study)))
        assert set(jobs) == {pack.rule}
        final = seed_metrics(study)[:2]  # the final seeds: their pack again
        for m in final:
            moved.append((m, tmp_path / f"final_{m.parent.name}"))
            m.rename(moved[-1][1])
        stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["final"]["cmd"]
        allowed_final = shlex.split(stage.split("--allowed-rules", 1)[1].split(" -- ", 1)[0])
        jobs = scheduled(snakemake(tmp, "-n", "--allowed-rules", *allowed_final, "--",
                                   *[str(m.relative_to(tmp)) for m in final]))
        assert set(jobs) == {"final_pack"} and len(jobs["final_pack"]) == 2
        for original, kept in moved[2:]:
            kept.rename(original)
        del moved[2:]
        moved[0][1].rename(moved[0][0])  # one left: it trains alone
        moved.pop(0)
        jobs = scheduled(snakemake(tmp, "-n", *run_targets(tmp, study)))
        assert set(jobs) == {"train_run"} and pack.run_ids[1] in jobs["train_run"][0]
    finally:
        for original, kept in moved:
            kept.rename(original)


PACK_RULE = re.compile(r"^train_pack_\d+$")
SEED_PACKS = {"final_pack": "final_run", "control_pack": "control_run"}


def single_rule(rule: str) -> str:
    """The rule that trains a pack's runs one by one."""
    return "train_run" if PACK_RULE.match(rule) else SEED_PACKS.get(rule, rule)


def _baseline_lr(doc):
    doc["train"]["lr"] *= 2


def _baseline_dropout(doc):
    doc["model"]["dropout"] = 0.25


def _third_final_seed(doc):
    doc["final"]["seeds"] = [*doc["final"]["seeds"], max(doc["final"]["seeds"]) + 1]


def _report_top_k(doc):
    doc["report"]["top_k"] += 1


# The lr sweep's runs keep their own lr, so a new baseline lr leaves one new run of the
# baseline's shape and batch size (the baseline itself): no pack. A new dropout changes
# every run, and the lr sweep's runs and the baseline's form a pack again.
@pytest.mark.parametrize("change, packs", [(_baseline_lr, False), (_baseline_dropout, True),
                                           (_third_final_seed, False), (_report_top_k, False)],
                         ids=["train.lr", "model.dropout", "final.seeds", "report.top_k"])
def test_packs_change_which_rule_trains_a_run_not_what_reruns(packed, tmp_path, change, packs):
    """The rerun contract with packs: after a changed key, a dry run under the local
    profile schedules the same outputs with study.pack_size = 4 as with 1, the pack rules
    standing in for train_run, final_run and control_run."""
    tmp, _, _ = packed
    doc = tomli.loads((tmp / "params.toml").read_text())
    change(doc)
    seen = {}
    for k in (4, 1):
        doc["study"]["pack_size"] = k
        variant = tmp_path / f"pack_size_{k}.toml"
        variant.write_text(tomli_w.dumps(doc))
        # the later --config replaces the helper's (the study's own params.toml)
        res = snakemake(tmp, "-n", "--profile", str(ROOT / "profiles/local"), "final_summary",
                        "--config", f"params={variant}")
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        seen[k] = scheduled(res)
    outputs = {k: sorted(o for outs in jobs.values() for o in outs) for k, jobs in seen.items()}
    assert outputs[4] == outputs[1]
    assert {single_rule(r) for r in seen[4]} == set(seen[1])
    assert any(PACK_RULE.match(r) for r in seen[4]) == packs
    assert not any(PACK_RULE.match(r) or r in SEED_PACKS for r in seen[1])


def job_settings(res) -> dict[str, set[tuple[int, str]]]:
    """A dry run's jobs: {rule: {(threads, mem_mb or ""), ...}} (Snakemake prints no
    threads line for one thread)."""
    out: dict[str, set[tuple[int, str]]] = {}
    text = res.stdout + res.stderr
    for rule, block in re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n)*)", text, re.M):
        threads = re.search(r"^\s+threads: (\d+)$", block, re.M)
        mem = re.search(r"\bmem_mb=(\d+)", block)
        out.setdefault(rule, set()).add((int(threads[1]) if threads else 1,
                                         mem[1] if mem else ""))
    return out


def test_set_threads_and_resources_of_a_training_rule_reach_its_packs(packed, tmp_path):
    """`--set-threads train_run=N` and `--set-resources train_run:KEY=V` also set the
    train_pack rules' (the SLURM test's one-CPU jobs, a user's memory per job), and
    final_run's the final_pack's; control_pack keeps the default."""
    tmp, study, _ = packed
    (tmp_path / "params.toml").write_text((tmp / "params.toml").read_text())  # nothing done
    res = snakemake(tmp_path, "-n", "final_summary", "--set-threads", "train_run=1",
                    "final_run=1", "--set-resources", "train_run:mem_mb=1234")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    jobs = job_settings(res)
    assert {p.rule for p in study.packs} <= set(jobs)
    for rule, settings in jobs.items():
        if rule == "train_run" or PACK_RULE.match(rule):
            assert settings == {(1, "1234")}, rule
    assert jobs["final_pack"] == {(1, "")}
    assert jobs["control_pack"] == {(2, "")}


def test_bench_times_the_sweep_stage_with_and_without_packs(packed):
    tmp, study, _ = packed
    res = subprocess.run([str(BIN / "hpsweep"), "bench", "--pack-study", "--pack-size", "4",
                          "--epochs", "1", "--snakefile", str(ROOT / "Snakefile")],
                         cwd=tmp, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    rows = {line.split()[0]: line.split() for line in res.stdout.splitlines()
            if line.startswith(("alone ", "packs "))}
    packed_runs = sum(len(p.run_ids) for p in study.packs)
    assert int(rows["alone"][1]) == len(study.plan.runs)  # one job per run
    assert int(rows["packs"][3]) == len(study.plan.runs) - packed_runs + len(study.packs)


def test_a_killed_pack_job_resumes_and_a_finished_member_is_not_retrained(tmp_path):
    """SIGKILL snakemake and its pack job after one member (1 epoch) finished: under the
    local profile (--rerun-incomplete) the rerun completes that member again from the
    last.pt it kept, without training it, and resumes the others as a pack."""
    import os
    import signal
    import time

    shrunk_params(tmp_path, subset=6000, epochs=8, values=1, sweeps=1, grids=False,
                  configs=False, study__pack_size=4, study__device="cpu",
                  optuna__enabled=False, final__enabled=False,
                  configs__short={"train.epochs": 1})
    study = Study.load(tmp_path / "params.toml", root=tmp_path)
    short = study.plan.members_of("config", "short")[0].run_id
    [pack] = study.packs
    assert short in pack.run_ids and len(pack.run_ids) == 3
    runs = {r: study.paths.run_dir(r) for r in pack.run_ids}
    cmd = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path),
           "--config", f"params={tmp_path / 'params.toml'}", "--profile",
           str(ROOT / "profiles/local"), "--cores", "2", *run_targets(tmp_path, study)]
    with open(tmp_path / "snakemake-1.log", "w") as out:
        sm = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not (runs[short] / "metrics.json").exists():
            assert sm.poll() is None and time.time() < deadline, \
                (tmp_path / "snakemake-1.log").read_text()[-3000:]
            time.sleep(0.02)
        os.killpg(sm.pid, signal.SIGKILL)  # snakemake and its job at once
        sm.wait(10)
    finally:
        if sm.poll() is None:
            os.killpg(sm.pid, signal.SIGKILL)
            sm.wait(10)
    time.sleep(1)
    finished = json.loads((runs[short] / "metrics.json").read_text())
    assert (runs[short] / "last.pt").is_file()  # kept until the whole pack ends
    others = [r for r in pack.run_ids if r != short]
    assert all(not (runs[r] / "metrics.json").exists() for r in others), "the pack finished"
    assert subprocess.run([*cmd, "--unlock"], capture_output=True).returncode == 0
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    jobs = scheduled(subprocess.CompletedProcess([], 0, rerun.stdout, rerun.stderr))
    assert sorted(jobs[pack.rule]) == sorted(
        str((runs[r] / "metrics.json").relative_to(tmp_path)) for r in others)
    # the finished member: completed again (its job was incomplete), not trained
    assert jobs["train_run"] == [str((runs[short] / "metrics.json").relative_to(tmp_path))]
    again = json.loads((runs[short] / "metrics.json").read_text())
    assert again["history"] == finished["history"] and again["provenance"]["resumed"] is True
    for r in others:
        m = json.loads((runs[r] / "metrics.json").read_text())
        assert m["status"] == "ok" and m["epochs_run"] == 8 and m["provenance"]["resumed"]
    assert not any((runs[r] / "last.pt").exists() for r in pack.run_ids)
