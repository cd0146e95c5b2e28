# Optional MLflow tracking (tracking.mlflow = true): after the runs, the final
# seeds and the figures exist, one job logs what MLflow does not have yet. One
# job rather than every trainer, so parallel jobs never race on a tracking DB.

from hpsweep.core import layout as _layout

TRACKING_OUTPUTS = (
    [str(_layout.export_marker(STUDY))] if STUDY.params.tracking.mlflow else []
)

localrules:
    mlflow_export,


rule mlflow_export:
    input:
        runs=rules.summarize.output,
        figures=rules.plots.output,
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
