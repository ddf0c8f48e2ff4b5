"""Fixtures for the ``dicube serve`` tests (loaded by conftest.py through ``pytest_plugins``).

- ``serve_archive``: a folder of .dcbs files, written once per session and never changed:
  ``ct/sample_10.dcbs`` (the shared 10-slice CT: patient "444 1", study date 20230720) and
  pydicom's ``CT_small.dcbs`` (patient 1CT1, 20040119) and ``MR_small.dcbs`` (4MR1,
  20040826): three patients, three studies, 12 instances. ``serve_sources`` maps each
  .dcbs name to its source DICOM folder.
- ``serve_archive_copy``: a private copy of it for a test that adds, removes or corrupts files.
- ``serve_server``: uvicorn serving ``serve_archive`` on a free loopback port for the
  session; yields a :class:`ServedArchive` (``url``: the DICOMweb base ending in
  ``/dicom-web``, ``index``, ``root``). ``start_serve_server(root, **create_app_kwargs)``
  is a context manager doing the same for any folder.
"""
from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class ServedArchive:
    url: str            # http://127.0.0.1:PORT/dicom-web
    root: Path
    index: object       # dicube.server.ArchiveIndex
    server: object      # dicube.server.run.HttpServer


@contextlib.contextmanager
def start_serve_server(root, **kwargs):
    """Serve ``root`` on 127.0.0.1 (free port) while the block runs; stopped in finally."""
    from dicube.server import ArchiveIndex, create_app
    from dicube.server.run import HttpServer

    index = ArchiveIndex(root)
    server = HttpServer(create_app(index, **kwargs))
    try:
        server.start()
        yield ServedArchive(server.url + "/dicom-web", Path(root), index, server)
    finally:
        server.shutdown()
        index.close()


def _convert(src_folder: Path, dest: Path) -> None:
    import dicube

    dest.parent.mkdir(parents=True, exist_ok=True)
    dicube.save(dicube.load_from_dicom_folder(src_folder), dest)


@pytest.fixture(scope="session")
def serve_sources(tmp_path_factory, sample_10) -> dict:
    """.dcbs name (relative to the archive) -> folder of its source DICOM files."""
    from pydicom.data import get_testdata_file

    folder = tmp_path_factory.mktemp("serve_sources")
    out = {"ct/sample_10.dcbs": Path(sample_10)}
    for name in ("CT_small", "MR_small"):
        d = folder / name
        d.mkdir()
        shutil.copyfile(get_testdata_file(f"{name}.dcm"), d / f"{name}.dcm")
        out[f"{name}.dcbs"] = d
    return out


@pytest.fixture(scope="session")
def serve_archive(tmp_path_factory, serve_sources) -> Path:
    """The shared archive folder (read-only: copy it with ``serve_archive_copy`` to change it)."""
    root = tmp_path_factory.mktemp("serve_archive")
    for name, src in serve_sources.items():
        _convert(src, root / name)
    return root


@pytest.fixture
def serve_archive_copy(tmp_path, serve_archive) -> Path:
    """A private copy of ``serve_archive``."""
    dest = tmp_path / "archive"
    shutil.copytree(serve_archive, dest)
    return dest


@pytest.fixture(scope="session")
def serve_server(serve_archive):
    """The shared archive served over DICOMweb for the whole session."""
    with start_serve_server(serve_archive) as served:
        yield served
