"""``dicube serve`` listens at once: while the first scan of a large archive runs, DICOMweb
and DIMSE answer from what is indexed so far, and DICOMweb says so (Warning 299; 503 with
Retry-After for what is not indexed yet)."""
from __future__ import annotations

import re
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from pydicom.dataset import Dataset

from dicube.server import index as index_module
from dicube.server.index import ArchiveIndex

STUDIES = 40
DELAY = 0.05  # seconds added to each file's head read: the first scan takes >= 2 s
URL = re.compile(r"DICOMweb: (http://\S+/dicom-web)")


@pytest.fixture(scope="module")
def big_archive(tmp_path_factory) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        from _serve_archive import make_archive
    finally:
        sys.path.pop(0)
    root = tmp_path_factory.mktemp("big_archive")
    make_archive(root, studies=STUDIES, series_per_study=1, instances_per_series=2, size=16)
    return root


@pytest.fixture
def slow_scan(monkeypatch):
    read = index_module._read_parts

    def slow(path):
        time.sleep(DELAY)
        return read(path)

    monkeypatch.setattr(index_module, "_read_parts", slow)


def test_index_without_waiting_publishes_as_it_goes(big_archive, slow_scan):
    started = time.monotonic()
    ix = ArchiveIndex(big_archive, wait=False)
    try:
        assert time.monotonic() - started < 0.5 and not ix.ready
        deadline = time.monotonic() + 30
        partial = None
        while not ix.ready and time.monotonic() < deadline:
            n = ix.counts()["studies"]
            done, total = ix.scan_progress()
            if 0 < n < STUDIES and not ix.ready:
                partial = (n, done, total)
            time.sleep(0.05)
        assert partial is not None, "no partial result published during the first scan"
        assert partial[2] == STUDIES and partial[1] <= STUDIES
        assert ix.wait_ready(30)
        assert ix.counts()["studies"] == STUDIES and ix.scan_progress() == (STUDIES, STUDIES)
        assert ix.first_scan_seconds >= STUDIES * DELAY
    finally:
        ix.close()


def test_close_stops_a_first_scan(big_archive, slow_scan):
    ix = ArchiveIndex(big_archive, wait=False)
    time.sleep(0.2)
    started = time.monotonic()
    ix.close()
    assert ix.wait_ready(2) and time.monotonic() - started < 1
    assert ix.counts()["studies"] < STUDIES


def _find_studies(port: int) -> "tuple[int, int]":
    """(C-ECHO status, number of STUDY matches) over one association."""
    from pynetdicom import AE
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification

    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(Verification)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", port, ae_title="DICUBE")
    assert assoc.is_established
    try:
        echo = assoc.send_c_echo().Status
        q = Dataset()
        q.QueryRetrieveLevel = "STUDY"
        q.StudyInstanceUID = ""
        found = 0
        for status, ident in assoc.send_c_find(q, StudyRootQueryRetrieveInformationModelFind):
            if status.Status == 0xFF00:
                found += 1
            else:
                assert status.Status == 0x0000
        return echo, found
    finally:
        assoc.release()


def _get_unknown_study(port: int):
    """The final status of a C-GET of a study nobody has (over its own association)."""
    from pynetdicom import AE
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET

    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(GET)
    assoc = ae.associate("127.0.0.1", port, ae_title="DICUBE")
    assert assoc.is_established
    try:
        q = Dataset()
        q.QueryRetrieveLevel = "STUDY"
        q.StudyInstanceUID = "1.2.3.4"
        return [status for status, _ in assoc.send_c_get(q, GET)][-1]
    finally:
        assoc.release()


def test_serve_listens_before_the_first_scan_ends(big_archive, slow_scan):
    from preview_servers import free_port

    from dicube.server import serve

    port = free_port()
    stop = threading.Event()
    said: list = []
    started = time.monotonic()
    worker = threading.Thread(target=serve, args=(big_archive,), kwargs=dict(
        http="127.0.0.1:0", dimse=f"DICUBE@127.0.0.1:{port}", stop=stop, print_fn=said.append))
    worker.start()
    try:
        while not any(s.startswith("Press Ctrl-C") for s in said):
            assert worker.is_alive() and time.monotonic() - started < 30
            time.sleep(0.01)
        listening = time.monotonic() - started
        assert not any(s.startswith("Indexed") for s in said), said
        assert listening < STUDIES * DELAY / 2
        url = URL.search(next(s for s in said if "DICOMweb" in s)).group(1)

        # searches answer what is indexed so far, and say so
        r = httpx.get(f"{url}/studies", timeout=10)
        assert r.status_code == 200
        assert re.match(r"299 dicube: Index incomplete: \d+ of 40 files scanned so far",
                        r.headers["warning"]), r.headers
        assert len(r.json()) < STUDIES
        # an unknown UID may not be indexed yet: 503 with Retry-After, not 404
        r = httpx.get(f"{url}/studies/1.2.3.4/metadata", timeout=10)
        assert r.status_code == 503 and int(r.headers["retry-after"]) > 0
        assert "first scan" in r.json()["error"]
        # DIMSE answers meanwhile too
        echo, found = _find_studies(port)
        assert echo == 0 and found < STUDIES
        status = _get_unknown_study(port)  # a failure saying why, not "0 instances, done"
        assert status.Status == 0xC001 and "not indexed yet" in status.ErrorComment

        while not any(s.startswith("Indexed") for s in said):
            assert time.monotonic() - started < 60
            time.sleep(0.05)
        assert f"{STUDIES} studies" in next(s for s in said if s.startswith("Indexed"))
        r = httpx.get(f"{url}/studies", timeout=10)
        assert r.status_code == 200 and "warning" not in r.headers and len(r.json()) == STUDIES
        assert httpx.get(f"{url}/studies/1.2.3.4/metadata", timeout=10).status_code == 404
        assert _find_studies(port) == (0, STUDIES)
        status = _get_unknown_study(port)
        assert status.Status == 0x0000 and status.NumberOfCompletedSuboperations == 0
    finally:
        stop.set()
        worker.join(20)
    assert not worker.is_alive() and said[-1] == "Stopped."


@pytest.mark.parametrize("wait", [True, False])
def test_a_first_listing_that_fails_is_retried_by_watching(big_archive, monkeypatch, wait):
    from dicube.exceptions import DicomReadError

    real = index_module.list_files
    calls = []

    def flaky(root):
        calls.append(root)
        if len(calls) == 1:
            raise DicomReadError("cannot list (test)", str(root))
        return real(root)

    monkeypatch.setattr(index_module, "list_files", flaky)
    ix = ArchiveIndex(big_archive, wait=wait)
    try:
        assert ix.wait_ready(10) and ix.counts()["studies"] == 0
        ix.start_watching(0.05)
        deadline = time.monotonic() + 30
        while ix.counts()["studies"] < STUDIES:
            assert time.monotonic() < deadline, "watching never rescanned"
            time.sleep(0.05)
    finally:
        ix.close()
