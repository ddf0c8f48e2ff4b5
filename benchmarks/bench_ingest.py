"""Benchmark: load_from_dicom_folder vs plain pydicom read-and-stack.

Goals (issue 3): time <= 1.3x pydicom read-and-stack of the same files, peak memory
<= 2x the volume's raw size. Times are the median of several alternating runs (warm
file cache); peak memory is measured with tracemalloc (numpy buffers included) in
separate runs. Usage: python benchmarks/bench_ingest.py [folder] [--repeat N]
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import dicube  # noqa: E402
from dicube.dicom import discover_series  # noqa: E402

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "dicube-testdata" / "dicom" / "sample_200"


def pydicom_stack(folder: Path) -> np.ndarray:
    files = sorted(p for p in folder.iterdir() if p.is_file())
    return np.stack([pydicom.dcmread(p).pixel_array for p in files])


def dicube_load(folder: Path):
    return dicube.load_from_dicom_folder(folder)


def timed(fn, *args) -> float:
    gc.collect()
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def peak(fn, *args) -> int:
    gc.collect()
    tracemalloc.start()
    result = fn(*args)
    _, p = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return p


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", nargs="?", default=os.environ.get("DICUBE_BENCH_FOLDER", DEFAULT))
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    folder = Path(args.folder)

    img = dicube_load(folder)  # warm-up (file cache, imports)
    pydicom_stack(folder)
    raw = img.raw_image.nbytes
    t_py, t_dc = [], []
    for _ in range(args.repeat):
        t_py.append(timed(pydicom_stack, folder))
        t_dc.append(timed(dicube_load, folder))
    t_disc = statistics.median(timed(discover_series, folder) for _ in range(3))
    m_py, m_dc = peak(pydicom_stack, folder), peak(dicube_load, folder)
    meta_json = img.dicom_meta.to_json().encode()
    zmeta = zstandard.ZstdCompressor(level=9).compress(meta_json)

    mp, md = statistics.median(t_py), statistics.median(t_dc)
    n = img.raw_image.shape[0]
    rows = [
        ("pydicom read+stack", f"{mp * 1000:.0f} ms", f"{m_py / raw:.2f}x", ""),
        ("dicube load_from_dicom_folder", f"{md * 1000:.0f} ms", f"{m_dc / raw:.2f}x",
         f"time ratio {md / mp:.2f} (goal <= 1.30: {'PASS' if md / mp <= 1.3 else 'FAIL'}); "
         f"memory {'PASS' if m_dc <= 2 * raw else 'FAIL'} (goal <= 2x)"),
        ("dicube discover_series", f"{t_disc * 1000:.0f} ms", "", ""),
    ]
    print(f"folder: {folder} ({n} slices, volume {raw / 2**20:.1f} MiB, "
          f"{os.cpu_count()} cpus, median of {args.repeat})")
    print(f"| {'step':<30} | {'time':>8} | {'peak mem / volume':>17} | notes")
    print(f"|{'-' * 32}|{'-' * 10}|{'-' * 19}|------")
    for r in rows:
        print(f"| {r[0]:<30} | {r[1]:>8} | {r[2]:>17} | {r[3]}")
    print(f"metadata: {len(meta_json) / 1024:.0f} KiB JSON, {len(zmeta) / 1024:.1f} KiB zstd-9; "
          f"{len(img.dicom_meta.shared)} shared / {len(img.dicom_meta.per_slice)} per-slice "
          f"elements; QC status {dicube.get_dicom_status(img.dicom_meta).value}")


if __name__ == "__main__":
    main()
