"""Snakemake adapter: log the study's finished runs to MLflow."""

from hpsweep.analysis.tracking import export_study
from hpsweep.ops.jobs import job_log, study_of

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
with job_log(smk.log[0]):
    export_study(study_of(smk), marker=smk.output.marker)
