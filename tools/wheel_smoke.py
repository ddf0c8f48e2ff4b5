"""Smoke test of an installed dicube wheel (run by tools/check_wheel.sh on the bare system).

Loads, saves, reloads and streams one series built from pydicom's bundled CT example, then
checks that the libopenjph and libzstd mapped into this process are the wheel's own copies
in dicube.libs/ and that none is loaded from the system.
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

import numpy as np
import pydicom

import dicube
from dicube.codecs.jph import build_info
from dicube.demo import build_default_series
from dicube.dicom import DcbStreamingReader


def mapped_libraries() -> set[str]:
    with open("/proc/self/maps") as maps:
        return {line.split()[-1] for line in maps if ".so" in line}


def main() -> int:
    site = Path(dicube.__file__).resolve().parent
    libs_dir = site.parent / "dicube.libs"
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_default_series(Path(tmp) / "ct", slices=8)
        image = dicube.load_from_dicom_folder(folder)
        dicube.save(image, Path(tmp) / "ct.dcbs")
        back = dicube.load(Path(tmp) / "ct.dcbs")
        assert np.array_equal(back.raw_image, image.raw_image), "pixels changed on the round trip"
        part = dicube.load(Path(tmp) / "ct.dcbs", frames=slice(2, 5))
        assert np.array_equal(part.raw_image, image.raw_image[2:5]), "frame subset differs"
        with DcbStreamingReader(Path(tmp) / "ct.dcbs") as stream:
            for z in range(image.raw_image.shape[0]):
                ds = pydicom.dcmread(io.BytesIO(stream.get_dicom_for_frame(z)))
                assert np.array_equal(ds.pixel_array, image.raw_image[z]), f"streamed frame {z}"
        print(f"load/save/stream: {image.raw_image.shape} {image.raw_image.dtype}, "
              f"{(Path(tmp) / 'ct.dcbs').stat().st_size} bytes, pixels identical")

    info = build_info()
    print(f"OpenJPH {info.openjph_version} loaded from {info.library}")
    codec_libs = sorted(p for p in mapped_libraries() if "openjph" in p or "zstd" in p)
    for path in codec_libs:
        print("mapped:", path)
    # Other wheels may bring their own copies (pillow.libs/libzstd-*): theirs, not ours.
    bad = [p for p in codec_libs if p.startswith(("/usr/", "/lib"))]
    wanted = [p for p in codec_libs if Path(p).parent == libs_dir]
    if bad or sorted(Path(p).name.split("-")[0] for p in wanted) != ["libopenjph", "libzstd"]:
        print(f"FAIL: expected libopenjph and libzstd from {libs_dir} and none from the "
              f"system, got {codec_libs}")
        return 1
    print("bundled libraries in use: " + ", ".join(Path(p).name for p in wanted))
    return 0


if __name__ == "__main__":
    sys.exit(main())
