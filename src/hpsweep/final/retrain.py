"""Final retrain: the best configuration, K seeds, evaluated once on the test split.

    results/final/seed_<s>/        config.json, metrics.json (with test_acc), best.pt, tb/
    results/final/summary.json     test accuracy per seed, mean, 95 % t interval, config
    results/final/model.pt         the exported model (state_dict + config + normalisation)
    results/final/model.pt2        the same model as a torch.export program (TorchScript's
                                   successor): float pixels in [0, 1], N x C x H x W -> logits;
                                   normalisation inside; needs no hpsweep to run
    results/final/model_card.json  config, data checksum, test accuracy (mean ± CI), inputs
    results/final/config.json      the retrained run config

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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from hpsweep.core.atomic import write_text
from hpsweep.core.dotted import flatten
from hpsweep.core.ids import code_version
from hpsweep.core.layout import final_outputs, seed_dir
from hpsweep.core.params_deps import made_from
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
    from hpsweep.data.prepared import load_prepared
    from hpsweep.training.engine import train_run

    best = best_choice(study)
    spec = final_spec(study, seed, best)
    out = Path(out_dir) if out_dir else seed_dir(study, seed)  # the rule's output folder
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "config.json", json.dumps({
        "run_id": spec.run_id, "signature": spec.signature, "seed": seed,
        "code_version": code_version(), "chosen_by": best, **spec.config},
        indent=2, sort_keys=True, default=str))
    log.info("final seed %d: %s", seed, final_overrides(study, best))
    data = load_prepared(study.paths.prepared)
    on_val = study.params.final.train_on_val
    if on_val:
        data = with_val_in_train(data)
        log.info("final seed %d: training on train + validation (%d images), keeping the "
                 "last epoch", seed, len(data.y_train))
    return train_run(spec.config, data, out, seed=seed, evaluate_test=True, threads=threads,
                     progress=progress, keep="last" if on_val else "best")


def with_val_in_train(data):
    """The prepared data with the validation split appended to the training split (the
    validation split stays for the trainer's per-epoch curve, no longer a holdout)."""
    return data.derive(x_train=torch.cat([data.x_train, data.x_val]),
                       y_train=torch.cat([data.y_train, data.y_val]))


def _seed_rows(study: Study, best: dict[str, Any]) -> tuple[list[dict[str, Any]], dict]:
    """One row per final seed from its metrics.json, checked to be the current best
    configuration with a test accuracy: (rows, the retrained run config)."""
    on_val = study.params.final.train_on_val
    rows, config = [], {}
    for seed in study.params.final.seeds:
        spec = final_spec(study, seed, best)
        config = spec.config
        metrics = read_metrics(seed_dir(study, seed))
        if metrics is None:
            raise FileNotFoundError(f"{seed_dir(study, seed) / 'metrics.json'} is missing; "
                                    f"run the final_run job for seed {seed}")
        if metrics.get("provenance", {}).get("run_config") != spec.config:
            raise RuntimeError(f"{seed_dir(study, seed)} holds another configuration than "
                               "the current best; rerun its final_run job")
        if metrics.get("test_acc") is None:
            raise RuntimeError(f"{seed_dir(study, seed)}: no test accuracy "
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


def write_final_summary(study: Study, out: Mapping[str, str | Path] | None = None
                        ) -> dict[str, Any]:
    """summary.json (also DVC metrics), model.pt, model.pt2, model_card.json and
    config.json from the seeds' runs. ``out``: those files by key (the rule's named
    outputs; default the layout's final_outputs)."""
    out = {k: Path(v) for k, v in (out or final_outputs(study)).items()}
    best = best_choice(study)
    on_val = study.params.final.train_on_val
    per_seed, config = _seed_rows(study, best)
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
