"""Snakemake adapter: one run's TensorBoard events -> scalars.csv + results.toml (checked)."""

from pathlib import Path

from hpsweep.analysis.extract import extract_run
from hpsweep.ops.jobs import job_log

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
with job_log(smk.log[0]):
    extract_run(Path(smk.input.metrics).parent, smk.output.scalars, smk.output.results)
