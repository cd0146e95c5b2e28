"""dvc.yaml, generated: coarse DVC stages that call Snakemake targets.

Snakemake is the only place the detailed DAG lives. Each DVC stage runs a
fixed set of Snakemake rules up to one target rule (rule names, not paths, so
the commands do not depend on params.toml). What a stage depends on comes from
the library: its rules and their params keys from hpsweep.core.params_deps (the one
declaration Snakemake's stamps use too), its output folders from params.toml's
[study] folders (hpsweep.core.layout). `hpsweep dvc-yaml` writes the file; a test
fails when the committed dvc.yaml differs, and `hpsweep validate` says so when
params.toml's folders are not the ones dvc.yaml declares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hpsweep.core.budget import PLAN_INPUTS
from hpsweep.core.packs import PACK_RULES_OF
from hpsweep.core.params_deps import STAGE_SWITCH, outermost, rules_of, stage_params
from hpsweep.core.schema import Params

# The inner Snakemake: the local profile (rerun policy, keep-going, gpu=1).
# `--allowed-rules` keeps a stage to its own rules; `--` ends that option's
# list, which would otherwise swallow the target.
SNAKEMAKE = "snakemake --profile profiles/local --config params=params.toml"

# The package's folders are its stages (see hpsweep/__init__.py), so deps are folders.
LIBRARY_CORE = ["src/hpsweep/core", "src/hpsweep/ops/jobs.py"]
TRAINER = ["src/hpsweep/training"]
# What a budgeted study trains (core.budget): every stage that trains or reports reads it.
PLAN_LOCK = "{results}/plan/lock.json"


@dataclass
class Stage:
    name: str
    desc: str
    target: str
    deps: list[str]
    outs: list[str] = field(default_factory=list)
    persist: list[str] = field(default_factory=list)
    before: str = ""
    # Rerun the target whenever DVC runs the stage (for an idempotent, incremental job).
    forcerun: bool = False
    # A stage that is not a Snakemake target: its command and the params keys it reads.
    cmd: str = ""
    params: tuple[str, ...] = ()

    @property
    def rules(self) -> list[str]:
        return rules_of(self.name)

    def to_dict(self, params: Params) -> dict:
        folders = _folders(params)
        outs = [o.format(**folders) for o in self.outs]
        persist = [p.format(**folders) for p in self.persist]
        deps = [d.format(**folders) for d in self.deps]
        if self.cmd:
            return {"desc": self.desc, "cmd": self.cmd, "deps": deps,
                    "params": [{"params.toml": outermost(self.params)}],
                    "outs": _outs(outs, persist)}
        # The stage's params stamps (hpsweep.core.params_deps) travel with its outputs, and
        # persist: deleted before a run they would look new and rerun every rule.
        persist.append(f"{folders['results']}/params/{self.name}")
        # the rules that may train a rule's jobs in packs (core.packs)
        packs = [p for r in self.rules for p in PACK_RULES_OF.get(r, [])]
        allowed = " ".join([*self.rules, *packs])
        force = f" --forcerun {self.target}" if self.forcerun else ""
        cmd = f"{SNAKEMAKE}{force} --allowed-rules {allowed} -- {self.target}"
        if self.before:
            cmd = f"{self.before} && {cmd}"
        if self.name in STAGE_SWITCH:
            # Switched off (optuna.enabled / final.enabled = false), the stage trains
            # nothing: its target rule would build the stage anyway. Its outputs exist, for
            # DVC to record, without a metrics file of an earlier run that `dvc exp show`
            # would show as this one's; invalid params fail the stage (exit 2).
            dirs = [*outs, *persist]
            off = f"mkdir -p {' '.join(dirs)}"
            stale = [m for m in metrics(params) if any(m.startswith(d + "/") for d in dirs)]
            if stale:
                off += f" && rm -f {' '.join(stale)}"
            cmd = (f"hpsweep stage-on {self.name} --params params.toml; case $? in "
                   f"0) {cmd} ;; 1) {off} ;; *) exit 2 ;; esac")
        rule_files = sorted({f"workflow/rules/{RULE_FILES[r]}.smk" for r in self.rules})
        scripts = list(dict.fromkeys(f"workflow/scripts/{s}.py" for r in self.rules
                                     for s in RULE_SCRIPTS[r]))
        return {"desc": self.desc, "cmd": cmd, "deps": [*deps, *rule_files, *scripts],
                "params": [{"params.toml": stage_params(self.name)}],
                "outs": _outs(outs, persist)}


def _outs(outs: list[str], persist: list[str]) -> list:
    """dvc.yaml's outs: the plain ones, then those DVC keeps when it reruns the stage."""
    return [*outs, *({p: {"persist": True}} for p in persist)]


