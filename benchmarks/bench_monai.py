"""MONAI LoadImage of one CT series: dicube.monai.DcbsImageReader against MONAI's own readers.

    python benchmarks/bench_monai.py [folder] [--repeat 5] [--quick]

The series (default: the shared 200-slice CT) is written once as .dcbs (HTJ2K, and zstd
frames), and dcm2niix writes it as .nii.gz. Each contender is
``LoadImage(reader=R, image_only=True)(path)`` with LoadImage's default float32 output:
  - DcbsImageReader on the .dcbs files,
  - MONAI's PydicomReader and ITKReader on the DICOM folder,
  - MONAI's NibabelReader on dcm2niix's .nii.gz,
and, for reference, ``dicube.load(path).get_fdata()`` (frame-ordered, no MONAI layout).
Contenders run interleaved, files in the page cache, one untimed warm-up round (library
imports, ITK's lazy loading); wall time and the process's CPU time (user + system, all
threads) are both reported. Goal (issue 15): DcbsImageReader on the HTJ2K .dcbs >= 6x
faster than the fastest MONAI reader.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

from _common import (interleave, print_load_after, print_machine, print_results, ratio,
                     scaled, series_arg, series_of)

import dicube

GOAL = 6.0


def prepare(src: Path, root: Path) -> dict:
    """The .dcbs files and dcm2niix's .nii.gz of ``src``."""
    img = dicube.load_from_dicom_folder(src)
    out = {"dcbs": root / "ct.dcbs", "dcbs-zstd": root / "ct-zstd.dcbs"}
    dicube.save(img, out["dcbs"])
    dicube.save(img, out["dcbs-zstd"], codec="zstd")
    exe = shutil.which("dcm2niix")
    if exe is None:
        sys.exit("dcm2niix not found (Debian package dcm2niix)")
    subprocess.run([exe, "-z", "y", "-b", "n", "-f", "ct", "-o", str(root), str(src)],
                   check=True, capture_output=True)
    out["nifti"] = root / "ct.nii.gz"
    out["frames"] = img.shape[0]
    return out


def with_cpu(fn, into: list):
    """fn, recording the process's CPU seconds (user + system) of each call into ``into``:
    on a shared machine the CPU a reader needs is steadier than its wall time."""
    def timed():
        t = os.times()
        fn()
        u = os.times()
        into.append(u.user - t.user + u.system - t.system)
    return timed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    series_arg(ap)
    ap.add_argument("--repeat", type=int, default=5, help="rounds (default 5; --quick: 2)")
    args = ap.parse_args(argv)
    src = series_of(args)
    repeat = 2 if args.quick else args.repeat
    warnings.filterwarnings("ignore")  # MONAI's and ITK's deprecation chatter
    logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
    from monai.data import ITKReader, NibabelReader, PydicomReader
    from monai.transforms import LoadImage

    from dicube.monai import DcbsImageReader

    print_machine()
    with tempfile.TemporaryDirectory() as tmp:
        files = prepare(src, Path(tmp))
        dcbs = LoadImage(reader=DcbsImageReader(), image_only=True)
        contenders = {
            "DcbsImageReader .dcbs": lambda: dcbs(str(files["dcbs"])),
            "DcbsImageReader .dcbs codec=zstd": lambda: dcbs(str(files["dcbs-zstd"])),
            "dicube.load + get_fdata .dcbs": lambda: dicube.load(files["dcbs"]).get_fdata(),
            "MONAI PydicomReader folder": lambda: LoadImage(
                reader=PydicomReader(), image_only=True)(str(src)),
            "MONAI ITKReader folder": lambda: LoadImage(
                reader=ITKReader(), image_only=True)(str(src)),
            "MONAI NibabelReader .nii.gz": lambda: LoadImage(
                reader=NibabelReader(), image_only=True)(str(files["nifti"])),
        }
        print(f"{src.name}: {files['frames']} slices; LoadImage float32 output; page cache warm; "
              f"contenders interleaved, {repeat} rounds after one warm-up round")
        cpu: dict = {name: [] for name in contenders}
        times = interleave({name: with_cpu(fn, cpu[name]) for name, fn in contenders.items()},
                           repeat=repeat)
    cpu = {name: xs[-repeat:] for name, xs in cpu.items()}  # the warm-up round left out
    print("\nCPU time (user + system, all threads of the process):")
    print_results(scaled(cpu, 1e3), "CPU ms")
    print("\nwall time:")
    print_results(scaled(times, 1e3), "ms", ratios=[
        ("PydicomReader / DcbsImageReader", "MONAI PydicomReader folder", "DcbsImageReader .dcbs"),
        ("ITKReader / DcbsImageReader", "MONAI ITKReader folder", "DcbsImageReader .dcbs"),
        ("NibabelReader / DcbsImageReader", "MONAI NibabelReader .nii.gz", "DcbsImageReader .dcbs"),
        ("PydicomReader / DcbsImageReader zstd", "MONAI PydicomReader folder",
         "DcbsImageReader .dcbs codec=zstd"),
        ("DcbsImageReader / dicube.load+get_fdata", "DcbsImageReader .dcbs",
         "dicube.load + get_fdata .dcbs"),
    ])
    others = [k for k in times if k.startswith("MONAI")]
    fastest = min(others, key=lambda k: sorted(times[k])[len(times[k]) // 2])
    med = ratio(times[fastest], times["DcbsImageReader .dcbs"])[0]
    print(f"\ngoal: DcbsImageReader >= {GOAL:g}x the fastest MONAI reader ({fastest}): "
          f"{med:.3g}x, {'met' if med >= GOAL else 'MISSED'}")
    print_load_after()
    return 0


if __name__ == "__main__":
    sys.exit(main())
