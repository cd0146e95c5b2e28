"""What a study will cost before it runs: `hpsweep plan --estimate`.

Per stage: the runs, their fidelity (epochs, training samples) and the estimated
minutes. Seconds per sample come from a short calibration per distinct model shape
(model config, batch size, augmentation, precision, device, threads): two epochs of
the real trainer on synthetic data of the study's input shape, the second one timed,
cached under <results>/calibration/ so a second estimate is instant. Runs that
already completed count with the time they took.

Every Snakemake job also pays a start-up (Python, torch and pandas imports: about 2 s
on a small CPU, measured once and cached too), which dominates small studies.
Optuna trials are priced as the mean of a few configurations drawn from the search
space (seeded, through the trials' own sampling path), pruning included: the
promoted trials and those before the pruner's start-up run their full length, later
ones PRUNED_LENGTH of it (see there). The final retrain is priced with Optuna's best
configuration once it exists, before that as the costliest of the draws and the
space's costliest corner (every discrete dimension at its costliest value); the control
(final.control, its own stage) as the baseline at the same epochs. With study.pack_size
> 1, a pack (core.packs) is one job, one start-up, whose members are priced at a
calibration of a pack of that many (calibrate's ``members``). Not counted: data
download and set-up.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpsweep.core.atomic import write_json
from hpsweep.core.layout import STAGES, OptunaLayout
from hpsweep.core.packs import pending_packs, seed_pack
from hpsweep.core.plan import make_run
from hpsweep.core.study import Study
from hpsweep.ops.threads import TRAIN_THREADS, job_slots, torch_threads
from hpsweep.training.runstore import read_metrics

# Expected length of an Optuna trial after the pruner's start-up, as a fraction of a full
# trial. median: measured in the default study (2026-12-06, when the pruner started after 5
# completed trials, the 3 promoted among them): of its 7 sampled trials 6 were pruned, after
# 6-10 of 20 epochs, one ran to the end -> (6 x 0.4 + 1) / 7 = 0.49. Since it waits for 5
# beyond the promoted ones it prunes less: an upper bound on what pruning saves.
# successive_halving / hyperband (from the sweeps' epochs to the trials', reduction 3 or
# 4) keep about a quarter of the trials past each rung: a prior, not measured here.
# none: no pruning.
PRUNED_LENGTH = {"median": 0.5, "wilcoxon": 0.5, "successive_halving": 0.35,
                 "hyperband": 0.35, "none": 1.0}
CALIBRATION_STEPS = 40  # timed training steps per shape (after a warm-up epoch)
CALIBRATION_VAL = 1024  # validation samples timed per shape
SPACE_DRAWS = 5  # configurations drawn from the Optuna space to price a typical trial


@dataclass(frozen=True)
class Cost:
    """Seconds per training sample and per evaluated sample, for one shape."""

    train_s: float
    eval_s: float


@dataclass
class StageEstimate:
    stage: str
    runs: int
    epochs: str
    samples: int  # training samples per epoch (of the largest run)
    job_min: float  # training-job minutes, summed
    jobs: int  # how many of its jobs can run at once (runs left, workers, seeds)
    done: int = 0  # runs already complete (counted with their measured time)

    def wall_min(self, slots: int) -> float:
        """Minutes with ``slots`` training jobs at once. They run in rounds: 3 seeds on 2
        slots take two seeds' time, not one and a half."""
        jobs = max(1, self.jobs)
        return self.job_min * math.ceil(jobs / max(1, slots)) / jobs


def _shape(run_cfg: dict[str, Any], input_shape: tuple[int, ...], num_classes: int,
           device: str, threads: int) -> dict[str, Any]:
    """What a calibration's cost depends on: the model and its input and output sizes
    (one results folder may hold studies of several datasets), the batch, the device."""
    t = run_cfg["train"]
    import torch

    return {"model": run_cfg["model"], "input_shape": list(input_shape),
            "num_classes": num_classes, "batch_size": t["batch_size"],
            "augment": t["augment"], "bf16": t["bf16"], "eval_batch_size": t["eval_batch_size"],
            "device": device, "threads": threads, "torch": torch.__version__}


