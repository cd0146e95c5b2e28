# hpsweep study DAG: a table of contents. Everything it computes (validation,
# sweep expansion, paths, statistics) lives in the hpsweep library.
#
#   snakemake --cores 4 --resources gpu=1           the whole study
#   snakemake --cores 4 --config params=other.toml  another params file
#   snakemake --profile profiles/slurm              on a SLURM cluster

from hpsweep.core.params_deps import SnakemakeStamps
from hpsweep.ops.jobs import load_study_or_exit, training_job_threads

STUDY = load_study_or_exit(config.get("params", "params.toml"))
PATHS = STUDY.paths
# rule -> <results>/params/<stage>/<rule>.json: the params keys its outputs depend on
# (declared in hpsweep.core.params_deps), rewritten only when they change, so a changed key
# reruns exactly the rules that read it and what follows them.
PARAMS_STAMP = SnakemakeStamps(STUDY.params, PATHS.results_dir, workflow)
# 2 per training job; more where --cores exceeds this machine's CPUs (see the function).
TRAIN_JOB_THREADS = training_job_threads(workflow)


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/summarize.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/summary_tables.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/optuna.smk"
include: "workflow/rules/final.smk"
include: "workflow/rules/tracking.smk"


rule all:
    default_target: True
    input:
        rules.summarize.output,
        rules.summary_tables.output,
        rules.plots.output,
        rules.report.output,
        OPTUNA_OUTPUTS,  # [] when optuna.enabled = false
        FINAL_OUTPUTS,  # [] when final.enabled = false
        TRACKING_OUTPUTS,  # [] when tracking.mlflow = false
