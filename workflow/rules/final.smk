# Final retrain: the best configuration (Optuna's best_params.json, or the best sweep
# run when optuna.enabled = false) trained with every final.seeds seed, evaluated once
# on the test split; summary.json (mean ± 95 % t interval) doubles as DVC metrics.

localrules:
    final_summary,


rule final_run:
    input:
        best=str(_layout.best_input(STUDY)),
        manifest=str(PATHS.manifest),
        stamp=PARAMS_STAMP("final_run"),
    output:
        metrics=str(_layout.seed_dir(STUDY, "{seed}") / "metrics.json"),
    log:
        str(PATHS.logs / "final" / "seed_{seed}.log"),
    wildcard_constraints:
        seed=r"\d+",
    threads: TRAIN_JOB_THREADS
    resources:
        gpu=TRAIN_GPU,
    conda:
        "../envs/hpsweep.yaml"
    script:
        "../scripts/final_run.py"


rule final_summary:
    input:
        expand(
            str(_layout.seed_dir(STUDY, "{seed}") / "metrics.json"),
            seed=STUDY.params.final.seeds,
        ),
        stamp=PARAMS_STAMP("final_summary"),
    output:
        # summary, model, config, program, card: the keys retrain.write_final_summary writes
        **{key: str(p) for key, p in _layout.final_outputs(STUDY).items()},
    log:
        str(PATHS.logs / "final" / "summary.log"),
    conda:
        "../envs/hpsweep.yaml"
    script:
        "../scripts/final_summary.py"
