"""Which params keys each rule's outputs depend on: declared once, here.

Snakemake (the rules' stamp inputs), dvc.yaml (each stage's `params:`),
`hpsweep status` (what is stale) and the rerun property test all derive from
RULES. A key is a dotted prefix of params.toml: "report.top_k" covers one leaf,
"train" every train.* key, "sweeps" every sweep entry.

How a change reaches the jobs. Training runs (train_run, extract_run) are
content-addressed: a run directory is named by the signature of its config,
seed, data and code, so a changed key gives new run directories and nothing
else is needed. Every other rule takes one small file as input,

    <results_dir>/params/<stage>/<rule>.json   the declared keys' values + their digest

which the Snakefile rewrites, when the DAG is built, only if its content
changed. Snakemake's modification-time check then reruns the rule and everything
after it.
Why files and not `params:` with Snakemake's params trigger: that trigger
compares with Snakemake's records in .snakemake/, which DVC neither versions nor
restores. In a queued `dvc exp run` (a fresh temp workspace), after `dvc pull`
on another machine, or after `dvc exp apply`, those records are missing or
describe another version, and a changed key reran nothing. The stamp files lie
inside each DVC stage's outputs, so DVC restores them with the outputs they
describe, and a content check needs no history. A dry run (`snakemake -n`)
never rewrites them: it points the rule at a scratch copy instead, so looking
does not change what a later run does.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpsweep.core.atomic import write_text
from hpsweep.core.dotted import flatten
from hpsweep.core.schema import Params

# Location keys: where outputs are written.
_RES, _REP, _DATA = "study.results_dir", "study.reports_dir", "study.data_dir"

# What a training run's signature covers (Params.run_base), plus the keys that choose
# which runs the plan has. A change of any of them gives new run directories.
RUN_CONFIG = ("data.dataset", "data.csv_path", "data.val_fraction", "data.split_seed",
              "data.train_subset", "model", "train", "study.device")
PLAN = ("study.seeds", "sweeps", "grids", "configs")
# The Optuna study key (layout.OptunaLayout.key): baseline, space, trial epochs and folds, the
# trial seed (study.seeds[0]) and the objectives (nsga2 is multi-objective).
OPTUNA_STUDY = (*RUN_CONFIG, "study.seeds", "study.name", "optuna.space", "optuna.epochs",
                "optuna.cv_folds", "optuna.sampler", "optuna.storage", _RES)

# Keys that change no output: where the dataset files are fetched from (their content
# is checked against fixed checksums, so another mirror gives the same files).
NO_EFFECT = {
    "data.mirrors": "where the files come from; their content is checksum-verified",
    "data.urls": "where the files come from; their content is checksum-verified",
    "study.jobs_per_gpu": "how many training jobs share a GPU; the same run trains to the "
                          "same numbers on any slot",
    "study.pack_size": "how many runs train together in one process; a run keeps its "
                       "identity and directory, and a complete run is not retrained",
}


@dataclass(frozen=True)
class RuleParams:
    """The params keys a rule's outputs (and its set of jobs) depend on."""

    rule: str
    stage: str  # the dvc.yaml stage that runs it; its stamp lies in that stage's outputs
    # Keys its outputs depend on: a change reruns every job of the rule (its stamp).
    keys: tuple[str, ...]
    # Keys that choose which jobs the rule has (its wildcards: runs, seeds, workers): a
    # change adds or drops jobs and leaves the existing ones alone.
    jobs: tuple[str, ...] = ()
    # The rules whose outputs it reads (the rule graph; a test checks it against
    # Snakemake's --rulegraph): what its outputs were made from includes their keys.
    after: tuple[str, ...] = ()
    # False: content-addressed outputs (run directories named by signature), no stamp.
    stamped: bool = True
    reads: str = ""  # the library function that reads the keys


def _keys(*groups) -> tuple[str, ...]:
    out: list[str] = []
    for g in groups:
        for k in (g if isinstance(g, tuple) else (g,)):
            if k not in out:
                out.append(k)
    return tuple(out)


