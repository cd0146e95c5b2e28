"""What Snakemake jobs share: study loading, per-job log files, their threads and
resources (the policy itself: ops.threads)."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

from hpsweep.core.schema import ParamsError
from hpsweep.core.study import Study
from hpsweep.ops.threads import job_slots, training_threads_for


def load_study_or_exit(params_path: str, workflow=None) -> Study:
    """Validate before any job starts: print one line per problem and exit 2.

    A budgeted study without its current plan (core.budget) is planned here, in memory,
    for the jobs ``workflow`` (the running Snakemake's --cores and --resources gpu) runs
    at once, and its table printed: the Snakefile's `onstart` freezes it (freeze_plan)
    when a real run starts, so a dry run plans without writing anything."""
    from hpsweep.core.budget import NoPlanError

    try:
        try:
            return Study.load(params_path)
        except NoPlanError:
            from hpsweep.ops.planner import make_plan, render

            written = Study.as_written(params_path)
            lock = make_plan(written, slots=workflow_slots(written, workflow))
            print(f"Budget plan (not frozen yet):\n{render(lock)}", file=sys.stderr)
            return Study.load(params_path, lock=lock)
    except (ParamsError, FileNotFoundError) as e:  # not found: the sizes a CSV plan needs
        print(str(e), file=sys.stderr)
        raise SystemExit(2) from None


def workflow_slots(study: Study, workflow) -> int | None:
    """The training jobs a running Snakemake runs at once on this machine (None: not
    known here, e.g. a remote executor; the planner then counts this machine's CPUs)."""
    if workflow is None or not workflow.local_exec:
        return None
    gpus = workflow.global_resources.get("gpu") if study.uses_gpu else None
    return job_slots(workflow_cores(workflow), gpus)


def freeze_plan(study: Study) -> None:
    """Write a budgeted study's plan to its lock file unless it is already there (the
    Snakefile's `onstart`: only a real run freezes what it is about to train)."""
    from hpsweep.core.atomic import write_json
    from hpsweep.core.budget import read_lock

    if study.plan_lock is not None and read_lock(study.paths.plan_lock) != study.plan_lock:
        write_json(study.paths.plan_lock, study.plan_lock)


@contextlib.contextmanager
def job_log(path: str | Path):
    """Send a job's logging, warnings and progress bars to its own log file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as fh, contextlib.redirect_stderr(fh), \
            contextlib.redirect_stdout(fh):
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield
        except Exception:
            logging.getLogger("hpsweep").exception("job failed")
            raise
        finally:
            root.removeHandler(handler)


@contextlib.contextmanager
def training_job(smk):
    """A job that trains: its log file, its study, and where the study trains on a GPU, a
    GPU slot of its own (ops.gpu_slots), claimed before anything starts CUDA."""
    from hpsweep.ops.gpu_slots import gpu_slot

    with job_log(smk.log[0]):
        study = study_of(smk)
        slot = gpu_slot(study.params.study.jobs_per_gpu) if study.uses_gpu \
            else contextlib.nullcontext()
        with slot:
            yield study


def named_outputs(smk) -> dict[str, Path]:
    """A Snakemake job's named outputs, {key: path}: what the library writes, where the
    rule says."""
    return {key: Path(p) for key, p in smk.output.items()}


def study_of(smk) -> Study:
    """The Study a Snakemake job belongs to (same params file as the Snakefile)."""
    return Study.load(smk.config.get("params", "params.toml"))


def workflow_cores(workflow) -> int | None:
    """A running Snakemake workflow's --cores; None where it has none."""
    try:
        return workflow.cores
    except Exception:  # no --cores (e.g. a remote executor's dry run)
        return None


def training_job_threads(workflow) -> int:
    """training_threads_for() of a running Snakemake workflow (its --cores, executor)."""
    return training_threads_for(workflow_cores(workflow), bool(workflow.local_exec))


# The rules that train, each with the pack rules that stand in for it (core.packs).
TRAINING_RULES = ("train_run", "final_run", "control_run")


def training_job_settings(workflow, threads: int, gpu: int) -> dict[str, tuple[int, dict]]:
    """{rule: (threads, resources)} for each of TRAINING_RULES and the pack rules standing
    in for it: ``threads`` and ``gpu``, or what `--set-threads RULE=N` and `--set-resources
    RULE:KEY=VALUE` of the running Snakemake set for the rule. Snakemake applies those by
    rule name only; this way the user's settings for train_run also reach train_pack_<n>
    (final_run's final_pack, control_run's control_pack). A callable setting (a profile
    written in Python) is left to the named rule."""
    settings = workflow.resource_settings
    out = {}
    for rule in TRAINING_RULES:
        n = _set_value(settings.overwrite_threads.get(rule))
        given = {name: _set_value(v) for name, v in
                 settings.overwrite_resources.get(rule, {}).items()}
        out[rule] = (n or threads,
                     {"gpu": gpu, **{k: v for k, v in given.items() if v is not None}})
    return out


def _set_value(value):
    """A --set-threads/--set-resources value as Snakemake holds it (a plain value, or a
    parsed Resource): the plain value, or None for a callable one (or none given)."""
    if hasattr(value, "is_evaluable"):  # a parsed Resource
        return None if value.is_evaluable() else value.value
    return value
