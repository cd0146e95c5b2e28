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
#
# Both kinds are defined by this one loop, so their input, params, environment and code
# (the source text of the script line, which Snakemake's "code" trigger compares) are
# equal: a run made by either rule is up to date for the other.
_TRAIN_RULES = [
    ("train_run", str(PATHS.run_dir("{run}") / "metrics.json"),
     str(PATHS.train_log("{run}")), {"run": "[0-9a-f]{12}"}),
    *[(p.rule, [str(PATHS.run_dir(r) / "metrics.json") for r in p.run_ids],
       str(PATHS.pack_log(p.number)), {}) for p in (STUDY.pending_packs() if PACKING else [])],
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
        threads: TRAIN_JOB_THREADS
        resources:
            gpu=TRAIN_GPU,
        conda:
            "../envs/hpsweep.yaml"
        script:
            "../scripts/train_run.py"
