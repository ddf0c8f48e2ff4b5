"""A real Orthanc (Debian orthanc 1.10 + orthanc-dicomweb 1.7) pulls a study from
``dicube serve``: as a DICOM modality (C-MOVE to Orthanc's own AE; Orthanc 1.10 has no
C-GET SCU: its REST API has no /modalities/{id}/get before 1.12) and as a DICOMweb server
(/dicom-web/servers/{name}/retrieve). The instances Orthanc then stores equal, element for
element and pixel for pixel, what save_to_dicom_folder writes for those slices (but for
group length elements inside sequence items, which Orthanc's dcmtk recomputes on storing:
the source has a wrong one, 980 for 40 bytes)."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pydicom
import pytest
from preview_servers import stop_process
from serve_fixtures import start_serve_server
from streaming_cases import require_tool
from test_serve_dimse import HTJ2K, SAMPLE, _free_port, assert_same_instances

DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
ORTHANC_AE = "ORTHANCTEST"


def _http(url: str, data: bytes | None = None, method: str | None = None,
          timeout: float = 120) -> bytes:
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read()


def _json(url: str, body=None):
    data = None if body is None else json.dumps(body).encode()
    return json.loads(_http(url, data, "POST" if data is not None else None))


@contextlib.contextmanager
def start_orthanc(folder: Path, **config):
    """An Orthanc on free loopback ports with its own storage and ``config`` on top;
    yields (REST base URL, DICOM port). Stopped in finally."""
    exe = require_tool("Orthanc")
    port, dicom_port = _free_port(), _free_port()
    storage = folder / "orthanc-db"
    cfg = {"Name": "dicube-serve-test", "StorageDirectory": str(storage),
           "IndexDirectory": str(storage), "HttpPort": port, "DicomPort": dicom_port,
           "DicomAet": ORTHANC_AE, "RemoteAccessAllowed": False,
           "AuthenticationEnabled": False, "Plugins": [], "StorageCompression": False,
           "SaveJobs": False, "HttpCompressionEnabled": False, **config}
    (folder / "orthanc.json").write_text(json.dumps(cfg))
    log_path = folder / "orthanc.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([exe, str(folder / "orthanc.json")], stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if json.loads(_http(url + "/system", timeout=5)).get("HttpPort") == port:
                    break
            except (urllib.error.URLError, ConnectionError, ValueError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("Orthanc did not start: "
                            + log_path.read_text(errors="replace")[-2000:])
            time.sleep(0.2)
        yield url, dicom_port, log_path
    finally:
        stop_process(proc, 30)
        log.close()


def _stored(url: str, folder: Path) -> Path:
    """Every instance Orthanc stored, as the files Orthanc hands back, in ``folder``."""
    folder.mkdir()
    for i, oid in enumerate(json.loads(_http(url + "/instances"))):
        (folder / f"{i:04d}.dcm").write_bytes(_http(f"{url}/instances/{oid}/file"))
    return folder


@pytest.fixture(scope="module")
def expected(serve_archive, tmp_path_factory) -> dict:
    import dicube

    folder = tmp_path_factory.mktemp("expected_orthanc") / "out"
    dicube.save_to_dicom_folder(dicube.load(serve_archive / SAMPLE), folder)
    out = {}
    for p in folder.iterdir():
        if p.is_file() and not p.name.startswith(".") and p.suffix != ".json":
            ds = pydicom.dcmread(p)
            out[str(ds.SOPInstanceUID)] = ds
    return out


def _study(expected) -> str:
    return str(next(iter(expected.values())).StudyInstanceUID)


def test_orthanc_pulls_a_study_with_c_move(serve_archive, expected, tmp_path):
    from dicube.server import ArchiveIndex
    from dicube.server.dimse import start_dimse

    index = ArchiveIndex(serve_archive)
    dimse = None
    try:
        orthanc_dicom_port = _free_port()
        dimse = start_dimse(index, "DICUBE", "127.0.0.1", 0,
                            {ORTHANC_AE: ("127.0.0.1", orthanc_dicom_port)})
        with start_orthanc(tmp_path, DicomPort=orthanc_dicom_port, DicomModalities={
                "dicube": ["DICUBE", "127.0.0.1", dimse.port]}) as (url, _, log):
            assert _http(f"{url}/modalities/dicube/echo", b"{}", "POST") is not None
            # C-FIND through Orthanc: the study is there with its 10 instances
            found = _json(f"{url}/modalities/dicube/query", {
                "Level": "Study", "Query": {"StudyInstanceUID": _study(expected),
                                            "NumberOfStudyRelatedInstances": ""}})
            answers = _json(f"{url}/queries/{found['ID']}/answers?expand")
            assert len(answers) == 1
            assert answers[0]["0020,1208"]["Value"] == "10"
            # C-MOVE to Orthanc itself
            _json(f"{url}/modalities/dicube/move", {
                "Level": "Study", "Resources": [{"StudyInstanceUID": _study(expected)}],
                "TargetAet": ORTHANC_AE, "Synchronous": True})
            assert len(json.loads(_http(url + "/instances"))) == 10, log.read_text()[-3000:]
            # Orthanc 1.10 has no C-GET SCU (POST /modalities/{id}/get came in 1.12)
            with pytest.raises(urllib.error.HTTPError) as err:
                _json(f"{url}/modalities/dicube/get", {
                    "Level": "Study", "Resources": [{"StudyInstanceUID": _study(expected)}]})
            assert err.value.code in (404, 405)
            folder = _stored(url, tmp_path / "stored")
    finally:
        if dimse is not None:
            dimse.shutdown()
        index.close()
    assert_same_instances(folder, expected, group_lengths=False)


def test_orthanc_pulls_a_study_over_dicomweb(serve_archive, expected, tmp_path):
    if not Path(DICOMWEB_PLUGIN).exists():
        msg = f"{DICOMWEB_PLUGIN} not found (Debian package orthanc-dicomweb)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    with start_serve_server(serve_archive) as served, start_orthanc(
            tmp_path, Plugins=[DICOMWEB_PLUGIN],
            DicomWeb={"Enable": True, "Servers": {"dicube": {"Url": served.url + "/"}}}) as (
            url, _, log):
        job = _json(f"{url}/dicom-web/servers/dicube/retrieve", {
            "Resources": [{"Study": _study(expected)}], "Synchronous": True})
        assert len(json.loads(_http(url + "/instances"))) == 10, (job, log.read_text()[-3000:])
        folder = _stored(url, tmp_path / "stored")
    # Orthanc's WADO-RS client accepts any syntax: it gets (and keeps) the stored HTJ2K
    assert_same_instances(folder, expected, HTJ2K, group_lengths=False)
