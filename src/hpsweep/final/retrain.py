"""Final retrain: the best configuration, K seeds, evaluated once on the test split.

    results/final/seed_<s>/        config.json, metrics.json (with test_acc), best.pt, tb/
    results/final/summary.json     test accuracy per seed, mean, 95 % t interval, config
    results/final/model.pt         the exported model (state_dict + config + normalisation)
    results/final/model.pt2        the same model as a torch.export program (TorchScript's
                                   successor): float pixels in [0, 1], N x C x H x W -> logits;
                                   normalisation inside; needs no hpsweep to run
    results/final/model_card.json  config, data checksum, test accuracy (mean ± CI), inputs
    results/final/config.json      the retrained run config

The best configuration is Optuna's (results/optuna/<study>/best_params.json) when
``optuna.enabled``, else the sweep/grid/config with the highest mean validation
accuracy. ``final.epochs`` > 0 replaces its epochs. The test split is touched
only here; the exported model is the seed with the best *validation* accuracy
(choosing by test accuracy would leak the test set into the choice). With
``final.train_on_val`` the seeds also train on the validation split and keep
their last epoch; then no validation accuracy is reported and the first seed is
exported.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch

from hpsweep.core.atomic import atomic_path, write_text
from hpsweep.core.layout import (
    best_input,
    config_path,
    model_card_path,
    model_path,
    program_path,
    seed_dir,
    summary_path,
)
from hpsweep.core.params_deps import made_from
from hpsweep.core.plan import RunSpec, code_version, make_run
from hpsweep.core.study import Study

log = logging.getLogger(__name__)

MODEL_FORMAT = 1


# -- paths ------------------------------------------------------------------------------------

def read_metrics(run_dir: Path) -> dict | None:
    path = run_dir / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


# -- the configuration --------------------------------------------------------------------------

def best_choice(study: Study) -> dict[str, Any]:
    """{"source", "overrides", "val_acc", ...} of the configuration to retrain."""
    if not study.params.optuna.enabled:
        # read from the run store (the summary csv is only the rule's ordering input)
        return _best_sweep_member(study)
    path = best_input(study)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; run the optuna_collect job first")
    best = json.loads(path.read_text())
    return {"source": "optuna", "optuna_study": best["optuna_study"],
            "trial_number": best["trial_number"], "warm_start": best.get("warm_start"),
            "val_acc": best["value"], "overrides": best["overrides"]}


def _best_sweep_member(study: Study) -> dict[str, Any]:
    """The plan member (any group) with the highest mean best_val_acc over its seeds."""
    accs: dict[tuple, dict[str, float]] = {}  # overrides -> run_id -> best val acc
    labels: dict[tuple, str] = {}
    for m in study.plan.members:
        metrics = read_metrics(study.paths.run_dir(m.run_id)) or {}
        acc = metrics.get("best_val_acc")
        if metrics.get("status") in ("ok", "early_stopped") and acc is not None:
            key = tuple((k, json.dumps(v)) for k, v in m.overrides)
            accs.setdefault(key, {})[m.run_id] = float(acc)
            labels.setdefault(key, f"{m.group}:{m.name}:{m.label}")
    if not accs:
        raise RuntimeError("no completed sweep run to choose the final configuration from")

    def mean(key: tuple) -> float:
        return sum(accs[key].values()) / len(accs[key])

    key = max(accs, key=mean)
    return {"source": "sweeps", "member": labels[key], "run_ids": sorted(accs[key]),
            "val_acc": mean(key), "overrides": {k: json.loads(v) for k, v in key}}


def final_overrides(study: Study, best: dict[str, Any] | None = None) -> dict[str, Any]:
    overrides = dict((best or best_choice(study))["overrides"])
    if study.params.final.epochs > 0:
        overrides["train.epochs"] = study.params.final.epochs
    return overrides


def final_spec(study: Study, seed: int, best: dict[str, Any] | None = None) -> RunSpec:
    return make_run(study.params, final_overrides(study, best), seed)


# -- training -----------------------------------------------------------------------------------

def run_final_seed(study: Study, seed: int, *, threads: int | None = None,
                   progress: bool = True) -> dict[str, Any]:
    """Train the best configuration with ``seed`` and evaluate it on the test split.

    A finished run of the same config in the directory is resumed from its last
    checkpoint (nothing to train, only the test evaluation); another config starts over.
    """
    from hpsweep.data.prepared import load_prepared
    from hpsweep.training.engine import train_run

    best = best_choice(study)
    spec = final_spec(study, seed, best)
    out = seed_dir(study, seed)
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


# -- statistics and summary ---------------------------------------------------------------------

def mean_ci95(values: list[float]) -> dict[str, float | None]:
    """Mean, sample std and the two-sided 95 % Student-t interval of the mean
    (half = t(0.975, n-1) * s / sqrt(n), see hpsweep.core.stats); None where undefined
    (one seed has no interval), so summary.json stays strict JSON."""
    from hpsweep.core.stats import mean_ci  # scipy: imported only when needed

    ci = mean_ci(values)
    if ci.n == 0:
        raise ValueError("no finite values")

    def num(v: float) -> float | None:
        return float(v) if math.isfinite(v) else None

    return {"mean": num(ci.mean), "std": num(ci.std), "half": num(ci.half),
            "low": num(ci.low), "high": num(ci.high), "n": ci.n}


def write_final_summary(study: Study) -> dict[str, Any]:
    """summary.json (also DVC metrics), model.pt and config.json from the seeds' runs."""
    best = best_choice(study)
    seeds = list(study.params.final.seeds)
    on_val = study.params.final.train_on_val
    per_seed = []
    config = None
    for seed in seeds:
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
        per_seed.append({"seed": seed, "run_id": spec.run_id, "status": metrics["status"],
                         "test_acc": metrics["test_acc"], "test_loss": metrics.get("test_loss"),
                         # trained on with train_on_val: no holdout accuracy then
                         "best_val_acc": None if on_val else metrics.get("best_val_acc"),
                         "best_epoch": metrics.get("best_epoch"),
                         "epochs_run": metrics.get("epochs_run"),
                         "total_time_s": metrics.get("total_time_s"),
                         "n_params": metrics.get("n_params")})
    test = mean_ci95([r["test_acc"] for r in per_seed])
    vals = [r["best_val_acc"] for r in per_seed if r["best_val_acc"] is not None]
    val = mean_ci95(vals) if vals else {"mean": None, "half": None}
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
        "config": {f"{section}.{k}": v for section in ("model", "train")
                   for k, v in config[section].items()},
        "run_config": config,
    }
    _export_model(study, export, config, summary)
    write_text(config_path(study), json.dumps(config, indent=2, sort_keys=True))
    write_text(summary_path(study), json.dumps(summary, indent=2, default=str))
    log.info("final: test acc %.4f ± %s over %d seeds", test["mean"],
             f"{test['half']:.4f}" if test["half"] is not None else "n/a", len(per_seed))
    return summary


