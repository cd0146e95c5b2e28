# Aggregate every run of the plan into one table.


rule summarize:
    input:
        STUDY.run_metrics(),
    output:
        summary=str(PATHS.results_dir / "summary" / "experiment_summary.csv"),
    log:
        str(PATHS.logs / "summarize.log"),
    script:
        "../scripts/summarize.py"
