"""Snakemake adapter: experiment_summary.csv -> sweep/grid/swing/failures/shortlist tables."""

from hpsweep.analysis.tables import write_summary_tables
from hpsweep.ops.jobs import job_log, named_outputs, study_of

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
with job_log(smk.log[0]):
    write_summary_tables(study_of(smk), smk.input.summary, out=named_outputs(smk))
