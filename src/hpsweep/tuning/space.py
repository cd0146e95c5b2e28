"""params.toml's [optuna.space] as Optuna distributions.

Each key is a dotted ``model.*`` / ``train.*`` key of a run config, so a trial's
parameters are directly the overrides ``make_run`` takes. With ``model.arch`` in
the space, family keys are conditional: a CNN-only key (channels, kernel_size,
...) is suggested only in trials whose arch is "cnn", an MLP-only key (depth,
width) only when it is "mlp"; shared keys (activation, dropout, batch_norm)
always. ``model.arch`` is suggested first so the others can depend on it.

Categorical choices that Optuna cannot store (lists such as channels = [32, 64])
are stored as their JSON text and decoded back.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpsweep.core.schema import Params, ParamsError
from hpsweep.core.sections import CNNConfig, MLPConfig, SpaceParam, describe_space

if TYPE_CHECKING:  # optuna is imported where distributions are built: the Snakefile
    # needs describe() (the study key) and should not pay for importing optuna
    from optuna.distributions import BaseDistribution
    from optuna.trial import BaseTrial

CNN_ONLY = frozenset(CNNConfig.model_fields) - frozenset(MLPConfig.model_fields)
MLP_ONLY = frozenset(MLPConfig.model_fields) - frozenset(CNNConfig.model_fields)
_PRIMITIVE = (type(None), bool, int, float, str)


def family_of(key: str) -> str | None:
    """'cnn' / 'mlp' for a key only that family has, else None (applies to both)."""
    section, _, leaf = key.partition(".")
    if section != "model" or leaf == "arch":
        return None
    if leaf in CNN_ONLY:
        return "cnn"
    if leaf in MLP_ONLY:
        return "mlp"
    return None


@dataclass(frozen=True)
class Dim:
    """One search dimension: its Optuna distribution and value encoding."""

    key: str
    spec: SpaceParam

    def __post_init__(self) -> None:
        where = f"optuna.space.{self.key}"
        s = self.spec
        if s.type == "int":
            if not (float(s.low).is_integer() and float(s.high).is_integer()):
                raise ParamsError([f"{where}: int dimension needs whole low/high, "
                                   f"got {s.low}, {s.high}"])
            if s.step is not None and (s.step < 1 or not float(s.step).is_integer()):
                raise ParamsError([f"{where}: int step must be a whole number >= 1, got {s.step}"])
        if s.type == "float" and s.step is not None and s.step <= 0:
            raise ParamsError([f"{where}: step must be > 0, got {s.step}"])
        if s.type != "categorical" and s.log and s.step not in (None, 1):
            raise ParamsError([f"{where}: log = true cannot be combined with step "
                               f"(Optuna samples log scales continuously); drop one"])

    @property
    def encoded(self) -> bool:
        """Categorical choices stored as JSON text (lists, dicts)."""
        return self.spec.type == "categorical" and not all(
            isinstance(c, _PRIMITIVE) for c in self.spec.choices or [])

    def distribution(self) -> BaseDistribution:
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        s = self.spec
        if s.type == "categorical":
            return CategoricalDistribution([self.encode(c) for c in s.choices or []])
        if s.type == "int":
            return IntDistribution(int(s.low), int(s.high), log=s.log, step=int(s.step or 1))
        return FloatDistribution(float(s.low), float(s.high), log=s.log, step=s.step)

    def encode(self, value: Any) -> Any:
        return json.dumps(value) if self.encoded else value

    def decode(self, raw: Any) -> Any:
        return json.loads(raw) if self.encoded else raw

    def suggest(self, trial: BaseTrial) -> Any:
        s = self.spec
        if s.type == "categorical":
            raw = trial.suggest_categorical(self.key, [self.encode(c) for c in s.choices or []])
        elif s.type == "int":
            raw = trial.suggest_int(self.key, int(s.low), int(s.high), step=int(s.step or 1),
                                    log=s.log)
        else:
            raw = trial.suggest_float(self.key, float(s.low), float(s.high), step=s.step,
                                      log=s.log)
        return self.decode(raw)

    def extremes(self) -> list[Any]:
        """The values a run's cost can turn on (ops.estimate prices the space's costliest
        corner with them): every choice of a categorical, both ends of an int range (the
        highest value on its step grid); none for a float (learning rate, dropout, weight
        decay: they do not change what a step computes)."""
        s = self.spec
        if s.type == "categorical":
            return list(s.choices or [])
        if s.type == "int":
            step = int(s.step or 1)
            low, high = int(s.low), int(s.high)
            return [low, low + (high - low) // step * step]
        return []

    def contains(self, value: Any) -> bool:
        """Whether a run's value lies in this dimension (warm start)."""
        s = self.spec
        if s.type == "categorical":
            enc = self.encode(value)
            # type-exact: True is not the choice 1, 1.0 is not the choice 1
            return any(type(c) is type(enc) and c == enc for c in self.distribution().choices)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if s.type == "int" and not isinstance(value, int):
            return False
        if not (s.low <= value <= s.high):
            return False
        if s.step:
            k = (value - s.low) / s.step
            return math.isclose(k, round(k), abs_tol=1e-9)
        return True


