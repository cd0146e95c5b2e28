"""Where an Optuna study lives, and how a dead worker's trial gets retried.

``optuna.storage`` in params.toml takes one of:

    ""                 SQLite at <results_dir>/optuna/<study>.db (one machine)
    "<rdb url>"        any SQLAlchemy URL Optuna's RDBStorage accepts, e.g.
                       "postgresql+psycopg2://user:${PGPASSWORD}@db.host/optuna"
                       (many machines; needs the driver, e.g. psycopg2-binary)
    "journal:<path>"   Optuna's JournalStorage on a file (shared file systems where
                       SQLite locking is unreliable)

``${NAME}`` is replaced by the environment variable NAME, so credentials stay out
of params.toml; a URL is only ever shown with its password masked.

RDB storages (SQLite included) record a heartbeat for every running trial. A
worker that dies (SIGKILL, preemption, node failure) stops beating; after the
grace period the next worker marks its trial FAIL and
``RetryHeartbeatStaleTrialCallback`` queues the same parameters again, so the
trial is retried rather than left RUNNING. Journal storage has no heartbeat in
Optuna 5: a killed worker's trial stays RUNNING there (see ``hpsweep.tuning.counting``).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage

from hpsweep.core.study import Study

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# scheme://user:password@host  ->  scheme://user:***@host. Greedy up to the last "@" of
# the token, so an unescaped "@" or "/" in the password does not leave a part visible.
_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^\s]*@")
# ...?password=secret (a libpq keyword SQLAlchemy passes on), and "password=secret" in a
# driver's DSN echo.
_PASSWORD_KEY = re.compile(r"(?P<head>(?:^|[?&\s;])(?:password|passwd|pwd)=)[^&\s;]*",
                           re.IGNORECASE)

JOURNAL_PREFIX = "journal:"
# Seconds between heartbeats, and how long a silent trial counts as alive. A trial
# whose worker died is retried after the grace period. Environment variables
# override them (tests use 1 s / 2 s); both must be whole seconds > 0.
HEARTBEAT_S = 30
GRACE_S = 120
MAX_RETRY = 3


class StorageError(ValueError):
    """The storage setting cannot be used; the message never contains a password."""


def mask(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe for logs and files)."""
    return _PASSWORD_KEY.sub(r"\g<head>***", _PASSWORD.sub(r"\g<head>***@", url))


def _secrets(url: str) -> list[str]:
    """The passwords written in ``url`` (what ``mask`` hides), longest first."""
    found = [m.group(0)[len(m.group("head")):-1] for m in _PASSWORD.finditer(url)]
    found += [m.group(0)[len(m.group("head")):] for m in _PASSWORD_KEY.finditer(url)]
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def expand_env(url: str, environ: dict[str, str] | None = None) -> str:
    """Replace ``${NAME}`` by the environment variable NAME; a missing one is an error."""
    env = os.environ if environ is None else environ
    missing = [m.group(1) for m in _ENV.finditer(url) if m.group(1) not in env]
    if missing:
        raise StorageError(
            f"optuna.storage = {mask(url)!r} uses ${{{missing[0]}}}, which is not set; "
            f"export {missing[0]} in the environment of every worker")
    return _ENV.sub(lambda m: env[m.group(1)], url)


def default_sqlite(study: Study) -> Path:
    return study.paths.results_dir / "optuna" / f"{study.params.study.name}.db"


def storage_url(study: Study, environ: dict[str, str] | None = None) -> str:
    """The study's storage URL with ${ENV} expanded (may hold a password: use ``mask``)."""
    raw = study.params.optuna.storage.strip()
    if not raw:
        return f"sqlite:///{default_sqlite(study).resolve()}"
    return expand_env(raw, environ)


def heartbeat_settings() -> tuple[int, int]:
    """(heartbeat interval, grace period) in seconds; env HPSWEEP_OPTUNA_HEARTBEAT_S /
    HPSWEEP_OPTUNA_GRACE_S override the defaults."""
    values = []
    for name, default in (("HPSWEEP_OPTUNA_HEARTBEAT_S", HEARTBEAT_S),
                          ("HPSWEEP_OPTUNA_GRACE_S", GRACE_S)):
        raw = os.environ.get(name, str(default))
        try:
            v = int(raw)
            if v <= 0:
                raise ValueError
        except ValueError:
            raise StorageError(f"{name} = {raw!r}: must be a whole number of seconds > 0") \
                from None
        values.append(v)
    beat, grace = values
    if grace <= beat:
        raise StorageError(f"HPSWEEP_OPTUNA_GRACE_S ({grace}) must exceed the heartbeat "
                           f"interval ({beat}), or live trials would be failed")
    return beat, grace


def open_storage(url: str) -> BaseStorage:
    """An Optuna storage for ``url`` (see the module docstring for the forms)."""
    if url.startswith(JOURNAL_PREFIX):
        path = Path(url[len(JOURNAL_PREFIX):]).expanduser()
        if not path.name:
            raise StorageError(f"optuna.storage = {url!r}: name a file after 'journal:'")
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise StorageError(
            f"optuna.storage = {mask(url)!r} is not a storage; allowed: \"\" (SQLite under "
            "results/optuna/), an RDB URL such as postgresql+psycopg2://user:${PGPASSWORD}"
            "@host/db or sqlite:///path.db, or journal:PATH")
    engine_kwargs: dict = {}
    if url.startswith("sqlite"):
        # Several local workers share one file: wait for the lock instead of failing
        # with "database is locked" (optuna issue 820).
        engine_kwargs["connect_args"] = {"timeout": 120}
        db = url.split(":///", 1)[1] if ":///" in url else ""
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
    else:
        engine_kwargs["pool_pre_ping"] = True  # survive a server restart between trials
    beat, grace = heartbeat_settings()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=beat, grace_period=grace,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                    max_retry=MAX_RETRY, inherit_intermediate_values=True))
        except Exception as e:  # driver/connection errors can echo the URL: mask it
            msg = str(e).replace(url, mask(url)).splitlines()[0] if str(e) else ""
            for secret in _secrets(url):  # e.g. a driver quoting the password alone
                msg = msg.replace(secret, "***")
            raise StorageError(f"cannot open Optuna storage {mask(url)}: "
                               f"{type(e).__name__}: {mask(msg)}") from None


def has_heartbeat(storage: BaseStorage) -> bool:
    """Whether stale trials of this storage are detected (RDB storages opened here)."""
    interval = getattr(storage, "get_heartbeat_interval", None)
    return interval is not None and interval() is not None
