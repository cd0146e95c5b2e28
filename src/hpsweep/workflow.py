"""Helpers the Snakefile calls (kept here so they can be tested)."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

from .config import ParamsError
from .study import Study


def load_study_or_exit(params_path: str) -> Study:
    """Validate before any job starts: print one line per problem and exit 2."""
    try:
        return Study.load(params_path)
    except ParamsError as e:
        print(str(e), file=sys.stderr)
        raise SystemExit(2) from None


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


def study_of(smk) -> Study:
    """The Study a Snakemake job belongs to (same params file as the Snakefile)."""
    return Study.load(smk.config.get("params", "params.toml"))
