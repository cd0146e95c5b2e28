"""Promotion: the best sweep configurations become the Optuna study's first trials.

The sweeps, grids and configs rank values cheaply, at the baseline's train.epochs;
Optuna's trials train at optuna.epochs, the fidelity the final model gets. Warm start
only carries over runs a trial would reproduce exactly, so when the two fidelities
differ it carries nothing. ``optuna.promote = k`` closes that gap: setup enqueues the
k configurations with the highest mean validation accuracy over their seeds, and the
workers train them first, at the trials' fidelity. The shortlist is thus compared at
the budget that matters, the trials count towards n_trials like any other, and the
sampler starts from what the sweeps found instead of from scratch.

A configuration can be promoted when a trial can express it: its values lie in the
search space and every other key equals the baseline's (train.epochs aside, which the
trial sets). Only runs at the baseline's train.epochs are ranked, so configurations are
compared at one fidelity (an epochs sweep, or a named config with its own epochs, is
not: at the trials' epochs it is a warm-start trial instead). One already in the
study (as a warm-start trial, or promoted by an earlier setup, user attr
``promoted_key``) is not enqueued again.

With study.pack_size > 1, promoted configurations that can share a pack (core.packs)
are queued next to each other with one ``pack_group`` user attr, and a worker trains them
as one pack (tuning.trial_pack).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import optuna

from hpsweep.core.ids import run_signature
from hpsweep.core.packs import pack_key, packable
from hpsweep.core.study import Study
from hpsweep.tuning.counting import trial_counts
from hpsweep.tuning.space import SearchSpace
from hpsweep.tuning.warmstart import done_runs_in_space

log = logging.getLogger(__name__)


def _without_epochs(cfg: dict[str, Any]) -> dict[str, Any]:
    return {**cfg, "train": {k: v for k, v in cfg["train"].items() if k != "epochs"}}


def ranked(study: Study, space: SearchSpace) -> list[dict[str, Any]]:
    """The completed sweep/grid/config configurations a trial can express, best first:
    {"key", "values", "config" (a trial's, at the sweeps' epochs), "val_acc" (mean over
    seeds), "seeds", "labels"}."""
    epochs = study.params.train.epochs
    found: dict[str, dict[str, Any]] = {}
    for r in done_runs_in_space(study, space):
        if r.config["train"]["epochs"] != epochs:
            continue  # another fidelity
        if _without_epochs(r.trial_config) != _without_epochs(r.config):
            continue  # another key differs (a named config's augmentation, say)
        key = run_signature(r.values)[:16]
        entry = found.setdefault(key, {"key": key, "values": r.values, "accs": {},
                                       "labels": [], "config": r.trial_config})
        entry["accs"][r.run_id] = r.acc
        entry["labels"] += [lb for lb in r.labels if lb not in entry["labels"]]
    out = [{"key": e["key"], "values": e["values"], "labels": e["labels"],
            "config": e["config"], "seeds": len(e["accs"]),
            "val_acc": sum(e["accs"].values()) / len(e["accs"])}
           for e in found.values()]
    return sorted(out, key=lambda e: (-e["val_acc"], e["key"]))


def promote(ostudy: optuna.Study, study: Study, space: SearchSpace, k: int) -> dict[str, int]:
    """Enqueue the ``k`` best configurations not yet in the study, no more than the trials
    it still has room for (n_trials minus the finished and queued ones: a finished study
    gets none, which would wait forever); returns counts."""
    c = trial_counts(ostudy)
    room = study.params.optuna.n_trials - c["finished"] - c["waiting"] - c["running"]
    if k <= 0 or room <= 0:
        return {"promoted": 0, "present": 0, "candidates": 0}
    best = ranked(study, space)
    present_keys = {t.user_attrs.get("promoted_key") for t in ostudy.get_trials(deepcopy=False)}
    present_params = [t.params for t in ostudy.get_trials(deepcopy=False)]
    promoted = present = 0
    chosen = []
    for entry in best[:k]:
        params, _ = space.encode(entry["values"])
        if entry["key"] in present_keys or params in present_params:
            present += 1
            continue
        if len(chosen) == room:
            break
        present_params.append(params)
        chosen.append((entry, params))
    packing = study.params.study.pack_size > 1
    for entry, params in _pack_mates_together(chosen) if packing else chosen:
        group = _pack_group(entry["config"]) if packing else None
        ostudy.enqueue_trial(params, user_attrs={
            "promoted": True, "promoted_key": entry["key"], "source": entry["labels"],
            "sweep_val_acc": entry["val_acc"], "sweep_seeds": entry["seeds"],
            **({"pack_group": group} if group else {})})
        promoted += 1
        log.info("promoted %s (val acc %.4f at the sweeps' epochs): %s", entry["labels"][0],
                 entry["val_acc"], json.dumps(entry["values"]))
    log.info("promotion: %d of the %d best configurations enqueued, %d already in the study",
             promoted, min(k, len(best)), present)
    return {"promoted": promoted, "present": present, "candidates": len(best)}


def _pack_group(config: dict[str, Any]) -> str | None:
    """Which promoted trials a worker may train as one pack (tuning.trial_pack): those
    of one group; None for a configuration that cannot be packed."""
    return hashlib.sha256(pack_key(config).encode()).hexdigest()[:16] \
        if packable(config) else None


def _pack_mates_together(chosen: list[tuple[dict[str, Any], Any]]) -> list:
    """The promoted configurations that can share a pack next to each other, each group
    where its best stands: a worker packs the trials waiting in line from the first."""
    groups: dict[str, list] = {}
    for i, c in enumerate(chosen):
        groups.setdefault(_pack_group(c[0]["config"]) or f"alone {i}", []).append(c)
    return [c for group in groups.values() for c in group]
