"""Snakemake adapter: train one run of the plan, or a pack of them as one batched model
(on a GPU slot of its own, if on a GPU)."""

from pathlib import Path

from hpsweep.ops.jobs import training_job
from hpsweep.ops.threads import torch_threads
from hpsweep.training.runner import train_planned_pack, train_planned_run

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
# The runs are the rule's outputs, <results>/runs/<run id>/metrics.json: train_run names
# one, a train_pack_<n> rule its members (workflow/rules/train.smk).
out_dirs = [Path(p).parent for p in smk.output]
with training_job(smk) as study:
    if len(out_dirs) == 1:
        train_planned_run(study, out_dirs[0].name, threads=torch_threads(smk.threads),
                          out_dir=out_dirs[0])
    else:
        train_planned_pack(study, [d.name for d in out_dirs],
                           threads=torch_threads(smk.threads), out_dirs=out_dirs)