def _folders(params: Params) -> dict[str, str]:
    s = params.study
    return {"data": Path(s.data_dir).as_posix(), "results": Path(s.results_dir).as_posix(),
            "reports": Path(s.reports_dir).as_posix()}


# Rule -> the rule module that defines it and the scripts it runs.
RULE_FILES = {
    "prepare_data": "data", "train_run": "train", "summarize": "summarize",
    "extract_run": "extract", "summary_tables": "summary_tables",
    "optuna_setup": "optuna", "optuna_worker": "optuna", "optuna_collect": "optuna",
    "final_run": "final", "control_run": "final", "final_summary": "final",
    "plots": "report", "report": "report",
    "mlflow_export": "tracking",
}
RULE_SCRIPTS = {
    "prepare_data": ["prepare_data"], "train_run": ["train_run"], "summarize": ["summarize"],
    "extract_run": ["extract_run"], "summary_tables": ["summary_tables"],
    "optuna_setup": ["optuna_setup"], "optuna_worker": ["optuna_worker"],
    "optuna_collect": ["optuna_collect"], "final_run": ["retrain_seeds"],
    "control_run": ["retrain_seeds"], "final_summary": ["final_summary"], "plots": ["plots"],
    "report": ["report"],
    "mlflow_export": ["mlflow_export"],
}

# Paths in braces are the study's folders ({data}, {results}, {reports}).
STAGES = [
    Stage(
        name="data",
        desc="Fetch (mirrors, then official URLs), verify and prepare the dataset.",
        target="prepare_data",
        deps=["src/hpsweep/data", *LIBRARY_CORE],
        outs=["{data}/raw", "{data}/prepared"],
    ),
    Stage(
        name="plan",
        desc="A budgeted study's plan (study.budget): calibrate, fit the fidelities into the "
             "budget, freeze them. With budget 0 a constant record.",
        target="",
        cmd="hpsweep plan --params params.toml",
        # the prepared data's sizes price a CSV study (the IDX datasets' are fixed)
        deps=["{data}/prepared", "src/hpsweep/ops/planner.py", "src/hpsweep/ops/estimate.py",
              "src/hpsweep/core/budget.py"],
        params=PLAN_INPUTS,
        # Both persist. The lock: deleted before the stage reruns (an edit of the planner's
        # code), it would be re-planned, and the plan is frozen until its params change or
        # `hpsweep plan --update`. The calibration: a queued experiment's workspace gets it
        # back, so a re-plan there prices with the same costs, not a new noisy calibration.
        persist=[PLAN_LOCK, "{results}/calibration"],
    ),
    Stage(
        name="sweeps",
        desc="Single-parameter sweeps, 2-D grids and named configs; extraction; tables.",
        target="summary_tables",
        deps=[PLAN_LOCK, "{data}/prepared", *LIBRARY_CORE, *TRAINER,
              "src/hpsweep/analysis/tables.py", "src/hpsweep/analysis/extract.py"],
        # Run directories are named by their signature, so keeping them between
        # runs (persist) cannot mix results of other params or code.
        persist=["{results}/runs"],
        outs=["{results}/summary"],
        # After a DVC restore, re-stamp complete runs so Snakemake sees them as done. Only
        # here, before the first stage that trains: the later stages must see what the
        # earlier ones of the same repro rewrote as newer (sync would mark it all done).
        before="hpsweep runs sync --params params.toml",
    ),
    Stage(
        name="optuna",
        desc="Optuna refinement: warm-started from the sweeps, n_workers parallel jobs.",
        target="optuna_collect",
        deps=[PLAN_LOCK, "{data}/prepared", "{results}/summary", *LIBRARY_CORE, *TRAINER,
              "src/hpsweep/tuning"],
        # Studies and trial runs are keyed by a signature of space, data and code.
        persist=["{results}/optuna"],
    ),
    Stage(
        name="final",
        desc="Retrain the best configuration and the baseline control with final.seeds; "
             "test accuracy ± 95 % CI, gain over the control.",
        target="final_summary",
        # without Optuna (optuna.enabled = false) the sweeps' best is retrained
        deps=[PLAN_LOCK, "{data}/prepared", "{results}/summary", "{results}/optuna",
              *LIBRARY_CORE, *TRAINER, "src/hpsweep/final"],
        # Kept between runs, so a new seed trains alone and a killed seed resumes from its
        # last.pt: a seed's checkpoint carries its config, seed, data and engine, and one
        # of another config is not resumed (training.checkpoint); its rule reruns on a new
        # best configuration or a changed params stamp.
        persist=["{results}/final"],
    ),
    Stage(
        name="report",
        desc="Figures and the Markdown report.",
        target="report",
        deps=[PLAN_LOCK, "{results}/summary", "{results}/optuna", "{results}/final",
              *LIBRARY_CORE, "src/hpsweep/training/runstore.py",
              *(f"src/hpsweep/analysis/{m}.py" for m in ("plots", "extract", "report",
                                                         "report_sweeps", "report_value",
                                                         "markdown", "tables"))],
        # Not the whole reports folder: git keeps its README.
        outs=["{reports}/report.md", "{reports}/figures"],
    ),
    Stage(
        name="tracking",
        desc="MLflow export when tracking.mlflow = true (logs only what MLflow lacks).",
        target="mlflow_export",
        deps=["{results}/summary", "{results}/final", "{reports}/figures",
              "src/hpsweep/analysis/tracking.py"],
        # The job is idempotent (runs are tagged by signature), so DVC may always force it.
        forcerun=True,
        # The MLflow store (when local) grows run by run, like results/optuna.
        persist=["{results}/mlflow"],
    ),
]


