"""Fuzz: mutated copies of the sample_10 series folder, each loaded twice (default and
``on_unreadable="skip"``). Run as a script (not collected by pytest):

    python tests/fuzz_dicom_folders.py [--folders 800] [--seed 11]

Counts what issue 11 asks about: loads that returned fewer than 10 slices without an
error (must be 0 by default), short loads whose QC status is CONSISTENT (must be 0),
errors that are not dicube errors (must be 0).
"""
from __future__ import annotations

import argparse
import collections
import os
import random
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_hostile_dicom_folders import _mutate  # noqa: E402

from dicube.dicom.dicom_io import load_from_dicom_folder  # noqa: E402
from dicube.dicom.dicom_status import DicomStatus, check_series  # noqa: E402
from dicube.exceptions import DicomCubeError  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "dicube-testdata" / "dicom" / "sample_10"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folders", type=int, default=800)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--sample", default=os.environ.get("DICUBE_FUZZ_SAMPLE", SAMPLE))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    counts: collections.Counter = collections.Counter()
    untyped = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.folders):
            folder = Path(tmp) / f"m{k}"
            shutil.copytree(args.sample, folder)
            _mutate(folder, rng)
            for mode in ("error", "skip"):
                counts["loads"] += 1
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        img = load_from_dicom_folder(folder, on_unreadable=mode)
                    except DicomCubeError as exc:
                        counts[f"{mode}: {type(exc).__name__}"] += 1
                        continue
                    except Exception as exc:  # noqa: BLE001 - what the fuzz looks for
                        untyped.append((k, mode, f"{type(exc).__name__}: {exc}"))
                        counts["untyped errors"] += 1
                        continue
                n = img.raw_image.shape[0]
                status = check_series(img.dicom_meta).status
                if n < 10:
                    counts[f"{mode}: fewer than 10 slices"] += 1
                    if status == DicomStatus.CONSISTENT:
                        counts[f"{mode}: fewer than 10 slices, CONSISTENT"] += 1
                    if mode == "error":
                        counts["error: fewer than 10 slices without an error"] += 1
                else:
                    counts[f"{mode}: 10 slices"] += 1
            shutil.rmtree(folder)
    print(f"{args.folders} mutated folders, {counts['loads']} loads, "
          f"{time.perf_counter() - t0:.0f} s")
    for key in sorted(counts):
        print(f"  {key}: {counts[key]}")
    for u in untyped[:10]:
        print("  untyped:", u)
    bad = (counts["untyped errors"] + counts["error: fewer than 10 slices without an error"]
           + counts["skip: fewer than 10 slices, CONSISTENT"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
