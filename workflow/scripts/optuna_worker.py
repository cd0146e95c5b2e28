"""Snakemake adapter: one Optuna worker; trains trials until the study has n_trials."""

from hpsweep.ops.jobs import training_job
from hpsweep.ops.threads import torch_threads
from hpsweep.tuning.tuner import optuna_logs_to_root
from hpsweep.tuning.worker import run_worker

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
with training_job(smk) as study:
    optuna_logs_to_root()
    run_worker(study, int(smk.wildcards.worker), threads=torch_threads(smk.threads),
               marker=smk.output.marker)
