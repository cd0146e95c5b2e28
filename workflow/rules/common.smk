# What every rule file shares, defined once and first (snakemake-workflows'
# common.smk): the study, its paths, the params stamps, the thread and GPU policy,
# and the targets of `rule all`. Rule files read only these names and
# hpsweep.core.layout, never each other's rules, so their include order is free.

from hpsweep.core import layout as _layout
from hpsweep.core.params_deps import SnakemakeStamps
from hpsweep.ops.jobs import (
    freeze_plan,
    load_study_or_exit,
    training_job_settings,
    training_job_threads,
)

# A budgeted study (study.budget > 0) trains what its frozen plan says; without a current
# plan, loading plans it, and a real run freezes it before any job starts.
STUDY = load_study_or_exit(config.get("params", "params.toml"), workflow)


onstart:
    freeze_plan(STUDY)


PATHS = STUDY.paths
TUNER = _layout.OptunaLayout(STUDY)
# rule -> <results>/params/<stage>/<rule>.json: the params keys its outputs depend on
# (declared in hpsweep.core.params_deps), rewritten only when they change, so a changed key
# reruns exactly the rules that read it and what follows them.
PARAMS_STAMP = SnakemakeStamps(STUDY.params, PATHS.results_dir, workflow)
# 2 per training job; more where --cores exceeds this machine's CPUs (see the function).
TRAIN_JOB_THREADS = training_job_threads(workflow)
# A training job claims `--resources gpu` only where it will train on a GPU.
TRAIN_GPU = 1 if STUDY.uses_gpu else 0
# rule -> (threads, resources) of train_run, final_run, control_run and of the pack rules
# standing in for them: the user's --set-threads/--set-resources for a rule reach its packs.
TRAINING_JOB_SETTINGS = training_job_settings(workflow, TRAIN_JOB_THREADS, TRAIN_GPU)

# Targets of `rule all`; [] for a stage its params switch off.
OPTUNA_OUTPUTS = TUNER.collect_outputs() if STUDY.params.optuna.enabled else []
FINAL_OUTPUTS = _layout.summary_outputs(STUDY) if STUDY.params.final.enabled else []
# The baseline control's seeds, which final_summary pairs with the final seeds.
CONTROL_METRICS = [
    str(_layout.control_dir(STUDY, s) / "metrics.json") for s in STUDY.params.final.seeds
] if STUDY.params.final.control else []
TRACKING_OUTPUTS = [str(_layout.export_marker(STUDY))] if STUDY.params.tracking.mlflow else []
