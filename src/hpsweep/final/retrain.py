"""Final retrain: the best configuration, K seeds, evaluated once on the test split.

    results/final/seed_<s>/        config.json, metrics.json (with test_acc), best.pt, tb/
    results/final/summary.json     test accuracy per seed, mean, 95 % t interval, config
    results/final/model.pt         the exported model (state_dict + config + normalisation)
    results/final/model.pt2        the same model as a torch.export program (TorchScript's
                                   successor): float pixels in [0, 1], N x C x H x W -> logits;
                                   normalisation inside; needs no hpsweep to run
    results/final/model_card.json  config, data checksum, test accuracy (mean ± CI), inputs
    results/final/config.json      the retrained run config
    results/final/control/seed_<s>/  the baseline control (final.control): params.toml's
                                   [model] and [train] with the same seeds and epochs

The configuration comes from final.select. The test split is touched
only here; the exported model is the seed with the best *validation* accuracy
(choosing by test accuracy would leak the test set into the choice). With
``final.train_on_val`` the seeds also train on the validation split and keep
their last epoch; then no validation accuracy is reported and the first seed is
exported.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from hpsweep.core.atomic import write_text
from hpsweep.core.dotted import flatten
from hpsweep.core.ids import code_version
from hpsweep.core.layout import control_dir, final_outputs, seed_dir
from hpsweep.core.params_deps import made_from
from hpsweep.core.plan import RunSpec, make_run
from hpsweep.core.stats import mean_ci
from hpsweep.core.study import Study
from hpsweep.final.export import export_model
from hpsweep.final.select import best_choice, final_overrides, final_spec
from hpsweep.training.runstore import read_metrics

log = logging.getLogger(__name__)


def run_final_seed(study: Study, seed: int, *, threads: int | None = None,
                   progress: bool = True, out_dir: Path | None = None) -> dict[str, Any]:
    """Train the best configuration with ``seed`` and evaluate it on the test split.

    A finished run of the same config in the directory is resumed from its last
    checkpoint (nothing to train, only the test evaluation); another config starts over.
    """
    chosen_by, [(spec, where)] = _seed_runs(study, [seed], control=False)
    return _retrain(study, spec, chosen_by, Path(out_dir) if out_dir else where, threads,
                    progress)


def control_overrides(study: Study, best: dict[str, Any] | None = None) -> dict[str, Any]:
    """The control: the baseline as the params set it, trained for as many epochs as the
    final seeds (the same budget), so the difference is what the tuned values buy."""
    final = final_spec(study, study.params.final.seeds[0], best)
    return {"train.epochs": final.config["train"]["epochs"]}


def control_spec(study: Study, seed: int, best: dict[str, Any] | None = None) -> RunSpec:
    return make_run(study.params, control_overrides(study, best), seed)


def run_control_seed(study: Study, seed: int, *, threads: int | None = None,
                     progress: bool = True, out_dir: Path | None = None) -> dict[str, Any]:
    """Train the baseline control with ``seed`` exactly as the final seeds train (same
    epochs, data, train_on_val) and evaluate it on the test split."""
    chosen_by, [(spec, where)] = _seed_runs(study, [seed], control=True)
    return _retrain(study, spec, chosen_by, Path(out_dir) if out_dir else where, threads,
                    progress)


def retrain_seeds(study: Study, seeds: list[int], *, control: bool = False,
                  threads: int | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """The final seeds (or the control's, ``control``) in their folders: one seed as
    run_final_seed / run_control_seed trains it, several as one pack
    (training.pack_trainer), each member what it would be alone. Their metrics, in order."""
    chosen_by, runs = _seed_runs(study, seeds, control=control)
    if len(runs) == 1:
        [(spec, where)] = runs
        return [_retrain(study, spec, chosen_by, where, threads, progress)]
    from hpsweep.training.pack_trainer import PackMember, train_pack

    members = [PackMember(spec.config, spec.seed, _start_seed(spec, chosen_by, where))
               for spec, where in runs]
    on_val = study.params.final.train_on_val
    return train_pack(members, _final_data(study), evaluate_test=True, threads=threads,
                      progress=progress, keep="last" if on_val else "best")


def _seed_runs(study: Study, seeds: list[int], *, control: bool
               ) -> tuple[dict[str, Any], list[tuple[RunSpec, Path]]]:
    """What chose the configuration the final seeds (or the control's) train, and each
    seed's run and folder; logged."""
    best = best_choice(study)
    which = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds} as one pack"
    if control:
        log.info("control %s: the baseline, %s", which, control_overrides(study, best))
        return ({"source": "baseline (final.control)"},
                [(control_spec(study, s, best), control_dir(study, s)) for s in seeds])
    log.info("final %s: %s", which, final_overrides(study, best))
    return best, [(final_spec(study, s, best), seed_dir(study, s)) for s in seeds]


def _start_seed(spec: RunSpec, chosen_by: dict[str, Any], out: Path) -> Path:
    """``out`` (the rule's output folder) with the seed's config.json: what it trains."""
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "config.json", json.dumps({
        "run_id": spec.run_id, "signature": spec.signature, "seed": spec.seed,
        "code_version": code_version(), "chosen_by": chosen_by, **spec.config},
        indent=2, sort_keys=True, default=str))
    return out


