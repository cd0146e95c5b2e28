"""Snakemake adapter: create/load the Optuna study and add the warm-start trials."""

from hpsweep.ops.jobs import job_log, study_of
from hpsweep.tuning.tuner import optuna_logs_to_root
from hpsweep.tuning.worker import setup_study

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
with job_log(smk.log[0]):
    optuna_logs_to_root()
    setup_study(study_of(smk), marker=smk.output.marker)
