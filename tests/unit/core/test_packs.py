"""Which runs of a plan train together (hpsweep.core.packs)."""

from __future__ import annotations

import tomli
import tomli_w
from studyfixtures import ROOT

from hpsweep.core.packs import (
    MAX_PACKS,
    Pack,
    arch_is_packable,
    cut,
    pack_key,
    pending_packs,
    plan_packs,
    seed_pack,
)
from hpsweep.core.schema import Params, resolve_run
from hpsweep.core.study import Study


def cfg(**overrides) -> dict:
    return resolve_run(Params().run_base(), {"model.arch": "mlp", **overrides})


def ids(n: int) -> list[str]:
    return [f"{i:012x}" for i in range(n)]


def test_packs_are_cut_as_even_as_can_be():
    assert [len(c) for c in cut(ids(10), 8)] == [5, 5]
    assert [len(c) for c in cut(ids(8), 8)] == [8]
    assert [len(c) for c in cut(ids(17), 8)] == [6, 6, 5]
    assert [len(c) for c in cut(ids(3), 2)] == [2, 1]
    assert sum(cut(ids(17), 8), []) == ids(17)  # every run once, in order


def test_only_runs_with_the_same_shape_share_a_pack():
    runs = {"a1": cfg(**{"train.lr": 0.1}), "a2": cfg(**{"train.lr": 0.01}),
            "a3": cfg(**{"model.dropout": 0.4, "train.weight_decay": 0.1}),
            "w1": cfg(**{"model.width": 64}), "w2": cfg(**{"model.width": 64, "train.lr": 0.1}),
            "b1": cfg(**{"train.batch_size": 32}),  # alone in its group: trains alone
            "c1": cfg(**{"model.arch": "cnn"}), "c2": cfg(**{"model.arch": "cnn", "train.lr": 1})}
    packs = plan_packs(runs, 8)
    assert sorted(p.run_ids for p in packs) == [("a1", "a2", "a3"), ("w1", "w2")]
    assert [p.number for p in packs] == [1, 2]
    assert [p.rule for p in packs] == ["train_pack_1", "train_pack_2"]
    for p in packs:
        assert len({pack_key(runs[r]) for r in p.run_ids}) == 1
    assert plan_packs(runs, 1) == []
    # the same runs in another order give the same packs (a SLURM job's own parse agrees)
    assert plan_packs(dict(reversed(list(runs.items()))), 8) == packs


def test_packs_beyond_the_last_rule_train_alone():
    runs = {f"{i:03d}": cfg(**{"train.lr": 10.0 ** -(1 + i % 5), "model.width": 16 + i // 2})
            for i in range(2 * MAX_PACKS + 6)}  # MAX_PACKS + 3 groups of two
    packs = plan_packs(runs, 2)
    assert len(packs) == MAX_PACKS and packs[-1].number == MAX_PACKS


def test_a_pack_trains_only_its_members_not_yet_complete():
    packs = [Pack(1, ("a", "b", "c")), Pack(2, ("d", "e")), Pack(3, ("f", "g"))]
    done = {"a", "d", "f", "g"}
    assert pending_packs(packs, done.__contains__) == [Pack(1, ("b", "c"))]  # e: alone


def test_a_study_packs_its_plan(tmp_path):
    doc = tomli.loads((ROOT / "params.toml").read_text())
    doc["study"].update(pack_size=8, budget=0)
    (tmp_path / "params.toml").write_text(tomli_w.dumps(doc))
    study = Study.load(tmp_path / "params.toml", root=tmp_path)
    packs = study.packs
    assert packs and all(2 <= len(p.run_ids) <= 8 for p in packs)
    members = [r for p in packs for r in p.run_ids]
    assert len(members) == len(set(members)) and set(members) <= set(study.plan.runs)
    assert study.pending_packs() == packs  # nothing trained yet
    done = study.paths.run_dir(packs[0].run_ids[0]) / "metrics.json"
    done.parent.mkdir(parents=True)
    done.write_text("{}")
    left = packs[0].run_ids[1:]
    pending = {p.number: p.run_ids for p in study.pending_packs()}
    assert pending.get(1) == (left if len(left) > 1 else None)
    assert len(pending) == len(packs) - (len(left) < 2)


def params(**sections) -> Params:
    doc = tomli.loads((ROOT / "params.toml").read_text())
    for section, values in sections.items():
        doc[section].update(values)
    return Params.model_validate(doc)


def test_the_final_seeds_are_one_pack_when_the_pack_holds_them_all():
    p = params(study={"pack_size": 4}, final={"seeds": [0, 1, 2]})
    assert seed_pack(p, lambda s: False) == (0, 1, 2)
    assert seed_pack(p, lambda s: s == 1) == (0, 2)  # a finished seed is not retrained
    assert seed_pack(p, lambda s: s != 2) == ()  # one left trains alone
    assert seed_pack(params(study={"pack_size": 2}, final={"seeds": [0, 1, 2]}),
                     lambda s: False) == ()  # does not hold them all
    assert seed_pack(params(study={"pack_size": 4}, final={"seeds": [0]}), lambda s: False) == ()


def test_no_seed_pack_where_the_study_may_choose_a_cnn():
    assert arch_is_packable(params())
    space = {"model.arch": {"type": "categorical", "choices": ["mlp", "cnn"]}}
    assert not arch_is_packable(params(optuna={"space": space}))
    assert not arch_is_packable(params(sweeps={"arch": {"param": "model.arch",
                                                        "values": ["mlp", "cnn"]}}))


def test_hpsweep_plan_lists_the_packs(tmp_path, capsys, monkeypatch):
    from hpsweep.cli import main

    monkeypatch.chdir(tmp_path)  # the CLI's study folder
    doc = tomli.loads((ROOT / "params.toml").read_text())
    doc["study"].update(pack_size=8, budget=0)
    (tmp_path / "params.toml").write_text(tomli_w.dumps(doc))
    study = Study.load(tmp_path / "params.toml", root=tmp_path)
    first = study.packs[0]
    done = study.paths.run_dir(first.run_ids[0]) / "metrics.json"
    done.parent.mkdir(parents=True)
    done.write_text("{}")
    assert main(["plan", "--params", str(tmp_path / "params.toml")]) == 0
    out = capsys.readouterr().out
    assert "Packs of up to 8 runs (study.pack_size), one job each:" in out
    left = len(first.run_ids) - 1
    state = "1 left, trains alone" if left == 1 else f"{left} to train"
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert f"pack 1 {len(first.run_ids)} runs ({state}): {' '.join(first.run_ids)}" in lines
    packed = sum(len(p.run_ids) for p in study.packs)
    assert f"{packed} of {len(study.plan.runs)} runs in {len(study.packs)} packs" in out
