"""Remote reads against a small HTTP server on loopback that misbehaves on purpose: 5xx
answers (retried with backoff, bounded), a connection closed halfway through a body (a typed
error and no result), and a check that range requests are really in flight together.

Each test runs with obstore and with the standard-library client that forked children use
(:mod:`dicube.storage.pyhttp`)."""
from __future__ import annotations

import http.server
import re
import threading
import time

import numpy as np
import pytest

import dicube
from dicube.exceptions import DicomCubeError, SourceError
from dicube.storage import sources
from dicube.storage.reader import DcbsReader
from dicube.storage.sources import REMOTE_FIRST_READ, TransferStats


class FileServer:
    """Serves one file's bytes at any path with Range support; ``plan(start)`` decides per
    request: "ok", "503", "cut" (send half the body, then close the connection) or "full"
    (ignore Range: 200 and the whole file) or "stall" (never answer)."""

    def __init__(self, data: bytes):
        self.data = data
        self.seen: list[tuple[int, str]] = []  # (first byte, what was done)
        self.plan = lambda start: "ok"
        self.lock = threading.Lock()
        self.release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                m = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
                start, end = (int(m[1]), int(m[2]) + 1) if m else (0, len(outer.data))
                end = min(end, len(outer.data))
                what = outer.plan(start)
                with outer.lock:
                    outer.seen.append((start, what))
                if what == "503":
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if what == "stall":  # headers never come (until the test ends)
                    outer.release.wait(30)
                    return
                if what == "full":  # a server that ignores Range
                    m, start, end = None, 0, len(outer.data)
                body = outer.data[start:end]
                self.send_response(206 if m else 200)
                self.send_header("Content-Length", str(len(body)))
                if m:
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(outer.data)}")
                self.end_headers()
                if what == "cut":
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        class Quiet(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):  # cut connections are the point
                pass

        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(params=["obstore", "stdlib"])
def server(request, dcbs_samples, monkeypatch):
    if request.param == "stdlib":  # as in a process forked after its parent used obstore
        monkeypatch.setattr(sources, "_obstore_pid", -1)
    s = FileServer(dcbs_samples["sample_10"].read_bytes())
    s.backend = request.param
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def ref(dcbs_samples):
    return dicube.load(dcbs_samples["sample_10"])


def test_5xx_then_success_is_retried(server, ref):
    failed = set()

    def plan(start):  # every range fails once, then succeeds
        if start in failed:
            return "ok"
        failed.add(start)
        return "503"

    server.plan = plan
    stats = TransferStats()
    img = dicube.load(f"{server.url}/ct.dcbs", stats=stats, coalesce_gap=0, frames=[2, 5, 8])
    assert np.array_equal(img.raw_image, ref.raw_image[[2, 5, 8]])
    starts = [s for s, _ in server.seen]
    assert len(starts) == 2 * 4 and all(starts.count(s) == 2 for s in set(starts))
    assert stats.requests == 4  # the successful ones


def test_persistent_5xx_fails_after_bounded_retries(server):
    server.plan = lambda start: "503" if start >= REMOTE_FIRST_READ else "ok"
    url = f"{server.url}/ct.dcbs"
    t = time.monotonic()
    with pytest.raises(SourceError) as info:
        dicube.load(url)
    assert time.monotonic() - t < 10
    assert info.value.path == url and "503" in str(info.value)
    tries = [s for s, what in server.seen if what == "503"]
    assert 2 <= len(tries) <= 4  # the first try and at most 3 retries


def test_connection_closed_mid_body_gives_typed_error_and_no_result(server):
    server.plan = lambda start: "cut" if start >= REMOTE_FIRST_READ else "ok"
    url = f"{server.url}/ct.dcbs"
    result = None
    with pytest.raises(DicomCubeError) as info:
        result = dicube.load(url)
    assert result is None
    assert isinstance(info.value, SourceError) and info.value.path == url
    assert any(what == "cut" for _, what in server.seen)
    # the head was fine: reading metadata only still works
    assert len(dicube.load_meta(url)) == 10


def test_cut_head_gives_typed_error(server):
    server.plan = lambda start: "cut"
    with pytest.raises(SourceError):
        DcbsReader(f"{server.url}/ct.dcbs")


def test_range_requests_are_in_flight_together(server, ref):
    """Each frame request waits until another one has arrived: sequential requests would
    fail the barrier (and the load)."""
    barrier = threading.Barrier(2, timeout=5)

    def plan(start):
        if start < REMOTE_FIRST_READ:
            return "ok"
        try:
            barrier.wait()
            return "ok"
        except threading.BrokenBarrierError:
            return "503"

    server.plan = plan
    img = dicube.load(f"{server.url}/ct.dcbs", frames=[3, 7], coalesce_gap=0)
    assert np.array_equal(img.raw_image, ref.raw_image[[3, 7]])
    assert [what for _, what in server.seen] == ["ok"] * 3


def test_server_ignoring_range_is_refused(server):
    server.plan = lambda start: "full"
    url = f"{server.url}/ct.dcbs"
    with pytest.raises(SourceError) as info:
        dicube.load(url)
    assert info.value.path == url


def test_stalled_frames_time_out_with_the_timeouts_given(server):
    server.plan = lambda start: "stall" if start >= REMOTE_FIRST_READ else "ok"
    url = f"{server.url}/ct.dcbs"
    t = time.monotonic()
    with pytest.raises(SourceError, match="timed out") as info:
        dicube.load(url, timeouts=(0.5, 0.5))
    assert time.monotonic() - t < 8
    assert info.value.path == url
