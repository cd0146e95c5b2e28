"""`hpsweep` command line: the stages for people (and tests), without Snakemake.

Every user error ends as one line on stderr naming the problem and the fix,
and a non-zero exit: 2 for invalid params or arguments, 1 for data/run errors.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .config import ParamsError, load_params
from .paths import StudyPaths

DEFAULT_PARAMS = "params.toml"


def _cmd_validate(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    print(f"{args.params}: ok (study {params.study.name!r}, model {params.model.arch}, "
          f"{len(params.sweeps)} sweeps, {len(params.grids)} grids)")
    return 0


def _cmd_data_fetch(args: argparse.Namespace) -> int:
    from .data import fetch

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
    from .data import prepare

    manifest = prepare(params.data, paths.raw_dir, paths.prepared)
    counts = ", ".join(f"{k} {v}" for k, v in manifest["counts"].items())
    print(f"{params.data.dataset}: prepared {paths.prepared} ({counts})")
    return 0


def _cmd_data_prepare(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    return _prepare(params, StudyPaths.from_params(params))


def _cmd_plan(args: argparse.Namespace) -> int:
    from .space import expand

    params = load_params(args.params)
    plan = expand(params)
    for m in plan.members:
        print(f"{m.group:8s} {m.name:16s} {m.label:40s} seed={m.seed} {m.run_id}")
    print(f"{len(plan.members)} runs in sweeps/grids/configs; {len(plan.runs)} distinct to train")
    return 0


def _cmd_runs_sync(args: argparse.Namespace) -> int:
    from .runstore import sync
    from .study import Study

    counts = sync(Study.load(args.params))
    print("runs: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    return 0


def _cmd_runs_stale(args: argparse.Namespace) -> int:
    from .runstore import stale_runs
    from .study import Study

    for path in stale_runs(Study.load(args.params)):
        print(path)
    return 0


def _cmd_dvc_yaml(args: argparse.Namespace) -> int:
    from .atomic import write_text
    from .dvcyaml import render

    text, path = render(), Path(args.output)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hpsweep", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"hpsweep {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check a params file; exit 2 on any problem")
    p.add_argument("params", nargs="?", default=DEFAULT_PARAMS)
    p.set_defaults(func=_cmd_validate)

    data = sub.add_parser("data", help="dataset stage").add_subparsers(
        dest="data_command", required=True, metavar="ACTION")
    p = data.add_parser("fetch", help="get and verify raw files, then prepare them")
    p.add_argument("dataset", nargs="?", help="default: data.dataset of the params file")
    p.add_argument("--params", default=DEFAULT_PARAMS)
    p.add_argument("--mirror", action="append", help="local mirror directory (repeatable)")
    p.add_argument("--url", action="append", help="base URL to download from (repeatable)")
    p.add_argument("--no-prepare", action="store_true", help="only fetch and verify")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_data_fetch)
    p = data.add_parser("prepare", help="write the prepared tensors and manifest")
    p.add_argument("--params", default=DEFAULT_PARAMS)
    p.set_defaults(func=_cmd_data_prepare)

    runs = sub.add_parser("runs", help="the run store (results/runs)").add_subparsers(
        dest="runs_command", required=True, metavar="ACTION")
    p = runs.add_parser("sync", help="re-stamp complete runs after a DVC restore (no retraining)")
    p.add_argument("--params", default=DEFAULT_PARAMS)
    p.set_defaults(func=_cmd_runs_sync)
    p = runs.add_parser("stale", help="list run directories the params file no longer uses")
    p.add_argument("--params", default=DEFAULT_PARAMS)
    p.set_defaults(func=_cmd_runs_stale)

    p = sub.add_parser("dvc-yaml", help="write dvc.yaml (coarse stages calling Snakemake)")
    p.add_argument("--output", default="dvc.yaml")
    p.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    p.set_defaults(func=_cmd_dvc_yaml)

    p = sub.add_parser("plan", help="list the runs the params file expands to")
    p.add_argument("--params", default=DEFAULT_PARAMS)
    p.set_defaults(func=_cmd_plan)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    from .data import DataError

    try:
        return args.func(args)
    except ParamsError as e:
        print(str(e), file=sys.stderr)
        return 2
    except DataError as e:
        print(f"hpsweep: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hpsweep: interrupted; completed results are kept, rerun to continue",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
