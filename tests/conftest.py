"""Shared fixtures: where the real test data lives.

The data is found at ``../shared/dicube-testdata`` beside the repository, or wherever
``DICUBE_TESTDATA`` points. Under CI (``CI`` set) missing data fails the tests; on a
developer machine it skips them.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _testdata_root() -> Path:
    env = os.environ.get("DICUBE_TESTDATA")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared" / "dicube-testdata"


def _require(path: Path) -> Path:
    if not path.exists():
        msg = f"test data not found: {path} (set DICUBE_TESTDATA to the dicube-testdata folder)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def testdata() -> Path:
    """The dicube-testdata folder."""
    return _require(_testdata_root())


@pytest.fixture(scope="session")
def sample_10(testdata) -> Path:
    """Folder of the 10-slice CT series."""
    return _require(testdata / "dicom" / "sample_10")


@pytest.fixture(scope="session")
def sample_200(testdata) -> Path:
    """Folder of the 200-slice CT series."""
    return _require(testdata / "dicom" / "sample_200")


@pytest.fixture(scope="session")
def legacy_dcbs(testdata) -> Path:
    """A .dcbs file written by dicube 0.3.0 from sample_10."""
    return _require(testdata / "legacy" / "sample_10.dcbs")


@pytest.fixture(scope="session")
def dcbs_samples(tmp_path_factory, sample_10, sample_200) -> dict:
    """.dcbs files of sample_10 and sample_200 (written once per session): name -> path."""
    import dicube

    folder = tmp_path_factory.mktemp("dcbs_samples")
    out = {}
    for name, src in (("sample_10", sample_10), ("sample_200", sample_200)):
        out[name] = folder / f"{name}.dcbs"
        dicube.save(dicube.load_from_dicom_folder(src), out[name])
    return out


@pytest.fixture(scope="session")
def dcbs_zstd_samples(tmp_path_factory, dcbs_samples) -> dict:
    """The same series saved with the zstd frame codec: name -> path."""
    import dicube

    folder = tmp_path_factory.mktemp("dcbs_zstd_samples")
    out = {}
    for name, src in dcbs_samples.items():
        out[name] = folder / f"{name}.dcbs"
        dicube.save(dicube.load(src), out[name], codec="zstd")
    return out


@pytest.fixture
def pread_calls(monkeypatch) -> list:
    """(length, offset) of every os.pread made while the test runs."""
    import os

    calls = []
    real = os.pread

    def spy(fd, n, off):
        calls.append((n, off))
        return real(fd, n, off)

    monkeypatch.setattr(os, "pread", spy)
    return calls


# Fixtures of the `dicube serve` tests (archive folder, running DICOMweb server).
from serve_fixtures import (  # noqa: E402,F401
    serve_archive,
    serve_archive_copy,
    serve_server,
    serve_sources,
)
