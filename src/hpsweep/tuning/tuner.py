"""The Optuna side of a study: its name, key and paths (OptunaLayout), storage, sampler
and pruner, in one object every tuning step builds from the study.

Paths (``Tuner``), for a study named S:

    results/optuna/S.db                          default SQLite storage (optuna.storage = "")
    results/optuna/S/<key>/setup.json            setup done (warm start counts)
    results/optuna/S/<key>/workers/<i>.json      worker i done
    results/optuna/S/<key>/trials/<number>/      a trial's run: config.json, metrics.json, tb/
    results/optuna/S/trials.csv, best_params.json
    results/optuna/<study>/figures/optuna_*.png

``key`` is a signature of what determines a trial's result (baseline config,
space, trial epochs, cv folds, objectives, trial seed, data identity, training
code); the Optuna study is named ``S-<key>``. Editing any of these starts a new
study (and new trial directories) instead of mixing incomparable trials, as run
directories do for sweeps. n_trials, sampler and pruner are not part of it:
raising n_trials continues the study (the workers' params stamp reruns them).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import optuna

from hpsweep.core.layout import OptunaLayout
from hpsweep.core.schema import ParamsError
from hpsweep.tuning.algorithms import make_pruner, make_sampler
from hpsweep.tuning.space import SearchSpace
from hpsweep.tuning.storage import mask, open_storage, storage_url


def optuna_logs_to_root() -> None:
    """Send Optuna's log records to the root logger (a job's log file), not its own
    stderr handler bound at import time."""
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()


@dataclass
class Tuner(OptunaLayout):
    """The Optuna side of a study: its key and paths (OptunaLayout), storage, sampler,
    pruner."""

    @cached_property
    def space(self) -> SearchSpace:
        return SearchSpace(self.params.optuna.space, self.params.model.arch)

    # -- storage -----------------------------------------------------------------------
    @cached_property
    def url(self) -> str:
        return storage_url(self.study)

    @property
    def masked_url(self) -> str:
        return mask(self.url)

    @property
    def storage_setting(self) -> str:
        """optuna.storage as written (${VAR} not expanded, password masked): safe to
        show, and computable where the variables are not set (Snakefile parsing)."""
        return mask(self.params.optuna.storage) or "(default SQLite)"

    def validate(self) -> None:
        """Problems params validation cannot see (it does not know Optuna); raised before
        any trial."""
        o = self.params.optuna
        problems = []
        if not o.space:
            problems.append("optuna.space is empty; add at least one [optuna.space.\"KEY\"]")
        if o.pruner == "wilcoxon" and o.cv_folds < 2:
            problems.append("optuna.pruner = 'wilcoxon' compares per-fold scores of paired "
                            "folds; set optuna.cv_folds >= 2 or pick another pruner")
        if o.sampler == "cmaes":
            try:
                import cmaes  # noqa: F401
            except ImportError:
                problems.append("optuna.sampler = 'cmaes' needs the `cmaes` package "
                                "(pip install cmaes), or pick another sampler")
        if problems:
            raise ParamsError(problems, str(self.study.params_path))

    def sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return make_sampler(self.params.optuna.sampler, seed,
                            n_trials=self.params.optuna.n_trials,
                            conditional=self.space.conditional)

    def pruner(self) -> optuna.pruners.BasePruner:
        o, sweeps = self.params.optuna, self.params.train.epochs
        epochs = o.epochs or sweeps
        steps = epochs * max(1, o.cv_folds)  # the last step a trial reports
        return make_pruner(o.pruner, multi_objective=self.multi_objective, epochs=epochs,
                           min_resource=max(1, min(sweeps, epochs)), max_resource=steps,
                           promoted=o.promote)

    def open(self, *, seed: int | None = None,
             storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
        """Create or load the study (safe when several workers start at once)."""
        return optuna.create_study(
            storage=storage or open_storage(self.url), study_name=self.name, load_if_exists=True,
            directions=self.directions,
            sampler=self.sampler(self.params.optuna.seed if seed is None else seed),
            pruner=self.pruner())

    def load(self) -> optuna.Study:
        """Load an existing study (collect): a missing one is an error, not a new study."""
        try:
            return optuna.load_study(study_name=self.name, storage=open_storage(self.url),
                                     sampler=self.sampler(self.params.optuna.seed),
                                     pruner=self.pruner())
        except KeyError:
            raise RuntimeError(f"Optuna study {self.name!r} is not in {self.masked_url}; run "
                               "the optuna_setup and optuna_worker jobs first") from None
