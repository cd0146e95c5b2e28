"""Snakemake adapter: train one run of the plan (on a GPU slot of its own, if on a GPU)."""

from pathlib import Path

from hpsweep.ops.jobs import torch_threads, training_job
from hpsweep.training.runner import train_planned_run

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
with training_job(smk) as study:
    train_planned_run(study, smk.wildcards.run, threads=torch_threads(smk.threads),
                      out_dir=Path(smk.output.metrics).parent)
