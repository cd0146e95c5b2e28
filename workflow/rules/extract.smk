# Extraction: a run's TensorBoard events -> scalars.csv (tidy: tag, step, value,
# wall_time) + results.toml (final/best metrics + hyperparameters), checked
# against metrics.json. A disagreement fails the job and writes nothing: the
# events then belong to another training session. Tiny and I/O-bound, so it
# runs on the submit host (localrules) rather than as a cluster job.

localrules:
    extract_run,


rule extract_run:
    input:
        metrics=str(PATHS.run_dir("{run}") / "metrics.json"),
    output:
        scalars=str(PATHS.run_dir("{run}") / "scalars.csv"),
        results=str(PATHS.run_dir("{run}") / "results.toml"),
    log:
        str(PATHS.logs / "extract" / "{run}.log"),
    wildcard_constraints:
        run="[0-9a-f]{12}",
    conda:
        "../envs/hpsweep.yaml"
    script:
        "../scripts/extract_run.py"
