# Optuna refinement after the sweeps: one study shared by optuna.n_workers jobs.
#
#   optuna_setup    create/load the study; add completed sweep/grid/config runs inside
#                   the space as finished trials (warm start, once, never retrained)
#   optuna_worker   worker {worker} of n_workers: trains trials until the study has
#                   optuna.n_trials finished (never more; a dead worker's trial is retried)
#   optuna_collect  trials.csv, best_params.json, results/optuna/<study>/figures/optuna_*.png
#
# Paths come from hpsweep.core.layout.OptunaLayout; <key> in them is a signature of what
# decides a trial's result (space, baseline, epochs, data, code), so a changed space
# starts a new study instead of mixing trials.

# Setup and collect only talk to the storage and draw figures: not worth a cluster job.
localrules:
    optuna_setup,
    optuna_collect,


rule optuna_setup:
    input:
        # Warm start reads the completed sweeps: the summary is made after all of them.
        summary=str(_layout.experiment_summary_path(STUDY)),
        manifest=str(PATHS.manifest),
        stamp=PARAMS_STAMP("optuna_setup"),
    output:
        marker=str(TUNER.setup_marker),
    log:
        str(PATHS.logs / "optuna" / "setup.log"),
    conda:
        "../envs/hpsweep.yaml"
    script:
        "../scripts/optuna_setup.py"


rule optuna_worker:
    input:
        setup=str(TUNER.setup_marker),
        summary=str(_layout.experiment_summary_path(STUDY)),
        manifest=str(PATHS.manifest),
        # n_trials, sampler, pruner are not part of <key>: a change reruns (continues)
        # the workers through this file.
        stamp=PARAMS_STAMP("optuna_worker"),
    output:
        marker=str(TUNER.worker_marker("{worker}")),
    log:
        str(PATHS.logs / "optuna" / "worker_{worker}.log"),
    wildcard_constraints:
        worker=r"\d+",
    threads: TRAIN_JOB_THREADS
    resources:
        gpu=TRAIN_GPU,
    conda:
        "../envs/hpsweep.yaml"
    script:
        "../scripts/optuna_worker.py"


rule optuna_collect:
    input:
        expand(
            str(TUNER.worker_marker("{worker}")),
            worker=range(STUDY.params.optuna.n_workers),
        ),
        stamp=PARAMS_STAMP("optuna_collect"),
    output:
        # trials, best, optuna_<figure>: the keys tuning.results.collect writes
        **{key: str(p) for key, p in TUNER.collect_output_map().items()},
    log:
        str(PATHS.logs / "optuna" / "collect.log"),
    conda:
        "../envs/hpsweep.yaml"
    script:
        "../scripts/optuna_collect.py"
