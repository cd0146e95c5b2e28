"""`hpsweep` command line: the stages for people (and tests), without Snakemake.

Every user error ends as one line on stderr naming the problem and the fix,
and a non-zero exit: 2 for invalid params or arguments, 1 for data/run errors
(a storage that cannot be opened, a full or read-only disk, ...). No traceback
unless -v is given. Logging goes to stderr: warnings by default, -v info, -vv debug.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from pathlib import Path

from hpsweep import __version__
from hpsweep.core.layout import StudyPaths
from hpsweep.core.params_deps import STAGE_SWITCH
from hpsweep.core.schema import ParamsError, load_params

DEFAULT_PARAMS = "params.toml"


def _cmd_validate(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    dvc_yaml = Path(args.params).resolve().parent / "dvc.yaml"
    if Path(args.params).name == DEFAULT_PARAMS and dvc_yaml.is_file():
        # dvc.yaml's stages run this params file: their outs must be its folders
        from hpsweep.ops.dvcyaml import folder_mismatch

        problem = folder_mismatch(params, dvc_yaml)
        if problem:
            print(f"{args.params}: {problem}", file=sys.stderr)
            return 2
    print(f"{args.params}: ok (study {params.study.name!r}, model {params.model.arch}, "
          f"{len(params.sweeps)} sweeps, {len(params.grids)} grids)")
    return 0


def _cmd_data_fetch(args: argparse.Namespace) -> int:
    from hpsweep.data import fetch

    params = load_params(args.params)
    dataset = args.dataset or params.data.dataset
    paths = StudyPaths.from_params(params)
    mirrors = args.mirror if args.mirror is not None else params.data.mirrors
    urls = args.url if args.url is not None else params.data.urls
    where = fetch(dataset, paths.raw_dir, mirrors=mirrors, urls=urls,
                  csv_path=params.data.csv_path, progress=not args.quiet)
    print(f"{dataset}: verified raw files in {where}")
    if dataset == params.data.dataset and not args.no_prepare:
        return _prepare(params, paths)
    return 0


def _prepare(params, paths: StudyPaths) -> int:
    from hpsweep.data import prepare

    manifest = prepare(params.data, paths.raw_dir, paths.prepared)
    counts = ", ".join(f"{k} {v}" for k, v in manifest["counts"].items())
    print(f"{params.data.dataset}: prepared {paths.prepared} ({counts})")
    return 0


def _cmd_data_prepare(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    return _prepare(params, StudyPaths.from_params(params))


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.bench_args[:1] == ["--pack"]:  # packs of runs vs runs one after another
        from hpsweep.bench.pack import main as pack_main

        return pack_main(args.bench_args[1:])
    if args.bench_args[:1] == ["--pack-study"]:  # a study's sweep stage with and without packs
        from hpsweep.bench.pack_study import main as pack_study_main

        return pack_study_main(args.bench_args[1:])
    from hpsweep.bench.throughput import main as bench_main

    return bench_main(args.bench_args)


def _cmd_bench_hpo(args: argparse.Namespace) -> int:
    from hpsweep.bench.hpo import main as bench_hpo_main

    return bench_hpo_main(args.bench_args)


def _cmd_plan(args: argparse.Namespace) -> int:
    from hpsweep.core.study import Study
    from hpsweep.ops.planner import plan_and_freeze, render
    from hpsweep.ops.threads import job_slots

    written = Study.as_written(args.params)
    slots = job_slots(args.cores, args.gpus if written.uses_gpu else None)
    lock, made = plan_and_freeze(written, update=args.update, slots=slots)
    study = Study.load(args.params, lock=lock)
    plan = study.plan
    for m in plan.members:
        print(f"{m.group:8s} {m.name:16s} {m.label:40s} seed={m.seed} {m.run_id}")
    print(f"{len(plan.members)} runs in sweeps/grids/configs; {len(plan.runs)} distinct to train")
    if study.params.study.pack_size > 1:
        _print_packs(study)
    if lock["budget"]:
        when = "planned now" if made else "frozen earlier; --update re-plans"
        print(f"\nBudget plan ({when}: {written.paths.plan_lock}):\n{render(lock)}")
    if args.estimate:
        from hpsweep.ops.estimate import estimate, render

        print()
        print(render(estimate(study), slots))
    return 0


def _print_packs(study) -> None:
    """The plan's packs (core.packs): one Snakemake job each, train_pack_<n>."""
    packs = study.packs
    print(f"\nPacks of up to {study.params.study.pack_size} runs (study.pack_size), one job each:")
    for p in packs:
        left = [r for r in p.run_ids if not study.has_metrics(r)]
        state = {0: "complete", 1: "1 left, trains alone"}.get(len(left), f"{len(left)} to train")
        print(f"pack {p.number:<3d} {len(p.run_ids):2d} runs ({state}): {' '.join(p.run_ids)}")
    packed = sum(len(p.run_ids) for p in packs)
    print(f"{packed} of {len(study.plan.runs)} runs in {len(packs)} packs; the others train "
          "alone (another model shape, batch size or bf16, a CNN, or a pack of one)")


