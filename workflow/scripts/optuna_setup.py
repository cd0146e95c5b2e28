"""Snakemake adapter: create/load the Optuna study and add the warm-start trials."""

from hpsweep.tune import optuna_logs_to_root, setup_study
from hpsweep.workflow import job_log, study_of

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
with job_log(smk.log[0]):
    optuna_logs_to_root()
    setup_study(study_of(smk))
