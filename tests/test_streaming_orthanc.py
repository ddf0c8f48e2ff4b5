"""A real Orthanc server (Debian package ``orthanc``) accepts every instance the streaming
reader emits, and hands back exactly the bytes it was sent."""
from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from preview_servers import stop_process
from streaming_cases import make_dcbs, require_tool

from dicube.dicom import DcbStreamingReader


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(url: str, data: bytes | None = None, method: str | None = None) -> bytes:
    req = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read()


@pytest.fixture
def orthanc(tmp_path):
    """Base URL of an Orthanc started on free loopback ports with its own storage."""
    exe = require_tool("Orthanc")
    port, dicom_port = _free_port(), _free_port()
    storage = tmp_path / "orthanc-db"
    config = {
        "Name": "dicube-test", "StorageDirectory": str(storage), "IndexDirectory": str(storage),
        "HttpPort": port, "DicomPort": dicom_port, "DicomAet": "DICUBETEST",
        "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "Plugins": [],
        "StorageCompression": False, "OverwriteInstances": True, "SaveJobs": False,
    }
    cfg = tmp_path / "orthanc.json"
    cfg.write_text(json.dumps(config))
    log = open(tmp_path / "orthanc.log", "wb")
    proc = subprocess.Popen([exe, str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                system = json.loads(_http(url + "/system"))
                if system.get("HttpPort") == port:
                    break
            except (urllib.error.URLError, ConnectionError, ValueError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("Orthanc did not start: " + (tmp_path / "orthanc.log").read_text(
                    errors="replace")[-2000:])
            time.sleep(0.2)
        yield url
    finally:
        stop_process(proc, 30)
        log.close()


def _store_and_fetch(url: str, data: bytes) -> bytes:
    """POST an instance, check Orthanc parsed it, return the file Orthanc hands back."""
    from streaming_cases import read

    answer = json.loads(_http(url + "/instances", data=data, method="POST"))
    assert answer.get("Status") in ("Success", "AlreadyStored"), answer
    tags = json.loads(_http(f"{url}/instances/{answer['ID']}/simplified-tags"))
    ds = read(data)
    assert tags["SOPInstanceUID"] == ds.SOPInstanceUID
    assert tags["InstanceNumber"] == str(ds.InstanceNumber)
    return _http(f"{url}/instances/{answer['ID']}/file")


def test_orthanc_stores_every_instance_unchanged(orthanc, sample_10, legacy_dcbs, tmp_path):
    path = make_dcbs(sample_10, tmp_path / "sample_10.dcbs")
    with DcbStreamingReader(path) as stream:
        for i in range(len(stream)):
            for force in (False, True):  # same SOP Instance UID: the second overwrites
                sent = stream.get_dicom_for_frame(i, force_uncompressed=force)
                assert _store_and_fetch(orthanc, sent) == sent, (i, force)
    with pytest.warns(UserWarning), DcbStreamingReader(legacy_dcbs) as legacy:
        for i in (0, len(legacy) - 1):
            for force in (False, True):
                sent = legacy.get_dicom_for_frame(i, force_uncompressed=force)
                assert _store_and_fetch(orthanc, sent) == sent, ("legacy", i, force)
    instances = json.loads(_http(orthanc + "/instances"))
    assert len(instances) == len(stream)
