# Optional MLflow tracking (tracking.mlflow = true): after the runs, the final
# seeds and the figures exist, one job logs what MLflow does not have yet. One
# job rather than every trainer, so parallel jobs never race on a tracking DB.

localrules:
    mlflow_export,


rule mlflow_export:
    input:
        runs=str(_layout.experiment_summary_path(STUDY)),
        figures=[str(p) for p in _layout.figure_paths(STUDY).values()],
        final=FINAL_OUTPUTS,
        stamp=PARAMS_STAMP("mlflow_export"),
    output:
        marker=str(_layout.export_marker(STUDY)),
    log:
        str(PATHS.logs / "mlflow_export.log"),
    conda:
        "../envs/hpsweep.yaml"
    script:
        "../scripts/mlflow_export.py"
