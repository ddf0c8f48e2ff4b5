"""Size of .dcbl files against the error bound, per series, with JPEG-LS near-lossless as
the contender.

usage: python benchmarks/bench_bound.py [SERIES_FOLDER ...] [--repeat N] [--every K] [--quick]
(default: the shared sample_200 and sample_10 CT and pydicom's CT_small, MR_small,
examples_overlay, JPGExtended; --quick: without sample_200, one timed round)

For each series and bound N = 1, 2, 3, 5 (real units: HU for the CTs, whose RescaleSlope
is 1; stored units for images without a rescale): the .dcbl file written by
``dicube.save`` (which decodes the saved file and proves the bound on every pixel; this
script reloads it and checks again) relative to the .dcbs of the same series, its frames
relative to the .dcbs frames, and JPEG-LS NEAR=N frames (pyjpegls/CharLS, the bits the
data really uses; signed data shifted to unsigned first) relative to the same. Then
encode and decode MB/s per core (one thread, interleaved rounds) of .dcbl (N=3) against
JPEG-LS NEAR=3 on every K-th slice of the first series. MB/s = raw stored bytes per second.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from _common import (interleave, print_load_after, print_machine, print_results, print_table,
                     rates, testdata_root)

import dicube
from dicube.codecs import bounded
from dicube.storage.reader import DcbsReader

BOUNDS = (1, 2, 3, 5)
PYDICOM = ("CT_small.dcm", "MR_small.dcm", "examples_overlay.dcm", "JPGExtended.dcm")


def _series(args) -> list:
    if args.folders:
        return [(Path(f).name, Path(f)) for f in args.folders]
    from pydicom.data import get_testdata_file

    root = testdata_root() / "dicom"
    out = [] if args.quick else [("sample_200", root / "sample_200")]
    out.append(("sample_10", root / "sample_10"))
    tmp = Path(tempfile.mkdtemp(prefix="bench_bound_"))
    for name in PYDICOM:
        folder = tmp / name.removesuffix(".dcm")
        folder.mkdir()
        shutil.copy(get_testdata_file(name), folder)
        out.append((folder.name, folder))
    return out


def _frames_bytes(path) -> int:
    with DcbsReader(path) as r:
        return int(r.layout.index["length"].sum())


def _jpegls(vol: np.ndarray, n: int) -> list:
    """JPEG-LS NEAR=n frames (grey or RGB), signed data shifted by its minimum first."""
    import jpeg_ls

    v = vol.astype(np.int64) - (int(vol.min()) if vol.dtype.kind == "i" else 0)
    bits = max(2, int(v.max()).bit_length())
    v = v.astype(np.uint16 if bits > 8 else np.uint8)
    comps = 3 if v.ndim == 4 else 1
    return [bytes(jpeg_ls.encode_buffer(np.ascontiguousarray(f).tobytes(), f.shape[0], f.shape[1],
                                        comps, bits, lossy_error=n)) for f in v]


def sizes(name: str, folder: Path, tmp: Path) -> list:
    img = dicube.load_from_dicom_folder(folder)
    vol = img.raw_image
    s_file = dicube.save(img, tmp / f"{name}.dcbs")
    s_frames = _frames_bytes(tmp / f"{name}.dcbs")
    rows = []
    for n in BOUNDS:
        p = tmp / f"{name}_{n}.dcbl"
        l_file = dicube.save(img, p, bound=n)
        with DcbsReader(p) as r:
            loss = r.section_json(b"LOSS")
        err = int(np.abs(dicube.load(p).raw_image.astype(np.int64) - vol).max())
        if err > loss["bound"]:
            sys.exit(f"{name}: error {err} beyond the bound {loss['bound']}")
        jls = sum(map(len, _jpegls(vol, loss["bound"])))
        units = "HU" if loss["units"] == "HU" else "stored" if loss["units"] == "stored" else loss["units"]
        rows.append([name, f"{n} {units}", f"{l_file / s_file:.3f}", f"{_frames_bytes(p) / s_frames:.3f}",
                     f"{jls / s_frames:.3f}", err])
    return rows


def speeds(folder: Path, every: int, repeat: int) -> None:
    import imagecodecs

    vol = np.ascontiguousarray(dicube.load_from_dicom_folder(folder).raw_image[::every])
    mb = vol.nbytes / 1e6
    params, frames = bounded.encode_batch(vol, 3, num_threads=1)
    jls = _jpegls(vol, 3)
    out = np.empty_like(vol)
    shifted = np.empty(vol.shape, np.uint16 if vol.itemsize == 2 else np.uint8)

    def jls_decode():
        for k, f in enumerate(jls):
            imagecodecs.jpegls_decode(f, out=shifted[k])

    enc = interleave({".dcbl N=3 (q + JPEG XL e5)": lambda: bounded.encode_batch(vol, 3, num_threads=1),
                      "JPEG-LS NEAR=3": lambda: _jpegls(vol, 3)}, repeat=repeat, warmup=0)
    dec = interleave({".dcbl N=3 (q + JPEG XL e5)": lambda: bounded.decode_batch(frames, params, out, 1),
                      "JPEG-LS NEAR=3": jls_decode}, repeat=repeat, warmup=1)
    print(f"\nspeed on every {every}th slice of {folder.name} ({vol.shape[0]} frames), one thread:")
    print("encode:")
    print_results(rates(enc, mb), "MB/s")
    print("decode:")
    print_results(rates(dec, mb), "MB/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="*", help="DICOM series folders (default: see above)")
    ap.add_argument("--quick", action="store_true", help="without sample_200, one timed round")
    ap.add_argument("--repeat", type=int, default=3, help="timed rounds (default 3)")
    ap.add_argument("--every", type=int, default=10, help="time every K-th slice (default 10)")
    args = ap.parse_args()
    print_machine(f", imagecodecs {__import__('imagecodecs').__version__}")
    series = _series(args)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_bound_") as d:
        for name, folder in series:
            rows += sizes(name, folder, Path(d))
            print(f"  {name} done", file=sys.stderr)
    print()
    print_table(["series", "bound", ".dcbl / .dcbs file", ".dcbl / .dcbs frames",
                 "JPEG-LS NEAR / .dcbs frames", "max error (stored)"], rows)
    speeds(series[0][1], 1 if args.quick else args.every, 1 if args.quick else args.repeat)
    print_load_after()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
