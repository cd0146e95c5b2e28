"""Snakemake adapter: retrain the best configuration (final_run, final_pack) or the
baseline control (control_run, control_pack) with one seed, or several as one pack, and
test it."""

from hpsweep.core.layout import control_dir, seed_dir
from hpsweep.final.retrain import retrain_seeds
from hpsweep.ops.jobs import training_job
from hpsweep.ops.threads import torch_threads

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
control = smk.rule.startswith("control_")
with training_job(smk) as study:
    # the seeds are the rule's outputs, <seed folder>/metrics.json (workflow/rules/final.smk)
    dir_of = control_dir if control else seed_dir
    seed_of = {str(dir_of(study, s) / "metrics.json"): s for s in study.params.final.seeds}
    retrain_seeds(study, [seed_of[p] for p in smk.output], control=control,
                  threads=torch_threads(smk.threads), progress=False)