def _cmd_runs_sync(args: argparse.Namespace) -> int:
    from hpsweep.core.study import Study
    from hpsweep.training.runstore import sync

    counts = sync(Study.load(args.params))
    print("runs: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    return 0


def _cmd_runs_stale(args: argparse.Namespace) -> int:
    from hpsweep.core.study import Study
    from hpsweep.training.runstore import stale_runs

    for path in stale_runs(Study.load(args.params)):
        print(path)
    return 0


def _cmd_deps(args: argparse.Namespace) -> int:
    from hpsweep.core.params_deps import NO_EFFECT, covers, rerun_table

    rows = rerun_table(load_params(args.params))
    width = max(len(k) for k, *_ in rows)
    print(f"{'key':<{width}}  rules a change reruns (and the rules after them) | dvc stages")
    for key, rules, stages in rows:
        why = next((w for p, w in NO_EFFECT.items() if covers(p, key)), "")
        shown = ", ".join(rules) if rules else f"nothing ({why})" if why else "nothing"
        print(f"{key:<{width}}  {shown} | {', '.join(stages) or '-'}")
    return 0


def _cmd_stage_on(args: argparse.Namespace) -> int:
    """Exit 0 when the DVC stage's switch is on, 1 when it is off (dvc.yaml's commands)."""
    from hpsweep.core.params_deps import value_at

    key = STAGE_SWITCH[args.stage]
    if value_at(load_params(args.params), key):
        return 0
    print(f"{args.stage}: off ({key} = false), nothing to run")
    return 1


def _cmd_dvc_yaml(args: argparse.Namespace) -> int:
    from hpsweep.core.atomic import write_text
    from hpsweep.ops.dvcyaml import render

    text, path = render(load_params(args.params)), Path(args.output)
    if args.check:
        if not path.is_file() or path.read_text() != text:
            print(f"hpsweep: {path} is stale; regenerate it with `hpsweep dvc-yaml`",
                  file=sys.stderr)
            return 1
        print(f"{path}: up to date")
        return 0
    write_text(path, text)
    print(f"wrote {path}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from hpsweep.core.study import Study
    from hpsweep.ops.status import collect_status
    from hpsweep.ops.status_text import render

    status = collect_status(Study.load(args.params), workdir=".")
    print(render(status), flush=True)
    for problem in status.problems:
        print(f"hpsweep: {_one_line(problem)}{_storage_fix(problem, args.params)}",
              file=sys.stderr)
    return 1 if status.problems else 0


def _cmd_optuna_setup(args: argparse.Namespace) -> int:
    from hpsweep.core.study import Study
    from hpsweep.tuning.worker import setup_study

    info = setup_study(Study.load(args.params))
    warm = info["warm_start"]
    print(f"optuna: study {info['optuna_study']} on {info['storage']}; warm start added "
          f"{warm['added']} of {warm['found']} sweep runs")
    return 0


def _cmd_optuna_worker(args: argparse.Namespace) -> int:
    from hpsweep.core.study import Study
    from hpsweep.tuning.worker import run_worker

    info = run_worker(Study.load(args.params), args.index, threads=args.threads,
                      progress=not args.quiet)
    c = info["counts"]
    print(f"optuna worker {args.index}: ran trials {info['trials_run']}; study has "
          f"{c['finished']} of {info['n_trials']} trials finished")
    return 0


def _cmd_optuna_collect(args: argparse.Namespace) -> int:
    from hpsweep.core.study import Study
    from hpsweep.tuning.results import collect

    best = collect(Study.load(args.params))
    print(f"optuna: best trial {best['trial_number']}, val acc {best['value']:.4f}, "
          f"{best['overrides']}")
    return 0


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line (not usage + error), naming the fix."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hpsweep", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"hpsweep {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging: -v info, -vv debug; show tracebacks")
    # The options most commands share, declared once (argparse parent parsers).
    params = argparse.ArgumentParser(add_help=False)
    params.add_argument("--params", default=DEFAULT_PARAMS, help="the study's params file")
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    def command(group, name: str, func, help: str, *parents, **kw) -> argparse.ArgumentParser:
        p = group.add_parser(name, help=help, parents=list(parents), **kw)
        p.set_defaults(func=func)
        return p

    def actions(name: str, help: str):
        return sub.add_parser(name, help=help).add_subparsers(
            dest=f"{name}_command", required=True, metavar="ACTION")

    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    command(sub, "validate", _cmd_validate, "check a params file; exit 2 on any problem"
            ).add_argument("params", nargs="?", default=DEFAULT_PARAMS)

    data = actions("data", "dataset stage")
    p = command(data, "fetch", _cmd_data_fetch, "get and verify raw files, then prepare them",
                params, quiet)
    p.add_argument("dataset", nargs="?", help="default: data.dataset of the params file")
    p.add_argument("--mirror", action="append", help="local mirror directory (repeatable)")
    p.add_argument("--url", action="append", help="base URL to download from (repeatable)")
    p.add_argument("--no-prepare", action="store_true", help="only fetch and verify")
    command(data, "prepare", _cmd_data_prepare, "write the prepared tensors and manifest",
            params)

    runs = actions("runs", "the run store (results/runs)")
    command(runs, "sync", _cmd_runs_sync,
            "re-stamp complete runs after a DVC restore (no retraining)", params)
    command(runs, "stale", _cmd_runs_stale,
            "list run directories the params file no longer uses", params)

    command(sub, "deps", _cmd_deps, "what a change of each params key reruns (rules, DVC stages)",
            params)
    p = command(sub, "dvc-yaml", _cmd_dvc_yaml, "write dvc.yaml (coarse stages calling Snakemake)",
                params)
    p.add_argument("--output", default="dvc.yaml")
    p.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    p = command(sub, "stage-on", _cmd_stage_on, "exit 0 if a DVC stage is switched on, 1 if "
                "its params switch it off (dvc.yaml runs it)", params)
    p.add_argument("stage", choices=sorted(STAGE_SWITCH))

    for name, func, help in (
            ("bench", _cmd_bench, "training speed, ours vs. the seed-style loop (`bench --help`; "
             "`bench --pack --help`: packs of runs; `bench --pack-study --help`: a study's "
             "sweep stage with and without packs)"),
            ("bench-hpo", _cmd_bench_hpo, "HPO efficiency: grid vs random vs TPE (+ pruning, "
             "warm start) (`bench-hpo --help`)")):
        command(sub, name, func, help, add_help=False).add_argument(
            "bench_args", nargs=argparse.REMAINDER)

    p = command(sub, "plan", _cmd_plan, "list the runs the params file expands to; with "
                "study.budget, fit the study into it and freeze the plan", params)
    p.add_argument("--update", action="store_true",
                   help="re-plan a budgeted study (recalibrating) even if its plan is current")
    p.add_argument("--estimate", action="store_true",
                   help="and what each stage will cost on this machine (calibrates once)")
    p.add_argument("--cores", type=int, default=None,
                   help="the --cores Snakemake will get (default: this machine's CPUs)")
    p.add_argument("--gpus", type=int, default=None,
                   help="the `--resources gpu=N` Snakemake will get, for a study that trains "
                        "on a GPU (default: no limit)")
    command(sub, "status", _cmd_status, "runs done/running/failed/pending, Optuna trials, final "
            "retrain, logs of failed jobs (read-only; fine while a study runs)", params)

    optuna = actions("optuna", "the Optuna stage without Snakemake")
    command(optuna, "setup", _cmd_optuna_setup,
            "create/load the study, add warm-start trials, queue the promoted ones", params)
    p = command(optuna, "worker", _cmd_optuna_worker,
                "train trials until the study has optuna.n_trials", params, quiet)
    p.add_argument("index", type=int, help="worker number, 0..optuna.n_workers-1")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for training")
    command(optuna, "collect", _cmd_optuna_collect, "trials.csv, best_params.json, figures",
            params)
    return parser


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


def _storage_fix(message: str, params: str) -> str:
    if "cannot open Optuna storage" not in message:
        return ""
    return (f"; fix optuna.storage in {params}, or start the database server and check "
            "it is reachable from here (and its driver is installed)")


def _study_dirs(params: str) -> str:
    """"results/ or data/" of the params file, to name where a write failed."""
    try:
        study = load_params(params).study
    except ParamsError:
        return "the results or data directory"
    return f"{study.results_dir}/ or {study.data_dir}/"


def _os_error(e: OSError, params: str) -> str:
    """One line for a filesystem error: what failed, where, and the fix."""
    if e.errno is None:  # raised with a message of ours, which says what to do
        return f"hpsweep: {e}"
    write_errors = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES,
                    errno.EPERM)
    where = f"{e.filename}: " if e.filename else \
        f"writing under {_study_dirs(params)}: " if e.errno in write_errors else ""
    what = e.strerror or str(e)
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = ("free disk space (or point study.data_dir/results_dir at a larger disk) and "
               "rerun; completed results are kept")
    elif e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = ("make it writable, or point study.results_dir/data_dir in the params file "
               "at a writable place")
    else:
        fix = "check the path, then rerun"
    return f"hpsweep: {where}{what}; {fix}"