def _final_data(study: Study):
    """What the final seeds train on: the prepared data, with final.train_on_val the
    validation split appended to the training split."""
    from hpsweep.data.prepared import load_prepared

    data = load_prepared(study.paths.prepared)
    if study.params.final.train_on_val:
        data = with_val_in_train(data)
        log.info("final seeds: training on train + validation (%d images), keeping the "
                 "last epoch", len(data.y_train))
    return data


def _retrain(study: Study, spec: RunSpec, chosen_by: dict[str, Any], out: Path,
             threads: int | None, progress: bool) -> dict[str, Any]:
    from hpsweep.training.engine import train_run

    _start_seed(spec, chosen_by, out)
    on_val = study.params.final.train_on_val
    return train_run(spec.config, _final_data(study), out, seed=spec.seed, evaluate_test=True,
                     threads=threads, progress=progress, keep="last" if on_val else "best")


def with_val_in_train(data):
    """The prepared data with the validation split appended to the training split (the
    validation split stays for the trainer's per-epoch curve, no longer a holdout)."""
    return data.derive(x_train=torch.cat([data.x_train, data.x_val]),
                       y_train=torch.cat([data.y_train, data.y_val]))


def _seed_rows(study: Study, spec_of: Callable[[int], RunSpec],
               dir_of: Callable[[int], Path], rule: str) -> tuple[list[dict], dict]:
    """One row per final seed from its metrics.json (in ``dir_of(seed)``), checked to be
    the configuration ``spec_of(seed)`` with a test accuracy: (rows, the run config)."""
    on_val = study.params.final.train_on_val
    rows, config = [], {}
    for seed in study.params.final.seeds:
        spec, where = spec_of(seed), dir_of(seed)
        config = spec.config
        metrics = read_metrics(where)
        if metrics is None:
            raise FileNotFoundError(f"{where / 'metrics.json'} is missing; "
                                    f"run the {rule} job for seed {seed}")
        if metrics.get("provenance", {}).get("run_config") != spec.config:
            raise RuntimeError(f"{where} holds another configuration than "
                               f"the current one; rerun its {rule} job")
        if metrics.get("test_acc") is None:
            raise RuntimeError(f"{where}: no test accuracy "
                               f"(status {metrics.get('status')})")
        rows.append({"seed": seed, "run_id": spec.run_id, "status": metrics["status"],
                     "test_acc": metrics["test_acc"], "test_loss": metrics.get("test_loss"),
                     # trained on with train_on_val: no holdout accuracy then
                     "best_val_acc": None if on_val else metrics.get("best_val_acc"),
                     "best_epoch": metrics.get("best_epoch"),
                     "epochs_run": metrics.get("epochs_run"),
                     "total_time_s": metrics.get("total_time_s"),
                     "n_params": metrics.get("n_params")})
    return rows, config


