"""The promoted trials trained as one pack (study.pack_size > 1).

Promotion queues the sweeps' best configurations as the study's first trials; with
study.pack_size > 1 those that can share a pack (core.packs: one model shape, batch size
and bf16) wait next to each other with one ``pack_group`` user attr. A worker whose next
trial in line is such a one claims the trials of its group waiting behind it (up to
study.pack_size) and trains them together (training.pack_trainer). Each trial keeps its
own run directory, reports to the pruner after every epoch (a pruned member stops
alone) and is told its own result, as it would be trained alone. On a GPU, where one
small MLP uses a few percent of the device, that is several trials for one's device
time.

Packing keeps what Optuna needs from a trial. Only single-objective studies on the fixed
split (optuna.cv_folds = 0) pack. This process beats every claimed trial's heartbeat,
as Optuna's optimize does for its one trial, so a killed pack's trials are failed as
stale and retried: each resumes its last.pt, and the retries, which keep their user
attrs, are packed again when they are failed together (by a rerun after the kill; a
worker polling meanwhile may find one stale a few milliseconds before the other, and
then they train apart). A trial that another worker claimed first is not in the pack;
one claimed here that does not fit (a sampled trial, asked after the queue ran dry)
trains alone after it.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from hpsweep.core.packs import pack_key, packable
from hpsweep.core.plan import RunSpec
from hpsweep.tuning.counting import failed_elsewhere
from hpsweep.tuning.objective import Objective, _Invalid, _Surplus
from hpsweep.tuning.storage import has_heartbeat

log = logging.getLogger(__name__)


def _groups_in_line(ostudy: optuna.Study) -> list[str | None]:
    """The pack group of each waiting trial, in the order ``ask`` gives them."""
    return [t.user_attrs.get("pack_group")
            for t in ostudy.get_trials(deepcopy=False, states=(TrialState.WAITING,))]


def packed_in_line(ostudy: optuna.Study, size: int) -> int:
    """How many waiting trials, from the first in line, are promoted trials of one pack
    group, at most ``size``: under 2, nothing to pack."""
    line = _groups_in_line(ostudy)[:size]
    n = 0
    while n < len(line) and line[n] is not None and line[n] == line[0]:
        n += 1
    return n


@contextmanager
def heartbeats(storage: BaseStorage, trials: list[optuna.Trial]) -> Iterator[None]:
    """Record a heartbeat for each of ``trials`` (a list that changes meanwhile) every
    heartbeat interval until the block ends, as Optuna's optimize does for its one."""
    if not has_heartbeat(storage):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            for trial in list(trials):
                storage.record_heartbeat(trial._trial_id)  # noqa: SLF001 - as optimize
            if stop.wait(storage.get_heartbeat_interval()):
                return

    thread = threading.Thread(target=beat, name="trial-pack-heartbeats", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _tell(ostudy: optuna.Study, trial: optuna.Trial, outcome: Callable[[], float]) -> bool:
    """Tell ``trial`` what ``outcome`` gives (a value; optuna.TrialPruned: pruned; an error:
    failed, and raised, as optimize does); whether it finished (COMPLETE or PRUNED)."""
    try:
        value = outcome()
    except optuna.TrialPruned:
        return _told(ostudy, trial, state=TrialState.PRUNED)
    except (Exception, KeyboardInterrupt):
        ostudy.tell(trial, state=TrialState.FAIL)
        raise
    return _told(ostudy, trial, value=value)


def _told(ostudy: optuna.Study, trial: optuna.Trial, *, value: float | None = None,
          state: TrialState = TrialState.COMPLETE) -> bool:
    try:
        if value is not None:
            trial.set_user_attr("val_acc", value)
            ostudy.tell(trial, value)
        else:
            ostudy.tell(trial, state=state)
        return True
    except (ValueError, RuntimeError):
        # As in the worker's loop: a trial failed as stale elsewhere while it trained
        # here (heartbeats missed) was re-queued; its retry counts, not this one.
        if not failed_elsewhere(ostudy, trial.number):
            raise
        log.warning("trial %d was failed as stale while it trained here and re-queued; "
                    "this result is dropped", trial.number)
        return False


_Started = tuple[optuna.Trial, RunSpec, Path]


def _claim(ostudy: optuna.Study, objective: Objective, size: int,
           untold: list[optuna.Trial]) -> tuple[list[_Started], list[_Started]]:
    """Ask for the trials of the group first in line, one at a time while one is still
    waiting, each added to ``untold``: (the started trials that pack with the first, the
    others)."""
    pack: list[_Started] = []
    alone: list[_Started] = []
    group = key = None
    while len(pack) + len(alone) < size:
        line = _groups_in_line(ostudy)
        if not line or line[0] is None or line[0] != (group or line[0]):
            break  # the group's trials went to another worker, or none is left
        with warnings.catch_warnings():
            # "heartbeat ... supposed to be used with Study.optimize": heartbeats() beats
            warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
            trial = ostudy.ask()
        untold.append(trial)
        try:
            spec, run_dir = objective.start(trial)
        except (_Surplus, _Invalid):  # failed, as optimize's catch does
            untold.remove(trial)
            ostudy.tell(trial, state=TrialState.FAIL)
            continue
        g = trial.user_attrs.get("pack_group")
        if g is not None and packable(spec.config) and (group is None or (
                g == group and pack_key(spec.config) == key)):
            group, key = g, pack_key(spec.config)
            pack.append((trial, spec, run_dir))
        else:
            alone.append((trial, spec, run_dir))
    return pack, alone


def train_promoted_pack(ostudy: optuna.Study, storage: BaseStorage, objective: Objective,
                        size: int) -> list[int]:
    """Claim up to ``size`` promoted trials of the group first in line and train them as
    one pack (one claimed alone trains as a trial does); the numbers of the trials that
    finished (COMPLETE or PRUNED)."""
    from hpsweep.training.pack_trainer import PackMember, train_pack

    untold: list[optuna.Trial] = []  # claimed, not told yet: their heartbeats beat
    finished: list[int] = []

    def tell(trial: optuna.Trial, outcome: Callable[[], float]) -> None:
        try:
            if _tell(ostudy, trial, outcome):
                finished.append(trial.number)
        finally:  # told (or failed by _tell): its heartbeat stops only now, after training
            untold.remove(trial)

    with heartbeats(storage, untold):
        try:
            pack, alone = _claim(ostudy, objective, size, untold)
            if len(pack) == 1:
                pack, alone = [], pack + alone
            if pack:
                log.info("worker %d: promoted trials %s trained as one pack",
                         objective.worker, ", ".join(str(t.number) for t, _, _ in pack))
                results = train_pack(
                    [PackMember(spec.config, spec.seed, run_dir, objective.reporter(
                        trial, 0, spec.config["train"]["epochs"]))
                     for trial, spec, run_dir in pack],
                    objective.data, threads=objective.threads, progress=objective.progress)
                for (trial, _, _), metrics in zip(pack, results, strict=True):
                    tell(trial, lambda t=trial, m=metrics: Objective.record(t, m))
            for trial, spec, run_dir in alone:
                tell(trial, lambda t=trial, s=spec, d=run_dir: objective.train_folds(t, s, d)[0])
        except (Exception, KeyboardInterrupt):
            for trial in list(untold):
                ostudy.tell(trial, state=TrialState.FAIL)
            raise
    return finished
