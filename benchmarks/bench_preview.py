"""Time and bytes read for a 6x6 mosaic (128-pixel tiles): .dcbs vs DICOM folder, local
and over HTTP (Debian's nginx on loopback, Range requests). The four sources run
interleaved, median (min-max), with ratios of medians and per-pair min-max.

    python benchmarks/bench_preview.py [SERIES_FOLDER] [--repeat N] [--quick]   # default: sample_200
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import dicube  # noqa: E402
from _common import (interleave, print_load_after, print_machine, print_results,  # noqa: E402
                     scaled, series_arg, series_of)
from dicube.preview import DcbsSeries, mosaic  # noqa: E402
from dicube.preview.render import _sorted  # noqa: E402
from dicube.preview.selection import select_slices  # noqa: E402


def _decode_runs(s: DcbsSeries) -> dict:
    """Decoding the 36 chosen frames at full resolution vs at 1/4 (2 levels skipped)."""
    order, pos = _sorted(s)
    chosen = [int(order[k]) for k in select_slices(pos, 36)]
    return {f"{label}": (lambda w=w: s.read(chosen, w, w))
            for label, w in (("full 512 px", 512), ("reduced to 128 px", 128))}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    series_arg(ap)
    ap.add_argument("--repeat", type=int, default=5, help="rounds (default 5; --quick: 2)")
    args = ap.parse_args(argv)
    folder = series_of(args)
    repeat = 2 if args.quick else args.repeat
    from preview_servers import publish, start_nginx  # the tests' nginx launcher

    print_machine()
    server = start_nginx()
    try:
        www = server.www
        dcbs = www / "series.dcbs"
        dicube.save(dicube.load_from_dicom_folder(folder), dcbs)
        dcbs.chmod(0o644)
        publish(folder, www / "series")
        files = [folder / n for n in os.listdir(folder)]
        folder_size = sum(f.stat().st_size for f in files if f.is_file())
        dcbs_size = dcbs.stat().st_size
        print(f"series: {folder} ({len(files)} files, {folder_size / 2**20:.1f} MiB; "
              f".dcbs {dcbs_size / 2**20:.1f} MiB); interleaved, {repeat} rounds")
        sources = {".dcbs, local": (str(dcbs), dcbs_size),
                   "DICOM folder, local": (str(folder), folder_size),
                   ".dcbs, HTTP (nginx)": (f"{server.url}/series.dcbs", dcbs_size),
                   "DICOM folder, HTTP (nginx)": (f"{server.url}/series", folder_size)}
        last = {}

        def run(name):
            last[name] = mosaic(sources[name][0])

        times = interleave({name: (lambda name=name: run(name)) for name in sources}, repeat)
        extra = {name: [round(last[name].stats.bytes / 2**20, 2),
                        f"{100 * last[name].stats.bytes / size:.1f}%", last[name].stats.requests]
                 for name, (_, size) in sources.items()}
        print_results(scaled(times, 1e3), "ms", [
            (".dcbs / DICOM folder, local", ".dcbs, local", "DICOM folder, local"),
            (".dcbs / DICOM folder, HTTP", ".dcbs, HTTP (nginx)", "DICOM folder, HTTP (nginx)")],
            first="6x6 mosaic from", extra=extra, extra_headers=["MiB read", "of source", "requests"])
        print()
        with DcbsSeries(str(dcbs)) as s:
            dec = interleave(_decode_runs(s), max(3, repeat))
        print_results(scaled(dec, 1e3), "ms",
                      [("reduced / full", "reduced to 128 px", "full 512 px")],
                      first="decode 36 frames of the .dcbs")
        print_load_after()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
