"""Benchmark: load_from_dicom_folder vs plain pydicom read-and-stack.

Goals (issue 3): time <= 1.3x pydicom read-and-stack of the same files, peak memory
<= 2x the volume's raw size. Times: the two run interleaved, each timed call in a fresh
forked child (warm file cache), median (min-max), and their ratio (ratio of medians,
per-pair min-max); peak memory is measured with tracemalloc (numpy buffers included) in
separate runs. Usage: python benchmarks/bench_ingest.py [folder] [--repeat N] [--quick]
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import dicube  # noqa: E402
from _common import (interleave, print_load_after, print_machine, print_results,  # noqa: E402
                     print_table, scaled, series_arg, series_of)
from dicube.dicom import discover_series  # noqa: E402

PYD, DC = "pydicom read+stack", "dicube load_from_dicom_folder"


def pydicom_stack(folder: Path) -> np.ndarray:
    files = sorted(p for p in folder.iterdir() if p.is_file())
    return np.stack([pydicom.dcmread(p).pixel_array for p in files])


def dicube_load(folder: Path):
    return dicube.load_from_dicom_folder(folder)


def peak(fn, *args) -> int:
    gc.collect()
    tracemalloc.start()
    result = fn(*args)
    _, p = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return p


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    series_arg(ap, "DICUBE_BENCH_FOLDER")
    ap.add_argument("--repeat", type=int, default=7, help="rounds (default 7; --quick: 3)")
    args = ap.parse_args(argv)
    folder = series_of(args)
    repeat = 3 if args.quick else args.repeat
    print_machine()

    img = dicube_load(folder)
    raw = img.raw_image.nbytes
    times = interleave({PYD: lambda: pydicom_stack(folder), DC: lambda: dicube_load(folder)},
                       repeat, fresh=True, before={PYD: gc.collect, DC: gc.collect})
    disc = interleave({"dicube discover_series": lambda: discover_series(folder)}, 3)
    m_py, m_dc = peak(pydicom_stack, folder), peak(dicube_load, folder)
    meta_json = img.dicom_meta.to_json().encode()
    zmeta = zstandard.ZstdCompressor(level=9).compress(meta_json)

    n = img.raw_image.shape[0]
    ratio = statistics.median(times[DC]) / statistics.median(times[PYD])
    print(f"folder: {folder} ({n} slices, volume {raw / 2**20:.1f} MiB); interleaved, "
          f"{repeat} rounds, one forked child per timed call")
    print_results({**scaled(times, 1e3), **scaled(disc, 1e3)}, "ms",
                  [(f"{DC} / {PYD} (goal <= 1.30: {'PASS' if ratio <= 1.3 else 'FAIL'})", DC, PYD)],
                  first="step")
    print()
    print_table(["step", "peak memory / volume"],
                [[PYD, f"{m_py / raw:.2f}x"],
                 [DC, f"{m_dc / raw:.2f}x (goal <= 2x: {'PASS' if m_dc <= 2 * raw else 'FAIL'})"]])
    print(f"metadata: {len(meta_json) / 1024:.0f} KiB JSON, {len(zmeta) / 1024:.1f} KiB zstd-9; "
          f"{len(img.dicom_meta.shared)} shared / {len(img.dicom_meta.per_slice)} per-slice "
          f"elements; QC status {dicube.get_dicom_status(img.dicom_meta).value}")
    print_load_after()


if __name__ == "__main__":
    main()
