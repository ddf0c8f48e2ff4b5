"""Hostile input on surfaces the fuzzers do not reach: deflated DICOM data sets that inflate
without bound, .dcba/.dcbl sections, NIfTI headers and remote servers that lie.

Every case must end in a typed error from dicube.exceptions naming the file (or URL) and
the problem, within bounded memory and time.
"""
from __future__ import annotations

import gzip
import shutil
import struct
import zlib

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian

from dicube.dicom.dicom_io import load_from_dicom_folder
from dicube.dicom.file_parser import parse_file
from dicube.core.nifti_io import load_from_nifti
from dicube.exceptions import DamagedDicomError, DicomCubeError, UnreadableFilesError
from dicube.storage import limits


def _deflated(zeros: int) -> bytes:
    """A deflated CT_small followed by a private OB of ``zeros`` zero bytes (tiny on disk)."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    meta = DicomBytesIO()
    meta.is_little_endian, meta.is_implicit_VR = True, False
    write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    z = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = z.compress(body.getvalue() + b"\x09\x00\x10\x10OB\x00\x00" + struct.pack("<I", zeros))
    chunk = bytes(1 << 20)
    for _ in range(zeros >> 20):
        out += z.compress(chunk)
    out += z.compress(bytes(zeros & ((1 << 20) - 1))) + z.flush()
    return b"\0" * 128 + b"DICM" + meta.getvalue() + out


def test_deflate_bomb_is_refused_before_inflating(tmp_path, monkeypatch, sample_10):
    monkeypatch.setattr(limits, "DECODE_FREE_BYTES", 1 << 20)
    bomb = tmp_path / "s" / "bomb.dcm"
    shutil.copytree(sample_10, bomb.parent)
    bomb.write_bytes(_deflated(40 << 20))  # ~40 KB inflating to 40 MiB: 1000:1
    with pytest.raises(DamagedDicomError, match="decompression bomb") as err:
        parse_file(bomb)
    assert str(bomb) in str(err.value) and "MAX_INFLATE_RATIO" in str(err.value)
    with pytest.raises(UnreadableFilesError, match="bomb.dcm.*decompression bomb"):
        load_from_dicom_folder(bomb.parent)
    monkeypatch.setenv("DICUBE_MAX_INFLATE_RATIO", "0")  # disabled: read (and kept) again
    pf, _ = parse_file(bomb, with_pixels=False)
    assert pf.transfer_syntax == DeflatedExplicitVRLittleEndian


def test_deflated_files_within_the_limit_still_read(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "DECODE_FREE_BYTES", 1 << 20)
    pf, arr = parse_file(get_testdata_file("image_dfl.dcm"))
    assert arr.shape[1:] == (pf.value("00280010"), pf.value("00280011"))
    small = tmp_path / "small.dcm"
    small.write_bytes(_deflated(1 << 16))  # inflates to ~100 KB: under DECODE_FREE_BYTES
    pf, arr = parse_file(small)
    assert arr.shape == (1, 128, 128)


def _nifti(edit=None, data=None) -> bytes:
    data = np.arange(720, dtype=np.int16).reshape(8, 9, 10) if data is None else data
    b = bytearray(nib.Nifti1Image(data, np.diag([1.0, 1, 2, 1])).to_bytes())
    if edit:
        struct.pack_into(edit[1], b, edit[0], *edit[2:])
    return bytes(b)


NIFTI_CASES = {
    "dims_huge": ((40, "<4h", 3, 32767, 32767, 32767), ".nii", "data bytes"),
    "dims_huge_gz": ((40, "<4h", 3, 32767, 32767, 32767), ".nii.gz", "decompression bomb"),
    "dims_negative": ((40, "<4h", 3, -5, 9, 10), ".nii", "not all positive"),
    "dims_zero": ((40, "<4h", 3, 0, 9, 10), ".nii", "not all positive"),
    "vox_offset_huge": ((108, "<f", 1e30), ".nii", "NIfTI"),
    "sform_nan": ((280, "<4f", float("nan"), 0, 0, 0), ".nii", "not finite"),
    "sform_inf": ((280, "<4f", float("inf"), 0, 0, 0), ".nii", "not finite"),
    "complex": (None, ".nii", "sample type"),
    "truncated": (None, ".nii", "truncated"),
}


@pytest.mark.parametrize("case", NIFTI_CASES)
def test_hostile_nifti_headers_are_typed_errors_naming_the_file(case, tmp_path):
    edit, ext, what = NIFTI_CASES[case]
    data = np.zeros((4, 4, 4), np.complex64) if case == "complex" else None
    raw = _nifti(edit, data)
    if case.startswith("sform"):
        raw = bytearray(raw)
        struct.pack_into("<h", raw, 254, 1)
    if case == "truncated":
        raw = raw[:600]
    path = tmp_path / f"x{ext}"
    path.write_bytes(gzip.compress(bytes(raw), 1) if ext == ".nii.gz" else bytes(raw))
    with pytest.raises(DicomCubeError, match=what) as err:
        load_from_nifti(path)
    assert str(path) in str(err.value)


def test_nifti_gz_bomb_is_refused_before_allocating(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "DECODE_FREE_BYTES", 1 << 20)
    path = tmp_path / "bomb.nii.gz"
    path.write_bytes(gzip.compress(_nifti(data=np.zeros((64, 256, 256), np.int16)), 9))
    with pytest.raises(DicomCubeError, match="decompression bomb"):
        load_from_nifti(path)  # 8 MiB from ~8 KB: over 100:1
    monkeypatch.setattr(limits, "DECODE_FREE_BYTES", 16 << 20)
    assert load_from_nifti(path).raw_image.shape == (256, 256, 64)


class _LyingServer:
    """Serves 1 MiB; ``mode`` picks the lie told to every ranged GET (right Content-Range)."""

    DATA = bytes(range(256)) * 4096

    def __init__(self):
        import http.server
        import re
        import threading

        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                m = re.match(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
                a, b = int(m[1]), min(int(m[2]), len(owner.DATA) - 1)
                body = owner.DATA[a:b + 1]
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {a}-{b}/{len(owner.DATA)}")
                if owner.mode == "chunked":
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    extra = body + bytes(1 << 20)
                    try:
                        self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(extra), extra))
                    except OSError:
                        pass
                    return
                extra = (1 << 20) if owner.mode == "longer" else (1 << 40)
                self.send_header("Content-Length", str(len(body) + extra))
                self.end_headers()
                try:
                    self.wfile.write(body)
                    for _ in range(extra >> 16 if owner.mode == "longer" else 1 << 12):
                        self.wfile.write(bytes(1 << 16))  # 256 MiB at most, then hang up
                except OSError:
                    pass

        self.mode = "longer"
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/f.bin"


@pytest.fixture(scope="module")
def lying_server():
    srv = _LyingServer()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.mark.parametrize("mode, client", [("longer", "obstore"), ("endless", "obstore"),
                                          ("longer", "stdlib"), ("endless", "stdlib"),
                                          ("chunked", "stdlib")])  # obstore refuses chunked itself
def test_a_body_longer_than_the_range_is_refused(lying_server, mode, client, monkeypatch):
    """obstore's bytes() buffered a whole body (an endless one aborted the process) and
    the stdlib client kept the first bytes of it: both now stop past the range asked."""
    from dicube.exceptions import SourceError
    from dicube.storage import sources

    monkeypatch.setattr(sources, "_forked_after_obstore", lambda: client == "stdlib")
    lying_server.mode = mode
    with pytest.raises(SourceError, match="more than the 4096 bytes asked for") as err:
        sources.RemoteFile(lying_server.url, prefetch=4096)
    assert lying_server.url in str(err.value)


def test_a_listing_redirected_to_ftp_is_refused_without_connecting(monkeypatch):
    """urllib follows http -> ftp:// redirects; a folder listing must not leave http(s)."""
    import http.server
    import socket
    import threading

    from dicube.exceptions import SourceError
    from dicube.storage import sources

    ftp = socket.socket()
    ftp.bind(("127.0.0.1", 0))
    ftp.listen(1)
    ftp.settimeout(0.5)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", f"ftp://127.0.0.1:{ftp.getsockname()[1]}/x/")
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/series/"
        with pytest.raises(SourceError, match="redirect to ftp:// refused") as err:
            sources.list_folder(url)
        assert url in str(err.value)
        with pytest.raises(socket.timeout):
            ftp.accept()  # nobody connected to the "ftp server"
    finally:
        httpd.shutdown()
        httpd.server_close()
        ftp.close()
