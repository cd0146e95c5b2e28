"""A study's sweep stage under the real snakemake, with and without packs.

`hpsweep bench --pack-study`: the study's sweeps, grids and configs (every run of its
plan, at the epochs its budget plan gives them) trained twice in fresh result folders:
once with study.pack_size = 1 (one job per run) and once with ``--pack-size``. Both use
the project's prepared data and Snakefile and the same --cores; what is timed is
Snakemake's whole wall time for the runs' metrics.json (job start-ups included), the
median of ``--repeats`` interleaved repeats.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomli
import tomli_w

from hpsweep.core.schema import ParamsError
from hpsweep.core.study import Study


def study_copy(params_path: Path, folder: Path, pack_size: int, epochs: int) -> Study:
    """params.toml written into ``folder`` as its own study: results there, the project's
    prepared data, the budget's epochs as written, ``pack_size``."""
    doc = tomli.loads(params_path.read_text())
    doc["study"].update(budget=0, pack_size=pack_size, results_dir=str(folder / "results"),
                        data_dir=str(Path(doc["study"].get("data_dir", "data")).resolve()))
    doc["train"]["epochs"] = epochs
    folder.mkdir(parents=True)
    (folder / "params.toml").write_text(tomli_w.dumps(doc))
    return Study.load(folder / "params.toml", root=folder)


def sweep_stage(study: Study, snakefile: Path, cores: int) -> tuple[float, int]:
    """Snakemake's wall seconds to train every run of the study's plan, and its jobs."""
    folder = study.params_path.parent
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(snakefile), "-d",
           str(folder), "--config", f"params={study.params_path}", "--cores", str(cores),
           *study.run_metrics()]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"snakemake failed in {folder}:\n{res.stderr[-3000:]}")
    log = (res.stdout + res.stderr).splitlines()
    jobs = sum(1 for line in log if line.startswith("Finished jobid"))
    return seconds, jobs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hpsweep bench --pack-study",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--params", type=Path, default=Path("params.toml"))
    p.add_argument("--pack-size", type=int, default=8)
    p.add_argument("--cores", type=int, default=2, help="snakemake --cores (default 2)")
    p.add_argument("--epochs", type=int, default=0,
                   help="train.epochs of every run (default: the study's, as planned)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--snakefile", type=Path, default=Path("Snakefile"))
    args = p.parse_args(argv)
    try:  # a budgeted study's epochs are its frozen plan's, unless --epochs says
        study = Study.as_written(args.params) if args.epochs else Study.load(args.params)
    except ParamsError as e:
        print(f"hpsweep bench --pack-study: {e}")
        return 2
    if not study.paths.manifest.is_file():
        print(f"hpsweep bench --pack-study: {study.paths.manifest} not found; run `make data`")
        return 2
    epochs = args.epochs or study.params.train.epochs
    ways = {"alone": 1, f"packs of {args.pack_size}": args.pack_size}
    took: dict[str, list[float]] = {w: [] for w in ways}
    jobs: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="hpsweep-pack-study-") as tmp:
        for rep in range(args.repeats):
            for way, size in ways.items():
                copy = study_copy(args.params, Path(tmp) / f"{rep}-{size}", size, epochs)
                seconds, jobs[way] = sweep_stage(copy, args.snakefile.resolve(), args.cores)
                took[way].append(seconds)
                print(f"  {way}: {seconds / 60:.2f} min, {jobs[way]} jobs", flush=True)
    from tabulate import tabulate

    base = statistics.median(took["alone"])
    rows = [[way, jobs[way], f"{statistics.median(s) / 60:.2f}",
             f"{min(s) / 60:.2f}-{max(s) / 60:.2f}", f"{base / statistics.median(s):.2f}x"]
            for way, s in took.items()]
    print(f"{args.params}: sweep stage, {len(study.plan.runs)} runs at {epochs} epochs, "
          f"--cores {args.cores}, median of {args.repeats}")
    print(tabulate(rows, ["how", "jobs", "wall min", "min-max", "speed vs alone"],
                   colalign=("left", "right", "right", "right", "right")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
