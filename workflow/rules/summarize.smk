# Aggregate every run of the plan into one table.
# Reads the runs' small metrics.json files: on a cluster it runs on the submit host
# (localrules) rather than cost a job submission and a status-check cycle.

localrules:
    summarize,


rule summarize:
    input:
        STUDY.run_metrics(),
        stamp=PARAMS_STAMP("summarize"),
    output:
        summary=str(_layout.experiment_summary_path(STUDY)),
    log:
        str(PATHS.logs / "summarize.log"),
    conda:
        "../envs/hpsweep.yaml"
    script:
        "../scripts/summarize.py"
