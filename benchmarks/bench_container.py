"""Benchmark the .dcbs container on a DICOM series (default: the shared 200-slice CT).

    python benchmarks/bench_container.py [folder] [--repeat N] [--in-process] [--load-only] [--quick]

Prints DICOM vs .dcbs size; then, timed interleaved (one round runs every contender once,
each timed call in a fresh forked child unless --in-process): pydicom read-and-stack,
dicube.load (1 and 2 threads, fresh and reused output array), the codec's own decode_batch
on the same codestreams (the floor for load) and load of a codec='zstd' file; save and
load_meta likewise. Medians with min-max; ratios of medians with per-pair min-max.
--load-only times pydicom and dicube.load alone (shorter rounds: tighter pairs).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import pydicom

from _common import (interleave, print_load_after, print_machine, print_results, print_table,
                     scaled, series_arg, series_of)

import dicube
from dicube.codecs.jph import decode_batch
from dicube.storage.reader import DcbsReader

PYD = "pydicom read+stack"


def pydicom_stack(files: list[Path]) -> np.ndarray:
    return np.stack([pydicom.dcmread(f).pixel_array for f in files])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    series_arg(ap)
    ap.add_argument("--repeat", type=int, default=9, help="rounds (default 9; --quick: 3)")
    ap.add_argument("--in-process", action="store_true",
                    help="time in this process instead of one forked child per call")
    ap.add_argument("--load-only", action="store_true",
                    help="only pydicom read+stack and dicube.load (1 and 2 threads)")
    args = ap.parse_args(argv)
    folder = series_of(args)
    repeat = 3 if args.quick else args.repeat
    print_machine()
    files = sorted(p for p in folder.iterdir() if p.is_file())
    dicom_bytes = sum(p.stat().st_size for p in files)
    img = dicube.load_from_dicom_folder(folder)
    mb = img.raw_image.nbytes / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        path, zpath = Path(tmp) / "series.dcbs", Path(tmp) / "series-zstd.dcbs"
        saves = interleave({"save (htj2k)": lambda: dicube.save(img, path),
                            "save (codec='zstd')": lambda: dicube.save(img, zpath, codec="zstd")},
                           max(2, repeat // 2))
        size, zsize = path.stat().st_size, zpath.stat().st_size
        assert np.array_equal(dicube.load(path).raw_image, img.raw_image)
        assert np.array_equal(dicube.load(zpath).raw_image, img.raw_image)
        out = np.empty_like(img.raw_image)
        with DcbsReader(path) as r:
            streams = [r.codestream(i) for i in range(r.frame_count)]
        loads = {PYD: lambda: pydicom_stack(files)}
        for t in (1, 2):
            loads[f"dicube.load, {t} thread(s)"] = lambda t=t: dicube.load(path, num_threads=t)
            loads[f"dicube.load(out=...), {t} thread(s)"] = (
                lambda t=t: dicube.load(path, num_threads=t, out=out))
            loads[f"codec decode_batch, {t} thread(s)"] = (
                lambda t=t: decode_batch(streams, out=out, num_threads=t))
        loads["dicube.load codec='zstd', 2 threads"] = lambda: dicube.load(zpath, num_threads=2)
        if args.load_only:
            loads = {k: v for k, v in loads.items() if k == PYD or k.startswith("dicube.load, ")}
        times = interleave(loads, repeat, fresh=not args.in_process)
        meta = interleave({"load_meta": lambda: dicube.load_meta(path)}, 20 * repeat)

    print(f"\nseries {folder.name}: {img.raw_image.shape} {img.raw_image.dtype}, {mb:.1f} MB raw; "
          f"{'in-process' if args.in_process else 'one forked child per timed call'}, "
          f"interleaved, {repeat} rounds")
    print_table(["file", "bytes", "DICOM bytes / bytes"],
                [["DICOM files", f"{dicom_bytes:,}", "1"],
                 [".dcbs (htj2k)", f"{size:,}", f"{dicom_bytes / size:.2f}x (goal >= 3.5x)"],
                 [".dcbs codec='zstd'", f"{zsize:,}", f"{dicom_bytes / zsize:.2f}x"]])
    print()
    ms = scaled(times, 1e3)
    mbs = {k: [f"{mb / statistics.median(v):.0f}"] for k, v in times.items()}
    ratios = [r for r in [
        ("dicube.load 1 thread / pydicom (goal <= 0.6x)", "dicube.load, 1 thread(s)", PYD),
        ("dicube.load 2 threads / pydicom (goal <= 0.6x)", "dicube.load, 2 thread(s)", PYD),
        ("load(out=...) 2 threads / decode_batch 2 threads", "dicube.load(out=...), 2 thread(s)",
         "codec decode_batch, 2 thread(s)"),
        ("load codec='zstd' 2 threads / pydicom", "dicube.load codec='zstd', 2 threads", PYD),
        ("load codec='zstd' / load htj2k, 2 threads", "dicube.load codec='zstd', 2 threads",
         "dicube.load, 2 thread(s)"),
    ] if r[1] in ms and r[2] in ms]
    print_results(ms, "ms", ratios, first="operation", extra=mbs, extra_headers=["MB/s at median"])
    print()
    print_results({**scaled(saves, 1e3), **scaled(meta, 1e3)}, "ms",
                  [("save zstd / save htj2k", "save (codec='zstd')", "save (htj2k)")],
                  first="operation (load_meta goal < 3 ms)")
    print_load_after()
    return 0


if __name__ == "__main__":
    sys.exit(main())