RULES: dict[str, RuleParams] = {r.rule: r for r in [
    RuleParams("prepare_data", "data", _keys(
        "data.dataset", "data.csv_path", "data.val_fraction", "data.split_seed",
        "data.train_subset", _DATA, _RES), after=(), reads="data.prepare.prepare"),
    RuleParams("train_run", "sweeps", _keys(RUN_CONFIG, _RES), PLAN, stamped=False,
               after=("prepare_data",),
               reads="training.runner.train_planned_run (through the run signature)"),
    RuleParams("extract_run", "sweeps", _keys(RUN_CONFIG, _RES), PLAN, stamped=False,
               after=("train_run",), reads="analysis.extract.extract_run (one per run directory)"),
    RuleParams("summarize", "sweeps", _keys(RUN_CONFIG, PLAN, _RES),
               after=("train_run",), reads="analysis.tables.write_experiment_summary"),
    RuleParams("summary_tables", "sweeps", _keys(RUN_CONFIG, PLAN, "report.top_k", _RES),
               after=("summarize", "extract_run"),
               reads="analysis.tables.write_summary_tables (shortlist: report.top_k)"),
    # n_trials: promotion queues no more trials than the study has room for, so a raised
    # n_trials may promote what a smaller one left out
    RuleParams("optuna_setup", "optuna", _keys(OPTUNA_STUDY, "optuna.warm_start",
                                               "optuna.promote", "optuna.n_trials"),
               after=("summarize", "prepare_data"),
               reads="tuning.worker.setup_study (tuning.promotion.promote: room in n_trials)"),
    RuleParams("optuna_worker", "optuna", _keys(
        OPTUNA_STUDY, "optuna.warm_start", "optuna.n_trials", "optuna.pruner", "optuna.seed",
        "optuna.minutes"),
        ("optuna.n_workers",), after=("optuna_setup", "summarize", "prepare_data"),
        reads="tuning.worker.run_worker"),
    RuleParams("optuna_collect", "optuna", _keys(OPTUNA_STUDY, "optuna.n_workers"),
               after=("optuna_worker",), reads="tuning.results.collect"),
    RuleParams("final_run", "final", _keys(
        RUN_CONFIG, "optuna.enabled", "final.epochs", "final.train_on_val", "study.name", _RES),
        ("final.seeds",), after=("optuna_collect", "summarize", "prepare_data"),
        reads="final.retrain.run_final_seed"),
    RuleParams("control_run", "final", _keys(
        RUN_CONFIG, "optuna.enabled", "final.epochs", "final.train_on_val", "study.name", _RES),
        ("final.seeds", "final.control"), after=("optuna_collect", "summarize", "prepare_data"),
        reads="final.retrain.run_control_seed"),
    RuleParams("final_summary", "final", _keys(
        RUN_CONFIG, "optuna.enabled", "final.seeds", "final.epochs", "final.train_on_val",
        "final.control", "study.name", _RES), after=("final_run", "control_run"),
        reads="final.retrain.write_final_summary"),
    RuleParams("plots", "report", _keys(
        RUN_CONFIG, PLAN, "report.top_k", "report.baselines", _RES, _REP),
        after=("summary_tables", "summarize", "extract_run", "prepare_data"),
        reads="analysis.plots.make_figures"),
    # The report describes the whole study: its setup, every stage's settings and results.
    RuleParams("report", "report", _keys(
        RUN_CONFIG, PLAN, "study.name", "study.budget", "optuna", "final", "report", _RES, _REP,
        _DATA),
        after=("summarize", "summary_tables", "plots", "optuna_collect", "final_summary"),
        reads="analysis.report.build_report"),
    RuleParams("mlflow_export", "tracking", _keys(
        "tracking", "study.name", "final.enabled", "final.seeds", _RES),
        after=("summarize", "plots", "final_summary"), reads="analysis.tracking.export_study"),
]}

STAGES = ("data", "sweeps", "optuna", "final", "report", "tracking")
# The key that switches a DVC stage off: its command then runs nothing (dvc.yaml, `hpsweep
# stage-on`), so the stage depends on it too. (The tracking stage's rule reads its own.)
STAGE_SWITCH = {"optuna": "optuna.enabled", "final": "final.enabled"}


def rules_of(stage: str) -> list[str]:
    return [r.rule for r in RULES.values() if r.stage == stage]


def covers(prefix: str, key: str) -> bool:
    """'train' covers 'train.lr'; 'sweeps.lr' covers 'sweeps.lr.values'."""
    return key == prefix or key.startswith(prefix + ".")


def rules_reading(key: str) -> set[str]:
    """Rules whose declared keys (or job keys) cover the leaf ``key``; not the rules
    after them, which Snakemake reruns because their inputs are due."""
    return {r.rule for r in RULES.values()
            if any(covers(p, key) or covers(key, p) for p in (*r.keys, *r.jobs))}


