"""DVC over Snakemake: one DAG, no stale metrics, no timestamp surprises.

Runs in a `git clone` of this repository, as a user would. Replays the sequences
that record stale results in a naive DVC-over-Snakemake setup (experiment A ->
back to baseline -> A's params again; a queued experiment; an edit of the
training code; a shrunk sweep; Optuna, final and report keys; restores that give
files new modification times) with the real dvc and snakemake, and checks that
every metric DVC records belongs to the params and code it is recorded under:
the study metrics carry `plan_id` (a hash of the run signatures) and `made_from`
(hpsweep.core.params_deps), which the test recomputes from the experiment's params.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli
import tomli_w
from studyfixtures import (
    ROOT,
    needs_real_data,
    project_env,
    shrunk_params,
)

from hpsweep.core import params_deps
from hpsweep.core.schema import load_params
from hpsweep.ops.dvcyaml import STAGES, out_path, render


def test_committed_dvc_yaml_is_current():
    assert (ROOT / "dvc.yaml").read_text() == render(load_params(ROOT / "params.toml")), \
        "dvc.yaml is stale: run `hpsweep dvc-yaml` and commit it"


def run(proj: Path, *cmd: str, timeout: int = 600, check: bool = True) -> str:
    res = subprocess.run(cmd, cwd=proj, env=project_env(proj), capture_output=True, text=True,
                         timeout=timeout)
    out = res.stdout + res.stderr
    if check:
        assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-4000:]}"
    return out


def assert_nothing_to_do(proj: Path) -> None:
    out = run(proj, "snakemake", "-n", "--config", "params=params.toml")
    assert "Nothing to be done" in out, out[-3000:]


def plan_id_of(proj: Path, params: dict) -> int:
    """plan_id of `params` under the project copy's own code (a subprocess)."""
    path = proj / ".probe-params.toml"
    path.write_text(tomli_w.dumps(params))
    code = ("import sys; from hpsweep.core.study import Study; "
            "from hpsweep.core.plan import plan_id; print(plan_id(Study.load(sys.argv[1]).plan))")
    out = run(proj, sys.executable, "-c", code, str(path))
    path.unlink()
    return int(out.strip().splitlines()[-1])


def made_from_of(proj: Path, params: dict, rule: str) -> str:
    """params_deps.made_from of `params` under the project's own code (a subprocess)."""
    path = proj / ".probe-params.toml"
    path.write_text(tomli_w.dumps(params))
    code = ("import sys; from hpsweep.core.schema import load_params; "
            "from hpsweep.core.params_deps import made_from; "
            "print(made_from(load_params(sys.argv[1]), sys.argv[2]))")
    out = run(proj, sys.executable, "-c", code, str(path), rule)
    path.unlink()
    return out.strip().splitlines()[-1]


def workspace_params(proj: Path) -> dict:
    return tomli.loads((proj / "params.toml").read_text())


def metrics(proj: Path) -> dict:
    return json.loads((proj / "results/summary/metrics.json").read_text())


