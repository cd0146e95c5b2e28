"""fetch(): mirrors, checksums, atomic installs, and HTTP through a real loopback server."""

from __future__ import annotations

import gzip
import socket
import threading
from contextlib import contextmanager
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import idx_bytes

from hpsweep.data import DataError, fetch
from hpsweep.data.download import Retry, install_copy, install_download, read_record
from hpsweep.data.idx import verify as verify_idx

FAST = Retry(attempts=3, backoff=0.01, timeout=5)


class _Handler(BaseHTTPRequestHandler):
    """Serves server.files; mode 'drop' sends the full Content-Length, half the body,
    then closes; 'flaky' does that only on the first request for each path."""

    def do_GET(self):
        srv = self.server
        srv.hits.append(self.path)
        body = srv.files.get(self.path.removeprefix("/data/"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        drop = srv.mode == "drop" or (srv.mode == "flaky" and srv.hits.count(self.path) == 1)
        self.wfile.write(body[: len(body) // 2] if drop else body)
        self.close_connection = True

    def log_message(self, *args):
        pass


@contextmanager
def serve(files: dict[str, bytes], mode: str = "ok"):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.mode, srv.hits = files, mode, []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv, f"http://127.0.0.1:{srv.server_address[1]}/data/"
    finally:
        srv.shutdown()
        srv.server_close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"  # nothing listens there any more: connection refused


def listing(d):
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_fetch_from_mirror_is_idempotent(tmp_path, toy_idx):
    raw = tmp_path / "raw"
    out = fetch(toy_idx.name, raw, mirrors=[str(toy_idx.mirror)], urls=[], progress=False)
    assert out == raw / "toy-idx"
    assert listing(out) == sorted([*toy_idx.gz, "fetch.json"])
    rec = read_record(out)
    assert rec["train-images-idx3-ubyte.gz"]["source"] == str(toy_idx.mirror /
                                                             "train-images-idx3-ubyte.gz")
    assert rec["train-images-idx3-ubyte.gz"]["verified_by"] == "content-sha256"
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    # Second call: everything verifies, nothing is copied or rewritten, no source needed.
    fetch(toy_idx.name, raw, mirrors=[], urls=[closed_port_url()], progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps


def test_bad_mirror_falls_through_to_the_next(tmp_path, toy_idx):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in toy_idx.gz:  # right names, wrong content
        (bad / name).write_bytes(gzip.compress(idx_bytes(toy_idx.arrays[name][::-1])))
    out = fetch(toy_idx.name, tmp_path / "raw",
                mirrors=[str(tmp_path / "absent"), str(bad), str(toy_idx.mirror)], progress=False)
    for name, data in toy_idx.gz.items():
        assert (out / name).read_bytes() == data
        assert read_record(out)[name]["source"].startswith(str(toy_idx.mirror))


def test_checksum_failure_never_replaces_a_good_file(tmp_path, toy_idx):
    out = fetch(toy_idx.name, tmp_path / "raw", mirrors=[str(toy_idx.mirror)], progress=False)
    name = "train-labels-idx1-ubyte.gz"
    dest, good = out / name, (out / name).read_bytes()
    spec = next(f for f in toy_idx.spec.files if f.name == name)
    verify = partial(verify_idx, spec=spec, num_classes=4)
    bad = tmp_path / name
    bad.write_bytes(gzip.compress(idx_bytes(toy_idx.arrays[name][::-1])))
    with pytest.raises(DataError, match="does not match"):
        install_copy(bad, dest, verify)
    with serve({name: bad.read_bytes()}) as (srv, url):
        with pytest.raises(DataError, match="does not match"):
            install_download(url + name, dest, verify, FAST, progress=False)
        assert len(srv.hits) == 1  # wrong content is not retried
    assert dest.read_bytes() == good
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp file left


def test_existing_corrupt_file_is_refetched(tmp_path, toy_idx):
    out = tmp_path / "raw" / toy_idx.name
    out.mkdir(parents=True)
    name = "t10k-images-idx3-ubyte.gz"
    (out / name).write_bytes(toy_idx.gz[name][:-30])  # truncated by an earlier crash
    fetch(toy_idx.name, tmp_path / "raw", mirrors=[str(toy_idx.mirror)], progress=False)
    assert (out / name).read_bytes() == toy_idx.gz[name]


def test_http_download_through_loopback_server(tmp_path, toy_idx):
    with serve(toy_idx.gz) as (srv, url):
        out = fetch(toy_idx.name, tmp_path / "raw", mirrors=[], urls=[url], progress=True,
                    retry=FAST)
    assert sorted(srv.hits) == sorted(f"/data/{n}" for n in toy_idx.gz)
    for name, data in toy_idx.gz.items():
        assert (out / name).read_bytes() == data
        assert read_record(out)[name]["source"] == url + name


def test_http_retries_a_dropped_connection(tmp_path, toy_idx):
    with serve(toy_idx.gz, mode="flaky") as (srv, url):
        out = fetch(toy_idx.name, tmp_path / "raw", mirrors=[], urls=[url], progress=False,
                    retry=FAST)
    assert len(srv.hits) == 2 * len(toy_idx.gz)  # each file: one dropped, one good
    assert all((out / n).read_bytes() == d for n, d in toy_idx.gz.items())


def test_http_dropped_every_time_fails_and_leaves_nothing(tmp_path, toy_idx):
    raw = tmp_path / "raw"
    with serve(toy_idx.gz, mode="drop") as (srv, url):
        with pytest.raises(DataError) as e:
            fetch(toy_idx.name, raw, mirrors=[], urls=[url], progress=False, retry=FAST)
    msg = str(e.value)
    assert "connection closed after" in msg and "after 3 tries" in msg
    assert len(srv.hits) == 3  # retried, then gave up on the first file
    assert listing(raw / toy_idx.name) == []  # no partial file, nothing that looks complete


def test_http_404_is_not_retried(tmp_path, toy_idx):
    with serve({}) as (srv, url):
        with pytest.raises(DataError, match="HTTP 404"):
            fetch(toy_idx.name, tmp_path / "raw", mirrors=[], urls=[url], progress=False,
                  retry=FAST)
    assert len(srv.hits) == 1


def test_offline_error_lists_every_source(tmp_path, toy_idx):
    url = closed_port_url()
    with pytest.raises(DataError) as e:
        fetch(toy_idx.name, tmp_path / "raw", mirrors=[str(tmp_path / "nomirror"), "http://m/"],
              urls=[url], progress=False, retry=FAST)
    msg = str(e.value)
    assert "\n" not in msg
    assert "mirror http://m/ (a URL: base URLs belong in data.urls)" in msg
    assert str(tmp_path / "nomirror") in msg and url in msg and "after 3 tries" in msg
    assert msg.endswith("Fix: provide toy files")


def test_offline_error_for_fashion_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError) as e:
        fetch("fashion-mnist", tmp_path / "raw", mirrors=[str(tmp_path / "none")],
              urls=[closed_port_url()], progress=False, retry=Retry(attempts=1))
    msg = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "data.mirrors" in msg
    assert "train-images-idx3-ubyte.gz" in msg


def test_unknown_dataset_and_no_sources(tmp_path, toy_idx):
    with pytest.raises(DataError, match="unknown dataset 'cifar'"):
        fetch("cifar", tmp_path, mirrors=[])
    toy = toy_idx.spec  # no official URLs and no mirrors: say so
    assert toy.urls == ()
    with pytest.raises(DataError, match="data.mirrors and data.urls are empty"):
        fetch(toy_idx.name, tmp_path, mirrors=[], urls=[], progress=False)


def test_installed_files_are_readable_by_others(tmp_path, toy_idx):
    out = fetch(toy_idx.name, tmp_path / "raw", mirrors=[str(toy_idx.mirror)], progress=False)
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in out.iterdir())
