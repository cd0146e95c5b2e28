"""Snakemake adapter: one row per run into experiment_summary.csv."""

from hpsweep.analysis.tables import write_experiment_summary
from hpsweep.ops.jobs import job_log, study_of

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
with job_log(smk.log[0]):
    write_experiment_summary(study_of(smk), smk.output.summary)