def assert_metrics_match_params(proj: Path) -> None:
    """Every experiment dvc exp show lists: its metrics belong to its params (plan_id,
    made_from), recomputed from the params.toml of the revision it shows. (Not from
    the params values it prints: DVC 3.67 concatenates a list-valued key that several
    stages list, showing final.seeds = [0] as [0, 0].)"""
    shown = json.loads(run(proj, "dvc", "exp", "show", "--json"))
    checked = 0
    for commit in shown:
        for exp in [commit, *[e for group in commit.get("experiments") or []
                              for e in group.get("revs", [])]]:
            data = (exp.get("data") or {})
            shown_metrics = data.get("metrics") or {}
            m = shown_metrics.get("results/summary/metrics.json", {}).get("data")
            f = shown_metrics.get("results/final/summary.json", {}).get("data")
            if not m or exp.get("rev") == "workspace":
                continue
            p = tomli.loads(run(proj, "git", "show", f"{exp['rev']}:params.toml"))
            name = exp.get("name") or exp["rev"]
            assert m["plan_id"] == plan_id_of(proj, p), f"stale metrics in {name}"
            assert m["made_from"] == made_from_of(proj, p, "summary_tables"), name
            # the final result covers every stage before it (Optuna included)
            assert f["made_from"] == made_from_of(proj, p, "final_summary"), \
                f"stale final summary in {name}"
            checked += 1
    assert checked >= 1


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A `git clone` of this repository (what a user has: dvc.yaml, .dvc/, the README
    files git keeps in data/, results/ and reports/), with a shrunk study committed."""
    proj = tmp_path_factory.mktemp("dvcproj") / "hpsweep"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(proj)], check=True)
    shrunk_params(proj, subset=300, values=2, sweeps=1, grids=False, configs=False,
                  optuna__n_trials=2, optuna__n_workers=1, final__seeds=[0])
    # The shrunk study's run totals: `sweeps` has one sweep of 2 values (+ baseline).
    for cmd in (["git", "config", "user.email", "t@example.invalid"],
                ["git", "config", "user.name", "test"],
                ["dvc", "config", "core.autostage", "true"]):
        run(proj, *cmd)
    run(proj, "git", "add", "-A")
    run(proj, "git", "commit", "-qm", "study")
    return proj


pytestmark = [pytest.mark.slow]

# Experiment A swaps one sweep value: one new run, the others are reused.
EXP_A = "params.toml:sweeps.lr.values=[0.0003,0.01]"


@needs_real_data
def test_repro_then_nothing_to_do(project):
    run(project, "dvc", "repro")
    assert metrics(project)["plan_id"] == plan_id_of(project, workspace_params(project))
    # the tracking stage ran too, and with tracking.mlflow = false it logged nothing
    exported = json.loads((project / "results/mlflow/tracking_off.json").read_text())
    assert exported["mlflow"] is False
    assert "up to date" in run(project, "dvc", "repro")
    assert_nothing_to_do(project)
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "baseline results")


def run_dirs(proj: Path) -> dict[str, str]:
    root = proj / "results/runs"
    return {p.name: (p / "metrics.json").read_text() for p in root.iterdir()
            if (p / "metrics.json").is_file()}


@needs_real_data
def test_experiment_trains_only_new_runs_and_records_its_own_metrics(project):
    before = run_dirs(project)
    run(project, "dvc", "exp", "run", "-n", "exp-a", "-S", EXP_A)
    after = run_dirs(project)
    # Completed runs were kept as they were; only runs of the new params trained.
    assert all(after[k] == v for k, v in before.items() if k in after)
    new = set(after) - set(before)
    assert new and len(new) < len(after)
    assert metrics(project)["plan_id"] == plan_id_of(project, workspace_params(project))
    assert_metrics_match_params(project)


@needs_real_data
def test_back_to_baseline_then_a_again(project):
    # Restore the baseline (files come back with new mtimes) ...
    run(project, "git", "checkout", "--", "params.toml", "dvc.lock")
    run(project, "dvc", "checkout", "--force")
    assert metrics(project)["plan_id"] == plan_id_of(project, workspace_params(project))
    # ... nothing is redone after the restore ...
    run(project, "hpsweep", "runs", "sync")
    assert_nothing_to_do(project)
    assert "up to date" in run(project, "dvc", "repro")
    # ... and A's params again record A's metrics, not the baseline's.
    run(project, "dvc", "exp", "run", "-n", "exp-a2", "-S", EXP_A)
    assert metrics(project)["plan_id"] == plan_id_of(project, workspace_params(project))
    assert_metrics_match_params(project)


@needs_real_data
def test_queued_experiment(project):
    run(project, "git", "checkout", "--", "params.toml", "dvc.lock")
    run(project, "dvc", "checkout", "--force")
    run(project, "dvc", "exp", "run", "--queue", "-n", "exp-q", "-S",
        "params.toml:train.label_smoothing=0.0")
    run(project, "dvc", "queue", "start", "-j", "1")
    deadline = time.time() + 600
    while time.time() < deadline:
        status = run(project, "dvc", "queue", "status")
        if "exp-q" in status and ("Success" in status or "Failed" in status):
            break
        time.sleep(3)
    assert "Success" in status, status + run(project, "dvc", "queue", "logs", "exp-q",
                                             check=False)
    assert_metrics_match_params(project)


@needs_real_data
def test_a_new_engine_version_retrains(project):
    """ENGINE_VERSION names the trainer in every run signature (a bump retrains)."""
    run(project, "git", "checkout", "--", "params.toml", "dvc.lock")
    run(project, "dvc", "checkout", "--force")
    old = metrics(project)["plan_id"]
    ids = project / "src/hpsweep/core/ids.py"
    text = ids.read_text()
    assert 'ENGINE_VERSION = "' in text
    ids.write_text(text.replace('ENGINE_VERSION = "', 'ENGINE_VERSION = "bumped-', 1))
    assert "sweeps" in run(project, "dvc", "status")
    run(project, "dvc", "repro")
    new = metrics(project)["plan_id"]
    assert new != old and new == plan_id_of(project, workspace_params(project))


@needs_real_data
def test_shrinking_a_sweep(project):
    params = workspace_params(project)
    sweep = next(iter(params["sweeps"]))
    params["sweeps"][sweep]["values"] = params["sweeps"][sweep]["values"][:1]
    (project / "params.toml").write_text(tomli_w.dumps(params))
    run(project, "dvc", "repro")
    table = (project / "results/summary/experiment_summary.csv").read_text().splitlines()
    assert len(table) - 1 == 2  # header + baseline + the one remaining sweep value
    assert metrics(project)["plan_id"] == plan_id_of(project, params)


def restore_baseline(proj: Path) -> None:
    """The committed study: params, lock and code as HEAD has them (`git checkout --`
    alone takes the index, where DVC's autostage put the last experiment's lock)."""
    run(proj, "git", "checkout", "HEAD", "--", "params.toml", "dvc.lock", "src")
    run(proj, "dvc", "checkout", "--force")
    run(proj, "hpsweep", "runs", "sync")


@needs_real_data
def test_dvc_status_names_the_stages_a_key_affects(project):
    restore_baseline(project)
    for key, value in (("report.title", "another title"), ("optuna.n_trials", 4),
                       ("final.epochs", 2), ("report.top_k", 2), ("data.mirrors", ["/x"]),
                       ("study.budget", 5.0), ("study.pack_size", 8)):
        params = workspace_params(project)
        section, leaf = key.split(".")
        params[section][leaf] = value
        (project / "params.toml").write_text(tomli_w.dumps(params))
        shown = json.loads(run(project, "dvc", "status", "--json") or "{}")
        declared = {s.name: s.to_dict(load_params(project / "params.toml"))["params"][0]
                    ["params.toml"] for s in STAGES}
        want = {s for s, keys in declared.items()
                if any(params_deps.covers(p, key) for p in keys)}
        # the budget plan's stage reads the Optuna and final keys and the budget itself
        assert ("plan" in want) == (key.split(".")[0] in ("optuna", "final")
                                    or key == "study.budget"), key
        if key == "study.budget":  # the plan, and the report that shows it
            assert want == {"plan", "report"}, want
        assert set(shown) == want, (key, shown)
        run(project, "git", "checkout", "HEAD", "--", "params.toml")


@needs_real_data
def test_an_optuna_final_and_report_key_under_exp_run(project):
    """Each experiment records the results of its own params, not the baseline's: the
    Optuna trials, the final retrain and the report carry the digest of the params they
    were made from, recomputed here from the params the experiment shows."""
    for name, setting in (("exp-trials", "optuna.n_trials=3"), ("exp-final", "final.epochs=2"),
                          ("exp-topk", "report.top_k=1")):
        restore_baseline(project)
        run(project, "dvc", "exp", "run", "-n", name, "-S", f"params.toml:{setting}")
        p = workspace_params(project)
        optuna_dir = project / "results/optuna" / p["study"]["name"]
        with open(optuna_dir / "trials.csv", newline="") as fh:
            digests = {row["made_from"] for row in csv.DictReader(fh)}
        assert digests == {made_from_of(project, p, "optuna_collect")}
        best = json.loads((optuna_dir / "best_params.json").read_text())
        # trained trials, warm-start trials aside: the experiment's n_trials
        assert best["counts"]["finished"] == p["optuna"]["n_trials"], name
        final = json.loads((project / "results/final/summary.json").read_text())
        assert final["made_from"] == made_from_of(project, p, "final_summary")
        assert made_from_of(project, p, "report") in (project / "reports/report.md").read_text()
    assert_metrics_match_params(project)


@needs_real_data
def test_a_new_final_seed_trains_alone(project):
    """results/final persists between runs of its stage: DVC deletes a plain output
    before it reruns the stage, and every final and control seed would retrain."""
    restore_baseline(project)
    kept = [project / "results/final/seed_0/metrics.json",
            project / "results/final/control/seed_0/metrics.json"]
    before = [p.read_text() for p in kept]
    params = workspace_params(project)
    params["final"]["seeds"] = [0, 1]
    (project / "params.toml").write_text(tomli_w.dumps(params))
    run(project, "dvc", "repro")
    assert [p.read_text() for p in kept] == before
    assert (project / "results/final/seed_1/metrics.json").is_file()
    final = json.loads((project / "results/final/summary.json").read_text())
    assert final["made_from"] == made_from_of(project, params, "final_summary")
    restore_baseline(project)


@needs_real_data
def test_a_stage_switched_off_trains_nothing(project):
    """optuna.enabled / final.enabled = false: their DVC stages run no Snakemake target
    (which would build the stage anyway), though other keys of theirs changed too, and
    no final metrics of an earlier run stay behind as this one's."""
    restore_baseline(project)
    trials = lambda: sorted(project.glob("results/optuna/*/*/trials/*"))  # noqa: E731
    before = trials()
    params = workspace_params(project)
    params["optuna"].update(enabled=False, n_trials=params["optuna"]["n_trials"] + 2)
    params["final"].update(enabled=False, seeds=[0, 1])
    (project / "params.toml").write_text(tomli_w.dumps(params))
    run(project, "dvc", "repro")
    assert trials() == before
    assert not (project / "results/final/seed_1").exists()
    assert not (project / "results/final/summary.json").exists()
    report = (project / "reports/report.md").read_text()
    assert "Not run (`optuna.enabled = false`)" in report
    assert "Not run (`final.enabled = false`)" in report
    assert "up to date" in run(project, "dvc", "repro")
    restore_baseline(project)


