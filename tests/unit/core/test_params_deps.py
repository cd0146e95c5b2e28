"""The params -> rules declaration and its stamp files (unit level; the end-to-end
property test is test_rerun_contract.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from studyfixtures import shrunk_params

from hpsweep.core import params_deps
from hpsweep.core.ids import ENGINE_VERSION, same_code
from hpsweep.core.schema import load_params


def test_runs_recorded_with_the_old_full_code_hash_count_as_this_engine():
    legacy = ENGINE_VERSION + "0" * (64 - len(ENGINE_VERSION))
    assert same_code(ENGINE_VERSION) and same_code(legacy)
    assert not same_code("0" * 64) and not same_code(ENGINE_VERSION[:-1])


def test_stamps_are_rewritten_only_when_their_keys_change(tmp_path):
    params = load_params(shrunk_params(tmp_path))
    res = tmp_path / "results"
    paths = params_deps.write_stamps(params, res)
    report = Path(paths["report"])
    assert report == res / "params" / "report" / "report.json"
    assert json.loads(report.read_text())["params"]["report"]["top_k"] == params.report.top_k
    for p in paths.values():
        os.utime(p, (1, 1))
    params_deps.write_stamps(params, res)
    assert all(Path(p).stat().st_mtime == 1 for p in paths.values())  # unchanged: untouched

    changed = load_params(shrunk_params(tmp_path, report__top_k=params.report.top_k + 1))
    params_deps.write_stamps(changed, res)
    touched = {r for r, p in paths.items() if Path(p).stat().st_mtime != 1}
    assert touched == {"summary_tables", "plots", "report"}
    assert params_deps.stale_rules(params, res) == {r: ["report.top_k"] for r in touched}


def test_a_dry_run_leaves_the_real_stamps_alone(tmp_path):
    params = load_params(shrunk_params(tmp_path))
    res = tmp_path / "results"
    real = params_deps.write_stamps(params, res)
    before = {p: (Path(p).read_text(), Path(p).stat().st_mtime_ns) for p in real.values()}
    changed = load_params(shrunk_params(tmp_path, optuna__n_trials=9))
    dry = params_deps.write_stamps(changed, res, dryrun=True)
    assert {p: (Path(p).read_text(), Path(p).stat().st_mtime_ns) for p in real.values()} == before
    moved = {r for r in dry if dry[r] != real[r]}
    # the rules reading n_trials point elsewhere (setup: promotion fills the room it leaves)
    assert moved == {"optuna_setup", "optuna_worker", "report"}
    assert json.loads(Path(dry["optuna_worker"]).read_text())["params"]["optuna.n_trials"] == 9


def test_stage_params_list_a_section_once():
    keys = params_deps.stage_params("report")
    assert "report" in keys and "report.top_k" not in keys
    assert "optuna.n_trials" in params_deps.stage_params("optuna")
    assert "data.mirrors" not in params_deps.stage_params("data")  # NO_EFFECT


def test_a_jobs_key_adds_jobs_without_rerunning_the_others():
    # a new final seed trains that seed alone: final.seeds is not in final_run's stamp
    assert "final.seeds" in params_deps.RULES["final_run"].jobs
    assert "final.seeds" not in params_deps.RULES["final_run"].keys
    assert "final_run" in params_deps.rules_reading("final.seeds")


def test_deps_prints_what_each_key_reruns(capsys):
    from studyfixtures import ROOT

    from hpsweep.cli import main

    assert main(["deps", "--params", str(ROOT / "studies/quick.toml")]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()[1:]}
    assert lines["report.title"].split(None, 1)[1] == "report | report"
    assert "nothing (where the files come from" in lines["data.mirrors"]
    assert lines["optuna.n_trials"].split(None, 1)[1] == (
        "optuna_setup, optuna_worker, optuna_collect, final_run, control_run, final_summary, "
        "report, "
        "mlflow_export | optuna, report")


def test_a_first_stamp_is_older_than_existing_outputs(tmp_path):
    """A study begun before its rules had stamps is not rerun by their first writing."""
    params = load_params(shrunk_params(tmp_path))
    paths = params_deps.write_stamps(params, tmp_path / "results")
    assert {Path(p).stat().st_mtime for p in paths.values()} == {params_deps.FIRST_STAMP_TIME}
    dry = params_deps.write_stamps(params, tmp_path / "other", dryrun=True)
    assert {Path(p).stat().st_mtime for p in dry.values()} == {params_deps.FIRST_STAMP_TIME}
