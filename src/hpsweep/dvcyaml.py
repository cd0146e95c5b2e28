"""dvc.yaml, generated: coarse DVC stages that call Snakemake targets.

Snakemake is the only place the detailed DAG lives. Each DVC stage runs a
fixed set of Snakemake rules up to one target rule (rule names, not paths, so
the commands do not depend on params.toml) and declares the params sections,
code and upstream outputs it really depends on. `hpsweep dvc-yaml` writes the
file; a test fails when the committed dvc.yaml differs from this.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

# The inner Snakemake: the local profile (rerun policy, keep-going, gpu=1).
# `--allowed-rules` keeps a stage to its own rules; `--` ends that option's
# list, which would otherwise swallow the target (shared/notes/dvc-snakemake.md).
SNAKEMAKE = "snakemake --profile profiles/local --config params=params.toml"

LIBRARY_CORE = ["src/hpsweep/config.py", "src/hpsweep/space.py", "src/hpsweep/study.py",
                "src/hpsweep/paths.py", "src/hpsweep/workflow.py"]
TRAINER = ["src/hpsweep/models.py", "src/hpsweep/train.py", "src/hpsweep/training",
           "src/hpsweep/runner.py"]


@dataclass
class Stage:
    name: str
    desc: str
    rules: list[str]
    target: str
    params: list[str]
    deps: list[str]
    outs: list[str] = field(default_factory=list)
    persist: list[str] = field(default_factory=list)
    before: str = ""
    # Rerun the target whenever DVC runs the stage (for an idempotent, incremental job).
    forcerun: bool = False

    def to_dict(self) -> dict:
        allowed = " ".join(self.rules)
        force = f" --forcerun {self.target}" if self.forcerun else ""
        cmd = f"{SNAKEMAKE}{force} --allowed-rules {allowed} -- {self.target}"
        if self.before:
            cmd = f"{self.before} && {cmd}"
        rule_files = sorted({f"workflow/rules/{RULE_FILES[r]}.smk" for r in self.rules})
        scripts = [f"workflow/scripts/{s}.py" for r in self.rules for s in RULE_SCRIPTS[r]]
        d: dict = {"desc": self.desc, "cmd": cmd,
                   "deps": [*self.deps, *rule_files, *scripts],
                   "params": [{"params.toml": self.params}]}
        outs: list = list(self.outs)
        outs += [{p: {"persist": True}} for p in self.persist]
        if outs:
            d["outs"] = outs
        return d


# Rule -> the rule module that defines it and the scripts it runs.
RULE_FILES = {
    "prepare_data": "data", "train_run": "train", "summarize": "summarize",
    "extract_run": "extract", "summary_tables": "summary_tables",
    "optuna_setup": "optuna", "optuna_worker": "optuna", "optuna_collect": "optuna",
    "final_run": "final", "final_summary": "final", "plots": "report", "report": "report",
    "mlflow_export": "tracking",
}
RULE_SCRIPTS = {
    "prepare_data": ["prepare_data"], "train_run": ["train_run"], "summarize": ["summarize"],
    "extract_run": ["extract_run"], "summary_tables": ["summary_tables"],
    "optuna_setup": ["optuna_setup"], "optuna_worker": ["optuna_worker"],
    "optuna_collect": ["optuna_collect"], "final_run": ["final_run"],
    "final_summary": ["final_summary"], "plots": ["plots"], "report": ["report"],
    "mlflow_export": ["mlflow_export"],
}

STAGES = [
    Stage(
        name="data",
        desc="Fetch (mirrors, then official URLs), verify and prepare the dataset.",
        rules=["prepare_data"], target="prepare_data",
        params=["data", "study.data_dir"],
        deps=["src/hpsweep/data", *LIBRARY_CORE],
        outs=["data/raw", "data/prepared"],
    ),
    Stage(
        name="sweeps",
        desc="Single-parameter sweeps, 2-D grids and named configs; extraction; tables.",
        rules=["train_run", "summarize", "extract_run", "summary_tables"],
        target="summary_tables",
        params=["study", "model", "train", "sweeps", "grids", "configs", "report.top_k"],
        deps=["data/prepared", *LIBRARY_CORE, *TRAINER, "src/hpsweep/runstore.py",
              "src/hpsweep/summarize.py", "src/hpsweep/stats.py", "src/hpsweep/tbextract.py"],
        # Run directories are named by their signature, so keeping them between
        # runs (persist) cannot mix results of other params or code.
        persist=["results/runs"],
        outs=["results/summary"],
        # After a DVC restore, re-stamp complete runs so Snakemake sees them as done.
        before="hpsweep runs sync --params params.toml",
    ),
    Stage(
        name="optuna",
        desc="Optuna refinement: warm-started from the sweeps, n_workers parallel jobs.",
        rules=["optuna_setup", "optuna_worker", "optuna_collect"], target="optuna_collect",
        params=["optuna", "model", "train", "study"],
        deps=["data/prepared", "results/summary", *LIBRARY_CORE, *TRAINER,
              "src/hpsweep/tune.py", "src/hpsweep/tuning"],
        # Studies and trial runs are keyed by a signature of space, data and code.
        persist=["results/optuna"],
    ),
    Stage(
        name="final",
        desc="Retrain the best configuration with final.seeds; test accuracy ± 95 % CI.",
        rules=["final_run", "final_summary"], target="final_summary",
        params=["final", "optuna.enabled"],
        deps=["data/prepared", "results/optuna", *LIBRARY_CORE, *TRAINER,
              "src/hpsweep/final.py"],
        outs=["results/final"],
    ),
    Stage(
        name="report",
        desc="Figures and the Markdown report.",
        rules=["plots", "report"], target="report",
        params=["report"],
        deps=["results/summary", "results/optuna", "results/final",
              "src/hpsweep/plots.py", "src/hpsweep/report.py"],
        outs=["reports"],
    ),
    Stage(
        name="tracking",
        desc="MLflow export when tracking.mlflow = true (logs only what MLflow lacks).",
        rules=["mlflow_export"], target="mlflow_export",
        params=["tracking", "study.name"],
        deps=["results/summary", "results/final", "reports", "src/hpsweep/tracking.py"],
        # The job is idempotent (runs are tagged by signature), so DVC may always force it;
        # a changed tracking section must reach it although Snakemake ignores params.
        forcerun=True,
        # The MLflow store (when local) grows run by run, like results/optuna.
        persist=["results/mlflow"],
    ),
]

# DVC reads these for `dvc metrics show` and `dvc exp show`.
METRICS = ["results/summary/metrics.json", "results/final/summary.json"]
PLOTS = [
    {"results/summary/sweep_lr.csv": {"x": "value", "y": "best_val_acc_mean",
                                      "title": "Validation accuracy vs learning rate"}},
    {"results/summary/sweep_batch_size.csv": {"x": "value", "y": "best_val_acc_mean",
                                              "title": "Validation accuracy vs batch size"}},
]

HEADER = """\
# Generated by `hpsweep dvc-yaml` from src/hpsweep/dvcyaml.py: edit that, not this.
# Coarse DVC stages; each calls Snakemake targets, which own the detailed DAG.
#   dvc repro                               the whole study, stage by stage
#   dvc exp run -S 'params.toml:train.lr=0.01'   an experiment with one param changed
#   dvc exp show                            experiments' params and metrics side by side
"""


def render() -> str:
    doc = {"stages": {s.name: s.to_dict() for s in STAGES}, "metrics": METRICS,
           "plots": PLOTS}
    return HEADER + yaml.safe_dump(doc, sort_keys=False, width=100)