def _export_model(study: Study, row: dict[str, Any], config: dict[str, Any],
                  summary: dict[str, Any]) -> None:
    ckpt_path = seed_dir(study, row["seed"]) / "best.pt"
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    blob = {"format": MODEL_FORMAT, "state_dict": ckpt["model"], "config": config,
            "model_cfg": config["model"], "input_shape": ckpt.get("input_shape"),
            "classes": ckpt.get("classes"), "mean": ckpt.get("mean"), "std": ckpt.get("std"),
            "seed": row["seed"], "val_acc": row["best_val_acc"], "test_acc": row["test_acc"],
            "test_acc_mean": summary["test_acc_mean"], "code_version": code_version()}
    with atomic_path(model_path(study)) as tmp:
        torch.save(blob, tmp)
    model, _ = load_exported(model_path(study))
    _export_program(model, blob, program_path(study))
    metrics = json.loads((seed_dir(study, row["seed"]) / "metrics.json").read_text())
    prov = metrics.get("provenance", {})
    card = {
        "model": f"{study.params.study.name}: {config['model']['arch']}, "
                 f"{summary['n_params']:,} parameters",
        "dataset": prov.get("data_dataset"), "data_checksum": prov.get("data_checksum"),
        "classes": blob["classes"], "input": {
            "shape": ["N", *blob["input_shape"]], "dtype": "float32",
            "range": "pixels / 255 in [0, 1]; model.pt2 normalises inside",
            "mean": blob["mean"], "std": blob["std"]},
        "test_accuracy": {"mean": summary["test_acc_mean"], "ci95": summary["test_acc_ci95"],
                          "n_seeds": summary["n_seeds"],
                          "per_seed": {str(r["seed"]): r["test_acc"]
                                       for r in summary["per_seed"]},
                          "exported_seed": row["seed"],
                          "exported_seed_test_acc": row["test_acc"]},
        "trained_on": summary["trained_on"],
        "val_accuracy_of_exported_seed": None if summary["trained_on"] == "train+val"
        else row["best_val_acc"],
        "chosen_by": summary["best"].get("source"), "config": config,
        "code_version": code_version(), "torch": prov.get("torch"),
        "files": {"state_dict": model_path(study).name, "program": program_path(study).name},
    }
    write_text(model_card_path(study), json.dumps(card, indent=2, default=str))


def _export_program(model: torch.nn.Module, blob: dict[str, Any], path: Path) -> None:
    """model.pt2: a torch.export program with the normalisation built in, any batch size."""

    class Normalised(torch.nn.Module):
        def __init__(self, net: torch.nn.Module, mean: list[float], std: list[float]):
            super().__init__()
            self.net = net
            self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net((x - self.mean) / self.std)

    wrapped = Normalised(model, blob["mean"], blob["std"]).eval()
    example = torch.rand(2, *blob["input_shape"])
    program = torch.export.export(
        wrapped, (example,), dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}})
    with atomic_path(path) as tmp:
        torch.export.save(program, tmp)


def load_exported(path: str | Path):
    """(model in eval mode, blob) from an exported model.pt. Inputs as in training:
    uint8 pixels / 255, minus blob["mean"], divided by blob["std"] (per channel)."""
    from hpsweep.training.models import build_model

    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    model = build_model(blob["model_cfg"], tuple(blob["input_shape"]), len(blob["classes"]))
    model.load_state_dict(blob["state_dict"])
    return model.eval(), blob