def calibrate(run_cfg: dict[str, Any], input_shape: tuple[int, ...], num_classes: int,
              cache_dir: Path, members: int = 1) -> Cost:
    """The shape's Cost on this machine: cached, else measured with the real trainer;
    with ``members`` > 1, a member's in a pack of that many (study.pack_size), trained by
    the pack trainer: seconds per member-sample, which a GPU makes far smaller than alone
    and this CPU about equal (README: `hpsweep bench --pack`)."""
    import torch

    from hpsweep.data.prepared import PreparedData
    from hpsweep.training.device import device_name, resolve_device

    device = resolve_device(run_cfg.get("device", "auto"))
    threads = torch_threads(TRAIN_THREADS)
    shape = _shape(run_cfg, input_shape, num_classes, device_name(device), threads)
    if members > 1:  # alone, the key (and the cache files) stay as they were
        shape["members"] = members
    key = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir / f"{key}.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        return Cost(cached["train_s_per_sample"], cached["eval_s_per_sample"])
    bs = run_cfg["train"]["batch_size"]
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.randint(0, 256, (n, *input_shape), generator=g, dtype=torch.uint8),
                torch.randint(0, num_classes, (n,), generator=g))

    tensors = {}
    for name, n in (("train", CALIBRATION_STEPS * bs), ("val", CALIBRATION_VAL), ("test", 2)):
        tensors[f"x_{name}"], tensors[f"y_{name}"] = split(n)
    data = PreparedData.from_tensors(tensors, [str(c) for c in range(num_classes)],
                                     "calibration")
    cfg = {**run_cfg, "train": {**run_cfg["train"], "epochs": 2, "early_stopping_patience": 0}}
    before = torch.get_num_threads()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            metrics = _train_timed(cfg, data, Path(tmp), threads, members)
    finally:
        torch.set_num_threads(before)
    # The first epoch warms up caches and kernels. A pack member's train_s is its equal
    # share of the pack's training seconds.
    last = metrics["history"][-1]
    cost = Cost(last["train_s"] / len(tensors["y_train"]),
                max(0.0, last["epoch_s"] - last["train_s"]) / CALIBRATION_VAL)
    write_json(path, {"shape": shape, "train_s_per_sample": cost.train_s,
                      "eval_s_per_sample": cost.eval_s})
    return cost


def _train_timed(cfg: dict[str, Any], data, out: Path, threads: int, members: int
                 ) -> dict[str, Any]:
    """The metrics of ``cfg`` trained alone, or of the first member of a pack of
    ``members`` copies of it (seeds 0, 1, ...)."""
    if members == 1:
        from hpsweep.training.engine import train_run

        return train_run(cfg, data, out, seed=0, threads=threads, progress=False)
    from hpsweep.training.pack_trainer import PackMember, train_pack

    return train_pack([PackMember(cfg, i, out / str(i)) for i in range(members)], data,
                      threads=threads, progress=False)[0]


# What a job imports before its work: a training job (torch) and a light one (an
# extract job reads TensorBoard events: about 0.3 s against 2 s on a small CPU).
STARTUP_IMPORTS = {"training": "import hpsweep.training.engine, pandas",
                   "light": "import hpsweep.analysis.extract"}


def job_startup_s(cache_dir: Path, kind: str = "training") -> float:
    """Seconds a Snakemake job spends before its work: the imports its script makes
    (the median of three cold starts, cached)."""
    path = cache_dir / f"job_startup_{kind}.json"
    if path.is_file():
        return json.loads(path.read_text())["seconds"]
    code = STARTUP_IMPORTS[kind]
    took = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        took.append(time.perf_counter() - t0)
    seconds = sorted(took)[1]  # the median of three
    write_json(path, {"seconds": seconds, "measured": code})
    return seconds


def _trial_config(tuner, values: dict[str, Any]) -> dict[str, Any] | None:
    """The run config a trial with the space ``values`` trains, or None for a combination
    no trial could train (a ParamsError: the workers skip those too)."""
    from hpsweep.core.schema import ParamsError
    from hpsweep.tuning.space import trial_overrides

    params = tuner.params
    try:
        return make_run(params, trial_overrides(params, values), tuner.trial_seed).config
    except ParamsError:
        return None


