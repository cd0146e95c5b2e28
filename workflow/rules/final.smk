# Final retrain: the best configuration (Optuna's best_params.json, or the best sweep
# run when optuna.enabled = false) trained with every final.seeds seed, evaluated once
# on the test split, beside the baseline control trained the same way (final.control);
# summary.json (mean ± 95 % t interval, gain over the control) doubles as DVC metrics.

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


rule control_run:
    # The baseline control (final.control): the params' [model] and [train] trained with
    # the same seeds, epochs and data as final_run, so final_summary can pair them by seed.
    # Its epochs are the final seeds', so it waits for the best configuration too.
    input:
        best=str(_layout.best_input(STUDY)),
        manifest=str(PATHS.manifest),
        stamp=PARAMS_STAMP("control_run"),
    output:
        metrics=str(_layout.control_dir(STUDY, "{seed}") / "metrics.json"),
    log:
        str(PATHS.logs / "final" / "control_seed_{seed}.log"),
    wildcard_constraints:
        seed=r"\d+",
    threads: TRAIN_JOB_THREADS
    resources:
        gpu=TRAIN_GPU,
    conda:
        "../envs/hpsweep.yaml"
    script:
        "../scripts/control_run.py"


rule final_summary:
    input:
        expand(
            str(_layout.seed_dir(STUDY, "{seed}") / "metrics.json"),
            seed=STUDY.params.final.seeds,
        ),
        # [] with final.control = false
        control=CONTROL_METRICS,
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
