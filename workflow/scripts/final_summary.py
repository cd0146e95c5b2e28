"""Snakemake adapter: summary.json (test accuracy mean ± 95 % CI), model.pt, config.json."""

from hpsweep.final.retrain import write_final_summary
from hpsweep.ops.jobs import job_log, named_outputs, study_of

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
with job_log(smk.log[0]):
    write_final_summary(study_of(smk), out=named_outputs(smk))
