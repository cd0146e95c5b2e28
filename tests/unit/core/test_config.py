"""params.toml validation: good files pass, every bad value is named."""

from __future__ import annotations

import subprocess
import sys

import pytest
import tomli
from studyfixtures import ROOT

from hpsweep.core.plan import expand
from hpsweep.core.schema import ParamsError, load_params, parse_params, resolve_run


def problems_of(data: dict) -> list[str]:
    with pytest.raises(ParamsError) as e:
        parse_params(data)
    return e.value.problems


def test_shipped_params_are_valid():
    params = load_params(ROOT / "params.toml")
    assert params.data.dataset == "fashion-mnist"
    assert params.model.arch == "mlp"


@pytest.mark.parametrize("path", sorted((ROOT / "studies").glob("*.toml")),
                         ids=lambda p: p.name)
def test_shipped_studies_are_valid_and_keep_their_own_results(path):
    params = load_params(path)
    default = load_params(ROOT / "params.toml")
    assert params.study.name != default.study.name
    assert params.study.results_dir != default.study.results_dir
    assert params.study.reports_dir != default.study.reports_dir
    # a study sharing the default's data folder must prepare it identically
    if params.study.data_dir == default.study.data_dir:
        assert params.data == default.data
    assert expand(params).members


def test_defaults_are_valid():
    params = parse_params({})
    assert params.train.optimizer == "adamw"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"train": {"lr": -0.1}}, "train.lr = -0.1"),
        ({"train": {"optimizer": "adamx"}}, "train.optimizer = \"adamx\""),
        ({"train": {"learnig_rate": 0.1}}, "train.learnig_rate: unknown key"),
        ({"train": {"batch_size": "big"}}, "train.batch_size = \"big\""),
        ({"model": {"arch": "mlp", "channels": [3]}}, "model.channels: is a CNN key"),
        ({"model": {"arch": "cnn", "kernel_size": 4}}, "kernel_size must be odd"),
        ({"model": {"arch": "mlp", "depth": 2, "width": [1, 2, 3]}}, "has 3 entries"),
        ({"model": {"arch": "rnn"}}, "model"),
        ({"data": {"dataset": "cifar"}}, "data.dataset = \"cifar\""),
        ({"data": {"val_fraction": 1.5}}, "data.val_fraction = 1.5"),
        ({"data": {"dataset": "csv"}}, "needs data.csv_path"),
        ({"study": {"seeds": [0, 0]}}, "seeds must be distinct"),
        ({"optuna": {"pruner": "mediam"}}, "optuna.pruner"),
        ({"optuna": {"sampler": "grid"}}, "optuna.sampler"),
        ({"optuna": {"cv_folds": 1}}, "cv_folds must be 0"),
        ({"train": {"scheduler": "linear"}}, "train.scheduler"),
        ({"sweeps": {"lr": {"param": "train.lr", "values": [0.1, 0.1]}}}, "duplicated values"),
        ({"sweeps": {"lr": {"param": "train.lr", "values": []}}}, "sweeps.lr.values"),
        ({"sweeps": {"lr": {"param": "train.lr", "values": [0.1, -1]}}}, "train.lr = -1"),
        ({"sweeps": {"k": {"param": "model.kernel_size", "values": [3]}}}, "is a CNN key"),
        ({"sweeps": {"s": {"param": "data.split_seed", "values": [1]}}}, "only model.* and"),
        ({"grids": {"g": {"x": {"param": "train.lr", "values": [0.1]},
                          "y": {"param": "train.lr", "values": [0.2]}}}}, "both sweep"),
        ({"configs": {"c": {"train.optimiser": "sgd"}}}, "configs.c: train.optimiser"),
        ({"optuna": {"space": {"train.lr": {"type": "float", "low": 0, "high": 1,
                                            "log": True}}}}, "log scale needs low > 0"),
        ({"optuna": {"space": {"train.lr": {"type": "float", "low": 1, "high": 0.1}}}},
         "must be < high"),
        ({"colour": "blue"}, "colour: unknown key"),
    ],
)
def test_bad_values_are_named(data, expected):
    problems = problems_of(data)
    assert any(expected in p for p in problems), problems


def test_all_problems_reported_together():
    problems = problems_of({"train": {"learnig_rate": 0.1, "lr": -1.0, "optimizer": "adamx"}})
    assert len(problems) == 3
    assert {p.split(":")[0].split(" ")[0] for p in problems} == {
        "train.learnig_rate", "train.lr", "train.optimizer"}


