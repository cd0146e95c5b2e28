"""The sections of params.toml as pydantic models: one class a section ([study],
[data], [model] (MLP or CNN), [train], [sweeps.*], [grids.*], [optuna] and its space,
[final], [report], [tracking]), each checking its own keys and values.

core.schema assembles them into Params and turns validation errors into one line a
problem. Nothing here imports Snakemake.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DATASETS = ("mnist", "fashion-mnist", "tiny-imagenet", "csv")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
ACTIVATIONS = ("relu", "silu", "gelu", "tanh", "leaky_relu")
SCHEDULERS = ("none", "step", "plateau", "onecycle", "cosine")
AUGMENTATIONS = ("none", "shift", "shift_rotate", "shift_flip", "crop_flip")
SAMPLERS = ("tpe", "random", "gp", "cmaes", "nsga2")
PRUNERS = ("median", "successive_halving", "hyperband", "wilcoxon", "none")
DEVICES = ("auto", "cpu", "cuda", "mps")


class _Strict(BaseModel):
    # extra="forbid": unknown keys are errors, so `learnig_rate` cannot slip through.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StudyConfig(_Strict):
    name: str = Field("study", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    seeds: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [0], min_length=1)
    device: Literal[DEVICES] = "auto"  # type: ignore[valid-type]
    # Training jobs that may share one GPU (ops.gpu_slots); scheduling only, no result
    # depends on it. `--resources gpu` then counts GPUs x jobs_per_gpu.
    jobs_per_gpu: int = Field(1, ge=1, le=64)
    # Runs of the plan (sweeps, grids, configs, seeds) trained together in one process as
    # one batched model (core.packs, training.pack_trainer): up to this many MLP runs that
    # differ only in the seed, dropout and train keys but batch_size and bf16. 1 = every
    # run alone. Scheduling only: a run's identity and directory do not change.
    pack_size: int = Field(1, ge=1, le=64)
    # Wall-clock minutes the study may take on the machine that runs it; 0 = the explicit
    # fidelities. > 0: `hpsweep plan` (or Snakemake, first) fits train.epochs (the
    # sweeps'), optuna.n_trials and optuna.minutes into it and freezes the plan
    # (ops.planner, core.budget).
    budget: float = Field(0, ge=0, le=100_000)
    results_dir: str = "results"
    reports_dir: str = "reports"
    data_dir: str = "data"

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"seeds must be distinct, got {v}")
        return v


class DataConfig(_Strict):
    dataset: Literal[DATASETS] = "fashion-mnist"  # type: ignore[valid-type]
    # Local mirror directories tried first, in order, then `urls`.
    mirrors: list[str] = Field(default_factory=lambda: ["/usr/share/datasets/fashion-mnist"])
    # Base URLs tried after the mirrors; empty means the dataset's official URLs.
    urls: list[str] = Field(default_factory=list)
    csv_path: str = ""
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    split_seed: int = Field(0, ge=0)
    # Stratified subset of the training split (0 = all); for CPU users.
    train_subset: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _csv_needs_path(self) -> DataConfig:
        if self.dataset == "csv" and not self.csv_path:
            raise ValueError("dataset 'csv' needs data.csv_path (a label,pixel0..pixelN file)")
        return self


class MLPConfig(_Strict):
    arch: Literal["mlp"] = "mlp"
    depth: int = Field(2, ge=1, le=16)
    # One width for every hidden layer, or one width per layer (len == depth).
    width: int | list[Annotated[int, Field(ge=1)]] = 512
    activation: Literal[ACTIVATIONS] = "silu"  # type: ignore[valid-type]
    batch_norm: bool = True
    dropout: float = Field(0.1, ge=0.0, lt=1.0)

    @field_validator("width")
    @classmethod
    def _positive_width(cls, v):
        if isinstance(v, int) and v < 1:
            raise ValueError(f"width must be >= 1, got {v}")
        return v

    @model_validator(mode="after")
    def _width_matches_depth(self) -> MLPConfig:
        if isinstance(self.width, list) and len(self.width) != self.depth:
            raise ValueError(
                f"width list {self.width} has {len(self.width)} entries but depth is {self.depth}"
            )
        return self

    def widths(self) -> list[int]:
        return list(self.width) if isinstance(self.width, list) else [self.width] * self.depth


class CNNConfig(_Strict):
    arch: Literal["cnn"] = "cnn"
    # Output channels of each conv block; the number of blocks is len(channels).
    channels: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [32, 64], min_length=1, max_length=8
    )
    convs_per_block: int = Field(1, ge=1, le=4)
    kernel_size: int = Field(3, ge=1, le=11)
    pool: Literal["max", "avg", "none"] = "max"
    batch_norm: bool = True
    residual: bool = False
    head: Literal["flatten", "gap"] = "flatten"
    fc: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [128])
    activation: Literal[ACTIVATIONS] = "silu"  # type: ignore[valid-type]
    dropout: float = Field(0.25, ge=0.0, lt=1.0)

    @field_validator("kernel_size")
    @classmethod
    def _odd_kernel(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"kernel_size must be odd (keeps 'same' padding), got {v}")
        return v


ModelConfig = Annotated[MLPConfig | CNNConfig, Field(discriminator="arch")]


class TrainConfig(_Strict):
    epochs: int = Field(10, ge=1, le=1000)
    batch_size: int = Field(256, ge=1, le=65536)
    optimizer: Literal[OPTIMIZERS] = "adamw"  # type: ignore[valid-type]
    lr: float = Field(3e-3, gt=0.0, le=10.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = Field(5e-4, ge=0.0, le=1.0)
    scheduler: Literal[SCHEDULERS] = "onecycle"  # type: ignore[valid-type]
    step_size: int = Field(5, ge=1)
    gamma: float = Field(0.5, gt=0.0, le=1.0)
    plateau_patience: int = Field(2, ge=0)
    plateau_factor: float = Field(0.5, gt=0.0, lt=1.0)
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    grad_clip: float = Field(0.0, ge=0.0)
    early_stopping_patience: int = Field(0, ge=0)
    augment: Literal[AUGMENTATIONS] = "none"  # type: ignore[valid-type]
    bf16: Literal["auto", "on", "off"] = "auto"
    eval_batch_size: int = Field(4096, ge=1)
    log_every_steps: int = Field(50, ge=1)

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> TrainConfig:
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0.0):
            raise ValueError("nesterov = true needs optimizer 'sgd' with momentum > 0")
        return self


class SweepConfig(_Strict):
    """One-parameter sweep around the baseline: `param` takes each of `values`."""

    param: str
    values: list[Any] = Field(min_length=1)

    @field_validator("values")
    @classmethod
    def _distinct(cls, v: list[Any]) -> list[Any]:
        keys = [json.dumps(x, sort_keys=True) for x in v]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"duplicated values {', '.join(dup)}; list each value once")
        return v


class GridConfig(_Strict):
    """2-D grid: every (x, y) pair of values, drawn as a heatmap."""

    x: SweepConfig
    y: SweepConfig

    @model_validator(mode="after")
    def _two_params(self) -> GridConfig:
        if self.x.param == self.y.param:
            raise ValueError(f"grid x and y both sweep {self.x.param!r}; pick two parameters")
        return self


class SpaceParam(_Strict):
    """One Optuna search dimension."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> SpaceParam:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical dimension needs a non-empty 'choices' list")
        else:
            if self.low is None or self.high is None:
                raise ValueError(f"{self.type} dimension needs 'low' and 'high'")
            if self.low >= self.high:
                raise ValueError(f"low ({self.low}) must be < high ({self.high})")
            if self.log and self.low <= 0:
                raise ValueError(f"log scale needs low > 0, got {self.low}")
        return self


