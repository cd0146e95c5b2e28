"""Getting verified raw files onto disk: local mirrors first, then URLs.

Every file is written to a hidden temp file beside its destination, verified
there, then renamed into place (os.replace is atomic on one filesystem). So a
killed or failed transfer never leaves a file that looks complete, and a good
file already in place is only ever replaced by another verified one.
fetch() is idempotent: files that are present and verify are left alone.
A record of where each file came from is kept in raw_dir/<dataset>/fetch.json
for the prepare manifest.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import logging
import os
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from hpsweep.core.atomic import atomic_path, write_json
from hpsweep.data import DataError
from hpsweep.data.formats import read_pixel_csv, scan_tiny
from hpsweep.data.idx import verify as verify_idx
from hpsweep.data.sources import CSV_FILE, DatasetSpec, get_spec

log = logging.getLogger(__name__)

RECORD = "fetch.json"
USER_AGENT = "hpsweep-data/0.1 (python urllib)"

Verify = Callable[[Path], dict]


@dataclass(frozen=True)
class Retry:
    """HTTP retry policy: `attempts` tries per URL, sleeping backoff, 2*backoff, ...

    `timeout` bounds each socket operation (connect, one read), not the transfer.
    """

    attempts: int = 3
    backoff: float = 1.0
    timeout: float = 30.0


class _Transient(Exception):
    """A transfer failure worth retrying (short read)."""


# ---------------------------------------------------------------- primitives


def file_hash(path: Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def install_copy(src: Path, dest: Path, verify: Verify) -> dict:
    """Copy src to dest through a verified temp file; return verify's record."""
    with atomic_path(dest) as tmp:  # verified before it replaces dest
        shutil.copyfile(src, tmp)
        return verify(tmp)


def _stream(url: str, tmp: Path, timeout: float, progress: bool, desc: str) -> None:
    from tqdm import tqdm

    with urlopen(Request(url, headers={"User-Agent": USER_AGENT}), timeout=timeout) as resp:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        got = 0
        with open(tmp, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc=desc,
                                          disable=not progress, leave=False) as bar:
            while chunk := resp.read(1 << 16):
                out.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
    # http.client returns a short body without error when the peer closes early.
    if total is not None and got != total:
        raise _Transient(f"connection closed after {got} of {total} bytes")


def install_download(url: str, dest: Path, verify: Verify, retry: Retry | None = None,
                     progress: bool = True) -> dict:
    """Download url to dest through a verified temp file, retrying transient failures.

    HTTP 4xx (except 408/429) and content that fails verification are not
    retried: another try would get the same answer.
    """
    retry = retry or Retry()
    last = "not tried"
    for attempt in range(1, retry.attempts + 1):
        try:
            with atomic_path(dest) as tmp:  # verified before it replaces dest
                _stream(url, tmp, retry.timeout, progress, dest.name)
                return verify(tmp)
        except HTTPError as e:
            last = f"HTTP {e.code} {e.reason}"
            if e.code < 500 and e.code not in (408, 429):
                raise DataError(last) from None
        except URLError as e:
            last = str(e.reason)
        except ValueError as e:  # "unknown url type": a base URL without scheme://
            raise DataError(f"{url!r} is not a URL ({e}); write base URLs in full, like "
                            "https://host/path/") from None
        except (_Transient, OSError, http.client.HTTPException) as e:
            last = str(e) or type(e).__name__
        log.info("%s: try %d/%d failed: %s", url, attempt, retry.attempts, last)
        if attempt < retry.attempts:
            time.sleep(retry.backoff * 2 ** (attempt - 1))
    raise DataError(f"{last} (after {retry.attempts} tries)")


def safe_extract_zip(zip_path: Path, dest: Path) -> None:
    """Extract a zip into dest, refusing any entry that could land outside it.

    Checked before anything is written: absolute names, '..' parts, drive
    letters and symlink entries are all rejected (a dataset zip has no use for
    them, and each can overwrite files elsewhere).
    """
    dest = Path(dest).resolve()
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for info in zf.infolist():
                name = info.filename.replace("\\", "/")
                parts = PurePosixPath(name).parts
                escapes = (
                    name.startswith("/") or ".." in parts or (parts and ":" in parts[0])
                    or not (dest / name).resolve().is_relative_to(dest)
                )
                if escapes or stat.S_ISLNK(info.external_attr >> 16):
                    raise DataError(
                        f"{zip_path}: entry {info.filename!r} would be written outside {dest}"
                        " (absolute, '..' or symlink); refusing this zip, get a clean copy"
                    )
            zf.extractall(dest)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise DataError(f"{zip_path}: damaged zip ({e}); get a complete copy") from None


