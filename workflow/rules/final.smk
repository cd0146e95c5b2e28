# Final retrain: the best configuration (Optuna's best_params.json, or the best sweep
# run when optuna.enabled = false) trained with every final.seeds seed, evaluated once
# on the test split, beside the baseline control trained the same way (final.control);
# summary.json (mean ± 95 % t interval, gain over the control) doubles as DVC metrics.

from pathlib import Path

from hpsweep.core import packs as _packs


localrules:
    final_summary,


# One job per seed (final_run, control_run), or one for the seeds not yet trained
# (final_pack, control_pack: a pack, hpsweep.core.packs.seed_pack, when study.pack_size
# holds every final seed). The control is the params' [model] and [train] trained with
# the same seeds, epochs and data as final_run, so final_summary can pair them by seed;
# its epochs are the final seeds', so it waits for the best configuration too.
# One loop defines them all, so a seed's job and its pack have equal input, params,
# environment and code (the script line's text, which Snakemake's "code" trigger
# compares): a seed trained by either is up to date for the other.
_SEED_RULES = []
for _kind, _dir_of, _log in (("final", _layout.seed_dir, "seed"),
                             ("control", _layout.control_dir, "control_seed")):
    if _kind == "control" and not STUDY.params.final.control:
        continue
    _metrics = lambda s, _dir_of=_dir_of: str(_dir_of(STUDY, s) / "metrics.json")
    _pack = _packs.seed_pack(STUDY.params, lambda s: Path(_metrics(s)).exists())
    _SEED_RULES.append((f"{_kind}_run", _kind, _metrics("{seed}"),
                        PATHS.logs / "final" / f"{_log}_{{seed}}.log", {"seed": r"\d+"}))
    if _pack:
        _SEED_RULES.append((f"{_kind}_pack", _kind, [_metrics(s) for s in _pack],
                            PATHS.logs / "final" / f"{_log}_pack.log", {}))

for _name, _kind, _output, _log, _constraints in _SEED_RULES:

    rule:
        name:
            _name
        input:
            best=str(_layout.best_input(STUDY)),
            manifest=str(PATHS.manifest),
            stamp=PARAMS_STAMP(f"{_kind}_run"),
        output:
            metrics=_output,
        log:
            str(_log),
        wildcard_constraints:
            **_constraints,
        threads: TRAINING_JOB_SETTINGS[f"{_kind}_run"][0]
        resources:
            **TRAINING_JOB_SETTINGS[f"{_kind}_run"][1],
        conda:
            "../envs/hpsweep.yaml"
        script:
            "../scripts/retrain_seeds.py"


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
