"""One Optuna trial: admit it, sample a run config, train it (per CV fold), report, prune."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from hpsweep.core.atomic import write_text
from hpsweep.core.ids import code_version
from hpsweep.core.plan import make_run
from hpsweep.core.schema import ParamsError
from hpsweep.data.prepared import PreparedData
from hpsweep.tuning.counting import admitted
from hpsweep.tuning.folds import fold_data
from hpsweep.tuning.space import trial_overrides
from hpsweep.tuning.tuner import Tuner


class _Surplus(Exception):  # noqa: N818 - a signal, not an error
    """The study already has n_trials finished or claimed: this trial is not run."""


class _Invalid(Exception):  # noqa: N818
    """The sampled combination is not a valid run config (e.g. nesterov with adam)."""


def _train(*args, **kwargs) -> dict:
    """The trainer (module-level so tests can stand in for it)."""
    from hpsweep.training.engine import train_run

    return train_run(*args, **kwargs)


class Objective:
    def __init__(self, tuner: Tuner, data: PreparedData, worker: int,
                 threads: int | None = None, progress: bool = False):
        self.tuner, self.data, self.worker = tuner, data, worker
        self.threads, self.progress = threads, progress
        self.last_surplus = self.last_invalid = False
        self.last_number: int | None = None

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        self.last_number, self.last_surplus, self.last_invalid = trial.number, False, False
        spec, run_dir = self.start(trial)
        value, metrics = self.train_folds(trial, spec, run_dir)
        trial.set_user_attr("val_acc", value)
        if self.tuner.multi_objective:
            return value, float(metrics.get("n_params") or 0)
        return value

    def start(self, trial: optuna.Trial):
        """Admit the trial, sample its run config, write its config.json: (spec, run_dir)."""
        tuner, params = self.tuner, self.tuner.params
        # First, so every trial this worker asked for says so, surplus and invalid ones too.
        trial.set_user_attr("worker", self.worker)
        if not admitted(trial.study, trial.number, params.optuna.n_trials):
            self.last_surplus = True
            trial.set_user_attr("surplus", True)
            raise _Surplus(f"n_trials = {params.optuna.n_trials} already finished or running")
        values = tuner.space.suggest(trial)
        overrides = trial_overrides(params, values)
        try:
            spec = make_run(params, overrides, tuner.trial_seed)
        except ParamsError as e:
            self.last_invalid = True
            trial.set_user_attr("invalid", str(e))
            raise _Invalid(str(e)) from None
        # A retry of a killed trial inherits its user attrs: train in the same directory,
        # so the trainer resumes the dead run's last checkpoint.
        rel = trial.user_attrs.get("run_dir") or str(tuner.trial_dir(trial.number))
        run_dir = Path(rel)
        trial.set_user_attr("run_dir", rel)
        trial.set_user_attr("overrides", overrides)
        trial.set_user_attr("run_id", spec.run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.json", json.dumps({
            "optuna_study": tuner.name, "trial": trial.number, "overrides": overrides,
            "run_id": spec.run_id, "signature": spec.signature, "seed": spec.seed,
            "code_version": code_version(), **spec.config}, indent=2, sort_keys=True))
        return spec, run_dir

    def reporter(self, trial: optuna.Trial, fold: int, epochs: int
                 ) -> Callable[[int, float], None]:
        """The trainer's on_epoch for ``trial``'s fold: report to the pruner, and raise
        Pruned when it says so."""
        from hpsweep.training.engine import Pruned

        params = self.tuner.params
        silent = params.optuna.pruner == "wilcoxon" or self.tuner.multi_objective

        def on_epoch(epoch: int, val_acc: float) -> None:
            if silent or not math.isfinite(val_acc):
                return
            trial.report(val_acc, fold * epochs + epoch)
            if trial.should_prune():
                raise Pruned(f"trial {trial.number}, epoch {epoch}")

        return on_epoch

    @staticmethod
    def record(trial: optuna.Trial, metrics: dict[str, Any], fold: int = 0) -> float:
        """A trained fold's outcome on its trial: its validation accuracy (0 where not
        finite); optuna.TrialPruned where the pruner stopped it."""
        trial.set_user_attr("status", metrics["status"])
        trial.set_user_attr("n_params", metrics.get("n_params"))
        trial.set_user_attr("epochs_run", metrics.get("epochs_run"))
        if metrics["status"] == "pruned":
            raise optuna.TrialPruned(f"fold {fold}, epoch {metrics.get('epochs_run')}")
        acc = metrics.get("best_val_acc")
        return float(acc) if acc is not None and math.isfinite(acc) else 0.0

    def train_folds(self, trial: optuna.Trial, spec, run_dir: Path
                     ) -> tuple[float, dict[str, Any]]:
        """Train the trial (once, or once per CV fold), reporting to the pruner: (mean
        validation accuracy, the last fold's metrics)."""
        params = self.tuner.params
        k = params.optuna.cv_folds
        epochs = spec.config["train"]["epochs"]
        wilcoxon = params.optuna.pruner == "wilcoxon"
        report = not self.tuner.multi_objective
        accs: list[float] = []
        metrics: dict[str, Any] = {}
        for fold in range(max(1, k)):
            data = self.data if k == 0 else fold_data(self.data, k, fold,
                                                      params.data.split_seed)
            out = run_dir if k == 0 else run_dir / f"fold_{fold}"
            metrics = _train(spec.config, data, out, seed=spec.seed, threads=self.threads,
                             on_epoch=self.reporter(trial, fold, epochs),
                             progress=self.progress)
            accs.append(self.record(trial, metrics, fold))
            if k:
                trial.set_user_attr("fold_val_acc", accs)
            if wilcoxon and report:
                trial.report(accs[-1], fold)
                if trial.should_prune():
                    # Optuna's advice for this pruner: return the estimate so far
                    trial.set_user_attr("pruned_after_fold", fold)
                    break
        return sum(accs) / len(accs), metrics
