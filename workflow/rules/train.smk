# One job per distinct run of the sweeps, grids and named configs (train_run), or per pack
# of them (train_pack_<n>, when study.pack_size > 1). A run's directory is named by its
# signature (config, seed, data, code), so a changed param or code edit gives a new run
# and a completed run is never redone.
#
# Packs (hpsweep.core.packs): runs that differ only in member-level keys train in one job
# as one batched model. Each pack rule names its members' metrics.json as outputs, and
# Snakemake prefers a rule without wildcards to train_run for those files. Only members
# without a metrics.json are named (Snakemake deletes a job's outputs before it runs), so
# a complete run is never retrained, and a pack with one run left leaves it to train_run.
# Under a cluster executor (SLURM) a job parses this file again on its node and finds the
# same members: nothing else writes their outputs, and Snakemake removes a failed job's
# outputs before it submits the retry, so the retry's parse names them all again.
# A pack job takes train_run's threads and resources, the user's --set-threads and
# --set-resources for train_run included.
#
# Both kinds are defined by this one loop, so their input, params, environment and code
# (the source text of the script line, which Snakemake's "code" trigger compares) are
# equal: a run made by either rule is up to date for the other.
_TRAIN_THREADS, _TRAIN_RESOURCES = TRAINING_JOB_SETTINGS["train_run"]
_TRAIN_RULES = [
    ("train_run", str(PATHS.run_dir("{run}") / "metrics.json"),
     str(PATHS.train_log("{run}")), {"run": "[0-9a-f]{12}"}),
    *[(p.rule, [str(PATHS.run_dir(r) / "metrics.json") for r in p.run_ids],
       str(PATHS.pack_log(p.number)), {}) for p in STUDY.pending_packs()],
]

for _name, _metrics, _log, _constraints in _TRAIN_RULES:

    rule:
        name:
            _name
        input:
            # The small manifest, not the tensors: after a DVC restore its checksum
            # is unchanged, so Snakemake does not retrain everything.
            manifest=str(PATHS.manifest),
        output:
            metrics=_metrics,
        log:
            _log,
        wildcard_constraints:
            **_constraints,
        threads: _TRAIN_THREADS
        resources:
            **_TRAIN_RESOURCES,
        conda:
            "../envs/hpsweep.yaml"
        script:
            "../scripts/train_run.py"
