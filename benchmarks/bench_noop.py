"""How long a run that has nothing to do takes (goal: snakemake < 3 s, dvc repro < 10 s).

    python benchmarks/bench_noop.py STUDY_DIR [--baseline REV] [--dvc REPO] [-n 5]

STUDY_DIR holds a finished study (its params.toml beside results/). Times, as whole
processes, the median and range of n runs, interleaved run by run:

- `snakemake --profile profiles/local` on the finished study (a real no-op run),
- the same as a dry run (-n), and, with --baseline, the dry run of the Snakefile and
  library of git revision REV on the same study (a worktree of it; its DAG may list
  jobs the newer code does not, so it is the DAG-building cost being compared),
- with --dvc, `dvc repro` in REPO, a DVC repository whose pipeline is up to date.

Measure alone on the machine: anything else running makes the figures meaningless.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def snakemake_cmd(code: Path, study: Path, *extra: str) -> list[str]:
    return [str(BIN / "snakemake"), "-s", str(code / "Snakefile"), "-d", str(study),
            "--profile", str(code / "profiles/local"), "--config",
            f"params={study / 'params.toml'}", *extra]


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"bench_noop: {' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    return took


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", type=Path, help="a finished study's directory")
    ap.add_argument("--baseline", help="git revision whose Snakefile/library to compare with")
    ap.add_argument("--dvc", type=Path, help="an up-to-date DVC repository to `dvc repro` in")
    ap.add_argument("-n", type=int, default=5, help="runs of each command (default 5)")
    args = ap.parse_args(argv)
    study = args.study.resolve()
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    cases: dict[str, tuple[list[str], Path, dict[str, str]]] = {
        "snakemake --profile profiles/local (no-op run)": (snakemake_cmd(ROOT, study), study,
                                                          env),
        "snakemake --profile profiles/local -n": (snakemake_cmd(ROOT, study, "-n"), study, env),
    }
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline:
            wt = Path(tmp) / "baseline"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach",
                            str(wt), args.baseline], check=True)
            cases[f"  the same at {args.baseline} (baseline)"] = (
                snakemake_cmd(wt, study, "-n"), study, dict(env, PYTHONPATH=str(wt / "src")))
        if args.dvc:
            repo = args.dvc.resolve()
            cases["dvc repro (up to date)"] = ([str(BIN / "dvc"), "repro"], repo,
                                               dict(env, PYTHONPATH=str(repo / "src")))
        try:
            for cmd, cwd, e in cases.values():  # warm-up: file caches, .pyc files
                timed(cmd, cwd, e)
            times: dict[str, list[float]] = {k: [] for k in cases}
            for _ in range(args.n):
                for name, (cmd, cwd, e) in cases.items():
                    times[name].append(timed(cmd, cwd, e))
        finally:
            if args.baseline:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(wt)], check=False)
    print(f"{'command':<58} {'median s':>9} {'min':>6} {'max':>6}   goal")
    for name, ts in times.items():
        goal = "< 10 s" if name.startswith("dvc") else "" if name.startswith(" ") else "< 3 s"
        print(f"{name:<58} {statistics.median(ts):9.2f} {min(ts):6.2f} {max(ts):6.2f}   {goal}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