class SearchSpace:
    """The whole space; ``arch`` is the baseline's model.arch (used when the space
    does not choose it)."""

    def __init__(self, space: dict[str, SpaceParam], base_arch: str):
        keys = sorted(space, key=lambda k: k != "model.arch")  # arch first, else params order
        self.dims = [Dim(k, space[k]) for k in keys]
        self.base_arch = base_arch

    @property
    def keys(self) -> list[str]:
        return [d.key for d in self.dims]

    @property
    def conditional(self) -> bool:
        return "model.arch" in self.keys and any(family_of(k) for k in self.keys)

    def active(self, arch: str) -> list[Dim]:
        """The dimensions a trial with model.arch = ``arch`` has."""
        return [d for d in self.dims if family_of(d.key) in (None, arch)]

    def suggest(self, trial: BaseTrial) -> dict[str, Any]:
        """Sample a trial's values: dotted key -> decoded value (the run overrides)."""
        values: dict[str, Any] = {}
        arch = self.base_arch
        if "model.arch" in self.keys:
            arch = self.dims[0].suggest(trial)
            values["model.arch"] = arch
        for d in self.active(arch):
            if d.key != "model.arch":
                values[d.key] = d.suggest(trial)
        return values

    def decode(self, params: dict[str, Any]) -> dict[str, Any]:
        """A trial's stored params -> overrides (in space order)."""
        by_key = {d.key: d for d in self.dims}
        return {k: by_key[k].decode(params[k]) for k in self.keys if k in params}

    def values_of(self, run_cfg: dict[str, Any]) -> dict[str, Any] | None:
        """The space's values in a resolved run config, or None if any lies outside."""
        arch = run_cfg["model"].get("arch", self.base_arch)
        values = {}
        for d in self.active(arch):
            section, _, leaf = d.key.partition(".")
            if leaf not in run_cfg[section] or not d.contains(run_cfg[section][leaf]):
                return None
            values[d.key] = run_cfg[section][leaf]
        return values

    def encode(self, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, BaseDistribution]]:
        """Decoded values -> (Optuna params, distributions) for ``create_trial``."""
        by_key = {d.key: d for d in self.dims}
        params = {k: by_key[k].encode(v) for k, v in values.items()}
        return params, {k: by_key[k].distribution() for k in values}

    def describe(self) -> dict[str, Any]:
        return describe_space({d.key: d.spec for d in self.dims})


def trial_overrides(params: Params, values: dict[str, Any]) -> dict[str, Any]:
    """A trial's run overrides: its space values, plus ``optuna.epochs`` when set
    (and train.epochs is not itself searched)."""
    overrides = dict(values)
    if params.optuna.epochs and "train.epochs" not in overrides:
        overrides["train.epochs"] = params.optuna.epochs
    return overrides