def _error_line(e: BaseException, args: argparse.Namespace) -> tuple[str, int] | None:
    """(the one line for stderr, exit status) of an error a user can act on; None for
    a bug (the traceback then helps more)."""
    params = getattr(args, "params", DEFAULT_PARAMS)
    # Only errors of modules the command imported can occur: looked up, not imported,
    # so that `hpsweep validate` does not pay for torch.
    data = sys.modules.get("hpsweep.data")
    storage = sys.modules.get("hpsweep.tuning.storage")
    if isinstance(e, ParamsError):
        return str(e), 2
    if (data and isinstance(e, data.DataError)) or \
            (storage and isinstance(e, storage.StorageError)):
        return f"hpsweep: {_one_line(e)}{_storage_fix(str(e), params)}", 1
    if isinstance(e, OSError):
        return _one_line(_os_error(e, params)), 1
    if isinstance(e, RuntimeError | KeyError):  # a stage run out of order, an unknown run
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        return f"hpsweep: {_one_line(msg)}", 1
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # The benchmarks have their own options (argparse REMAINDER drops leading flags).
    if argv[:1] == ["bench"]:
        return _cmd_bench(argparse.Namespace(bench_args=argv[1:]))
    if argv[:1] == ["bench-hpo"]:
        return _cmd_bench_hpo(argparse.Namespace(bench_args=argv[1:]))
    args = build_parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("hpsweep: interrupted; completed results are kept, rerun to continue",
              file=sys.stderr)
        return 130
    except BrokenPipeError:  # `hpsweep status | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:
        known = _error_line(e, args)
        if args.verbose and not isinstance(e, ParamsError):
            raise
        if known is None:
            known = (f"hpsweep: unexpected {type(e).__name__}: {_one_line(e)}; rerun with -v "
                     "for the traceback", 1)
        print(known[0], file=sys.stderr)
        return known[1]


if __name__ == "__main__":
    sys.exit(main())
