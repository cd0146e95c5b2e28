"""Snakemake adapter: trials.csv, best_params.json and the Optuna figures."""

from hpsweep.ops.jobs import job_log, named_outputs, study_of
from hpsweep.tuning.results import collect
from hpsweep.tuning.tuner import optuna_logs_to_root

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
with job_log(smk.log[0]):
    optuna_logs_to_root()
    collect(study_of(smk), out=named_outputs(smk))
