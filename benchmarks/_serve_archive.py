"""Build a large synthetic archive of small .dcbs files cheaply, for ``dicube serve``
benchmarks and memory measurements.

    from _serve_archive import make_archive
    make_archive(root, studies=100, series_per_study=10, instances_per_series=10)

Every series is one .dcbs file holding ``instances_per_series`` frames cut from pydicom's
CT_small.dcm (``size`` x ``size`` pixels, exact values), with its own patient, study,
series and SOP Instance UIDs (deterministic ``2.25.`` UIDs), Instance Numbers, positions
and study dates. The frames are HTJ2K-encoded once; each file only gets new metadata, so
1,000 series take seconds. Files are valid: they stream as DICOM instances.

    python benchmarks/_serve_archive.py ROOT [--studies N] [--series N] [--instances N]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path

__all__ = ["make_archive"]


def _uid(*parts) -> str:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:15]
    return f"2.25.{int.from_bytes(digest, 'big')}"


def _set(header: dict, tag: str, vr: str, value) -> None:
    header[tag] = {"vr": vr, "Value": [value]}


def make_archive(root, studies: int = 100, series_per_study: int = 10,
                 instances_per_series: int = 1, size: int = 32, patients: int = 0) -> dict:
    """Write ``studies * series_per_study`` .dcbs files under ``root`` (one folder per
    study); ``patients`` (default: one per study) distinct patients. Returns counts and
    the seconds it took."""
    import numpy as np
    import pydicom
    from pydicom.data import get_testdata_file

    from dicube.core.io import _sections, encode_frames
    from dicube.core.image import DicomCubeImage
    from dicube.core.pixel_header import PixelDataHeader
    from dicube.dicom.dicom_meta import DicomMeta
    from dicube.storage.format import MAGIC, SEC_META
    from dicube.storage.writer import build_head

    started = time.perf_counter()
    root = Path(root)
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    pixels = ds.pixel_array[:size, :size]
    ds.Rows, ds.Columns = pixels.shape
    del ds.PixelData
    base = DicomMeta.from_datasets([ds]).slice_json(0)
    n = instances_per_series
    volume = np.ascontiguousarray(np.repeat(pixels[None], n, axis=0))
    fs = encode_frames(volume, int(ds.BitsStored), num_threads=1)
    patients = patients or studies
    image = DicomCubeImage(volume, PixelDataHeader(OriginalPixelDtype=str(volume.dtype),
                                                   PixelDtype=str(volume.dtype)),
                           DicomMeta.from_json_headers([base] * n))
    sections = _sections(image, fs)
    meta_at = next(i for i, s in enumerate(sections) if s[0] == SEC_META)
    files = 0
    for st in range(studies):
        study_uid = _uid("study", st)
        p = st % patients
        folder = root / f"study{st:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        for se in range(series_per_study):
            series_uid = _uid("series", st, se)
            headers = []
            for k in range(n):
                h = dict(base)  # only top-level elements are replaced
                _set(h, "00100020", "LO", f"PAT{p:05d}")
                h["00100010"] = {"vr": "PN", "Value": [{"Alphabetic": f"Synthetic^Patient{p:05d}"}]}
                _set(h, "0020000D", "UI", study_uid)
                _set(h, "0020000E", "UI", series_uid)
                sop = _uid("sop", st, se, k)
                _set(h, "00080018", "UI", sop)
                _set(h, "00020003", "UI", sop)
                _set(h, "00080020", "DA", f"{2000 + st % 25:04d}{1 + st % 12:02d}{1 + st % 28:02d}")
                _set(h, "00080050", "SH", f"ACC{st:06d}")
                _set(h, "00200011", "IS", str(se + 1))
                _set(h, "00200013", "IS", str(k + 1))
                h["00200032"] = {"vr": "DS", "Value": ["0", "0", str(float(k))]}
                headers.append(h)
            meta = DicomMeta.from_json_headers(headers)
            sections[meta_at] = (SEC_META, meta.to_json().encode("utf-8"), True)
            head, _ = build_head(fs, sections, MAGIC)  # no fsync: a benchmark fixture
            with open(folder / f"series{se:03d}.dcbs", "wb") as fh:
                fh.write(head)
                fh.writelines(fs.frames)
            files += 1
    return {"files": files, "studies": studies, "series": files, "instances": files * n,
            "seconds": time.perf_counter() - started}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("--studies", type=int, default=100)
    ap.add_argument("--series", type=int, default=10, help="series per study")
    ap.add_argument("--instances", type=int, default=1, help="instances per series")
    ap.add_argument("--size", type=int, default=32, help="rows and columns of each frame")
    a = ap.parse_args()
    out = make_archive(a.root, a.studies, a.series, a.instances, a.size)
    print(f"{out['files']} files, {out['instances']} instances under {os.fspath(a.root)} "
          f"in {out['seconds']:.1f} s")


if __name__ == "__main__":
    main()
