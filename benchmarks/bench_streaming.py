"""Benchmark DcbStreamingReader.get_dicom_for_frame on a DICOM series (default: the shared
200-slice CT).

    python benchmarks/bench_streaming.py [folder] [--calls N]

Median latency per call on random frames: HTJ2K (stored codestream encapsulated) and
uncompressed (one frame decoded), first call of a frame (header built) and later calls
(header cached); beside reading one original .dcm file's bytes and decoding one frame.
Goals (issue 5): HTJ2K at most 1 ms per frame; uncompressed at most one frame's decode
time plus 1 ms.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from _common import print_table, testdata_root

import dicube
from dicube.codecs.jph import imdecode_jph
from dicube.dicom import DcbStreamingReader
from dicube.storage.reader import DcbsReader

DEFAULT = testdata_root() / "dicom" / "sample_200"


def per_call(fn, args: list) -> list[float]:
    """Wall time of fn(a) for each a, in milliseconds."""
    out = []
    for a in args:
        t = time.perf_counter()
        fn(a)
        out.append((time.perf_counter() - t) * 1e3)
    return out


def p90(xs: list[float]) -> float:
    return sorted(xs)[int(0.9 * (len(xs) - 1))]


def read_file(p: Path) -> bytes:
    with open(p, "rb") as fh:
        return fh.read()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default=os.environ.get("DICUBE_BENCH_SERIES", DEFAULT))
    ap.add_argument("--calls", type=int, default=1000)
    args = ap.parse_args(argv)
    folder = Path(args.folder)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "series.dcbs"
        dicube.save(dicube.load_from_dicom_folder(folder), path)
        with DcbsReader(path) as raw:
            n = raw.frame_count
            frames = [rng.randrange(n) for _ in range(args.calls)]
            codestreams = {i: raw.codestream(i) for i in set(frames)}
            read_frame = per_call(lambda i: raw.read_frames([i], num_threads=1), frames)
            decode = per_call(lambda i: imdecode_jph(codestreams[i]), frames)
        file_read = per_call(read_file, [rng.choice(files) for _ in range(args.calls)])
        first = list(range(n))
        rng.shuffle(first)
        results = {}
        for force in (False, True):
            with DcbStreamingReader(path) as stream:
                cold = per_call(lambda i: stream.get_dicom_for_frame(i, force), first)
                warm = per_call(lambda i: stream.get_dicom_for_frame(i, force), frames)
            results[force] = (cold, warm)
    dec = statistics.median(read_frame)
    rows = [
        ["read one original .dcm file (bytes)", statistics.median(file_read), p90(file_read), "-", "-"],
        ["decode one frame (DcbsReader.read_frames)", dec, p90(read_frame), "-", "-"],
        ["decode one frame (imdecode_jph)", statistics.median(decode), p90(decode), "-", "-"],
    ]
    for force, label, goal in ((False, "HTJ2K", 1.0), (True, "uncompressed", dec + 1.0)):
        cold, warm = results[force]
        for kind, xs in (("first call per frame", cold), ("random frames", warm)):
            med = statistics.median(xs)
            rows.append([f"get_dicom_for_frame {label}, {kind}", med, p90(xs),
                         f"<= {goal:.3g}", "yes" if med <= goal else "NO"])
    print(f"{folder} ({n} frames), {args.calls} calls on random frames; times in ms "
          f"(load average {os.getloadavg()[0]:.2f})")
    print_table(["operation", "median ms", "p90 ms", "goal ms", "met"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