def describe_space(space: dict[str, SpaceParam]) -> dict[str, Any]:
    """The space as plain data (model.arch first, then params order): what names an
    Optuna study (core.layout.OptunaLayout.key) and what the study records."""
    keys = sorted(space, key=lambda k: k != "model.arch")
    return {k: space[k].model_dump(exclude_none=True) for k in keys}


class OptunaConfig(_Strict):
    enabled: bool = True
    n_trials: int = Field(20, ge=1)
    n_workers: int = Field(2, ge=1, le=64)
    sampler: Literal[SAMPLERS] = "tpe"  # type: ignore[valid-type]
    pruner: Literal[PRUNERS] = "median"  # type: ignore[valid-type]
    # Empty: SQLite under results/optuna/. Otherwise any Optuna storage URL;
    # put credentials in environment variables (${PGPASSWORD}), never here.
    storage: str = ""
    seed: int = Field(0, ge=0)
    epochs: int = Field(0, ge=0)  # 0 = train.epochs
    cv_folds: int = Field(0, ge=0, le=20)
    warm_start: bool = True
    # Enqueue the k best sweep/grid/config configurations as the first trials, retrained
    # at the trials' epochs (tuning.promotion); 0 = none.
    promote: int = Field(0, ge=0, le=100)
    # Minutes each worker may spend: it starts no trial it would not finish within them,
    # expecting the mean length of the trials it ran (a trial still running at the end
    # finishes and counts). 0 = no limit; n_trials still caps the study.
    minutes: float = Field(0, ge=0)
    space: dict[str, SpaceParam] = Field(default_factory=dict)

    @field_validator("cv_folds")
    @classmethod
    def _folds(cls, v: int) -> int:
        if v == 1:
            raise ValueError("cv_folds must be 0 (off) or >= 2")
        return v


class FinalConfig(_Strict):
    enabled: bool = True
    seeds: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: [0, 1, 2], min_length=1)
    epochs: int = Field(0, ge=0)  # 0 = the tuned config's epochs
    # Train on train + validation (more data for the shipped model); then the last
    # epoch is kept and validation accuracy is not reported (it is no holdout).
    train_on_val: bool = False
    # A control: the baseline ([model] and [train] as set, no overrides) trained with the
    # same seeds, epochs and data as the final seeds, and tested the same way. The report
    # gives tuned - baseline as a paired difference with its 95 % CI: what tuning bought.
    control: bool = True


class ReportConfig(_Strict):
    title: str = "Hyperparameter study"
    top_k: int = Field(5, ge=1, le=100)
    # Published results the report compares against: label -> accuracy (0..1).
    baselines: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(default_factory=dict)


class TrackingConfig(_Strict):
    # Log every finished run (and the final seeds) to MLflow after training, from one
    # job (needs `pip install mlflow-skinny`; training itself never imports it).
    mlflow: bool = False
    # Tracking URI; "" = sqlite:///<results_dir>/mlflow/mlflow.db. Any MLflow URI works
    # (http://server:5000, databricks, ...).
    mlflow_uri: str = ""
    # MLflow experiment name; "" = study.name.
    mlflow_experiment: str = ""
