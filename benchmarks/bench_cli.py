"""Benchmark the ``dicube`` command line as a user runs it (wall time of the whole process).

    python benchmarks/bench_cli.py [folder] [--repeat N] [--series K]

The series (default: the shared 200-slice CT) is split into K series of equal size (new
SeriesInstanceUIDs, in a temporary root) to time ``convert --jobs 1`` against ``--jobs 2``;
then ``info``, ``info --json`` and ``verify`` run on the .dcbs of the whole series.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pydicom
from _common import best_of, print_table, testdata_root

DEFAULT = testdata_root() / "dicom" / "sample_200"


def dicube(*args) -> None:
    exe = shutil.which("dicube") or str(Path(sys.executable).parent / "dicube")
    proc = subprocess.run([exe, *map(str, args)], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"dicube {' '.join(map(str, args))} failed:\n{proc.stderr}")


def split_series(folder: Path, root: Path, parts: int) -> int:
    files = sorted(p for p in folder.iterdir() if p.is_file())
    for k in range(parts):
        uid = pydicom.uid.generate_uid()
        dst = root / f"series{k}"
        dst.mkdir(parents=True)
        for f in files[k::parts]:
            ds = pydicom.dcmread(f)
            ds.SeriesInstanceUID = uid
            ds.save_as(dst / f.name)
    return len(files)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default=DEFAULT)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--series", type=int, default=4)
    args = ap.parse_args(argv)
    folder = Path(args.folder)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n = split_series(folder, tmp / "root", args.series)
        dicom_mb = sum(p.stat().st_size for p in (tmp / "root").rglob("*") if p.is_file()) / 1e6
        rows = []
        for jobs in (1, 2):
            out = tmp / f"out{jobs}"
            s = best_of(lambda: dicube("convert", tmp / "root", "-o", out, "--jobs", jobs,
                                       "--overwrite", "-q"), args.repeat)
            rows.append([f"convert {args.series} series ({n} slices, {dicom_mb:.0f} MB), --jobs {jobs}",
                         s * 1000, dicom_mb / s])
        whole = tmp / "whole"
        dicube("convert", folder, "-o", whole, "-q")
        (target,) = whole.iterdir()
        mb = target.stat().st_size / 1e6
        for label, cmd in (("info", ["info", target]), ("info --json", ["info", "--json", target]),
                           ("verify (all checksums, all frames decoded)", ["verify", target])):
            s = best_of(lambda: dicube(*cmd), args.repeat)
            rows.append([f"{label}, {n}-slice .dcbs ({mb:.1f} MB)", s * 1000, mb / s])
        s = best_of(lambda: subprocess.run([sys.executable, "-c", "import dicube.cli"], check=True),
                    args.repeat)
        rows.append(["python start-up + import dicube.cli (floor)", s * 1000, "-"])
    print(f"load average: {os.getloadavg()[0]:.2f}, cores: {os.cpu_count()}")
    print_table(["command (whole process)", "ms", "MB/s"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