def _space_draws(study: Study) -> list[dict[str, Any]]:
    """Run configs of SPACE_DRAWS seeded random trials of the Optuna space (invalid
    combinations skipped, as the workers skip them)."""
    import optuna

    from hpsweep.tuning.tuner import Tuner

    tuner = Tuner(study)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    draws = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    configs: list[dict[str, Any]] = []
    for _ in range(SPACE_DRAWS * 4):
        if len(configs) == SPACE_DRAWS:
            break
        cfg = _trial_config(tuner, tuner.space.suggest(draws.ask()))
        if cfg is not None:
            configs.append(cfg)
    return configs


def _run_seconds(cost: Cost, epochs: int, n_train: int, n_val: int, n_test: int = 0) -> float:
    return epochs * (n_train * cost.train_s + n_val * cost.eval_s) + n_test * cost.eval_s


@dataclass
class _Inputs:
    """What every stage's price is computed from."""

    study: Study
    counts: dict[str, int]  # samples per split (the manifest's)
    shape: tuple[int, ...]
    num_classes: int
    cache: Path  # <results>/calibration/
    startup: float  # seconds a training job spends on its imports
    light: float  # seconds an extract job spends on its imports
    base: dict[str, Any]  # the baseline's run config
    draws: list[dict[str, Any]]  # run configs drawn from the Optuna space
    # True: price everything as if nothing ran yet (the budget planner: the same params
    # give the same plan whatever is already done).
    fresh: bool = False
    # The shape's Cost; the planner's tests pass a fake one (a slower machine).
    cost_of: Callable[..., Cost] = calibrate

    def seconds(self, cfg: dict[str, Any], epochs: int, n_train: int, n_val: int,
                n_test: int = 0, members: int = 1) -> float:
        """Seconds of one run of ``cfg``; with ``members`` > 1, of one member of a pack of
        that many (the pack's job takes the sum over its members)."""
        more = {"members": members} if members > 1 else {}
        cost = self.cost_of(cfg, self.shape, self.num_classes, self.cache, **more)
        return _run_seconds(cost, epochs, n_train, n_val, n_test)


def dataset_sizes(study: Study) -> tuple[dict[str, int], tuple[int, ...], int]:
    """(samples per split, input shape, classes): the prepared data's manifest, or where
    the data is not prepared yet, for the IDX datasets, their fixed sizes."""
    from hpsweep.data.sources import get_spec

    path = study.paths.manifest
    if path.is_file():
        m = json.loads(path.read_text())
        return m["counts"], tuple(m["input_shape"]), m["num_classes"]
    d = study.params.data
    spec = get_spec(d.dataset)
    if spec.kind != "idx":
        raise FileNotFoundError(f"{path} is missing: pricing a {d.dataset} study needs the "
                                "prepared data's sizes; run `hpsweep data fetch` first")
    shapes = {f.split: f.shape for f in spec.files if f.kind == "images"}
    n = shapes["train"][0]
    val = round(n * d.val_fraction)
    train = min(d.train_subset, n - val) if d.train_subset else n - val
    return ({"train": train, "val": val, "test": shapes["test"][0]},
            (1, *shapes["train"][1:]), len(spec.classes))


def study_inputs(study: Study, *, fresh: bool = False,
                 cost_of: Callable[..., Cost] = calibrate) -> _Inputs:
    params = study.params
    counts, shape, classes = dataset_sizes(study)
    cache = study.paths.calibration
    return _Inputs(study, counts, shape, classes, cache, job_startup_s(cache),
                   job_startup_s(cache, "light"),
                   make_run(params, {}, params.study.seeds[0]).config,
                   _space_draws(study) if params.optuna.enabled and params.optuna.space
                   else [], fresh, cost_of)


def estimate(study: Study, x: _Inputs | None = None) -> list[StageEstimate]:
    """Stage by stage, what the study will train and for how long."""
    x = x or study_inputs(study)
    out = [sweeps_stage(x)]
    if study.params.optuna.enabled:
        out.append(optuna_stage(x))
    return out + closing_stages(x)


def closing_stages(x: _Inputs) -> list[StageEstimate]:
    """The final seeds, their control and the report: what the budget planner prices
    first, as what is left after the sweeps and Optuna."""
    out = []
    if x.study.params.final.enabled:
        runs = final_runs(x)  # read once for both stages
        out.append(final_stage(x, runs))
        if x.study.params.final.control:
            out.append(control_stage(x, runs))
    return out + [report_stage(x)]


