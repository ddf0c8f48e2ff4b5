"""The main job: convert a DICOM series and prove the round trip, printing what was done."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import pydicom


def build_default_series(folder: Path, slices: int = 24) -> Path:
    """Write a CT series made from pydicom's bundled CT_small.dcm into ``folder``.

    Each slice is the bundled image shifted a little, with its own SOP Instance UID,
    InstanceNumber and ImagePositionPatient 2.5 mm apart, in one new series.
    """
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    series_uid = generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    x, y, z = (float(v) for v in source.ImagePositionPatient)
    for i in range(slices):
        ds = source.copy()
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [x, y, z + 2.5 * i]
        ds.SliceLocation = z + 2.5 * i
        ds.PixelData = np.roll(source.pixel_array, (i, 2 * i), axis=(0, 1)).tobytes()
        ds.save_as(folder / f"CT{i + 1:03d}.dcm", enforce_file_format=True)
    return folder


def folder_series(folder: str) -> Tuple[str, np.ndarray, int]:
    files = sorted(p for p in Path(folder).iterdir() if p.is_file())
    datasets = []
    for p in files:
        try:
            datasets.append(pydicom.dcmread(p))
        except Exception:  # not DICOM: skipped, as discovery does
            continue
    if not datasets:
        raise SystemExit(f"{folder}: no DICOM files found")
    datasets.sort(key=lambda d: int(getattr(d, "InstanceNumber", 0) or 0))
    return f"{folder} ({len(datasets)} files)", np.stack([d.pixel_array for d in datasets]), int(datasets[0].BitsStored)


def run_demo(folder: Optional[str] = None) -> int:
    from .codecs.jph import OPENJPH_VERSION, decode_batch, encode_batch

    if folder is None:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            built = build_default_series(Path(tmp) / "CT_small_series")
            print(f"no folder given: built a {len(list(built.iterdir()))}-slice series from pydicom's CT_small.dcm")
            return run_demo(str(built))
    name, volume, bits = folder_series(folder)
    if volume.min() < 0 and bits < volume.dtype.itemsize * 8 and volume.min() < -(1 << (bits - 1)):
        bits = volume.dtype.itemsize * 8
    print(f"series: {name}")
    print(f"pixels: {volume.shape} {volume.dtype}, BitsStored {bits}, {volume.nbytes / 1e6:.2f} MB")
    t = time.perf_counter()
    frames = encode_batch(volume, bits_stored=bits)
    enc = time.perf_counter() - t
    t = time.perf_counter()
    back = decode_batch(frames)
    dec = time.perf_counter() - t
    size = sum(map(len, frames))
    exact = np.array_equal(back, volume)
    print(f"HTJ2K (OpenJPH {OPENJPH_VERSION}): {size / 1e6:.2f} MB, ratio {volume.nbytes / size:.2f}x")
    print(f"encode {volume.nbytes / 1e6 / enc:.0f} MB/s, decode {volume.nbytes / 1e6 / dec:.0f} MB/s (all cores)")
    print(f"lossless round trip: {'bit-exact' if exact else 'MISMATCH'}")
    return 0 if exact else 1
