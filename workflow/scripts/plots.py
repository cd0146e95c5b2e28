"""Snakemake adapter: every figure of the study into reports/figures/."""

from hpsweep.analysis.plots import make_figures
from hpsweep.ops.jobs import job_log, named_outputs, study_of

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
with job_log(smk.log[0]):
    make_figures(study_of(smk), out=named_outputs(smk))
