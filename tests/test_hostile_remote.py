"""Hostile servers: one that accepts and never answers, one whose directory index never ends,
one that drips it, one whose folders nest forever. Remote reads and listings give a
SourceError naming the URL within about the (small, test-set) timeouts, at bounded memory.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from dicube.exceptions import SourceError
from dicube.storage import limits, sources


class Server:
    """A TCP server on 127.0.0.1 running ``handle(conn, request_bytes)`` per connection."""

    def __init__(self, handle):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.conns = []
        self._handle = handle
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            req = conn.recv(65536)
            self._handle(conn, req)
        except OSError:
            pass

    def close(self):
        self._stop.set()
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def _silent(conn, req):
    time.sleep(60)  # accepted, read, never answered


def _endless(conn, req):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n")
    line = b'<a href="file%08d.dcm">x</a>\n' * 2048
    while True:
        conn.sendall(line)


def _drip(conn, req):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n")
    while True:
        conn.sendall(b" ")
        time.sleep(0.05)


def _nested(conn, req):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n"
                 b'<a href="a/">a/</a>')
    conn.close()


@pytest.fixture
def server(request):
    s = Server(request.param)
    yield s
    s.close()


FAST = (0.5, 0.5)


@pytest.mark.parametrize("server", [_silent], indirect=True)
@pytest.mark.parametrize("what", ["http", "listing", "children", "s3"])
def test_stalled_server_times_out_naming_url(server, what, monkeypatch):
    monkeypatch.setenv("DICUBE_CONNECT_TIMEOUT", "0.5")
    monkeypatch.setenv("DICUBE_READ_TIMEOUT", "0.5")
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    url = {"http": f"{server.url}/ct.dcbs", "listing": f"{server.url}/series/",
           "children": f"{server.url}/root/", "s3": f"s3://bucket-{server.port}/ct.dcbs"}[what]
    call = {"http": sources.open_source, "listing": sources.list_folder,
            "children": sources.list_children, "s3": sources.open_source}[what]
    t = time.monotonic()
    with pytest.raises(SourceError, match="timed out") as info:
        call(url)
    assert time.monotonic() - t < 3
    assert info.value.path == url
    assert "read timeout 0.5 s" in str(info.value)


@pytest.mark.parametrize("server", [_silent], indirect=True)
def test_timeouts_as_an_option(server):
    t = time.monotonic()
    with pytest.raises(SourceError, match="read timeout 0.3 s"):
        sources.open_source(f"{server.url}/x.dcbs", timeouts=(0.3, 0.3))
    with pytest.raises(SourceError, match="read timeout 0.3 s"):
        sources.list_folder(f"{server.url}/d/", timeouts=(0.3, 0.3))
    assert time.monotonic() - t < 3


def test_timeout_defaults_and_environment(monkeypatch):
    monkeypatch.delenv("DICUBE_CONNECT_TIMEOUT", raising=False)
    monkeypatch.delenv("DICUBE_READ_TIMEOUT", raising=False)
    assert sources.timeouts() == (10.0, 30.0) == (limits.CONNECT_TIMEOUT, limits.READ_TIMEOUT)
    monkeypatch.setenv("DICUBE_READ_TIMEOUT", "2.5")
    assert sources.timeouts() == (10.0, 2.5)
    assert sources.timeouts((1, 4)) == (1.0, 4.0)


@pytest.mark.parametrize("server", [_endless], indirect=True)
def test_endless_listing_is_capped_in_a_child(server, tmp_path):
    """The listing stops at MAX_LISTING_BYTES: a SourceError in under a few seconds and
    peak RSS (imports included) under 200 MB, in a child limited to 1.5 GB of address space."""
    script = textwrap.dedent(f"""
        import json, resource, time
        resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))
        from dicube.exceptions import SourceError
        from dicube.storage import sources
        t = time.perf_counter()
        try:
            sources.list_folder({server.url + "/series/"!r}, timeouts=(2, 2))
            err = None
        except SourceError as exc:
            err = str(exc)
        with open("/proc/self/status") as fh:
            hwm = [int(l.split()[1]) for l in fh if l.startswith("VmHWM:")][0] / 1024
        print(json.dumps([err, time.perf_counter() - t, hwm]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    err, seconds, rss_mb = json.loads(proc.stdout.strip().splitlines()[-1])
    assert err and "MAX_LISTING_BYTES" in err and server.url in err, err
    assert seconds < 5, seconds
    assert rss_mb < 200, rss_mb


@pytest.mark.parametrize("server", [_drip], indirect=True)
def test_dripping_listing_times_out(server):
    t = time.monotonic()
    with pytest.raises(SourceError, match="too slowly"):
        sources.list_folder(f"{server.url}/series/", timeouts=(0.2, 0.2))
    assert time.monotonic() - t < 4  # 10 read timeouts for the whole page


@pytest.mark.parametrize("server", [_nested], indirect=True)
def test_endlessly_nested_folders_are_refused(server):
    with pytest.raises(SourceError, match="MAX_LISTING_DEPTH"):
        sources.list_folder(f"{server.url}/series/", timeouts=FAST)


@pytest.mark.parametrize("server", [_silent], indirect=True)
@pytest.mark.parametrize("target", ["ct.dcbs", "series/"])
def test_mosaic_of_a_stalled_server_fails_in_seconds(server, target, capsys, tmp_path, monkeypatch):
    from cli_helpers import run_cli

    monkeypatch.setenv("DICUBE_CONNECT_TIMEOUT", "0.5")
    monkeypatch.setenv("DICUBE_READ_TIMEOUT", "0.5")
    t = time.monotonic()
    rc, _, err = run_cli(capsys, "mosaic", f"{server.url}/{target}", tmp_path / "m.webp")
    assert time.monotonic() - t < 5
    assert rc == 1 and "Traceback" not in err
    assert f"{server.url}/{target}" in err and "timed out" in err, err


@pytest.mark.parametrize("server", [_silent], indirect=True)
def test_cli_timeout_options(server, capsys, tmp_path, monkeypatch):
    """--connect-timeout/--read-timeout do what the environment variables do, for that
    command only; bad values are refused by the parser."""
    from cli_helpers import run_cli

    monkeypatch.delenv("DICUBE_CONNECT_TIMEOUT", raising=False)
    monkeypatch.delenv("DICUBE_READ_TIMEOUT", raising=False)
    t = time.monotonic()
    rc, _, err = run_cli(capsys, "--connect-timeout", "0.5", "--read-timeout", "0.5", "mosaic",
                         f"{server.url}/ct.dcbs", tmp_path / "m.webp")
    assert time.monotonic() - t < 5
    assert rc == 1 and "timed out" in err, err
    assert "DICUBE_READ_TIMEOUT" not in os.environ and "DICUBE_CONNECT_TIMEOUT" not in os.environ
    for bad in ("0", "-1", "abc", "inf"):
        with pytest.raises(SystemExit):
            run_cli(capsys, "--read-timeout", bad, "info", "x.dcbs")
