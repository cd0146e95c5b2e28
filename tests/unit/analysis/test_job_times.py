"""Each stage's job time from Snakemake's benchmark records: the current jobs only."""

from __future__ import annotations

import pytest
from tunefixtures import make_study

from hpsweep.analysis.job_times import stage_times, wall_seconds


def record(path, *seconds: float) -> None:
    """A benchmark TSV as Snakemake writes it (a row per repeat; the first columns)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("s\th:m:s\tmax_rss\tmax_vms\n"
                    + "".join(f"{s}\t0:00:{int(s):02d}\t100.0\t200.0\n" for s in seconds))


def test_a_record_gives_its_wall_seconds_and_none_without_one(tmp_path):
    record(tmp_path / "one.tsv", 12.5)
    record(tmp_path / "repeats.tsv", 2.0, 3.0)
    assert wall_seconds(tmp_path / "one.tsv") == 12.5
    assert wall_seconds(tmp_path / "repeats.tsv") == 5.0  # the job ran both repeats
    assert wall_seconds(tmp_path / "missing.tsv") is None


def test_stage_times_count_the_current_jobs_and_not_stale_records(tmp_path):
    study = make_study(tmp_path, final={"seeds": [0, 1], "control": True})
    p = study.paths
    (run,) = study.plan.run_ids()
    record(p.benchmark("train_run", run=run), 30.0)
    record(p.benchmark("extract_run", run=run), 1.0)
    record(p.benchmark("train_run", run="0123456789ab"), 500.0)  # a run params no longer plan
    record(p.benchmark("optuna_setup"), 2.0)
    for w in (0, 1):  # optuna.n_workers = 2
        record(p.benchmark("optuna_worker", worker=w), 60.0)
    record(p.benchmark("optuna_worker", worker=5), 500.0)  # a worker of an earlier setting
    record(p.benchmark("final_run", seed=0), 20.0)
    record(p.benchmark("control_run", seed=0), 10.0)
    record(p.benchmark("final_run", seed=9), 500.0)  # a seed final.seeds no longer has

    times = stage_times(study)
    assert set(times) == {"sweeps", "optuna", "final", "control"}
    assert (times["sweeps"].seconds, times["sweeps"].jobs) == (31.0, 2)
    assert (times["optuna"].seconds, times["optuna"].jobs) == (122.0, 3)
    assert (times["final"].seconds, times["final"].jobs) == (20.0, 1)
    assert (times["control"].seconds, times["control"].jobs) == (10.0, 1)
    assert p.benchmark("train_run", run=run).parent == p.results_dir / "benchmarks" / "sweeps"


def test_the_snakefile_pattern_is_the_records_path_with_wildcards(tmp_path):
    study = make_study(tmp_path)
    pattern = str(study.paths.benchmark("final_run"))
    assert pattern.endswith("benchmarks/final/seed_{seed}.tsv")
    assert str(study.paths.benchmark("final_run", seed=3)) == pattern.format(seed=3)
    with pytest.raises(KeyError):
        study.paths.benchmark("no_such_rule")
