"""Bad-input catalogue: the user-facing path, one table.

Each case runs the real `hpsweep` CLI (a few: `snakemake`) as a subprocess in a
project directory that already holds completed work (a prepared dataset and a
completed run) and asserts:

- a non-zero exit (2: invalid params or arguments, 1: data/storage/disk errors);
- stderr holds exactly one line per problem, each naming the problem and the fix;
- no traceback;
- nothing completed is lost: every file that existed is unchanged (bytes and
  mtime) and no hidden temp/partial file is left behind.

test_config.py checks the validation rules one by one in-process and the
test_data_*.py files the readers; this table checks what a person sees.
Read-only and full disks are simulated with mounts in a private mount namespace
(`unshare -m`: nothing outside the command sees them); where that is not
permitted those cases skip and say why.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import os
import shutil
import struct
import subprocess
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import tomli
import tomli_w
from pg import postgres_url  # noqa: F401  (fixture)
from studyfixtures import BIN, FMNIST_MIRROR, ROOT, needs_real_data, shrunk_params

from hpsweep.core.plan import dumps_config
from hpsweep.core.study import Study

pytestmark = needs_real_data

HPSWEEP = str(BIN / "hpsweep")
SNAKEMAKE = str(BIN / "snakemake")
UNREACHABLE_PG = "postgresql+psycopg2://u@127.0.0.1:1/x"
FIX_DATA = "put the four .gz files in a directory and list it in data.mirrors"


# -- the project with completed work ------------------------------------------------------------

class _NotFound(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def url404():
    """A loopback HTTP server answering 404: the URL fallback fails at once, offline."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """data/raw + data/prepared from the real fetch, and one completed run."""
    root = tmp_path_factory.mktemp("base")
    _params(root)
    res = subprocess.run([HPSWEEP, "data", "fetch", "-q", "--params", "params.toml"], cwd=root,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    study = Study.load(root / "params.toml", root=root)
    run_id = study.plan.run_ids()[0]
    d = study.paths.run_dir(run_id)
    d.mkdir(parents=True)
    (d / "config.json").write_text(dumps_config(study.plan.runs[run_id]))
    (d / "metrics.json").write_text(json.dumps({"status": "ok", "best_val_acc": 0.8}))
    (d / "best.pt").write_bytes(b"weights")
    log = study.paths.logs / "train" / f"{run_id}.log"
    log.parent.mkdir(parents=True)
    log.write_text("2026-01-01 00:00:00,000 INFO hpsweep.training.engine: ok\n")
    return root


def _params(root: Path, change: Callable[[dict], Any] | None = None) -> Path:
    path = shrunk_params(root, subset=300, values=1, sweeps=1, grids=False, configs=False,
                         final__enabled=False)
    if change is not None:
        data = tomli.loads(path.read_text())
        change(data)
        path.write_text(tomli_w.dumps(data))
    return path


def _snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    out = {}
    for top in ("data", "results"):
        for p in sorted((root / top).rglob("*")) if (root / top).is_dir() else []:
            if p.is_file():
                st = p.stat()
                out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns,
                                                 hashlib.sha256(p.read_bytes()).hexdigest())
    return out


# -- bad files --------------------------------------------------------------------------------

def _mirror(dest: Path, name: str, mutate: Callable[[bytes], bytes]) -> Path:
    """A mirror of the real Fashion-MNIST with one file damaged by ``mutate``."""
    dest.mkdir(parents=True)
    for f in FMNIST_MIRROR.iterdir():
        if f.name == name:
            (dest / f.name).write_bytes(mutate(f.read_bytes()))
        else:
            (dest / f.name).symlink_to(f)
    return dest


def _recompressed(change: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    return lambda gz: gzip.compress(change(gzip.decompress(gz)), compresslevel=1, mtime=0)


def _label_12(raw: bytes) -> bytes:
    b = bytearray(raw)
    b[8 + 5] = 12  # sample 5 of an IDX label file (8-byte header)
    return bytes(b)


def _escaping_zip(dest: Path) -> Path:
    dest.mkdir(parents=True)
    with zipfile.ZipFile(dest / "tiny-imagenet-200.zip", "w") as zf:
        zf.writestr("tiny-imagenet-200/wnids.txt", "n01443537\n")
        zf.writestr("../escaped.txt", "written outside the extraction directory")
    return dest


# -- the table ----------------------------------------------------------------------------------

def _set(dotted: str, value: Any) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        *sections, key = dotted.split(".")
        node = data
        for s in sections:
            node = node.setdefault(s, {})
        node[key] = value
    return change


def _all(*changes: Callable[[dict], None]) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        for c in changes:
            c(data)
    return change


@dataclass
class Case:
    id: str
    argv: list[str]  # {params} {bad} {url} are filled in; "snakemake" runs snakemake
    lines: list[tuple[str, ...]]  # one entry per expected stderr line: substrings it holds
    code: int = 2
    change: Callable[[dict], Any] | None = None  # edit of the params dict
    params_text: str | None = None  # or raw params.toml text
    bad: Callable[[Path], Any] | None = None  # writes bad inputs under {bad}
    raw: bool = False  # the case needs the fetched raw files
    mount: str | None = None  # "ro:results" or "tmpfs:data/raw": a simulated disk
    env: dict[str, str] = field(default_factory=dict)


CASES = [
    # params.toml: types, ranges, keys
    Case("wrong-type", ["validate", "{params}"], [('train.batch_size = "big"',
                                                   "valid integer")],
         change=_set("train.batch_size", "big")),
    Case("out-of-range", ["plan", "--params", "{params}"],
         [("train.lr = -0.1", "greater than 0")], change=_set("train.lr", -0.1)),
    Case("out-of-range-fraction", ["validate", "{params}"],
         [("data.val_fraction = 1.0", "less than 1")], change=_set("data.val_fraction", 1.0)),
    Case("unknown-key", ["validate", "{params}"],
         [("train.weight_decy", "unknown key", "did you mean 'weight_decay'")],
         change=_set("train.weight_decy", 0.1)),
    Case("unknown-section", ["validate", "{params}"], [("colour", "unknown key")],
         change=_set("colour.x", 1)),
    Case("empty-sweep", ["validate", "{params}"],
         [("sweeps.lr.values", "at least 1 item")], change=_set("sweeps.lr.values", [])),
    Case("duplicated-sweep-values", ["validate", "{params}"],
         [("sweeps.lr.values", "duplicated values 0.001", "list each value once")],
         change=_set("sweeps.lr.values", [0.001, 0.003, 0.001])),
    Case("cnn-key-on-mlp", ["validate", "{params}"],
         [("model.channels", "is a CNN key but model.arch is 'mlp'")],
         change=_set("model.channels", [8, 16])),
    Case("cnn-key-swept-on-mlp", ["status", "--params", "{params}"],
         [("sweeps.k", "model.kernel_size", "is a CNN key")],
         change=_set("sweeps.k", {"param": "model.kernel_size", "values": [3, 5]})),
    Case("two-problems-two-lines", ["validate", "{params}"],
         [("train.lr = -1.0",), ('train.optimizer = "adamx"', "'sgd', 'adam'")],
         change=_all(_set("train.lr", -1.0), _set("train.optimizer", "adamx"))),
    Case("unknown-dataset", ["validate", "{params}"],
         [('data.dataset = "cifar"', "'fashion-mnist'")], change=_set("data.dataset", "cifar")),
    Case("unknown-optimizer", ["validate", "{params}"],
         [('train.optimizer = "adamx"', "'adamw'")], change=_set("train.optimizer", "adamx")),
    Case("unknown-activation", ["validate", "{params}"],
         [('model.activation = "swish"', "'silu'")], change=_set("model.activation", "swish")),
    Case("unknown-scheduler", ["validate", "{params}"],
         [('train.scheduler = "linear"', "'cosine'")], change=_set("train.scheduler", "linear")),
    Case("unknown-pruner", ["validate", "{params}"],
         [('optuna.pruner = "mediam"', "'median'")], change=_set("optuna.pruner", "mediam")),
    Case("not-toml", ["validate", "{params}"],
         [("not valid TOML", "line 1", "'[train'", "fix that line")],
         params_text="[train\nlr = 0.1\n"),
    Case("duplicated-toml-key", ["validate", "{params}"],
         [("not valid TOML", "'lr = 0.2'", "a key set twice")],
         params_text="[train]\nlr = 0.1\nlr = 0.2\n"),
    # impossible splits: known once the dataset is read (the prepare step)
    Case("val-fraction-leaves-no-train", ["data", "prepare", "--params", "{params}"],
         [("data.val_fraction = 0.999999", "leaves 0 training", "use a fraction in")],
         code=1, raw=True, change=_set("data.val_fraction", 0.999999)),
    Case("val-fraction-leaves-no-val", ["data", "prepare", "--params", "{params}"],
         [("data.val_fraction = 1e-06", "0 validation", "use a fraction in")],
         code=1, raw=True, change=_set("data.val_fraction", 0.000001)),
    Case("train-subset-larger-than-train", ["data", "prepare", "--params", "{params}"],
         [("data.train_subset = 100000", "54000 samples", "use 1..54000")],
         code=1, raw=True, change=_set("data.train_subset", 100000)),
    # dataset files, through the fetch a person runs
    Case("truncated-gzip",
         ["data", "fetch", "-q", "--params", "{params}", "--mirror", "{bad}", "--url", "{url}"],
         [("train-images-idx3-ubyte.gz: truncated or corrupt gzip", "HTTP 404", FIX_DATA)],
         code=1, bad=lambda d: _mirror(d, "train-images-idx3-ubyte.gz",
                                      lambda b: b[: len(b) // 2])),
    Case("wrong-idx-magic",
         ["data", "fetch", "-q", "--params", "{params}", "--mirror", "{bad}", "--url", "{url}"],
         [("magic number 0x00000803, expected 0x00000801", FIX_DATA)], code=1,
         bad=lambda d: _mirror(d, "train-labels-idx1-ubyte.gz", _recompressed(
             lambda r: struct.pack(">I", 0x803) + r[4:]))),
    Case("count-mismatch",
         ["data", "fetch", "-q", "--params", "{params}", "--mirror", "{bad}", "--url", "{url}"],
         [("t10k-labels-idx1-ubyte.gz: header says shape (9999,), expected (10000,)",
           FIX_DATA)], code=1,
         bad=lambda d: _mirror(d, "t10k-labels-idx1-ubyte.gz", _recompressed(
             lambda r: r[:4] + struct.pack(">I", 9999) + r[8:-1]))),
    Case("labels-out-of-range",
         ["data", "fetch", "-q", "--params", "{params}", "--mirror", "{bad}", "--url", "{url}"],
         [("label 12 is outside 0..9", FIX_DATA)], code=1,
         bad=lambda d: _mirror(d, "train-labels-idx1-ubyte.gz", _recompressed(_label_12))),
    Case("mirror-missing",
         ["data", "fetch", "-q", "--params", "{params}", "--mirror", "{bad}/nowhere", "--url",
          "{url}"], [("nowhere (no such directory)", FIX_DATA)], code=1),
    Case("url-without-scheme",
         ["data", "fetch", "-q", "--params", "{params}", "--mirror", "{bad}/nowhere", "--url",
          "example.org/fmnist/"],
         [("is not a URL", "write base URLs in full, like https://host/path/")], code=1),
    Case("csv-wrong-column-count", ["data", "fetch", "-q", "--params", "{params}"],
         [("bad/pixels.csv: malformed CSV", "Expected 5 fields in line 3, saw 6",
           "every row needs label + all pixels")], code=1,
         change=_all(_set("data.dataset", "csv"), _set("data.csv_path", "bad/pixels.csv")),
         bad=lambda d: (d.mkdir(), (d / "pixels.csv").write_text(
             "label,p0,p1,p2,p3\n0,1,2,3,4\n1,5,6,7,8,9\n"))),
    Case("archive-entry-escapes",
         ["data", "fetch", "tiny-imagenet", "-q", "--params", "{params}", "--mirror", "{bad}",
          "--url", "{url}"],
         [("entry '../escaped.txt' would be written outside", "refusing this zip",
           "get a clean copy")], code=1, bad=_escaping_zip),
    Case("unknown-dataset-argument", ["data", "fetch", "cifar", "-q", "--params", "{params}"],
         [("unknown dataset 'cifar'", "must be one of")], code=1),
    # command-line arguments
    Case("unknown-subcommand", ["frobnicate"], [("invalid choice: 'frobnicate'",
                                                 "hpsweep --help")]),
    Case("unknown-option", ["status", "--parms", "x.toml"],
         [("unrecognized arguments: --parms", "hpsweep --help")]),
    Case("bad-argument-type", ["optuna", "worker", "first"],
         [("invalid int value: 'first'", "hpsweep optuna worker --help")]),
    Case("missing-params-file", ["plan", "--params", "{bad}/nope.toml"],
         [("nope.toml: file not found", "pass an existing params.toml")]),
    # Optuna storage
    Case("unreachable-storage", ["optuna", "setup", "--params", "{params}"],
         [("cannot open Optuna storage " + UNREACHABLE_PG, "Connection refused",
           "fix optuna.storage in")], code=1, change=_set("optuna.storage", UNREACHABLE_PG)),
    Case("unreachable-storage-status", ["status", "--params", "{params}"],
         [("cannot open Optuna storage", "fix optuna.storage in")], code=1,
         change=_set("optuna.storage", UNREACHABLE_PG)),
    Case("storage-password-variable-unset", ["optuna", "setup", "--params", "{params}"],
         [("uses ${HPSWEEP_TEST_NO_SUCH_VAR}, which is not set",
           "export HPSWEEP_TEST_NO_SUCH_VAR")], code=1,
         change=_set("optuna.storage",
                     "postgresql+psycopg2://u:${HPSWEEP_TEST_NO_SUCH_VAR}@127.0.0.1:1/x")),
    Case("storage-not-a-url", ["optuna", "setup", "--params", "{params}"],
         [("optuna.storage = 'optuna-db'", "is not a storage", "journal:PATH")], code=1,
         change=_set("optuna.storage", "optuna-db")),
    Case("collect-before-setup", ["optuna", "collect", "--params", "{params}"],
         [("is not in", "run the optuna_setup and optuna_worker jobs first")], code=1),
    # disks
    Case("read-only-results-optuna", ["optuna", "setup", "--params", "{params}"],
         [("results/optuna: Read-only file system", "make it writable")], code=1,
         mount="ro:results"),
    Case("read-only-results-sync", ["runs", "sync", "--params", "{params}"],
         [("Read-only file system", "results/ or data/", "make it writable")], code=1,
         mount="ro:results"),
    Case("full-disk-fetch", ["data", "fetch", "-q", "--params", "{params}", "--mirror",
                             str(FMNIST_MIRROR), "--url", "{url}"],
         [("no space left on device", "free disk space")], code=1, mount="tmpfs:data/raw"),
    Case("full-disk-prepare", ["data", "prepare", "--params", "{params}"],
         [("data/prepared/fashion-mnist.pt: No space left on device", "free disk space")],
         code=1, raw=True, mount="tmpfs:data/prepared"),
    # Snakemake: validation before any job
    Case("snakemake-invalid-params", ["snakemake", "-n"],
         [("train.lr = -1.0", "greater than 0"), ("train.learnig_rate", "unknown key")],
         change=_all(_set("train.lr", -1.0), _set("train.learnig_rate", 1))),
    Case("snakemake-cnn-key-on-mlp", ["snakemake", "-n"],
         [("sweeps.k", "is a CNN key")],
         change=_set("sweeps.k", {"param": "model.channels", "values": [[8]]})),
    Case("snakemake-missing-params", ["snakemake", "-n", "--config", "params={bad}/no.toml"],
         [("no.toml: file not found", "pass an existing params.toml")]),
]


def _mounts_work() -> str | None:
    """None if `unshare -m` + mount work here, else why not."""
    if shutil.which("unshare") is None:
        return "no unshare(1)"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"],
                           capture_output=True, text=True)
    return None if probe.returncode == 0 else \
        f"cannot mount in a private namespace ({probe.stderr.strip()[:100]})"


def _wrap_mount(spec: str, argv: list[str]) -> list[str]:
    kind, target = spec.split(":")
    if kind == "ro":
        script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    else:  # a 1 MiB filesystem: the first large write fails with ENOSPC
        script = 'mkdir -p "$0" && mount -t tmpfs -o size=1m tmpfs "$0" && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, target, *argv]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, base: Path, url404: str, tmp_path: Path):
    if case.mount:
        why = _mounts_work()
        if why:
            pytest.skip(f"a read-only/full disk is simulated with a mount: {why}")
    # The project: completed work (hard links: a write in place would show in base too,
    # and be caught here), the params and the bad inputs.
    shutil.copytree(base / "data" / "prepared", tmp_path / "data" / "prepared",
                    copy_function=os.link)
    shutil.copytree(base / "results", tmp_path / "results", copy_function=os.link)
    if case.raw:
        shutil.copytree(base / "data" / "raw", tmp_path / "data" / "raw", copy_function=os.link)
    if case.params_text is not None:
        (tmp_path / "params.toml").write_text(case.params_text)
    else:
        _params(tmp_path, case.change)
    bad = tmp_path / "bad"
    if case.bad:
        case.bad(bad)
    fill = {"{params}": "params.toml", "{bad}": str(bad), "{url}": url404}

    def sub(arg: str) -> str:
        for k, v in fill.items():
            arg = arg.replace(k, v)
        return arg

    argv = [sub(a) for a in case.argv]
    if argv[0] == "snakemake":
        argv = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--cores", "1",
                "--config", "params=params.toml", *argv[1:]]
    else:
        argv = [HPSWEEP, *argv]
    if case.mount:
        argv = _wrap_mount(case.mount, argv)
    before = _snapshot(tmp_path)

    res = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, **case.env})

    assert res.returncode == case.code, (res.returncode, res.stdout[-2000:], res.stderr[-3000:])
    assert "Traceback" not in res.stderr + res.stdout
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == len(case.lines), res.stderr
    for expected in case.lines:
        assert any(all(s in line for s in expected) for line in lines), (expected, res.stderr)
    after = _snapshot(tmp_path)
    for path, stamp in before.items():
        assert after.get(path) == stamp, f"{path} was changed or removed"
    leftovers = [p for p in after if any(part.startswith(".") for part in Path(p).parts)]
    assert not leftovers, f"temp files left behind: {leftovers}"
    assert not (tmp_path / "data" / "escaped.txt").exists()
    assert not (tmp_path / "data" / "raw" / "escaped.txt").exists()


def test_the_catalogue_is_large_enough():
    assert len(CASES) >= 25


@pytest.mark.skipif(_mounts_work() is not None, reason="needs mounts in a private namespace")
def test_status_reads_a_read_only_results_directory(base, tmp_path):
    """`hpsweep status` only reads: it works on a read-only results directory."""
    shutil.copytree(base / "results", tmp_path / "results", copy_function=os.link)
    _params(tmp_path, _set("optuna.enabled", True))
    res = subprocess.run(_wrap_mount("ro:results", [HPSWEEP, "status", "--params",
                                                   "params.toml"]),
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "1 done" in res.stdout and "no Optuna study yet" in res.stdout
    assert not res.stderr


# -- safe loading and secrets --------------------------------------------------------------------

def _torch_load_calls() -> list[tuple[str, bool]]:
    """(where, has a literal weights_only=True) for every torch.load(...) in src/."""
    found = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "load"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
                kw = {k.arg: k.value for k in node.keywords}
                safe = isinstance(kw.get("weights_only"), ast.Constant) and \
                    kw["weights_only"].value is True
                found.append((f"{path.relative_to(ROOT)}:{node.lineno}", safe))
    return found


def test_every_torch_load_is_weights_only():
    """Checkpoints, prepared data and exported models are loaded with weights_only=True,
    so a tampered file cannot run code; no other unpickler reads files."""
    calls = _torch_load_calls()
    assert len(calls) >= 4, calls  # checkpoint resume, prepared data, export, load_exported
    assert [where for where, safe in calls if not safe] == []
    for path in (ROOT / "src").rglob("*.py"):
        text = path.read_text()
        for banned in ("import pickle", "import dill", "joblib.load", "from torch import load",
                       "weights_only=False", "add_safe_globals"):
            assert banned not in text, f"{path.relative_to(ROOT)}: {banned}"


class _Payload:
    """Unpickling this runs code: what a tampered checkpoint would carry."""

    def __init__(self, flag: Path):
        self.flag = flag

    def __reduce__(self):
        return (Path.touch, (self.flag,))


def test_a_tampered_checkpoint_is_refused_not_run(tmp_path, caplog):
    import torch

    from hpsweep.data.prepared import load_prepared
    from hpsweep.training.checkpoint import CKPT_FORMAT, load_resume

    flag = tmp_path / "code-ran"
    last = tmp_path / "last.pt"
    torch.save({"format": CKPT_FORMAT, "identity": {}, "evil": _Payload(flag)}, last)
    with caplog.at_level("WARNING"):
        assert load_resume(last, {"seed": 0}) is None  # a warning, then training from scratch
    assert "unreadable" in caplog.text and not flag.exists()
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do, as long as nothing ran
        load_prepared(last)
    assert not flag.exists()


@pytest.mark.parametrize(("url", "secret"), [
    ("postgresql+psycopg2://alice:s3cr3t@db:5432/optuna", "s3cr3t"),
    ("postgresql://alice:p@ss/w0rd@db/optuna", "p@ss/w0rd"),  # unescaped @ and /
    ("postgresql://db/optuna?user=alice&password=s3cr3t&sslmode=require", "s3cr3t"),
    ("connection failed: dbname=optuna user=alice password=s3cr3t host=db", "s3cr3t"),
])
def test_masking_hides_every_form_of_password(url, secret):
    from hpsweep.tuning.storage import mask

    masked = mask(url)
    assert secret not in masked and "***" in masked
    assert "alice" in masked or "alice" not in url


@pytest.mark.postgres
def test_storage_password_never_reaches_files_logs_or_status(tmp_path, postgres_url, caplog,  # noqa: F811
                                                             monkeypatch):
    """A real PostgreSQL study whose URL takes its password from the environment (the
    server trusts loopback, so any password connects): setup, a worker, collect and
    `hpsweep status` never write or print it."""
    from tunefixtures import make_study

    from hpsweep.tuning.results import collect
    from hpsweep.tuning.tuner import Tuner
    from hpsweep.tuning.worker import run_worker, setup_study

    secret = "Pa55-w0rd-never-shown"
    monkeypatch.setenv("HPSWEEP_TEST_PGPASS", secret)
    url = postgres_url.replace("postgres@", "postgres:${HPSWEEP_TEST_PGPASS}@", 1)
    study = make_study(tmp_path, study={"name": "secret-check"},
                       optuna={"n_trials": 2, "n_workers": 1, "storage": url})
    assert secret in Tuner(study).url  # it is really used to connect
    with caplog.at_level("DEBUG"):
        setup_study(study)
        run_worker(study, 0, threads=1)
        best = collect(study)
    cli = subprocess.run([HPSWEEP, "-vv", "status", "--params", "params.toml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert "trials: 2 complete" in cli.stdout and "postgres:***@" in cli.stdout
    assert best["storage"].count("***") == 1
    leaks = [str(p) for p in tmp_path.rglob("*") if p.is_file()
             and secret.encode() in p.read_bytes()]
    assert leaks == []
    assert secret not in caplog.text and secret not in cli.stdout + cli.stderr
    ostudy = Tuner(study).load()
    stored = json.dumps([ostudy.user_attrs] +
                        [[t.user_attrs, t.system_attrs] for t in ostudy.trials], default=str)
    assert secret not in stored
