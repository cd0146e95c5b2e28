"""Snakemake adapter: train the baseline control with one final seed, test it."""

from pathlib import Path

from hpsweep.final.retrain import run_control_seed
from hpsweep.ops.jobs import torch_threads, training_job

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
with training_job(smk) as study:
    run_control_seed(study, int(smk.wildcards.seed), threads=torch_threads(smk.threads),
                     progress=False, out_dir=Path(smk.output.metrics).parent)
