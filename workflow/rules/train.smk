# One job per distinct run of the sweeps, grids and named configs. A run's
# directory is named by its signature (config, seed, data, code), so a changed
# param or code edit gives a new run and a completed run is never redone.


rule train_run:
    input:
        # The small manifest, not the tensors: after a DVC restore its checksum
        # is unchanged, so Snakemake does not retrain everything.
        manifest=str(PATHS.manifest),
    output:
        metrics=str(PATHS.run_dir("{run}") / "metrics.json"),
    log:
        str(PATHS.logs / "train" / "{run}.log"),
    wildcard_constraints:
        run="[0-9a-f]{12}",
    threads: TRAIN_JOB_THREADS
    resources:
        gpu=TRAIN_GPU,
    conda:
        "../envs/hpsweep.yaml"
    script:
        "../scripts/train_run.py"