def rules_in_dag(params: Params) -> set[str]:
    """The rules a study's DAG has: the Snakefile leaves out the Optuna, final and
    tracking rules' targets when their stage is off."""
    off = set()
    if not params.optuna.enabled:
        off |= set(rules_of("optuna"))
    if not params.final.enabled:
        off |= set(rules_of("final"))
    if not params.final.control:
        off.add("control_run")
    if not params.tracking.mlflow:
        off |= set(rules_of("tracking"))
    return set(RULES) - off


def stage_params(stage: str) -> list[str]:
    """The params.toml keys a DVC stage depends on: its rules' keys, with a section
    listed once when the whole section is (dvc.yaml's `params:`)."""
    switch = (STAGE_SWITCH[stage],) if stage in STAGE_SWITCH else ()
    return outermost(tuple(k for rule in rules_of(stage)
                           for k in (*RULES[rule].keys, *RULES[rule].jobs)) + switch)


def outermost(keys: tuple[str, ...]) -> list[str]:
    """The keys in order, each once, without those another one covers ("train" covers
    "train.lr"): how dvc.yaml lists a stage's params."""
    unique = list(dict.fromkeys(keys))
    return [k for k in unique if not any(covers(o, k) and o != k for o in unique)]


# -- values and digests -------------------------------------------------------------------

def value_at(params: Params | dict, key: str) -> Any:
    """The (JSON) value of a dotted key of the validated params (or of their JSON dump,
    to dump once for many keys); None if absent."""
    node: Any = params if isinstance(params, dict) else params.model_dump(mode="json")
    for part in _split(key):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _split(key: str) -> list[str]:
    """'optuna.space.train.lr.low' -> ['optuna', 'space', 'train.lr', 'low']: the
    entries of space and configs are themselves dotted keys."""
    parts = key.split(".")
    if len(parts) > 3 and parts[:2] == ["optuna", "space"]:
        return parts[:2] + [".".join(parts[2:4]), *parts[4:]]
    if len(parts) > 2 and parts[0] == "configs":
        return parts[:2] + [".".join(parts[2:])]
    return parts


def rule_inputs(params: Params | dict, rule: str) -> dict[str, Any]:
    """The declared keys of ``rule`` and their current values (``params``: validated,
    or their JSON dump, to dump once for every rule)."""
    doc = params if isinstance(params, dict) else params.model_dump(mode="json")
    return {k: value_at(doc, k) for k in RULES[rule].keys}


def digest(values: dict[str, Any]) -> str:
    blob = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def stamp_path(results_dir: Path, rule: str) -> Path:
    r = RULES[rule]
    return Path(results_dir) / "params" / r.stage / f"{rule}.json"


def stamp_text(params: Params | dict, rule: str) -> str:
    values = rule_inputs(params, rule)
    return json.dumps({"rule": rule, "digest": digest(values), "params": values},
                      indent=2, sort_keys=True, default=str) + "\n"


# 2000-01-01 00:00 UTC: see write_stamps.
FIRST_STAMP_TIME = 946684800


def write_stamps(params: Params, results_dir: Path, *, dryrun: bool = False,
                 rules: set[str] | None = None) -> dict[str, str]:
    """rule -> the stamp file its jobs take as input (see the module docstring).

    A stamp is rewritten only when its content changed, so its modification time
    is the time the declared keys last changed. A stamp written for the first time
    is dated FIRST_STAMP_TIME, older than any output: outputs made before their rule
    had a stamp (a study begun before stamps existed, or whose stamps were deleted)
    are taken as made from the current params, as they were then; a rule that has
    not run has no outputs and runs anyway. In a dry run a changed stamp is
    written to a scratch directory instead and that path returned: Snakemake then
    shows the rule as due, and the real stamp is untouched. ``rules``: only these
    may be rewritten (a DVC stage's --allowed-rules; the others' stamps are their
    own stage's business, and their rules are not in this DAG).
    """
    out: dict[str, str] = {}
    scratch: Path | None = None
    doc = params.model_dump(mode="json")
    for rule, decl in RULES.items():
        if not decl.stamped:
            continue
        path = stamp_path(results_dir, rule)
        text = stamp_text(doc, rule)
        current = path.read_text() if path.is_file() else None
        if current != text and (rules is None or rule in rules):
            if dryrun:
                if scratch is None:
                    scratch = Path(tempfile.mkdtemp(prefix=f"hpsweep-dryrun-{os.getpid()}-"))
                    atexit.register(shutil.rmtree, scratch, True)
                path = scratch / f"{rule}.json"
            write_text(path, text)
            if current is None:
                os.utime(path, (FIRST_STAMP_TIME, FIRST_STAMP_TIME))
        out[rule] = str(path)
    return out


