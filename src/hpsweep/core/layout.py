"""Where every output of a study lives, stage by stage: the one owner of output paths.

The Snakefile, the scripts, the CLI and the library read paths from here. Nothing
here imports torch, pandas, matplotlib or optuna, so Snakemake builds the DAG in a
fraction of the time those imports take. The folders themselves (data, results,
reports), the dataset files and each run's directory are StudyPaths, below.

    <data>/prepared/<dataset>.pt, .manifest.json        prepare_data
    <results>/runs/<run_id>/                            train_run, extract_run
    <results>/summary/                                  summarize, summary_tables
    <results>/optuna/<study.name>/[<key>/]              optuna_setup, _worker, _collect
    <results>/final/                                    final_run, final_summary
    <reports>/report.md, <reports>/figures/             plots, report
    <results>/mlflow/                                   mlflow_export
    <results>/plan/lock.json                            a budgeted study's frozen plan
                                                        (hpsweep plan, core.budget)
    <results>/params/<stage>/<rule>.json                what each rule was made from
                                                        (hpsweep.core.params_deps)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from hpsweep.core.ids import code_version, run_signature
from hpsweep.core.plan import data_identity
from hpsweep.core.schema import Params
from hpsweep.core.sections import describe_space

if TYPE_CHECKING:  # a Study holds its StudyPaths: imported for annotations only
    from hpsweep.core.study import Study


# -- the study's folders, its dataset and its runs -----------------------------------------

def manifest_path(prepared: Path) -> Path:
    """data/prepared/fashion-mnist.pt -> data/prepared/fashion-mnist.manifest.json"""
    return Path(prepared).with_suffix(".manifest.json")


@dataclass(frozen=True)
class StudyPaths:
    data_dir: Path
    results_dir: Path
    reports_dir: Path
    dataset: str

    @classmethod
    def from_params(cls, params: Params, root: str | Path = ".") -> StudyPaths:
        root = Path(root)
        return cls(root / params.study.data_dir, root / params.study.results_dir,
                   root / params.study.reports_dir, params.data.dataset)

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    @property
    def prepared(self) -> Path:
        return self.data_dir / "prepared" / f"{self.dataset}.pt"

    @property
    def manifest(self) -> Path:
        return manifest_path(self.prepared)

    def run_dir(self, run_id: str) -> Path:
        return self.results_dir / "runs" / run_id

    @property
    def plan_lock(self) -> Path:
        """A budgeted study's frozen plan (hpsweep.core.budget)."""
        return self.results_dir / "plan" / "lock.json"

    @property
    def calibration(self) -> Path:
        """This machine's measured costs per model shape and job start-up (ops.estimate),
        which price a study's plan."""
        return self.results_dir / "calibration"

    @property
    def logs(self) -> Path:
        return self.results_dir / "logs"

    def train_log(self, run_id: str) -> Path:
        """The log of the job that trains run ``run_id`` alone (Snakemake's train_run)."""
        return self.logs / "train" / f"{run_id}.log"

    def pack_log(self, number: int | str) -> Path:
        """The log of the job that trains pack ``number`` (core.packs)."""
        return self.logs / "train" / f"pack_{number}.log"


# The budget plan's stages (hpsweep.ops.estimate prices them; the report puts their
# planned minutes beside what they trained), by key: the name the plan and report show.
STAGES = {"sweeps": "sweeps, grids, configs", "optuna": "optuna", "final": "final",
          "control": "control", "report": "report"}
STAGE_KEY = {name: key for key, name in STAGES.items()}  # a name in a plan -> its key


def safe_name(name: str) -> str:
    """A sweep/grid name as a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


# -- sweeps: runs, extraction, tables -----------------------------------------------------

def results_files(study: Study) -> list[str]:
    """results.toml of every run of the study's plan (the extraction targets)."""
    return [str(study.paths.run_dir(r) / "results.toml") for r in study.plan.run_ids()]


def scalars_files(study: Study) -> list[str]:
    return [str(study.paths.run_dir(r) / "scalars.csv") for r in study.plan.run_ids()]


def summary_dir(study: Study) -> Path:
    return study.paths.results_dir / "summary"


def experiment_summary_path(study: Study) -> Path:
    return summary_dir(study) / "experiment_summary.csv"


