"""Benchmark the .dcbs container on a DICOM series (default: the shared 200-slice CT).

    python benchmarks/bench_container.py [folder] [--repeat N]

Prints DICOM vs .dcbs size, save time, load time (1 and 2 threads, fresh and reused
output array), load_meta time, pydicom read-and-stack time, and the codec's own
decode_batch time on the same codestreams (the floor for load).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pydicom

from _common import best_of as timeit, testdata_root

import dicube
from dicube.codecs.jph import decode_batch
from dicube.storage.reader import DcbsReader

DEFAULT = testdata_root() / "dicom" / "sample_200"


def pydicom_stack(files: list[Path]) -> np.ndarray:
    return np.stack([pydicom.dcmread(f).pixel_array for f in files])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default=os.environ.get("DICUBE_BENCH_SERIES", DEFAULT))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    folder = Path(args.folder)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    dicom_bytes = sum(p.stat().st_size for p in files)
    img = dicube.load_from_dicom_folder(folder)
    n = img.raw_image.shape[0]
    mb = img.raw_image.nbytes / 1e6
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "series.dcbs"
        t_save = timeit(lambda: dicube.save(img, path), max(1, args.repeat // 2))
        size = path.stat().st_size
        out = np.empty_like(img.raw_image)
        with DcbsReader(path) as r:
            streams = [r.codestream(i) for i in range(r.frame_count)]
        t_pyd = timeit(lambda: pydicom_stack(files), max(1, args.repeat // 2))
        t_meta = timeit(lambda: dicube.load_meta(path), 20 * args.repeat)
        res = {}
        for threads in (1, 2):
            res[("load", threads)] = timeit(lambda: dicube.load(path, num_threads=threads),
                                            args.repeat)
            res[("load_out", threads)] = timeit(
                lambda: dicube.load(path, num_threads=threads, out=out), args.repeat)
            res[("codec", threads)] = timeit(
                lambda: decode_batch(streams, out=out, num_threads=threads), args.repeat)
        check = dicube.load(path)
        assert np.array_equal(check.raw_image, img.raw_image)
        zpath = Path(tmp) / "series-zstd.dcbs"
        t_zsave = timeit(lambda: dicube.save(img, zpath, codec="zstd"), max(1, args.repeat // 2))
        zsize = zpath.stat().st_size
        t_zload = timeit(lambda: dicube.load(zpath, num_threads=2), args.repeat)
        assert np.array_equal(dicube.load(zpath).raw_image, img.raw_image)

    rows.append(("series", f"{folder.name}: {n} x {img.raw_image.shape[1:]} {img.raw_image.dtype}"))
    rows.append(("DICOM bytes", f"{dicom_bytes:,}"))
    rows.append((".dcbs bytes", f"{size:,}  (ratio {dicom_bytes / size:.2f}x, goal >= 3.5x)"))
    rows.append(("save", f"{t_save * 1e3:8.1f} ms"))
    rows.append(("pydicom read+stack", f"{t_pyd * 1e3:8.1f} ms"))
    for threads in (1, 2):
        lo, lr, cd = res[("load", threads)], res[("load_out", threads)], res[("codec", threads)]
        rows.append((f"load, {threads} thread(s)",
                     f"{lo * 1e3:8.1f} ms  ({lo / t_pyd:.2f}x pydicom, goal <= 0.6x)"))
        rows.append((f"load(out=...), {threads} thread(s)",
                     f"{lr * 1e3:8.1f} ms  ({mb / lr:.0f} MB/s; {lr / cd - 1:+.1%} vs codec)"))
        rows.append((f"codec decode_batch, {threads} thread(s)",
                     f"{cd * 1e3:8.1f} ms  ({mb / cd:.0f} MB/s)"))
    rows.append(("load_meta", f"{t_meta * 1e3:8.2f} ms  (goal < 3 ms)"))
    rows.append(("codec='zstd': bytes", f"{zsize:,}  (ratio {dicom_bytes / zsize:.2f}x)"))
    rows.append(("codec='zstd': save", f"{t_zsave * 1e3:8.1f} ms"))
    rows.append(("codec='zstd': load, 2 threads",
                 f"{t_zload * 1e3:8.1f} ms  ({t_zload / t_pyd:.2f}x pydicom)"))
    rows.append(("machine load average", " / ".join(f"{x:.2f}" for x in os.getloadavg())
                 + f" on {os.cpu_count()} cores (other work skews thread timings)"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