# ------------------------------------------------------------ the fetch record


def read_record(dest_dir: Path) -> dict:
    path = Path(dest_dir) / RECORD
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# ----------------------------------------------------------------------- fetch


def fetch(dataset: str, raw_dir: Path, mirrors: list[str], urls: list[str] | None = None,
          csv_path: str = "", progress: bool = True, *, retry: Retry | None = None) -> Path:
    """Put verified raw files for ``dataset`` into raw_dir/<dataset>/ and return that dir.

    Sources, in order: each mirror directory, then each base URL (``urls``, or
    the dataset's official ones when empty). CSV's only source is csv_path.
    Raises DataError naming every source tried and how to provide the data.
    """
    spec = get_spec(dataset)
    dest_dir = Path(raw_dir) / spec.name
    dest_dir.mkdir(parents=True, exist_ok=True)
    bases = list(urls) if urls else list(spec.urls)
    # A URL in data.mirrors is a config slip: say so among the sources tried.
    mirrors = [str(m) for m in mirrors]
    notes = [f"mirror {m} (a URL: base URLs belong in data.urls)" for m in mirrors if "://" in m]
    mirror_dirs = [Path(m).expanduser() for m in mirrors if "://" not in m]
    old = read_record(dest_dir)
    args = (spec, dest_dir, mirror_dirs, bases, retry or Retry(), progress, old, notes)
    if spec.kind == "idx":
        record = _fetch_idx(*args)
    elif spec.kind == "tiny-imagenet":
        record = _fetch_tiny(*args)
    else:
        record = _fetch_csv(spec, dest_dir, csv_path, old)
    if record != old:
        write_json(dest_dir / RECORD, record)
    return dest_dir


def _first_source(what: str, spec: DatasetSpec, tried: list[str],
                  candidates: list[tuple[str, Callable[[], dict]]]) -> dict:
    """Run candidates in order until one installs; DataError listing all of them if none."""
    for label, attempt in candidates:
        try:
            info = attempt()
        except (DataError, OSError) as e:  # OSError: an unreadable mirror, a full disk
            if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
                # Another source would fill the same disk: say what is wrong, not "tried".
                name = e.filename2 or e.filename
                dest = Path(name).parent if name else "the raw data directory"
                raise DataError(f"cannot write {spec.name} {what}: no space left on device "
                                f"({dest}); free disk space or point study.data_dir at a "
                                "larger disk, then rerun (verified files are kept)") from None
            tried.append(f"{label} ({e})")
            continue
        log.info("%s: got %s from %s", spec.name, what, label)
        return {"source": label, **info}
    sources = "; ".join(tried) if tried else "no sources (data.mirrors and data.urls are empty)"
    raise DataError(f"cannot fetch {spec.name} {what}; tried: {sources}. Fix: {spec.hint}")