def table_outputs(study: Study) -> dict[str, Path]:
    """Every file summarize.write_summary_tables writes, by key (rule outputs)."""
    d = summary_dir(study)
    out = {"configs": d / "configs.csv", "swing": d / "swing.csv",
           "failures": d / "failures.csv", "shortlist": d / "shortlist.csv",
           "metrics": d / "metrics.json"}
    for name in study.params.sweeps:
        out[f"sweep_{name}"] = d / f"sweep_{safe_name(name)}.csv"
    for name in study.params.grids:
        out[f"grid_{name}"] = d / f"grid_{safe_name(name)}.csv"
    return out


# -- optuna ----------------------------------------------------------------------------------

OBJECTIVES = {"accuracy": "maximize", "n_params": "minimize"}
OPTUNA_FIGURES = ("history", "intermediate", "importance", "parallel", "slice", "contour")
OPTUNA_FIGURES_MULTI = (*OPTUNA_FIGURES, "pareto")


def optuna_figure_names(multi_objective: bool) -> tuple[str, ...]:
    return OPTUNA_FIGURES_MULTI if multi_objective else OPTUNA_FIGURES


def optuna_figure_path(figures_dir: str | Path, name: str) -> Path:
    return Path(figures_dir) / f"optuna_{name}.png"


@dataclass
class OptunaLayout:
    """The Optuna stage's study key, names and paths (tuning.tuner.Tuner adds the rest).

    ``key`` is a signature of what determines a trial's result (baseline config,
    space, trial epochs, cv folds, objectives, trial seed, data identity, training
    code): editing any of them starts a new study and new trial directories.
    """

    study: Study

    @property
    def params(self):
        return self.study.params

    @property
    def multi_objective(self) -> bool:
        """nsga2 searches the accuracy / size trade-off: maximize val acc, minimize params."""
        return self.params.optuna.sampler == "nsga2"

    @property
    def directions(self) -> list[str]:
        return list(OBJECTIVES.values()) if self.multi_objective else ["maximize"]

    @property
    def trial_seed(self) -> int:
        """Trials train with the study's first seed, like the sweeps they are compared with."""
        return self.params.study.seeds[0]

    @cached_property
    def key(self) -> str:
        o = self.params.optuna
        cv: dict = {"cv_folds": o.cv_folds}
        if o.cv_folds:  # how folds are drawn (data.split since 0.1): new folds, new study
            cv["folds"] = "data.split.stratified_folds"
        return run_signature(self.params.run_base(), {
            "space": describe_space(o.space), "epochs": o.epochs, **cv,
            "split_seed": self.params.data.split_seed, "directions": self.directions,
            "seed": self.trial_seed, "data": data_identity(self.params),
            "code": code_version()})[:10]

    @property
    def name(self) -> str:
        return f"{self.params.study.name}-{self.key}"

    @property
    def out_dir(self) -> Path:
        return self.study.paths.results_dir / "optuna" / self.params.study.name

    @property
    def key_dir(self) -> Path:
        return self.out_dir / self.key

    @property
    def setup_marker(self) -> Path:
        return self.key_dir / "setup.json"

    def worker_marker(self, worker: int | str) -> Path:
        return self.key_dir / "workers" / f"{worker}.json"

    def trial_dir(self, number: int) -> Path:
        return self.key_dir / "trials" / str(number)

    @property
    def trials_csv(self) -> Path:
        return self.out_dir / "trials.csv"

    @property
    def best_params_path(self) -> Path:
        return self.out_dir / "best_params.json"

    @property
    def figures_dir(self) -> Path:
        # Beside the study's tables, not in reports/: each DVC stage owns its own outputs.
        return self.out_dir / "figures"

    def figure_paths(self) -> list[Path]:
        return [optuna_figure_path(self.figures_dir, n)
                for n in optuna_figure_names(self.multi_objective)]

    def collect_output_map(self) -> dict[str, Path]:
        """collect's files by key (the optuna_collect rule's named outputs)."""
        return {"trials": self.trials_csv, "best": self.best_params_path,
                **{p.stem: p for p in self.figure_paths()}}  # optuna_<figure>

    def collect_outputs(self) -> list[str]:
        return [str(p) for p in self.collect_output_map().values()]