def _control(study: Study, best: dict[str, Any], tuned: list[dict[str, Any]]
             ) -> tuple[dict | None, dict | None]:
    """(the control's summary, tuned - control paired over the seeds), or (None, None)
    with final.control = false. The pairing is by seed: the same seed draws the same
    data order, so the per-seed differences cancel part of the seed-to-seed noise."""
    if not study.params.final.control:
        return None, None
    rows, _ = _seed_rows(study, lambda s: control_spec(study, s, best),
                         lambda s: control_dir(study, s), "control_run")
    test = mean_ci([r["test_acc"] for r in rows]).as_json()
    control = {"overrides": control_overrides(study, best), "test_acc_mean": test["mean"],
               "test_acc_ci95": test["half"], "per_seed": rows}
    diffs = {t["seed"]: t["test_acc"] - c["test_acc"]
             for t, c in zip(tuned, rows, strict=True)}
    d = mean_ci(diffs.values()).as_json()
    gain = {"mean": d["mean"], "ci95": d["half"], "low": d["low"], "high": d["high"],
            "n": d["n"], "per_seed": diffs,
            # above zero with 95 % confidence; None where there is no interval (one seed)
            "significant": None if d["low"] is None else d["low"] > 0}
    return control, gain


def write_final_summary(study: Study, out: Mapping[str, str | Path] | None = None
                        ) -> dict[str, Any]:
    """summary.json (also DVC metrics), model.pt, model.pt2, model_card.json and
    config.json from the seeds' runs. ``out``: those files by key (the rule's named
    outputs; default the layout's final_outputs)."""
    out = {k: Path(v) for k, v in (out or final_outputs(study)).items()}
    best = best_choice(study)
    on_val = study.params.final.train_on_val
    per_seed, config = _seed_rows(study, lambda s: final_spec(study, s, best),
                                  lambda s: seed_dir(study, s), "final_run")
    control, gain = _control(study, best, per_seed)
    test = mean_ci([r["test_acc"] for r in per_seed]).as_json()
    if test["mean"] is None:
        raise RuntimeError(f"no finite test accuracy in {[r['test_acc'] for r in per_seed]}")
    val = mean_ci([r["best_val_acc"] for r in per_seed]).as_json()
    if on_val:  # validation accuracy was trained on: it cannot choose; ship the first seed
        export = per_seed[0]
    else:
        export = max(per_seed, key=lambda r: r["best_val_acc"]
                     if r["best_val_acc"] is not None else -1.0)
    summary = {
        "test_acc_mean": test["mean"], "test_acc_std": test["std"],
        # half-width of the 95 % t interval: report as mean ± test_acc_ci95
        "test_acc_ci95": test["half"], "test_acc_ci95_low": test["low"],
        "test_acc_ci95_high": test["high"],
        "val_acc_mean": val["mean"], "val_acc_ci95": val["half"],
        "n_seeds": len(per_seed), "n_params": per_seed[0]["n_params"],
        "trained_on": "train+val" if on_val else "train",
        "tuned_val_acc": best.get("val_acc"), "exported_seed": export["seed"],
        "per_seed": per_seed,
        # the baseline trained the same way, and tuned - baseline paired by seed
        "control": control, "gain_vs_control": gain,
        # the params this result was made from (hpsweep.core.params_deps): checkable later
        "made_from": made_from(study.params, "final_summary"),
        "best": best, "overrides": final_overrides(study, best),
        # the retrained configuration as dotted model.* / train.* keys (readable tables),
        # and as the nested run config the trainer took
        "config": flatten({"model": config["model"], "train": config["train"]}),
        "run_config": config,
    }
    export_model(study, export, config, summary, out)
    write_text(out["config"], json.dumps(config, indent=2, sort_keys=True))
    write_text(out["summary"], json.dumps(summary, indent=2, default=str))
    log.info("final: test acc %.4f ± %s over %d seeds", test["mean"],
             f"{test['half']:.4f}" if test["half"] is not None else "n/a", len(per_seed))
    return summary