def _url(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def _fetch_idx(spec, dest_dir, mirrors, bases, retry, progress, old, notes) -> dict:
    record = {}
    for f in spec.files:
        dest = dest_dir / f.name
        verify = partial(verify_idx, spec=f, num_classes=len(spec.classes))
        tried = list(notes)
        if dest.is_file():
            try:
                info = verify(dest)
                record[f.name] = {"source": "already present", **old.get(f.name, {}), **info}
                continue
            except DataError as e:
                tried.append(f"existing {dest} ({e})")
        candidates = []
        for m in mirrors:
            if not m.is_dir():
                tried.append(f"mirror {m} (no such directory)")
            elif not (m / f.name).is_file():
                tried.append(f"mirror {m} (no {f.name})")
            else:
                src = m / f.name
                candidates.append((str(src), partial(install_copy, src, dest, verify)))
        candidates += [
            (_url(b, f.name),
             partial(install_download, _url(b, f.name), dest, verify, retry, progress))
            for b in bases
        ]
        record[f.name] = _first_source(f.name, spec, tried, candidates)
    return record


def _install_tree(dest_dir: Path, tree: str, build: Callable[[Path], None], expect) -> dict:
    """Build the tree in a hidden staging dir, check it, then swap it into place."""
    staging = Path(tempfile.mkdtemp(dir=dest_dir, prefix=".staging-"))
    try:
        build(staging)
        layout = scan_tiny(staging / tree, expect)
        final = dest_dir / tree
        if final.exists():  # an existing tree failed its check; keep nothing of it
            os.replace(final, staging / ".old")
        os.replace(staging / tree, final)
        return {"classes": len(layout.wnids), "train": len(layout.train), "val": len(layout.val)}
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _fetch_tiny(spec, dest_dir, mirrors, bases, retry, progress, old, notes) -> dict:
    tree = dest_dir / spec.tree
    tried = list(notes)
    if tree.is_dir():
        try:
            scan_tiny(tree, spec.expect)
            return old or {spec.tree: {"source": "already present", "verified_by": "structure"}}
        except DataError as e:
            tried.append(f"existing {tree} ({e})")

    def from_dir(src: Path, staging: Path) -> None:
        shutil.copytree(src, staging / spec.tree)

    def from_zip(zip_path: Path, staging: Path) -> None:
        safe_extract_zip(zip_path, staging)

    def from_url(url: str, staging: Path) -> None:
        zip_path = staging / spec.archive
        install_download(url, zip_path, verify_zip, retry, progress)
        safe_extract_zip(zip_path, staging)

    def verify_zip(path: Path) -> dict:
        # The official zip is checked by md5 before it is unpacked; a zip from a
        # mirror may be repacked, so it is checked by structure and counts instead.
        if spec.archive_md5 and file_hash(path, "md5") != spec.archive_md5:
            raise DataError(f"{spec.archive}: md5 does not match the official {spec.archive_md5}")
        return {}

    candidates = []
    for m in mirrors:
        src_tree = next((d for d in (m / spec.tree, m) if (d / "wnids.txt").is_file()), None)
        if not m.is_dir():
            tried.append(f"mirror {m} (no such directory)")
        elif src_tree is not None:
            candidates.append((str(src_tree), partial(from_dir, src_tree)))
        elif (m / spec.archive).is_file():
            candidates.append((str(m / spec.archive), partial(from_zip, m / spec.archive)))
        else:
            tried.append(f"mirror {m} (neither {spec.tree}/ nor {spec.archive})")
    candidates += [(_url(b, spec.archive), partial(from_url, _url(b, spec.archive))) for b in bases]
    wrapped = [
        (label, partial(_install_tree, dest_dir, spec.tree, build, spec.expect))
        for label, build in candidates
    ]
    info = _first_source(f"{spec.tree}/", spec, tried, wrapped)
    by_md5 = spec.archive_md5 and "://" in info["source"]
    return {spec.tree: {**info, "verified_by": "zip-md5+structure" if by_md5 else "structure"}}


def _fetch_csv(spec, dest_dir, csv_path, old) -> dict:
    if not csv_path:
        raise DataError(f"dataset 'csv' has no data.csv_path. Fix: {spec.hint}")
    src = Path(csv_path).expanduser()
    if not src.is_file():
        raise DataError(f"data.csv_path = {csv_path!r}: no such file. Fix: {spec.hint}")
    dest = dest_dir / CSV_FILE
    src_sha = file_hash(src)
    # The copy is keyed by content, so pointing csv_path at another file refetches.
    if dest.is_file() and old.get(CSV_FILE, {}).get("sha256") == src_sha == file_hash(dest):
        return old

    def verify(path: Path) -> dict:
        try:
            read_pixel_csv(path)
        except DataError as e:  # name the user's file, not the hidden temp copy
            raise DataError(str(e).replace(str(path), str(src))) from None
        return {"sha256": file_hash(path), "verified_by": "parsed"}

    info = install_copy(src, dest, verify)
    return {CSV_FILE: {"source": str(src.resolve()), **info}}