def metrics(params: Params) -> list[str]:
    """What DVC reads for `dvc metrics show` and `dvc exp show`."""
    r = _folders(params)["results"]
    return [f"{r}/summary/metrics.json", f"{r}/final/summary.json"]


def plots(params: Params) -> list[dict]:
    r = _folders(params)["results"]
    return [
        {f"{r}/summary/sweep_lr.csv": {"x": "value", "y": "best_val_acc_mean",
                                       "title": "Validation accuracy vs learning rate"}},
        {f"{r}/summary/sweep_batch_size.csv": {"x": "value", "y": "best_val_acc_mean",
                                               "title": "Validation accuracy vs batch size"}},
    ]


HEADER = """\
# Generated by `hpsweep dvc-yaml` from src/hpsweep/ops/dvcyaml.py: edit that, not this.
# Coarse DVC stages; each calls Snakemake targets, which own the detailed DAG.
#   dvc repro                               the whole study, stage by stage
#   dvc exp run -S 'params.toml:train.lr=0.01'   an experiment with one param changed
#   dvc exp show                            experiments' params and metrics side by side
"""


def render(params: Params) -> str:
    """dvc.yaml for the study in params.toml (its folders decide the outs)."""
    doc = {"stages": {s.name: s.to_dict(params) for s in STAGES}, "metrics": metrics(params),
           "plots": plots(params)}
    return HEADER + yaml.safe_dump(doc, sort_keys=False, width=100)


def out_path(out: str | dict) -> str:
    """The path of a dvc.yaml out entry ("path" or {"path": {"persist": true}})."""
    return next(iter(out)) if isinstance(out, dict) else out


def declared_outs(dvc_yaml: str | Path) -> set[str]:
    """Every out path a dvc.yaml file declares."""
    doc = yaml.safe_load(Path(dvc_yaml).read_text()) or {}
    return {out_path(o) for stage in (doc.get("stages") or {}).values()
            for o in stage.get("outs") or []}


def folder_mismatch(params: Params, dvc_yaml: str | Path) -> str | None:
    """One line when dvc.yaml's outs are not params.toml's folders (else None)."""
    want = {out_path(o) for s in STAGES for o in s.to_dict(params)["outs"]}
    have = declared_outs(dvc_yaml)
    if want == have:
        return None
    return (f"{dvc_yaml} declares outputs for other folders than params.toml's [study] "
            f"data_dir/results_dir/reports_dir ({', '.join(sorted(have - want)[:3])} ...); "
            "regenerate it with `hpsweep dvc-yaml` and commit it")
