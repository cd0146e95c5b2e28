"""Snakemake adapter: one run's TensorBoard events -> scalars.csv + results.toml (checked)."""

from hpsweep.analysis.extract import extract_run
from hpsweep.ops.jobs import job_log, study_of

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
with job_log(smk.log[0]):
    study = study_of(smk)
    extract_run(study.paths.run_dir(smk.wildcards.run), smk.output.scalars, smk.output.results)
