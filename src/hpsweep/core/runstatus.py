"""How a training run ended: the one vocabulary metrics.json, the tables, the status
view, warm start and the final choice share."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """A StrEnum, so a status read back from JSON ("ok") equals its member."""

    RUNNING = "running"  # in the trainer's hands; never written to metrics.json
    OK = "ok"  # all epochs trained
    EARLY_STOPPED = "early_stopped"  # train.early_stopping_patience epochs without a gain
    PRUNED = "pruned"  # stopped by the Optuna pruner
    DIVERGED = "diverged"  # a non-finite or exploding training loss
    INCOMPLETE = "incomplete"  # stopped before its end, resumable from last.pt


# Finished runs whose validation accuracy is a result: they rank, warm-start and choose.
USABLE = frozenset({RunStatus.OK, RunStatus.EARLY_STOPPED})
