"""Snakemake adapter: one Optuna worker; trains trials until the study has n_trials."""

from hpsweep.ops.jobs import job_log, study_of, torch_threads
from hpsweep.tuning.tuner import optuna_logs_to_root
from hpsweep.tuning.worker import run_worker

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
with job_log(smk.log[0]):
    optuna_logs_to_root()
    run_worker(study_of(smk), int(smk.wildcards.worker), threads=torch_threads(smk.threads),
               marker=smk.output.marker)
