"""A name that is no local path and no remote form fails at once (issue 12 item 4).

``dicube mosaic nonexistdir m.webp`` used to look the name up in the default S3 bucket and
answer with an S3 error after retries. Only URLs and the documented series-id forms (32 hex
digits, the UUID form, hex digits ending in ``*``) may go remote; anything else that does not
exist is "no such file or folder", named, quickly, with no network access. Network access
is caught two ways: every remote entry point of dicube raises, and the S3 endpoint and HTTP
proxies point at a local socket that counts connections (obstore's Rust client included).
"""
from __future__ import annotations

import os
import socket
import threading
import time

import pytest

import dicube
from dicube.exceptions import (DicomReadError, InvalidCubeFileError, SourceError,
                               SourceNotFoundError)
from dicube.preview import resolve_source

from cli_helpers import run_cli

NAMES = ["nonexistdir", "nonexist.dcbs", "1.2.840.113619.2.55", "sub/missing",
         "0123456789abcdef0123456789abcdeg"]  # 32 characters, not all hex


class Listener:
    """A local TCP server counting connections (accepted and closed at once)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def network(monkeypatch, tmp_path):
    """No real network: remote entry points raise, endpoints point at a counting socket."""
    listener = Listener()
    url = f"http://127.0.0.1:{listener.port}"
    for var in ("AWS_ENDPOINT_URL", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(var, url)
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError(f"network access tried: {args!r}")

    import dicube.preview.locate as locate
    import dicube.storage.sources as sources

    monkeypatch.setattr(sources, "_store_for", refuse)
    monkeypatch.setattr(sources, "_http_get", refuse)
    monkeypatch.setattr(locate, "_list_matching", refuse)
    monkeypatch.chdir(tmp_path)
    yield calls, listener
    listener.close()


def _commands(name: str, out):
    return {
        "mosaic": ["mosaic", name, out / "m.webp"],
        "get-image": ["get-image", name, out / "g.jpg", "-p", "0.5"],
        "info": ["info", name],
        "verify": ["verify", name],
        "export": ["export", name, out / "dicom"],
        "export --nifti": ["export", name, "--nifti", out / "x.nii.gz"],
        "convert": ["convert", name, "-o", out / "converted"],
    }


@pytest.mark.parametrize("name", NAMES)
def test_every_command_says_no_such_file(capsys, network, tmp_path, name):
    calls, listener = network
    out = tmp_path / "out"
    for what, argv in _commands(name, out).items():
        t = time.perf_counter()
        rc, stdout, stderr = run_cli(capsys, *argv)
        elapsed = time.perf_counter() - t
        assert rc != 0, what
        expected = f"{name}: FAILED: " if what == "verify" else f"{name}: "  # verify's format
        assert expected + "no such file or folder" in stdout + stderr, (what, stdout, stderr)
        assert "s3" not in (stdout + stderr).lower(), what
        assert elapsed < 2.0, (what, elapsed)
    assert not calls and listener.connections == 0
    assert not out.exists()  # nothing written, not even the output folder


def test_other_url_schemes_are_named(capsys, network, tmp_path):
    calls, listener = network
    rc, _, err = run_cli(capsys, "mosaic", "gs://bucket/series", tmp_path / "m.webp")
    assert rc == 1 and "unsupported URL scheme 'gs'" in err
    with pytest.raises(InvalidCubeFileError, match="unsupported URL scheme 'ftp'"):
        dicube.load("ftp://host/x.dcbs")
    assert not calls and listener.connections == 0


def test_library_entry_points(network, tmp_path):
    """The same typed error from the library: SourceNotFoundError, also a SourceError and
    a DicomReadError (what these entry points raised before)."""
    calls, listener = network
    missing = os.fspath(tmp_path / "missing")
    for call in (lambda: dicube.load(missing), lambda: dicube.load_meta(missing),
                 lambda: dicube.load_from_dicom_folder(missing),
                 lambda: dicube.discover_series(missing), lambda: resolve_source("nonexistdir"),
                 lambda: resolve_source("1.2.3.4"), lambda: resolve_source("x", root=missing)):
        with pytest.raises(SourceNotFoundError, match="no such file or folder") as exc:
            call()
        assert isinstance(exc.value, SourceError) and isinstance(exc.value, DicomReadError)
        assert exc.value.path in (missing, "nonexistdir", "1.2.3.4")
    for call in (dicube.load, dicube.load_meta):  # as before, also an InvalidCubeFileError
        with pytest.raises(InvalidCubeFileError):
            call(missing)
    os.symlink(tmp_path / "gone", tmp_path / "link.dcbs")
    with pytest.raises(InvalidCubeFileError, match="broken symbolic link"):
        dicube.load(tmp_path / "link.dcbs")
    with pytest.raises(SourceError, match="broken symbolic link"):
        resolve_source(os.fspath(tmp_path / "link.dcbs"))
    assert not calls and listener.connections == 0


@pytest.mark.parametrize("series_id", ["0123456789abcdef0123456789abcdef",
                                       "01234567-89ab-cdef-0123-456789abcdef", "0123abc*"])
def test_documented_forms_still_go_remote(monkeypatch, tmp_path, series_id):
    """A series id of the documented forms, with no such local name, is looked up under
    the default root (here: the lookup is recorded instead of made)."""
    import dicube.preview.locate as locate

    looked_up = []
    monkeypatch.setattr(locate, "find_series", lambda root, uid, stats=None:
                        looked_up.append((root, uid)) or "s3://found")
    monkeypatch.chdir(tmp_path)
    assert resolve_source(series_id) == "s3://found"
    assert looked_up == [(locate.DEFAULT_ROOT, series_id)]
    (tmp_path / series_id).mkdir()  # a local folder of that name wins
    assert resolve_source(series_id) == series_id


def test_the_listener_sees_a_remote_lookup(capsys, monkeypatch, tmp_path):
    """Proof that the counting socket catches obstore's requests: a 32-hex id with no
    local name is looked up, and the lookup reaches the socket."""
    listener = Listener()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{listener.port}")
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    monkeypatch.chdir(tmp_path)
    try:
        rc, _, err = run_cli(capsys, "mosaic", "0123456789abcdef0123456789abcdef", "m.webp")
    finally:
        listener.close()
    assert rc == 1 and "s3://idc-open-data" in err
    assert listener.connections >= 1
