"""The rerun contract, over the whole params schema: a changed key reruns exactly the
rules that depend on it (hpsweep.core.params_deps) and everything after them.

One finished quick study is shared by every case. Each leaf key of the validated
params (enumerated from the pydantic model's dump, so a key added to the schema is
covered the day it is added) is changed to another valid value, and a dry run under
each shipped profile must schedule exactly the expected rules: the declared readers
of the key, closed over the rule graph Snakemake reports. Dry runs only; a dry run
writes nothing, so the cases share the study.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import tempfile
import typing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from studyfixtures import BIN, ROOT, needs_real_data

from hpsweep.core import params_deps
from hpsweep.core.schema import ParamsError, parse_params
from hpsweep.core.study import Study

pytestmark = [
    pytest.mark.slow,
    needs_real_data,
]

# Values the generic rule below cannot pick (it would give an invalid study); each names
# the extra keys it must change with it, all of which the expected set then covers.
EXPLICIT: dict[str, dict[str, Any]] = {
    "optuna.cv_folds": {"optuna.cv_folds": 2},  # 1 is invalid: 0 (off) or >= 2
    "train.nesterov": {"train.nesterov": True, "train.optimizer": "sgd"},  # sgd only
    # the float lr dimension as an int one needs int bounds that are valid lrs
    "optuna.space.train.lr.type": {"optuna.space.train.lr.type": "int",
                                   "optuna.space.train.lr.low": 1,
                                   "optuna.space.train.lr.high": 2,
                                   "optuna.space.train.lr.log": False},
    # a step is not allowed on a log scale
    "optuna.space.train.lr.step": {"optuna.space.train.lr.step": 0.0005,
                                   "optuna.space.train.lr.log": False},
    "optuna.space.model.width.type": {"optuna.space.model.width.type": "int",
                                      "optuna.space.model.width.low": 256,
                                      "optuna.space.model.width.high": 1024},
    # another swept key whose values are valid too
    "sweeps.lr.param": {"sweeps.lr.param": "train.weight_decay"},
    "sweeps.batch_size.param": {"sweeps.batch_size.param": "train.eval_batch_size"},
    "grids.lr_x_batch.x.param": {"grids.lr_x_batch.x.param": "train.eval_batch_size"},
    "grids.lr_x_batch.y.param": {"grids.lr_x_batch.y.param": "train.weight_decay"},
    # a budget the quick study fits as written: its plan lowers nothing, so only the
    # report (which shows the budget) reruns; a budget that lowers values reruns what
    # reads them, through their stamps (tests/unit/ops/test_planner.py)
    "study.budget": {"study.budget": 10_000.0},
    # a CNN baseline: MLP-only overrides (the wide config, the width dimension) go too
    "model.arch": {"model": {"arch": "cnn"}, "configs.wide.model.width": None,
                   "optuna.space.model.width": None},
}


def leaves(node: Any, parts: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(node, dict) and node:
        return [leaf for k, v in node.items() for leaf in leaves(v, (*parts, k))]
    return [parts]


def dotted(parts: tuple[str, ...]) -> str:
    return ".".join(parts)


def find(parts_by_key: dict[str, tuple[str, ...]], key: str) -> tuple[str, ...]:
    if key in parts_by_key:
        return parts_by_key[key]
    # an inner node (model, optuna.space.model.width): its parts are a prefix of leaves
    for parts in parts_by_key.values():
        for n in range(1, len(parts)):
            if dotted(parts[:n]) == key:
                return parts[:n]
    raise KeyError(key)


def set_at(doc: dict, parts: tuple[str, ...], value: Any) -> None:
    node = doc
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    if value is None:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value


def get_at(doc: dict, parts: tuple[str, ...]) -> Any:
    for p in parts:
        doc = doc[p]
    return doc


def literal_choices(params, parts: tuple[str, ...]) -> tuple | None:
    """The allowed values of a Literal field (model.activation -> relu, silu, ...)."""
    owner = params
    for p in parts[:-1]:
        owner = owner[p] if isinstance(owner, dict) else getattr(owner, p)
    fields = getattr(type(owner), "model_fields", {})
    if parts[-1] not in fields:
        return None
    ann = fields[parts[-1]].annotation
    return typing.get_args(ann) if typing.get_origin(ann) is typing.Literal else None


def changed_value(params, parts: tuple[str, ...], v: Any) -> Any:
    """Another valid value of the same kind, or None when there is no generic one."""
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        return v + 1
    if isinstance(v, float):
        return v / 2 if v else 0.05
    if isinstance(v, list):
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v) and v:
            nxt = max(v) + 1 if all(isinstance(x, int) for x in v) else max(v) * 2
            return [*v, nxt]
        if all(isinstance(x, str) for x in v):
            return [*v, "/nonexistent" if parts[-1] == "mirrors" else "http://127.0.0.1:9"]
    if isinstance(v, str):
        choices = literal_choices(params, parts)
        if choices:
            return next(c for c in choices if c != v)
        if parts[-1] == "storage":
            return "sqlite:///results/quick/optuna/other.db"
        if parts[-1] == "mlflow_uri":
            return "sqlite:///results/quick/mlflow/other.db"
        if parts[-1] == "csv_path":
            return "other.csv"
        return v + "x"
    if v is None and parts[-1] == "choices":
        return [0.001]
    if v is None and parts[-1] in ("low", "high", "step"):
        return {"low": 1.0, "high": 2.0, "step": 1.0}[parts[-1]]
    return None


def cases(study: Study) -> list[tuple[str, dict[str, Any], dict]]:
    """(key, {changed key: value}, the changed params document) for every leaf key."""
    doc = study.params.model_dump(mode="json")
    parts_by_key = {dotted(p): p for p in leaves(doc)}
    out = []
    for key, parts in parts_by_key.items():
        change = EXPLICIT.get(key) or {key: changed_value(study.params, parts,
                                                          get_at(doc, parts))}
        assert None not in change.values() or key in EXPLICIT, \
            f"{key}: no generic change of {get_at(doc, parts)!r}; add one to EXPLICIT"
        new = copy.deepcopy(doc)
        for k, v in change.items():
            set_at(new, find(parts_by_key, k), v)
        out.append((key, change, new))
    return out


def without_none(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: without_none(v) for k, v in node.items() if v is not None}
    return node


# SLURM's client commands as a machine without SLURM has them: failing at once. The
# SLURM executor plugin runs `scontrol show config` whenever Snakemake starts (at
# import), which waits ~10 s where the client is installed but no controller answers
# (after the SLURM tests stopped their cluster); these dry runs need no cluster.
SLURM_COMMANDS = ("scontrol", "sinfo", "squeue", "sacct", "sacctmgr", "sbatch", "scancel",
                  "srun")
_SHIMS = Path(tempfile.mkdtemp(prefix="no-slurm-"))
for _name in SLURM_COMMANDS:
    (_SHIMS / _name).write_text("#!/bin/sh\nexit 1\n")
    (_SHIMS / _name).chmod(0o755)
ENV = dict(os.environ, PATH=f"{_SHIMS}:{os.environ.get('PATH', '')}")


def scheduled(study_dir: Path, params_file: Path, profile: str) -> set[str]:
    cmd = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "-d", str(study_dir),
           "--profile", str(ROOT / "profiles" / profile), "--config",
           f"params={params_file}", "-n", "--quiet", "rules"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{' '.join(cmd)}\n{out[-3000:]}"
    if "Nothing to be done" in out:
        return set()
    table = out[out.index("Job stats:"):out.index("\ntotal")]
    return {m.group(1) for m in re.finditer(r"^(\w+)\s+\d+\s*$", table, re.M)} - {"all"}


def rule_graph(study_dir: Path, params_file: Path) -> dict[str, set[str]]:
    """rule -> the rules that take its outputs (Snakemake's --rulegraph)."""
    res = subprocess.run([str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "-d",
                          str(study_dir), "--config", f"params={params_file}",
                          "--rulegraph"], capture_output=True, text=True, timeout=300, env=ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    names = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', res.stdout, re.M))
    after: dict[str, set[str]] = {n: set() for n in names.values()}
    for a, b in re.findall(r"^\s*(\d+) -> (\d+)", res.stdout, re.M):
        after[names[a]].add(names[b])
    return after


def expected(key_changes: dict[str, Any], graph: dict[str, set[str]], new_params) -> set[str]:
    todo = set().union(*(params_deps.rules_reading(k) for k in key_changes))
    due: set[str] = set()
    while todo:
        rule = todo.pop()
        if rule not in due:
            due.add(rule)
            todo |= graph.get(rule, set())
    return (due & params_deps.rules_in_dag(new_params)) - {"all"}


@pytest.fixture(scope="module")
def contract(quick_study, tmp_path_factory):
    study = Study.load(quick_study / "params.toml", root=quick_study)
    graph = rule_graph(quick_study, quick_study / "params.toml")
    variants = tmp_path_factory.mktemp("variants")
    prepared = []
    for i, (key, change, doc) in enumerate(cases(study)):
        try:
            new_params = parse_params(without_none(doc))
        except ParamsError as e:
            pytest.fail(f"changing {key} to {change} gives invalid params: {e}")
        path = variants / f"{i:03d}.toml"
        path.write_text(tomli_w.dumps(without_none(doc)))
        prepared.append((key, change, path, expected(change, graph, new_params), new_params))
    return study, graph, prepared


def test_every_rule_is_declared(contract):
    _, graph, _ = contract
    assert set(graph) - {"all"} == set(params_deps.RULES)


def test_cases_cover_every_leaf_key(contract):
    study, _, prepared = contract
    doc = study.params.model_dump(mode="json")
    assert {k for k, *_ in prepared} == {dotted(p) for p in leaves(doc)}
    # A key that reruns nothing says so (NO_EFFECT), unless its change turns off the
    # stage of every rule that reads it (tracking.mlflow = false drops the export).
    for key, _, _, want, new_params in prepared:
        if not want and params_deps.rules_reading(key) & params_deps.rules_in_dag(new_params):
            assert any(params_deps.covers(p, key) for p in params_deps.NO_EFFECT), \
                f"{key} reruns nothing but is not declared in params_deps.NO_EFFECT"


@pytest.mark.parametrize("profile", ["local", "slurm"])
def test_a_changed_key_reruns_exactly_what_depends_on_it(contract, quick_study, profile):
    _, _, prepared = contract

    def check(case):
        key, change, path, want, _ = case
        got = scheduled(quick_study, path, profile)
        return None if got == want else (
            f"{key} -> {json.dumps(change, default=str)}: scheduled {sorted(got)}, "
            f"expected {sorted(want)} (missing {sorted(want - got)}, "
            f"extra {sorted(got - want)})")

    with ThreadPoolExecutor(max_workers=2) as pool:
        problems = [p for p in pool.map(check, prepared) if p]
    assert not problems, "\n".join(problems)
    # the budgeted variant was planned for its dry run, and a dry run freezes nothing
    assert not (quick_study / "results/quick/plan/lock.json").exists()
    assert scheduled(quick_study, quick_study / "params.toml", profile) == set()


def test_declared_rule_graph_is_snakemakes(contract):
    """params_deps' `after` (what made_from digests cover) is the DAG Snakemake builds."""
    _, graph, _ = contract
    snakemake_after = {r: {a for a, later in graph.items() if r in later} for r in graph}
    # final_run and control_run read the sweep summary instead of Optuna's best when
    # optuna is off
    conditional = {("final_run", "summarize"), ("control_run", "summarize")}
    for rule, decl in params_deps.RULES.items():
        declared = set(decl.after)
        assert snakemake_after[rule] <= declared, (rule, snakemake_after[rule] - declared)
        assert {(rule, a) for a in declared - snakemake_after[rule]} <= conditional, rule


def test_status_names_what_a_changed_key_made_stale(quick_study, tmp_path):
    from hpsweep.ops.status import collect_status
    from hpsweep.ops.status_text import render

    text = (quick_study / "params.toml").read_text().replace("top_k = 3", "top_k = 4")
    assert "top_k = 4" in text
    changed = tmp_path / "params.toml"
    changed.write_text(text)
    study = Study.load(quick_study / "params.toml", root=quick_study)
    assert collect_status(study, workdir=quick_study).stale == {}
    st = collect_status(Study.load(changed, root=quick_study), workdir=quick_study)
    assert st.stale == {r: ["report.top_k"] for r in ("summary_tables", "plots", "report")}
    assert "report is stale: report.top_k changed since it ran; run snakemake" in render(st)
    # the outputs say what they were made from
    made = params_deps.made_from(study.params, "summary_tables")
    metrics = json.loads((quick_study / "results/quick/summary/metrics.json").read_text())
    assert metrics["made_from"] == made
    assert made != params_deps.made_from(st.study.params, "summary_tables")
    final = json.loads((quick_study / "results/quick/final/summary.json").read_text())
    assert final["made_from"] == params_deps.made_from(study.params, "final_summary")
    report = (quick_study / "reports/quick/report.md").read_text()
    assert params_deps.made_from(study.params, "report") in report


# Keys whose change reruns existing jobs only (no new run directory, seed or worker),
# so `--touch` can stand in for a real run.
REAL_RUN_KEYS = ("optuna.n_trials", "optuna.seed", "optuna.space.train.lr.high", "final.epochs",
                 "final.train_on_val", "report.top_k", "report.title", "tracking.mlflow_uri",
                 "data.mirrors")


def test_a_real_run_reruns_what_the_dry_run_shows(contract, quick_study, tmp_path):
    """A dry run sees a changed stamp at a scratch path; a real run rewrites the stamp
    in place and relies on its modification time. `--touch` is a real run that trains
    nothing: on a copy of the study it must mark exactly the expected rules."""
    _, _, prepared = contract
    by_key = {key: (path, want) for key, _, path, want, _ in prepared}
    problems = []
    for i, key in enumerate(REAL_RUN_KEYS):
        path, want = by_key[key]
        copy = tmp_path / f"study{i}"
        subprocess.run(["cp", "-a", str(quick_study), str(copy)], check=True)
        res = subprocess.run(
            [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "-d", str(copy),
             "--profile", str(ROOT / "profiles/local"), "--config", f"params={path}",
             "--touch"], capture_output=True, text=True, timeout=300, env=ENV)
        assert res.returncode == 0, res.stderr[-3000:]
        got = set(re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", res.stderr)) - {"all"}
        if got != want:
            problems.append(f"{key}: touched {sorted(got)}, expected {sorted(want)}")
        assert scheduled(copy, path, "local") == set(), f"{key}: still due after the run"
    assert not problems, "\n".join(problems)
