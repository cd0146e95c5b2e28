"""Snakemake adapter: train one run of the plan."""

from pathlib import Path

from hpsweep.ops.jobs import job_log, study_of, torch_threads
from hpsweep.training.runner import train_planned_run

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
with job_log(smk.log[0]):
    train_planned_run(study_of(smk), smk.wildcards.run, threads=torch_threads(smk.threads),
                      out_dir=Path(smk.output.metrics).parent)