@needs_real_data
def test_push_pull_round_trip(project, tmp_path):
    remote = tmp_path / "remote"
    run(project, "dvc", "remote", "add", "-d", "-f", "local", str(remote))
    run(project, "dvc", "push")
    shutil.rmtree(project / ".dvc/cache")
    for d in ("data", "results", "reports"):
        shutil.rmtree(project / d)
    run(project, "dvc", "pull")
    assert (project / "results/summary/metrics.json").is_file()
    run(project, "hpsweep", "runs", "sync")
    assert_nothing_to_do(project)
    assert "up to date" in run(project, "dvc", "repro")


@needs_real_data
def test_stage_outs_are_what_its_rules_write(project):
    """Every file a stage's Snakemake rules write lies under that stage's outs."""
    out = run(project, "snakemake", "--summary", "--config", "params=params.toml")
    files_by_rule: dict[str, list[str]] = {}
    for line in out.splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) > 2:
            files_by_rule.setdefault(cols[2], []).append(cols[0])
    params = load_params(project / "params.toml")
    for stage in STAGES:
        roots = [out_path(o) for o in stage.to_dict(params)["outs"]]
        for rule in stage.rules:
            for f in files_by_rule.get(rule, []):
                assert any(f == r or f.startswith(r + "/") for r in roots), \
                    f"{rule} writes {f}, outside stage {stage.name}'s outs {roots}"
    assert set(files_by_rule) <= {r for s in STAGES for r in s.rules} | {"all"}