def report_stage(x: _Inputs) -> StageEstimate:
    """plots, report and the MLflow export: start-ups and seconds of work."""
    return StageEstimate(STAGES["report"], 0, "-", 0, 3 * x.startup / 60, 1)


def sweeps_stage(x: _Inputs) -> StageEstimate:
    """Every run of the plan: alone, or as a member of its pack (study.pack_size), whose
    job trains its members together and pays one start-up."""
    study, counts = x.study, x.counts
    runs = study.plan.runs
    job_s, left, epochs = 0.0, set(), set()
    for run_id, spec in runs.items():
        epochs.add(spec.config["train"]["epochs"])
        m = None if x.fresh else read_metrics(study.paths.run_dir(run_id))
        if m is None:
            left.add(run_id)
        else:
            job_s += m.get("total_time_s") or 0.0
    packs = pending_packs(study.packs, lambda r: r not in left)  # what train_pack_<n> trains
    size = {r: len(p.run_ids) for p in packs for r in p.run_ids}
    for run_id in left:
        cfg = runs[run_id].config
        job_s += x.seconds(cfg, cfg["train"]["epochs"], counts["train"], counts["val"],
                           members=size.get(run_id, 1))
    jobs = len(packs) + len(left) - len(size)
    # a train job per pack or run left, an extract job per run, summarize, summary_tables
    job_s += (jobs + 2) * x.startup + len(left) * x.light
    return StageEstimate(STAGES["sweeps"], len(runs), _span(epochs),
                         counts["train"], job_s / 60, jobs, len(runs) - len(left))


def trial_seconds(x: _Inputs) -> float:
    """Seconds of one full-length trial: the mean over the configurations drawn from the
    space, every fold trained."""
    o = x.study.params.optuna
    n_tr, n_va = _trial_split(x)
    per_trial = [max(1, o.cv_folds) * x.seconds(c, c["train"]["epochs"], n_tr, n_va)
                 for c in (x.draws or [x.base])]
    return sum(per_trial) / len(per_trial)


def _trial_split(x: _Inputs) -> tuple[int, int]:
    o, counts = x.study.params.optuna, x.counts
    if not o.cv_folds:
        return counts["train"], counts["val"]
    pool = counts["train"] + counts["val"]
    return pool * (o.cv_folds - 1) // o.cv_folds, pool // o.cv_folds


def trial_lengths(optuna_cfg, n_trials: int, finished: int = 0) -> float:
    """Full-trial equivalents the trials ``finished`` .. ``n_trials`` - 1 cost: the
    promoted ones and the median pruner's start-up after them count whole, later ones
    PRUNED_LENGTH (warm-start trials, which count towards the start-up, are ignored:
    the estimate errs long)."""
    from hpsweep.tuning.algorithms import MEDIAN_STARTUP

    # Promoted trials are priced as trained alone, also where study.pack_size would pack
    # some of them (tuning.trial_pack): which of them share a shape is known only after
    # the sweeps, and on a CPU a pack's member trains at about the rate of a run alone.

    whole = (optuna_cfg.promote + MEDIAN_STARTUP if optuna_cfg.pruner == "median"
             else max(optuna_cfg.promote, 1))
    later = PRUNED_LENGTH[optuna_cfg.pruner]
    return sum(1.0 if i < whole else later for i in range(finished, n_trials))


def optuna_stage(x: _Inputs) -> StageEstimate:
    o = x.study.params.optuna
    finished = 0 if x.fresh else _finished_trials(x.study)
    jobs_s = (o.n_workers + 2) * x.startup  # setup, the workers, collect
    job_s = trial_lengths(o, o.n_trials, min(finished, o.n_trials)) * trial_seconds(x) + jobs_s
    epochs = {c["train"]["epochs"] for c in (x.draws or [x.base])}
    # workers beyond the trials left find nothing to train (their jobs' start-ups count)
    training = max(1, min(o.n_workers, o.n_trials - finished))
    return StageEstimate(STAGES["optuna"], o.n_trials, _span(epochs), _trial_split(x)[0],
                         job_s / 60, training, min(finished, o.n_trials))


