"""Benchmark DcbStreamingReader.get_dicom_for_frame on a DICOM series (default: the shared
200-slice CT).

    python benchmarks/bench_streaming.py [folder] [--calls N] [--quick]

Latency per call on random frames, the operations interleaved call by call (one frame, every
operation, next frame): HTJ2K (stored codestream encapsulated) and uncompressed (one frame
decoded), first call of a frame (header built) and later calls (header cached); beside
reading one original .dcm file's bytes and decoding one frame. Median (min-max) and p90.
Goals (issue 5): HTJ2K at most 1 ms per frame; uncompressed at most one frame's decode
time plus 1 ms.
"""
from __future__ import annotations

import argparse
import random
import statistics
import tempfile
from pathlib import Path

from _common import (interleave, print_load_after, print_machine, print_results, scaled,
                     series_arg, series_of)

import dicube
from dicube.codecs.jph import imdecode_jph
from dicube.dicom import DcbStreamingReader
from dicube.storage.reader import DcbsReader


def p90(xs: list[float]) -> float:
    return sorted(xs)[int(0.9 * (len(xs) - 1))]


def read_file(p: Path) -> bytes:
    with open(p, "rb") as fh:
        return fh.read()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    series_arg(ap)
    ap.add_argument("--calls", type=int, default=1000, help="calls per operation (--quick: 50)")
    args = ap.parse_args(argv)
    folder = series_of(args)
    calls = 50 if args.quick else args.calls
    print_machine()
    files = sorted(p for p in folder.iterdir() if p.is_file())
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "series.dcbs"
        dicube.save(dicube.load_from_dicom_folder(folder), path)
        with DcbsReader(path) as raw, DcbStreamingReader(path) as sh, \
                DcbStreamingReader(path) as su:
            n = raw.frame_count
            frames = [rng.randrange(n) for _ in range(calls)]
            codestreams = {i: raw.codestream(i) for i in set(frames)}
            first = list(range(n))
            rng.shuffle(first)
            times = interleave({
                "get_dicom_for_frame HTJ2K, first call per frame":
                    lambda i: sh.get_dicom_for_frame(i, False),
                "get_dicom_for_frame uncompressed, first call per frame":
                    lambda i: su.get_dicom_for_frame(i, True)}, args=first, warmup=0)
            times.update(interleave({
                "read one original .dcm file (bytes)": lambda i: read_file(files[i % len(files)]),
                "decode one frame (DcbsReader.read_frames)":
                    lambda i: raw.read_frames([i], num_threads=1),
                "decode one frame (imdecode_jph)": lambda i: imdecode_jph(codestreams[i]),
                "get_dicom_for_frame HTJ2K, random frames":
                    lambda i: sh.get_dicom_for_frame(i, False),
                "get_dicom_for_frame uncompressed, random frames":
                    lambda i: su.get_dicom_for_frame(i, True)}, args=frames))
    ms = scaled(times, 1e3)
    dec = statistics.median(ms["decode one frame (DcbsReader.read_frames)"])
    extra = {}
    for name, xs in ms.items():
        goal = 1.0 if "HTJ2K" in name else dec + 1.0 if "uncompressed" in name else None
        med = statistics.median(xs)
        extra[name] = [p90(xs), "-" if goal is None else f"<= {goal:.3g}",
                       "-" if goal is None else "yes" if med <= goal else "NO"]
    print(f"\n{folder} ({n} frames); {calls} calls on random frames, {n} first calls; "
          f"interleaved call by call; times in ms")
    print_results(ms, "ms", [
        ("HTJ2K random frames / read original file",
         "get_dicom_for_frame HTJ2K, random frames", "read one original .dcm file (bytes)"),
        ("uncompressed random frames / decode one frame",
         "get_dicom_for_frame uncompressed, random frames",
         "decode one frame (DcbsReader.read_frames)"),
    ], first="operation", extra=extra, extra_headers=["p90 ms", "goal ms", "met"])
    print_load_after()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
