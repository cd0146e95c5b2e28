"""Typed, validated study parameters (params.toml).

params.toml is the single source of truth for a study. This module assembles the
section models of core.sections into Params, rejects unknown keys (a typo must never
be silently ignored) and reports every problem as one line naming the key, the bad
value and what is allowed. Nothing here imports Snakemake.
"""

from __future__ import annotations

import copy
import difflib
import json
from pathlib import Path
from typing import Any

import tomli
from pydantic import BaseModel, Field, TypeAdapter, ValidationError, model_validator

from hpsweep.core.sections import (
    CNNConfig,
    DataConfig,
    FinalConfig,
    GridConfig,
    MLPConfig,
    ModelConfig,
    OptunaConfig,
    ReportConfig,
    StudyConfig,
    SweepConfig,
    TrackingConfig,
    TrainConfig,
    _Strict,
)


class ParamsError(ValueError):
    """params.toml is invalid; ``problems`` holds one readable line per problem."""

    def __init__(self, problems: list[str], source: str = "params"):
        self.problems = problems
        self.source = source
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


class Params(_Strict):
    study: StudyConfig = Field(default_factory=StudyConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=MLPConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    sweeps: dict[str, SweepConfig] = Field(default_factory=dict)
    grids: dict[str, GridConfig] = Field(default_factory=dict)
    # Named full configurations: dotted key -> value overrides of the baseline.
    configs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    optuna: OptunaConfig = Field(default_factory=OptunaConfig)
    final: FinalConfig = Field(default_factory=FinalConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _overrides_fit_the_model(self) -> Params:
        """Every sweep/grid/config/space value must give a valid run config.

        Checked here, before any job starts, so a CNN key swept on an MLP or a
        negative learning rate in a sweep list fails at validation time.
        """
        problems: list[str] = []
        base = self.run_base()
        for name, sweep in self.sweeps.items():
            problems += _check_values(base, f"sweeps.{name}", sweep.param, sweep.values)
        for name, grid in self.grids.items():
            for axis in ("x", "y"):
                sw = getattr(grid, axis)
                problems += _check_values(base, f"grids.{name}.{axis}", sw.param, sw.values)
        for name, overrides in self.configs.items():
            try:
                resolve_run(base, overrides)
            except ParamsError as e:
                problems += [f"configs.{name}: {p}" for p in e.problems]
        problems += self._check_space(base)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _check_space(self, base: dict[str, Any]) -> list[str]:
        """Probe each search dimension at its bounds/choices.

        With ``model.arch`` in the space, family keys are conditional: a CNN
        key is probed on a CNN config (it only applies to CNN trials).
        """
        space = self.optuna.space
        problems = []
        for key, dim in space.items():
            if dim.type == "categorical":
                probes = list(dim.choices or [])
            else:
                cast = int if dim.type == "int" else float
                probes = [cast(dim.low), cast(dim.high)]
            arch = None
            if "model.arch" in space and key.startswith("model.") and key != "model.arch":
                leaf = key.split(".", 1)[1]
                arch = "cnn" if leaf in CNNConfig.model_fields else "mlp"
            problems += _check_values(base, f"optuna.space.{key}", key, probes, arch)
        return problems

    def run_base(self) -> dict[str, Any]:
        """The part of the params that determines a single training run."""
        return {
            "data": self.data.model_dump(include={"dataset", "csv_path", "val_fraction",
                                                  "split_seed", "train_subset"}),
            "model": self.model.model_dump(),
            "train": self.train.model_dump(),
            "device": self.study.device,
        }


RUN_SECTIONS = ("model", "train")


def _check_values(base, where, param, values, arch=None) -> list[str]:
    problems = []
    if param.split(".")[0] not in RUN_SECTIONS:
        return [f"{where}.param = {param!r}: only model.* and train.* keys can be swept"]
    for v in values:
        overrides = {param: v} if arch is None else {"model.arch": arch, param: v}
        try:
            resolve_run(base, overrides)
        except ParamsError as e:
            problems += [f"{where}: {p}" for p in e.problems if f"{where}: {p}" not in problems]
    return problems


def resolve_run(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Apply dotted-key overrides to a run base and validate the result.

    Changing ``model.arch`` switches model family: keys of the old family that
    the new one does not know are dropped, so a CNN config can be named from an
    MLP baseline.
    """
    cfg = copy.deepcopy(base)
    problems = []
    arch = overrides.get("model.arch")
    if arch is not None and arch != cfg["model"].get("arch"):
        cfg["model"] = {"arch": arch}
    for key, value in overrides.items():
        section, _, leaf = key.partition(".")
        if section not in RUN_SECTIONS or not leaf or "." in leaf:
            problems.append(f"{key!r} is not a model.* or train.* key")
            continue
        cfg[section][leaf] = value
    if problems:
        raise ParamsError(problems)
    try:
        model = _MODEL_ADAPTER.validate_python(cfg["model"])
    except ValidationError as e:
        problems += _format_errors(e, prefix="model.")
    try:
        train = TrainConfig.model_validate(cfg["train"])
    except ValidationError as e:
        problems += _format_errors(e, prefix="train.", section=TrainConfig)
    if problems:
        raise ParamsError(problems)
    cfg["model"] = model.model_dump()
    cfg["train"] = train.model_dump()
    return cfg


def _unknown_key_hint(raw_loc: tuple, base: type[BaseModel] = None) -> str:
    """Say what a mistyped or misplaced key was probably meant to be: the closest key
    of the section it is in (``base``: the section ``raw_loc`` is relative to), or that
    section's keys. The hint goes in parentheses: problems are joined with "; "."""
    leaf = str(raw_loc[-1])
    families = {"mlp": MLPConfig, "cnn": CNNConfig}
    section = (base or Params) if len(raw_loc) == 1 else None
    if len(raw_loc) == 2:
        section = _SECTIONS.get(str(raw_loc[0]))
    if len(raw_loc) >= 2 and raw_loc[-2] in families:
        section = families[raw_loc[-2]]
        other = CNNConfig if section is MLPConfig else MLPConfig
        if leaf in other.model_fields:
            return f"is a {other().arch.upper()} key but model.arch is {section().arch!r}"
    if section is None:
        return "unknown key (check its spelling against params.toml's comments)"
    close = difflib.get_close_matches(leaf, list(section.model_fields), n=1)
    hint = f"did you mean {close[0]!r}?" if close else "allowed: " + ", ".join(section.model_fields)
    return f"unknown key ({hint})"


def _format_errors(err: ValidationError, prefix: str = "",
                   section: type[BaseModel] | None = None) -> list[str]:
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"] if not (isinstance(p, str) and p in ("mlp", "cnn"))]
        key = prefix + ".".join(loc)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            lines.append(f"{key}: {_unknown_key_hint(e['loc'], section)}")
        elif e["type"] == "value_error" and not loc:
            lines += [m.strip() for m in msg.split("; ")]
        else:
            shown = json.dumps(e.get("input"), default=str)
            lines.append(f"{key} = {shown}: {msg}" if key else f"{shown}: {msg}")
    return lines


_MODEL_ADAPTER: TypeAdapter = TypeAdapter(ModelConfig)


_SECTIONS = {
    "study": StudyConfig, "data": DataConfig, "train": TrainConfig, "optuna": OptunaConfig,
    "final": FinalConfig, "report": ReportConfig,
}


def parse_params(data: dict[str, Any], source: str = "params") -> Params:
    try:
        return Params.model_validate(data)
    except ValidationError as e:
        raise ParamsError(_format_errors(e), source) from None


def load_params(path: str | Path) -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError([f"file not found; pass an existing params.toml (got {path})"], str(path))
    text = path.read_text()
    try:
        data = tomli.loads(text)
    except tomli.TOMLDecodeError as e:
        # Quote the line: "Cannot overwrite a value (at line 3, column 9)" alone does not
        # say that a key is set twice, nor which.
        lineno = getattr(e, "lineno", 0)
        lines = text.splitlines()
        where = f": {lines[lineno - 1].strip()!r}" if 0 < lineno <= len(lines) else ""
        raise ParamsError([f"not valid TOML: {e}{where}; fix that line (a key set twice, an "
                           "unclosed [ or quote, a value without quotes)"], str(path)) from None
    return parse_params(data, str(path))
