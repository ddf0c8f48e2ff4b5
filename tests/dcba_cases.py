"""sample_10 as .dcba, .dcbs and zstd-plane .dcbs, written once per test session and shared
by the .dcba test modules (a JPEG XL encode of the series is the slow part). Read-only:
tests that damage a file craft a copy."""
from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import dicube

_cache: dict = {}


def sample_10_files(sample_10) -> dict:
    """{"img": the DicomCubeImage, "a": .dcba, "s": .dcbs, "z": zstd-plane .dcbs}."""
    key = str(sample_10)
    if key not in _cache:
        d = Path(tempfile.mkdtemp(prefix="dcba_cases_"))
        atexit.register(shutil.rmtree, d, True)
        img = dicube.load_from_dicom_folder(sample_10)
        out = {"img": img, "a": d / "ct.dcba", "s": d / "ct.dcbs", "z": d / "z.dcbs"}
        dicube.save(img, out["a"])
        dicube.save(img, out["s"])
        dicube.save(img, out["z"], codec="zstd")
        _cache[key] = out
    return _cache[key]
