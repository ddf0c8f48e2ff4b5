"""``dicube serve`` on the command line and ``dicube.server.serve`` from Python."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from cli_helpers import run_cli
from dicube.server.run import parse_destination, parse_dimse, parse_hostport

URL = re.compile(r"DICOMweb: (http://\S+/dicom-web)")


def _start(*args, env=None):
    proc = subprocess.Popen([sys.executable, "-m", "dicube", "serve", *map(os.fspath, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    lines = []
    url = None
    deadline = time.monotonic() + 60
    for line in proc.stdout:  # the servers start at once, the "Indexed" line follows
        lines.append(line)
        m = URL.search(line)
        url = url or (m and m.group(1))
        if url and any(s.startswith("Indexed") for s in lines):
            return proc, url, lines
        assert time.monotonic() < deadline
    proc.kill()
    pytest.fail("dicube serve did not start: " + "".join(lines) + proc.stderr.read())


def _stop(proc, sig=signal.SIGINT):
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail("dicube serve did not stop")
    return proc.returncode, out, err


def test_serve_command_answers_with_the_token_and_stops_cleanly_on_ctrl_c(serve_archive):
    proc, url, lines = _start(serve_archive, "--http", "127.0.0.1:0",
                              env={"DICUBE_SERVE_TOKEN": "tok"})
    try:
        text = "".join(lines)
        assert "3 studies, 3 series, 12 instances" in text
        assert "authentication required" in text
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{url}/studies", timeout=10).status_code == 401
        r = httpx.get(f"{url}/studies", headers={"Authorization": "Bearer tok"}, timeout=10)
        assert r.status_code == 200 and len(r.json()) == 3
    finally:
        rc, out, err = _stop(proc, signal.SIGINT)
    assert rc == 0, err
    assert "Stopped." in out
    assert "Traceback" not in err


@pytest.mark.parametrize("args,message", [
    (["--http", "localhost"], "expected HOST:PORT"),
    (["--http", "127.0.0.1:99999"], "not a port number"),
    (["--http", "off"], "nothing to serve"),
    (["--dimse", "WAY_TOO_LONG_AE_TITLE@127.0.0.1:104"], "not an AE title"),
    (["--dimse", "A@h:x"], "not a port number"),
    (["--move-destination", "STORE=127.0.0.1:104"], "needs --dimse"),
    (["--dimse", "A@127.0.0.1:0", "--move-destination", "STORE"], "expected AET=HOST:PORT"),
])
def test_bad_addresses_are_refused_before_indexing(capsys, serve_archive, args, message):
    rc, out, err = run_cli(capsys, "serve", serve_archive, *args)
    assert rc == 2 and message in err and "Indexed" not in out


def test_missing_folder_is_one_error_line(capsys, tmp_path):
    rc, out, err = run_cli(capsys, "serve", tmp_path / "nope", "--http", "127.0.0.1:0")
    assert rc == 1
    assert err.startswith("dicube serve: error:") and "nope" in err and len(err.splitlines()) == 1


def test_address_parsing():
    assert parse_hostport("0.0.0.0:8042") == ("0.0.0.0", 8042)
    assert parse_hostport(":8042") == ("127.0.0.1", 8042)
    assert parse_hostport("[::1]:80") == ("::1", 80)
    assert parse_dimse("PACS@127.0.0.1:11112") == ("PACS", "127.0.0.1", 11112)
    assert parse_dimse("127.0.0.1:4242") == ("DICUBE", "127.0.0.1", 4242)
    assert parse_destination("STORE=10.0.0.2:104") == ("STORE", ("10.0.0.2", 104))
    with pytest.raises(ValueError):
        parse_dimse("@127.0.0.1:104")


def test_python_api_serves_until_stopped(serve_archive):
    from dicube.server import serve

    stop = threading.Event()
    said: list = []
    worker = threading.Thread(target=serve, args=(serve_archive,),
                              kwargs=dict(http="127.0.0.1:0", stop=stop, print_fn=said.append))
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while not any(s.startswith("Indexed") for s in said):
            assert worker.is_alive() and time.monotonic() < deadline
            time.sleep(0.02)
        url = URL.search(next(s for s in said if "DICOMweb" in s)).group(1)
        assert len(httpx.get(f"{url}/studies", timeout=10).json()) == 3
    finally:
        stop.set()
        worker.join(20)
    assert not worker.is_alive() and said[-1] == "Stopped."
    with pytest.raises(ValueError):
        serve(serve_archive, readonly=False)


def test_dimse_option_starts_the_dimse_server(serve_archive):
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    try:
        from dicube.server.dimse import start_dimse  # noqa: F401
    except ImportError:
        pytest.fail("dicube.server.dimse is missing")
    from preview_servers import free_port

    port = free_port()
    proc, url, lines = _start(serve_archive, "--http", "127.0.0.1:0", "--dimse",
                              f"DICUBE@127.0.0.1:{port}")
    try:
        text = "".join(lines)
        deadline = time.monotonic() + 30
        while "DIMSE:" not in text and time.monotonic() < deadline:
            text += proc.stdout.readline()
        assert f"DICUBE@127.0.0.1:{port}" in text
        ae = AE(ae_title="TESTSCU")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", port, ae_title="DICUBE")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        assoc.release()
    finally:
        rc, out, err = _stop(proc, signal.SIGTERM)
    assert rc == 0, err
    assert "Stopped." in out


def test_a_port_in_use_is_one_error_line(capsys, serve_archive):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rc, out, err = run_cli(capsys, "serve", serve_archive, "--http", f"127.0.0.1:{port}")
    assert rc == 1
    assert f"dicube serve: error: the HTTP server did not start on 127.0.0.1:{port}" in err
    assert "Stopped." in out
