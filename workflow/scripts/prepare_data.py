"""Snakemake adapter: fetch and prepare the study's dataset."""

from hpsweep.data import fetch, prepare
from hpsweep.ops.jobs import job_log, study_of

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
with job_log(smk.log[0]):
    study = study_of(smk)
    d = study.params.data
    fetch(d.dataset, study.paths.raw_dir, mirrors=d.mirrors, urls=d.urls, csv_path=d.csv_path)
    prepare(d, study.paths.raw_dir, smk.output.prepared)  # writes smk.output.manifest beside
