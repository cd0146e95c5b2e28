# Dataset stage: fetch (mirrors, then URLs), verify, prepare. The only rule that
# touches the network, so it runs on the submit host (localrules) on clusters.

localrules:
    prepare_data,


rule prepare_data:
    input:
        stamp=PARAMS_STAMP("prepare_data"),
    output:
        prepared=str(PATHS.prepared),
        manifest=str(PATHS.manifest),
    log:
        str(PATHS.logs / "prepare_data.log"),
    conda:
        "../envs/hpsweep.yaml"
    script:
        "../scripts/prepare_data.py"
