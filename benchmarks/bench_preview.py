"""Time and bytes read for a 6x6 mosaic (128-pixel tiles): .dcbs vs DICOM folder, local
and over HTTP (Debian's nginx on loopback, Range requests).

    python benchmarks/bench_preview.py [SERIES_FOLDER]   # default: sample_200
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import dicube  # noqa: E402
from _common import best_of, print_table, series_folder  # noqa: E402
from dicube.preview import DcbsSeries, mosaic  # noqa: E402
from dicube.preview.render import _sorted  # noqa: E402
from dicube.preview.selection import select_slices  # noqa: E402


def _row(name: str, where: str, source: str, size: int, repeat: int = 5):
    last = {}

    def run():
        last["p"] = mosaic(source)

    t = best_of(run, repeat)
    p = last["p"]
    return [name, where, round(t * 1000, 1), round(p.stats.bytes / 2**20, 2),
            f"{100 * p.stats.bytes / size:.1f}%", p.stats.requests]


def _decode_rows(dcbs: str):
    """Decoding the 36 chosen frames at full resolution vs at 1/4 (2 levels skipped)."""
    rows = []
    with DcbsSeries(dcbs) as s:
        order, pos = _sorted(s)
        chosen = [int(order[k]) for k in select_slices(pos, 36)]
        for label, w in (("full 512 px", 512), ("reduced to 128 px", 128)):
            t = best_of(lambda: s.read(chosen, w, w), 5)
            rows.append([label, round(t * 1000, 1)])
    return rows


def main() -> None:
    folder = series_folder()
    from preview_servers import publish, start_nginx  # the tests' nginx launcher

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
              f".dcbs {dcbs_size / 2**20:.1f} MiB); load average {os.getloadavg()[0]:.2f}")
        rows = [
            _row(".dcbs", "local", str(dcbs), dcbs_size),
            _row("DICOM folder", "local", str(folder), folder_size),
            _row(".dcbs", "HTTP (nginx)", f"{server.url}/series.dcbs", dcbs_size),
            _row("DICOM folder", "HTTP (nginx)", f"{server.url}/series", folder_size, repeat=3),
        ]
        print_table(["source", "where", "time ms", "MiB read", "of source", "requests"], rows)
        print()
        print_table(["decode 36 frames of the .dcbs", "time ms"], _decode_rows(str(dcbs)))
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
