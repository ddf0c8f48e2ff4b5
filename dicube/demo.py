"""The main job: convert a DICOM series to .dcbs and back, printing what was done."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

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


def run_demo(folder: Optional[str] = None) -> int:
    from .codecs.jph import OPENJPH_VERSION, decode_batch, encode_batch

    if folder is None:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            built = build_default_series(Path(tmp) / "CT_small_series")
            print(f"no folder given: built a {len(list(built.iterdir()))}-slice series from pydicom's CT_small.dcm")
            return run_demo(str(built))
    import tempfile

    import dicube

    t = time.perf_counter()
    image = dicube.load_from_dicom_folder(folder)
    read_s = time.perf_counter() - t
    files = [p for p in Path(folder).rglob("*") if p.is_file()]
    dicom_bytes = sum(p.stat().st_size for p in files)
    volume = image.raw_image
    print(f"series: {folder} ({volume.shape[0]} slices, {volume.shape[1]}x{volume.shape[2]}, {volume.dtype})")
    print(f"read DICOM folder: {len(files)} files, {dicom_bytes / 1e6:.2f} MB in {read_s * 1000:.0f} ms; "
          f"QC status: {dicube.get_dicom_status(image.dicom_meta).name}")
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "series.dcbs"
        t = time.perf_counter()
        dicube.save(image, target)
        save_s = time.perf_counter() - t
        size = target.stat().st_size
        t = time.perf_counter()
        back = dicube.load(target)
        load_s = time.perf_counter() - t
        exact = np.array_equal(back.raw_image, volume)
        print(f"wrote {target.name}: {size / 1e6:.2f} MB (ratio {dicom_bytes / size:.2f}x) in {save_s * 1000:.0f} ms")
        print(f"loaded it in {load_s * 1000:.0f} ms; pixels {'bit-exact' if exact else 'MISMATCH'}")
    return 0 if exact else 1
