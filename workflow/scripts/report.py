"""Snakemake adapter: reports/report.md from the tables, figures and later stages."""

from hpsweep.analysis.report import write_report
from hpsweep.ops.jobs import job_log, study_of

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
with job_log(smk.log[0]):
    write_report(study_of(smk), smk.output.report)
