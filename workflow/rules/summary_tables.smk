# Aggregates over the study (results/summary/): configs, per-sweep tables with
# mean ± 95 % CI over seeds, grid pivots, swing, failures, shortlist and the
# study-level metrics.json DVC reads. Needs every run extracted (and so checked
# against its events) first.

from hpsweep.core.layout import experiment_summary_path, results_files, table_outputs

localrules:
    summary_tables,


rule summary_tables:
    input:
        summary=str(experiment_summary_path(STUDY)),
        results=results_files(STUDY),
        stamp=PARAMS_STAMP("summary_tables"),
    output:
        **{key: str(p) for key, p in table_outputs(STUDY).items()},
    log:
        str(PATHS.logs / "summary_tables.log"),
    conda:
        "../envs/hpsweep.yaml"
    script:
        "../scripts/summary_tables.py"