@dataclass(frozen=True)
class _FinalRuns:
    """What the final seeds train: the configurations priced with their epochs, and the
    samples they train on."""

    candidates: list[tuple[dict[str, Any], int]]
    n_train: int

    @property
    def epochs(self) -> set[int]:
        return {e for _, e in self.candidates}


def final_runs(x: _Inputs) -> _FinalRuns:
    """Optuna's best once it exists; before that the draws from the space and its
    costliest corners (any of them may win). Without Optuna, the best sweep, grid or
    config member (final.select) once every run is done; before that any of them."""
    params, counts = x.study.params, x.counts
    f = params.final
    n_train = counts["train"] + (counts["val"] if f.train_on_val else 0)
    best = OptunaLayout(x.study).best_params_path
    if not params.optuna.enabled:
        configs = _sweep_candidates(x)
    elif best.is_file() and not x.fresh:
        configs = [json.loads(best.read_text())["config"]]
    elif x.draws:
        configs = x.draws + _costliest_corners(x, n_train)
    else:
        configs = [x.base]
    return _FinalRuns([(c, _final_epochs(x, c)) for c in configs], n_train)


def _sweep_candidates(x: _Inputs) -> list[dict[str, Any]]:
    """The run configs the final seeds may retrain without Optuna: the chosen member's
    once every planned run is done (and not planning), else every member's (a named
    config of 20 epochs or the widest sweep value may win)."""
    from hpsweep.final.select import best_choice

    study = x.study
    runs = study.plan.runs
    if not x.fresh and all(read_metrics(study.paths.run_dir(r)) for r in runs):
        overrides = best_choice(study)["overrides"]
        return [make_run(study.params, overrides, study.params.study.seeds[0]).config]
    return list({json.dumps(s.config, sort_keys=True): s.config
                 for s in runs.values()}.values())


def _final_epochs(x: _Inputs, cfg: dict[str, Any]) -> int:
    return x.study.params.final.epochs or cfg["train"]["epochs"]


def _seed_seconds(x: _Inputs, cfg: dict[str, Any], n_train: int) -> float:
    """Seconds one final seed of ``cfg`` trains (and tests)."""
    return x.seconds(cfg, _final_epochs(x, cfg), n_train, x.counts["val"], x.counts["test"],
                     members=_seed_pack(x))


def _costliest_corners(x: _Inputs, n_train: int) -> list[dict[str, Any]]:
    """Per model.arch the space may choose, its first draw (one drawn for it where the
    draws have none) with every dimension of the space that can change a run's cost
    (Dim.extremes) moved, one at a time in the space's order, to the value that makes a
    final seed costliest. Five draws need not hold the corner (those of the default
    space, when it still had depth 2-3, held no 1024 x 3 at batch 128), and winners are
    often large: priced at the costliest draw, a default study's final seeds (1024 x 2
    at batch 128) ran 40 % over their price."""
    from hpsweep.tuning.tuner import Tuner

    tuner = Tuner(x.study)
    space = tuner.space  # as _space_draws and the trials have it
    corners, archs = [], set()
    for draw in [*x.draws, *_arch_draws(x, tuner)]:
        arch = draw["model"].get("arch", space.base_arch)
        values = space.values_of(draw)
        if arch in archs or values is None:
            continue
        archs.add(arch)
        cfg = draw
        for dim in space.active(arch):
            if dim.key == "model.arch":
                continue
            priced = []
            for value in dim.extremes():
                c = _trial_config(tuner, {**values, dim.key: value})
                if c is not None:
                    priced.append((_seed_seconds(x, c, n_train), value, c))
            if priced:
                _, values[dim.key], cfg = max(priced, key=lambda p: p[0])
        corners.append(cfg)
    return corners


def _arch_draws(x: _Inputs, tuner) -> list[dict[str, Any]]:
    """A seeded draw for each model.arch the space may choose that x.draws lack (five
    draws of a two-family space miss one family about once in sixteen)."""
    import optuna

    space = tuner.space
    arch = next((d for d in space.dims if d.key == "model.arch"), None)
    if arch is None:
        return []
    drawn = {c["model"].get("arch", space.base_arch) for c in x.draws}
    draws = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for choice in arch.extremes():  # every choice of the categorical
        if choice in drawn:
            continue
        for _ in range(SPACE_DRAWS * 4):  # invalid combinations skipped, as in _space_draws
            draws.enqueue_trial({arch.key: arch.encode(choice)})
            cfg = _trial_config(tuner, space.suggest(draws.ask()))
            if cfg is not None:
                out.append(cfg)
                break
    return out


