"""Snakemake adapter: retrain the best configuration with one seed, test it."""

from pathlib import Path

from hpsweep.final.retrain import run_final_seed
from hpsweep.ops.jobs import job_log, study_of, torch_threads

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
with job_log(smk.log[0]):
    run_final_seed(study_of(smk), int(smk.wildcards.seed), threads=torch_threads(smk.threads),
                   progress=False, out_dir=Path(smk.output.metrics).parent)