def test_cnn_keys_allowed_when_arch_is_searched():
    params = parse_params({"optuna": {"space": {
        "model.arch": {"type": "categorical", "choices": ["mlp", "cnn"]},
        "model.channels": {"type": "categorical", "choices": [[16, 32], [32, 64]]},
    }}})
    assert "model.channels" in params.optuna.space


def test_config_can_switch_family():
    params = parse_params({"configs": {"cnn": {"model.arch": "cnn", "model.channels": [8]}}})
    cfg = resolve_run(params.run_base(), params.configs["cnn"])
    assert cfg["model"]["arch"] == "cnn" and cfg["model"]["channels"] == [8]


def test_validate_cli_exit_codes(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[train]\nlearnig_rate = 0.1\nlr = -0.01\noptimizer = "adamx"\n')
    cmd = [sys.executable, "-m", "hpsweep.cli", "validate"]
    ok = subprocess.run([*cmd, str(ROOT / "params.toml")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    res = subprocess.run([*cmd, str(bad)], capture_output=True, text=True)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 3, res.stderr
    assert "Traceback" not in res.stderr
    for key in ("learnig_rate", "train.lr = -0.01", "adamx"):
        assert any(key in line for line in lines), res.stderr


def test_validate_cli_bad_toml_and_missing_file(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\nlr = 1\n")
    cmd = [sys.executable, "-m", "hpsweep.cli", "validate"]
    for path, expected in ((broken, "not valid TOML"), (tmp_path / "nope.toml", "not found")):
        res = subprocess.run([*cmd, str(path)], capture_output=True, text=True)
        assert res.returncode == 2 and expected in res.stderr and "Traceback" not in res.stderr


def test_every_params_key_is_commented():
    """Each key of a fixed section of params.toml has a comment in the lines
    above it, so the file documents its own valid values. Keys of user-named
    tables (sweeps, grids, configs, space, baselines) are documented once by
    the comment that introduces their family."""
    family = ("[sweeps.", "[grids.", "[configs.", "[optuna.space.", "[report.baselines")
    in_family = False
    lines = (ROOT / "params.toml").read_text().splitlines()
    for i, line in enumerate(lines):
        s = line.strip()
        if s.startswith("["):
            in_family = s.startswith(family)
            continue
        if not s or s.startswith("#") or in_family:
            continue
        j = i - 1
        while lines[j].strip() and not lines[j].strip().startswith(("#", "[")):
            j -= 1  # keys sharing one comment (e.g. step_size and gamma)
        assert lines[j].strip().startswith("#"), f"params.toml line {i + 1} ({s!r}) has no comment"


def test_expansion_is_stable_and_shares_baseline():
    data = tomli.loads((ROOT / "params.toml").read_text())
    plan_a = expand(parse_params(data))
    plan_b = expand(parse_params(data))
    assert plan_a.run_ids() == plan_b.run_ids()
    baseline = plan_a.members_of("baseline")[0].run_id
    lr_runs = {m.label: m.run_id for m in plan_a.members_of("sweep", "lr")}
    assert lr_runs["lr=0.003"] == baseline  # baseline value trained once
    assert len(plan_a.runs) < len(plan_a.members)


def test_signature_changes_with_params():
    data = tomli.loads((ROOT / "params.toml").read_text())
    before = set(expand(parse_params(data)).run_ids())
    data["train"]["label_smoothing"] = 0.0
    after = set(expand(parse_params(data)).run_ids())
    assert not before & after


@pytest.mark.parametrize(("data", "hint"), [
    # a swept/config/space key: the keys of its own section (for the arch), one line each
    ({"sweeps": {"lr": {"param": "train.learning_rate", "values": [0.1]}}},
     "sweeps.lr: train.learning_rate: unknown key (allowed: epochs, batch_size, optimizer, lr,"),
    ({"configs": {"c": {"model.widht": 3}}}, "configs.c: model.widht: unknown key (did you mean "
                                             "'width'?)"),
    ({"optuna": {"space": {"train.xyzzy": {"type": "float", "low": 0.1, "high": 1}}}},
     "optuna.space.train.xyzzy: train.xyzzy: unknown key (allowed: epochs,"),
    ({"train": {"batch_sise": 64}}, "train.batch_sise: unknown key (did you mean 'batch_size'?)"),
])
def test_unknown_key_hints_name_the_keys_of_its_section(data, hint):
    problems = problems_of(data)
    assert any(p.startswith(hint) for p in problems), problems
    assert not any(p.startswith("allowed:") or "allowed: study" in p for p in problems), problems