class SnakemakeStamps:
    """The rules' stamp inputs in a Snakefile: ``input: stamp=STAMPS("report")``.

    Input functions, because Snakemake only knows whether it runs for real or as a
    dry run (-n, --summary, --lint, ...) after the Snakefile is parsed, when it
    builds the DAG. Only a real run (or --touch) rewrites a stamp, and only of the
    rules it may run (--allowed-rules).
    """

    def __init__(self, params: Params, results_dir: Path, workflow):
        self._params, self._results_dir, self._workflow = params, results_dir, workflow
        self._paths: dict[str, str] | None = None

    def _real_run(self) -> bool:
        plugin = self._workflow.executor_plugin
        return plugin is not None and not plugin.common_settings.dryrun_exec

    def __call__(self, rule: str):
        def stamp(wildcards) -> str:
            if self._paths is None:
                allowed = self._workflow.dag_settings.allowed_rules
                self._paths = write_stamps(self._params, self._results_dir,
                                           dryrun=not self._real_run(),
                                           rules=set(allowed) if allowed else None)
            return self._paths[rule]
        return stamp


def stale_rules(params: Params, results_dir: Path) -> dict[str, list[str]]:
    """Rules whose stamp records other values than ``params`` -> the keys that changed
    (rules not yet run, without a stamp, are not listed)."""
    out: dict[str, list[str]] = {}
    doc = params.model_dump(mode="json")
    for rule, decl in RULES.items():
        path = stamp_path(results_dir, rule)
        if not decl.stamped or not path.is_file():
            continue
        try:
            recorded = json.loads(path.read_text())["params"]
        except (OSError, ValueError, KeyError):
            out[rule] = ["(unreadable stamp)"]
            continue
        now = rule_inputs(doc, rule)
        changed = [leaf for k in now for leaf in _changed_leaves(k, recorded.get(k), now[k])]
        if changed:
            out[rule] = changed
    return out


def _changed_leaves(key: str, old: Any, new: Any) -> list[str]:
    """The dotted leaf keys under ``key`` whose values differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [leaf for k in sorted(set(old) | set(new))
                for leaf in _changed_leaves(f"{key}.{k}", old.get(k), new.get(k))]
    same = json.dumps(old, sort_keys=True, default=str) == json.dumps(new, sort_keys=True,
                                                                         default=str)
    return [] if same else [key]


def upstream(rule: str) -> list[str]:
    """``rule`` and every rule before it in the rule graph."""
    seen: list[str] = []
    todo = [rule]
    while todo:
        r = todo.pop()
        if r not in seen:
            seen.append(r)
            todo += RULES[r].after
    return seen


def made_from(params: Params, rule: str) -> str:
    """Digest of every params key the outputs of ``rule`` were made from: its own
    and those of every rule before it. Written into the study's results (metrics,
    final summary, trials, report, MLflow) so anyone can check that a result
    belongs to the params it is shown with (`hpsweep status` does)."""
    keys = sorted({k for r in upstream(rule) for k in (*RULES[r].keys, *RULES[r].jobs)})
    doc = params.model_dump(mode="json")
    return digest({k: value_at(doc, k) for k in keys})


def downstream(rules: set[str]) -> set[str]:
    """``rules`` and every rule after them in the rule graph (what a change reruns)."""
    out = set(rules)
    grew = True
    while grew:
        later = {r for r, d in RULES.items() if r not in out and out & set(d.after)}
        out |= later
        grew = bool(later)
    return out


def leaf_keys(params: Params) -> list[str]:
    """Every leaf key of a validated study (schema defaults included)."""
    return list(flatten(params.model_dump(mode="json")))


def rerun_table(params: Params) -> list[tuple[str, list[str], list[str]]]:
    """(key, rules a change of it reruns, DVC stages it invalidates) for every leaf key:
    `hpsweep deps` prints it."""
    rows = []
    for key in leaf_keys(params):
        rules = downstream(rules_reading(key)) & rules_in_dag(params)
        stages = [s for s in STAGES if any(covers(p, key) for p in stage_params(s))]
        rows.append((key, [r for r in RULES if r in rules], stages))
    return rows