def _seed_pack(x: _Inputs) -> int:
    """Members of the final seeds' pack (and the control's): all final.seeds where
    study.pack_size holds them (core.packs.seed_pack), else 1 (a job per seed)."""
    return len(seed_pack(x.study.params, lambda s: False)) or 1


def _seed_jobs(x: _Inputs) -> int:
    """Final and control jobs: they run side by side."""
    f = x.study.params.final
    per_stage = 1 if _seed_pack(x) > 1 else len(f.seeds)
    return per_stage * (2 if f.control else 1)


def _seeds_s(x: _Inputs, seed_s: float) -> float:
    """The seconds of a stage's seed jobs, start-ups included, from one seed's training."""
    seeds, k = len(x.study.params.final.seeds), _seed_pack(x)
    return seeds * seed_s + (1 if k > 1 else seeds) * x.startup


def final_stage(x: _Inputs, runs: _FinalRuns | None = None) -> StageEstimate:
    """The final seeds, one job each, then final_summary. Before Optuna has chosen, at
    the price of the costliest of final_runs' candidates (draws and corners): the winner
    is often a large one (the CNN study's, 48-96-192 channels, trained 1.8x as long as
    its 32-64-128 trials), and the final stage comes last, so an underestimate there
    overruns the budget."""
    f = x.study.params.final
    runs = runs or final_runs(x)
    seed_s = max(_seed_seconds(x, c, runs.n_train) for c, _ in runs.candidates)
    return StageEstimate(STAGES["final"], len(f.seeds), _span(runs.epochs), runs.n_train,
                         (_seeds_s(x, seed_s) + x.startup) / 60, _seed_jobs(x))


def control_stage(x: _Inputs, runs: _FinalRuns | None = None) -> StageEstimate:
    """The baseline at the final seeds' epochs, once per seed (final.control). Before
    Optuna has chosen, at the longest of the epochs the final seeds may train, like the
    final stage."""
    f, counts = x.study.params.final, x.counts
    runs = runs or final_runs(x)
    seed_s = x.seconds(x.base, max(runs.epochs), runs.n_train, counts["val"], counts["test"],
                       members=_seed_pack(x))
    return StageEstimate(STAGES["control"], len(f.seeds), _span(runs.epochs), runs.n_train,
                         _seeds_s(x, seed_s) / 60, _seed_jobs(x))


def _span(values: set[int]) -> str:
    return "-" if not values else (f"{min(values)}" if len(values) == 1
                                   else f"{min(values)}-{max(values)}")


def _finished_trials(study: Study) -> int:
    """Trained trials of the current Optuna study that finished (their run dirs)."""
    trials = OptunaLayout(study).key_dir / "trials"
    if not trials.is_dir():
        return 0
    return sum(1 for d in trials.iterdir() if (d / "metrics.json").is_file()
               or (d / "fold_0" / "metrics.json").is_file())


def render(stages: list[StageEstimate], slots: int | None = None) -> str:
    """The estimate as a table, with the wall time for ``slots`` training jobs at once
    (default: job_slots() of this machine)."""
    from tabulate import tabulate

    slots = slots or job_slots()
    rows = [[s.stage, s.runs, s.done, s.epochs, s.samples, f"{s.job_min:.1f}",
             f"{s.wall_min(slots):.1f}"] for s in stages]
    rows.append(["total", "", "", "", "", f"{sum(s.job_min for s in stages):.1f}",
                 f"{sum(s.wall_min(slots) for s in stages):.1f}"])
    table = tabulate(rows, ["stage", "runs", "done", "epochs", "train samples", "job min",
                            f"wall min ({slots} job(s) at once)"],
                     colalign=("left", *["right"] * 6), disable_numparse=True)
    return (table + "\nTraining and job start-ups, calibrated on this machine "
            "(<results>/calibration/); Optuna trials after the pruner's start-up at "
            "PRUNED_LENGTH of their length (hpsweep.ops.estimate).")
