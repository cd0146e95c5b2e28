# hpsweep study DAG: a table of contents. Everything it computes (validation,
# sweep expansion, paths, statistics) lives in the hpsweep library.
#
#   snakemake --cores 4 --resources gpu=1           the whole study
#   snakemake --cores 4 --config params=other.toml  another params file
#   snakemake --profile profiles/slurm              on a SLURM cluster

include: "workflow/rules/common.smk"
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