# -- final retrain ---------------------------------------------------------------------------

def final_dir(study: Study) -> Path:
    return study.paths.results_dir / "final"


def seed_dir(study: Study, seed: int | str) -> Path:
    return final_dir(study) / f"seed_{seed}"


def control_dir(study: Study, seed: int | str) -> Path:
    """The baseline control trained with final seed ``seed`` (final.control)."""
    return final_dir(study) / "control" / f"seed_{seed}"


def summary_path(study: Study) -> Path:
    return final_dir(study) / "summary.json"


def model_path(study: Study) -> Path:
    return final_dir(study) / "model.pt"


def config_path(study: Study) -> Path:
    return final_dir(study) / "config.json"


def program_path(study: Study) -> Path:
    return final_dir(study) / "model.pt2"


def model_card_path(study: Study) -> Path:
    return final_dir(study) / "model_card.json"


def final_outputs(study: Study) -> dict[str, Path]:
    """Every file retrain.write_final_summary writes, by key (the final_summary rule's
    named outputs)."""
    return {"summary": summary_path(study), "model": model_path(study),
            "config": config_path(study), "program": program_path(study),
            "card": model_card_path(study)}


def summary_outputs(study: Study) -> list[str]:
    return [str(p) for p in final_outputs(study).values()]


def best_input(study: Study) -> Path:
    """The file the best configuration is read from (the final_run rule's input)."""
    if study.params.optuna.enabled:
        return OptunaLayout(study).best_params_path
    return experiment_summary_path(study)


# -- report ----------------------------------------------------------------------------------

def figures_dir(study: Study) -> Path:
    return study.paths.reports_dir / "figures"


def figure_paths(study: Study) -> dict[str, Path]:
    """Every figure plots.make_figures writes, by key."""
    d = figures_dir(study)
    out = {f"sweep_{n}": d / f"sweep_{safe_name(n)}.png" for n in study.params.sweeps}
    out.update({f"grid_{n}": d / f"grid_{safe_name(n)}.png" for n in study.params.grids})
    for key in ("ranking", "acc_vs_time", "acc_vs_params", "curves_shortlist",
                "confusion_best", "samples"):
        out[key] = d / f"{key}.png"
    return out


def report_optuna_figures(study: Study) -> dict[Path, Path]:
    """{Optuna figure: its copy under <reports>/figures/optuna/}: the report shows the
    copies, so the reports folder stands alone (shared without results/)."""
    if not study.params.optuna.enabled:
        return {}
    return {src: figures_dir(study) / "optuna" / src.name
            for src in OptunaLayout(study).figure_paths()}


def report_path(study: Study) -> Path:
    return study.paths.reports_dir / "report.md"


def report_inputs(study: Study) -> list[str]:
    """Files the report is built from (the rule's inputs, optional stages aside)."""
    return [str(p) for p in (experiment_summary_path(study), *table_outputs(study).values(),
                             *figure_paths(study).values())]


def optional_inputs(study: Study) -> list[Path]:
    """Results of later stages the report shows when they exist (enabled in params)."""
    out = []
    if study.params.optuna.enabled:
        optuna = OptunaLayout(study)
        out += [optuna.best_params_path, optuna.trials_csv]
    if study.params.final.enabled:
        out.append(summary_path(study))
    return out


def later_stage_inputs(study: Study, rules) -> list[str]:
    """The optional inputs some rule of a Snakemake workflow produces (`rules`: objects
    with ``is_producer(path)``, e.g. ``workflow.rules``): the report waits for those
    and renders "not run" for the others (disabled, or their rules not included)."""
    rules = list(rules)
    return [str(p) for p in optional_inputs(study)
            if any(r.is_producer(str(p)) for r in rules)]


# -- tracking --------------------------------------------------------------------------------

def export_dir(study: Study) -> Path:
    return study.paths.results_dir / "mlflow"


def export_marker(study: Study) -> Path:
    """Written last by tracking.export_study: which runs are in MLflow (the rule's
    output). Named apart while tracking is off, so turning it on later exports."""
    return export_dir(study) / ("exported.json" if study.params.tracking.mlflow
                                else "tracking_off.json")
