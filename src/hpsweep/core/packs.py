"""Which runs of a study may train together in one pack, and the packs it forms.

A pack (training.pack_trainer) trains runs that differ only in member-level keys as one
batched model. This module holds the rule (which keys may differ) and groups the plan's
runs into packs of at most ``study.pack_size``; it imports no torch, so the Snakefile
can read it when it parses.

Packs are cut from the whole plan (every run, in run-id order within each group of
packable runs), never from what is left to train, so the same params give the same
packs and pack numbers. A pack's rule then names only its members without a
metrics.json (Snakemake deletes a job's outputs before it runs it): a pack whose job was
killed after some members finished trains the rest, and a pack with one run left leaves
it to train_run. Under a cluster executor (SLURM) each job parses the Snakefile again on
its node and finds the same members as the submitting parse: nothing else writes their
outputs, and Snakemake removes a failed job's outputs before it submits the retry.

The final seeds (one configuration, K seeds) are one pack too, and so are the baseline
control's, where study.pack_size holds every seed (seed_pack): rules final_pack and
control_pack, beside final_run and control_run.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpsweep.core.ids import canonical_json

if TYPE_CHECKING:
    from hpsweep.core.schema import Params

# What members may differ in: the seed, these model keys and every train key but
# SHARED_TRAIN_KEYS. Shape keys cannot differ (the members' weights are stacked into one
# tensor), nor the batch size (a step trains every member on one batch each), nor bf16
# (one autocast region covers the pack).
MEMBER_MODEL_KEYS = ("dropout",)
SHARED_TRAIN_KEYS = ("batch_size", "bf16")
PACKABLE_ARCHS = ("mlp",)
# Snakemake rules train_pack_1 ... train_pack_<MAX_PACKS> at most (dvc.yaml's sweeps
# stage names them all in --allowed-rules); a plan cut into more packs trains the runs of
# the further packs alone.
MAX_PACKS = 32


def pack_key(run_cfg: dict[str, Any]) -> str:
    """Runs whose keys are equal can train in one pack: the config without its
    member-level keys."""
    cfg = copy.deepcopy(run_cfg)
    for key in MEMBER_MODEL_KEYS:
        cfg["model"].pop(key, None)
    cfg["train"] = {k: v for k, v in cfg["train"].items() if k in SHARED_TRAIN_KEYS}
    return canonical_json(cfg)


def packable(run_cfg: dict[str, Any]) -> bool:
    return run_cfg["model"].get("arch") in PACKABLE_ARCHS


@dataclass(frozen=True)
class Pack:
    """Pack ``number`` of the plan: its members' run ids, in run-id order."""

    number: int  # 1..MAX_PACKS; its Snakemake rule is train_pack_<number>
    run_ids: tuple[str, ...]

    @property
    def rule(self) -> str:
        return pack_rule(self.number)


def pack_rule(number: int) -> str:
    return f"train_pack_{number}"


def cut(run_ids: list[str], size: int) -> list[list[str]]:
    """``run_ids`` in ceil(n / size) packs as even as can be (10 runs at size 8: 5 + 5,
    so two jobs side by side finish together)."""
    n = math.ceil(len(run_ids) / size)
    base, extra = divmod(len(run_ids), n) if n else (0, 0)
    out, start = [], 0
    for i in range(n):
        end = start + base + (1 if i < extra else 0)
        out.append(run_ids[start:end])
        start = end
    return out


def plan_packs(runs: dict[str, dict[str, Any]], size: int) -> list[Pack]:
    """The packs of a plan's runs ({run_id: run config}): packable runs grouped by
    pack_key, each group cut into packs of at most ``size``; packs of one run are left out
    (the run trains alone), and so are packs beyond MAX_PACKS."""
    if size < 2:
        return []
    groups: dict[str, list[str]] = {}
    for run_id in sorted(runs):
        if packable(runs[run_id]):
            groups.setdefault(pack_key(runs[run_id]), []).append(run_id)
    chunks = [c for key in sorted(groups) for c in cut(groups[key], size) if len(c) > 1]
    return [Pack(i, tuple(c)) for i, c in enumerate(chunks[:MAX_PACKS], start=1)]


def pending_packs(packs: list[Pack], complete: Callable[[str], bool]) -> list[Pack]:
    """The packs with two or more members not yet ``complete``, cut down to those; a pack
    with one left trains it alone (Snakemake's train_run), one with none is done."""
    out = []
    for p in packs:
        left = tuple(r for r in p.run_ids if not complete(r))
        if len(left) > 1:
            out.append(Pack(p.number, left))
    return out


def arch_is_packable(params: Params) -> bool:
    """Every configuration the study may retrain can be packed: the params' model is
    packable and no sweep, grid, named config or Optuna space changes ``model.arch``."""
    changed = {s.param for s in params.sweeps.values()}
    changed |= {a.param for g in params.grids.values() for a in (g.x, g.y)}
    changed |= {k for c in params.configs.values() for k in c}
    changed |= set(params.optuna.space) if params.optuna.enabled else set()
    return params.model.arch in PACKABLE_ARCHS and "model.arch" not in changed


def seed_pack(params: Params, complete: Callable[[int], bool]) -> tuple[int, ...]:
    """The final (or control) seeds to train as one pack: those not yet ``complete``, when
    there are two or more of them, study.pack_size holds all final.seeds and the
    architecture is packable; () otherwise (each seed trains alone). Decided from the
    params and the seeds' own files only, so a job's own parse agrees."""
    seeds = params.final.seeds
    if not 2 <= len(seeds) <= params.study.pack_size or not arch_is_packable(params):
        return ()
    left = tuple(s for s in seeds if not complete(s))
    return left if len(left) > 1 else ()


# Snakemake rules that may train a rule's jobs in packs: every one a study may define,
# whatever its pack_size, so dvc.yaml, which allows them with the rule, does not change
# with pack_size.
PACK_RULES_OF = {"train_run": [pack_rule(n) for n in range(1, MAX_PACKS + 1)],
                 "final_run": ["final_pack"], "control_run": ["control_pack"]}
