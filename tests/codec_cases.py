"""Images for codec tests: synthetic ones of every supported kind, and real CT slices."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom


def synthetic_images():
    """(name, image, bits_stored) covering signed/unsigned 8/12/16-bit, RGB and odd sizes."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:97, 0:131]
    smooth = np.sin(xx / 9.0) * np.cos(yy / 13.0)
    cases = [
        ("uint8", (smooth * 120 + 127).astype(np.uint8), None),
        ("int8", (smooth * 120).astype(np.int8), None),
        ("uint8-full-range", rng.integers(0, 256, (64, 80), dtype=np.uint8), None),
        ("uint16", (smooth * 30000 + 32768).astype(np.uint16), None),
        ("int16", (smooth * 30000).astype(np.int16), None),
        ("uint16-extremes", np.array([[0, 65535], [65535, 0]] * 8, dtype=np.uint16).reshape(16, 2).repeat(3, 1), None),
        ("int16-extremes", np.array([[-32768, 32767]] * 9, dtype=np.int16), None),
        ("uint12", rng.integers(0, 4096, (50, 70), dtype=np.uint16), 12),
        ("int12", rng.integers(-2048, 2048, (50, 70), dtype=np.int16), 12),
        ("rgb-uint8", np.stack([(smooth * 120 + 127), (smooth[::-1] * 100 + 128), rng.integers(0, 256, smooth.shape)], -1).astype(np.uint8), None),
        ("rgb-uint16", rng.integers(0, 65536, (33, 17, 3), dtype=np.uint16), None),
        ("one-pixel", np.array([[1234]], dtype=np.uint16), None),
        ("one-row", np.arange(300, dtype=np.int16).reshape(1, 300) - 150, None),
        ("one-column", np.arange(300, dtype=np.uint8).reshape(300, 1), None),
        ("constant", np.full((40, 40), 77, dtype=np.uint16), None),
        ("int32-21bit", rng.integers(-(1 << 20), 1 << 20, (40, 50), dtype=np.int32), None),
        ("uint32-21bit", rng.integers(0, 1 << 21, (40, 50), dtype=np.uint32), None),
    ]
    return cases


def ct_slices(folder: Path, count: int = 3):
    """The stored pixel arrays of a few slices of a real CT series, with their BitsStored."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    step = max(1, len(files) // count)
    out = []
    for f in files[::step][:count]:
        ds = pydicom.dcmread(f)
        out.append((f.name, ds.pixel_array, int(ds.BitsStored)))
    return out
