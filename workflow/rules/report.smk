# The human-facing result: figures (reports/figures/*.png) and reports/report.md,
# with copies of the Optuna figures (reports/figures/optuna/).
# Both are rebuilt from files only, so they are cheap to redo (localrules).

from hpsweep.core.layout import (
    experiment_summary_path,
    figure_paths,
    later_stage_inputs,
    report_inputs,
    report_optuna_figures,
    report_path,
    scalars_files,
    table_outputs,
)

localrules:
    plots,
    report,


rule plots:
    input:
        tables=[str(p) for p in table_outputs(STUDY).values()],
        summary=str(experiment_summary_path(STUDY)),
        scalars=scalars_files(STUDY),
        # The small manifest stands for the prepared data the sample grid is drawn from.
        manifest=str(PATHS.manifest),
        stamp=PARAMS_STAMP("plots"),
    output:
        **{key: report(str(p), category="Figures") for key, p in figure_paths(STUDY).items()},
    log:
        str(PATHS.logs / "plots.log"),
    conda:
        "../envs/hpsweep.yaml"
    script:
        "../scripts/plots.py"


rule report:
    input:
        report_inputs(STUDY),
        # Optuna/final-retrain results, where a rule of this workflow makes them: the
        # report waits for them then, and says "not run" where they are not in the DAG.
        lambda wildcards: later_stage_inputs(STUDY, workflow.rules),
        stamp=PARAMS_STAMP("report"),
    output:
        report=report(str(report_path(STUDY)), category="Report"),
        # The Optuna figures it shows, copied under reports/ (which then stands alone).
        optuna_figures=[str(p) for p in report_optuna_figures(STUDY).values()],
    log:
        str(PATHS.logs / "report.log"),
    conda:
        "../envs/hpsweep.yaml"
    script:
        "../scripts/report.py"
