"""Benchmark the ``dicube`` command line as a user runs it (wall time of the whole process).

    python benchmarks/bench_cli.py [folder] [--repeat N] [--series K] [--quick]

The series (default: the shared 200-slice CT) is split into K series of equal size (new
SeriesInstanceUIDs, in a temporary root) to time ``convert --jobs 1`` against ``--jobs 2``;
``info``, ``info --json`` and ``verify`` run on the .dcbs of the whole series. Every command
is a fresh process; the commands run interleaved, median (min-max) with ratios.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pydicom
from _common import (interleave, print_load_after, print_machine, print_results, scaled,
                     series_arg, series_of)

J1, J2, FLOOR = "convert --jobs 1", "convert --jobs 2", "dicube --version (start-up floor)"


def dicube(*args) -> None:
    exe = Path(sys.executable).parent / "dicube"  # the console script itself, not a pyenv shim
    exe = str(exe) if exe.exists() else shutil.which("dicube")
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
    series_arg(ap)
    ap.add_argument("--repeat", type=int, default=5, help="rounds (default 5; --quick: 2)")
    ap.add_argument("--series", type=int, default=4)
    args = ap.parse_args(argv)
    folder = series_of(args)
    repeat, parts = (2, 2) if args.quick else (args.repeat, args.series)
    print_machine()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n = split_series(folder, tmp / "root", parts)
        dicom_mb = sum(p.stat().st_size for p in (tmp / "root").rglob("*") if p.is_file()) / 1e6
        whole = tmp / "whole"
        dicube("convert", folder, "-o", whole, "-q")
        (target,) = whole.iterdir()
        mb = target.stat().st_size / 1e6
        runs = {J1: lambda: dicube("convert", tmp / "root", "-o", tmp / "out1", "--jobs", 1,
                                   "--overwrite", "-q"),
                J2: lambda: dicube("convert", tmp / "root", "-o", tmp / "out2", "--jobs", 2,
                                   "--overwrite", "-q"),
                "info": lambda: dicube("info", target),
                "info --json": lambda: dicube("info", "--json", target),
                "verify (all checksums, all frames decoded)": lambda: dicube("verify", target),
                FLOOR: lambda: dicube("--version")}
        if args.quick:  # the smoke run: convert's ratio only
            for k in ("info", "info --json", "verify (all checksums, all frames decoded)"):
                del runs[k]
        times = interleave(runs, repeat, warmup=0 if args.quick else 1)
    print(f"\nconvert: {parts} series ({n} slices, {dicom_mb:.0f} MB of DICOM); info, verify: "
          f"the {n}-slice .dcbs ({mb:.1f} MB); every command a fresh process, interleaved, "
          f"{repeat} rounds")
    per = {k: [f"{(dicom_mb if k.startswith('convert') else mb) / statistics.median(v):.0f}"]
           for k, v in times.items() if k != FLOOR}
    ratios = [("convert --jobs 2 / --jobs 1", J2, J1)]
    if "info" in times:
        ratios.append(("info / dicube --version", "info", FLOOR))
    print_results(scaled(times, 1e3), "ms", ratios,
        first="command (whole process)", extra=per, extra_headers=["MB/s at median"])
    print_load_after()
    return 0


if __name__ == "__main__":
    sys.exit(main())
