"""A real, throw-away PostgreSQL server on loopback for the Optuna storage tests.

initdb + pg_ctl in a temporary directory, a random free port, trust auth on
127.0.0.1 only, fsync off (test data), stopped and deleted at teardown. The
server refuses to run as root, so under root it runs as the ``postgres`` user
on a directory that user owns. Skips (with the reason) when the server
binaries or that user are missing.

Why not pytest-postgresql: its process fixture runs initdb and pg_ctl as the user
running pytest, and both refuse root ("pg_ctl: cannot be run as root"), which is how
CI and these machines run the suite; it has no option to start the server as another
user (pytest-postgresql issues #341 and #455, closed without one). Running as
``postgres`` on a directory that user owns is the part this module adds.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def pg_bin() -> Path | None:
    override = os.environ.get("HPSWEEP_PG_BIN")
    for d in ([Path(override)] if override else []) + PG_BIN_DIRS:
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file():
            return d
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and (Path(found).parent / "initdb").is_file() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yield its SQLAlchemy URL (database "postgres", user "postgres")."""
    bindir = pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; "
                    "apt-get install postgresql, or set HPSWEEP_PG_BIN")
    as_user: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="hpsweep-pg-"))
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base)
            pytest.skip("running as root and there is no 'postgres' user to run the server")
        shutil.chown(base, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = base / "data", base / "server.log"
    port = _free_port()
    try:
        subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust",
                        "-U", "postgres", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, text=True)
        opts = (f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off")
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-o", opts,
                        "-l", str(log), "-w", "-t", "60", "start"],
                       check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as e:
        server_log = log.read_text()[-2000:] if log.exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {e.stderr}\n{server_log}") from None
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "-w", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url
