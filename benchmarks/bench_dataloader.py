"""Training-sample throughput: random 2-D slices and random 16-slice slabs.

    python benchmarks/bench_dataloader.py [folder] [--copies 6] [--seconds 1] [--repeat 5] [--quick]

Copies of one series (default: the shared 200-slice CT) are written to a temporary
folder as DICOM folders, .dcbs files and .nii.gz files (nibabel's default compression),
then samples are drawn at random series and positions from
  - .dcbs through dicube.data.DcbsDataset (stored values, and float HU via rescale=True),
  - the DICOM folders with pydicom: only the files needed, in the slice order found by
    one header pass done before timing (pixel_array, stored values),
  - .nii.gz with nibabel as training code does: nib.load(p).dataobj[..., z0:z1]
    (float HU: the files carry scl_inter, as dicube and dcm2niix write them).
Each is timed in one process (dicube decoding on all cores, the others single-threaded)
and as 2 forked worker processes (dicube: one decoding thread each), the setting of a
DataLoader with num_workers=2; the readers run interleaved (one timed run of each per
round), reported as median (min-max) samples/s, ratios as ratio of medians with per-pair
min-max. The files are in the page cache (warm), or with --cold evicted from it before
each timed run (a data set larger than memory).
Goals (issue 7): slab rate >= 5x the DICOM-folder rate and >= 3x the .nii.gz rate.
"""
from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom

from _common import (evict, interleave, print_load_after, print_machine, print_results, series_arg,
                     series_of)

import dicube
from dicube.data import DcbsDataset

SLAB = 16
GOALS = {"pydicom": 5.0, "nibabel": 3.0}
_STATE: dict = {}  # samplers, inherited by forked workers


def prepare(src: Path, root: Path, copies: int) -> dict:
    """Write the copies; return, per format, the paths (DICOM: sorted file lists)."""
    import nibabel  # noqa: F401  (fail early when missing)

    img = dicube.load_from_dicom_folder(src)
    out = {"dcbs": [], "dcbs-zstd": [], "dicom": [], "nifti": []}
    for k in range(copies):
        name = f"case{k:02d}"
        d = root / "dicom" / name
        shutil.copytree(src, d)
        out["dicom"].append(d)
        p = root / "dcbs" / f"{name}.dcbs"
        p.parent.mkdir(exist_ok=True)
        dicube.save(img, p)
        out["dcbs"].append(str(p))
        pz = root / "dcbs" / f"{name}-zstd.dcbs"
        dicube.save(img, pz, codec="zstd")
        out["dcbs-zstd"].append(str(pz))
        q = root / "nifti" / f"{name}.nii.gz"
        q.parent.mkdir(exist_ok=True)
        dicube.save_to_nifti(img, q)
        out["nifti"].append(str(q))
    out["dicom"] = [sorted_slices(d) for d in out["dicom"]]
    out["frames"] = img.shape[0]
    return out


def sorted_slices(folder: Path) -> list[str]:
    """The folder's files in slice order (position along the slice normal)."""
    keyed = []
    for f in folder.iterdir():
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        iop = np.asarray(ds.ImageOrientationPatient, float)
        normal = np.cross(iop[:3], iop[3:])
        keyed.append((float(np.dot(normal, np.asarray(ds.ImagePositionPatient, float))), str(f)))
    return [f for _, f in sorted(keyed)]


def make_samplers(files: dict, size: int, threads) -> dict:
    """name -> function(rng) drawing one sample of ``size`` slices."""
    import nibabel as nib

    n = files["frames"]
    mode = "slice" if size == 1 else "slab"
    many = 1 << 20  # samples per file: random indices give random positions
    raw = DcbsDataset(files["dcbs"], mode, slab_size=size, samples_per_file=many,
                      num_threads=threads)
    hu = DcbsDataset(files["dcbs"], mode, slab_size=size, samples_per_file=many, rescale=True,
                     num_threads=threads)
    fast = DcbsDataset(files["dcbs-zstd"], mode, slab_size=size, samples_per_file=many,
                       num_threads=threads)

    def dicube_raw(rng):
        return raw[int(rng.integers(len(raw)))].image

    def dicube_hu(rng):
        return hu[int(rng.integers(len(hu)))].image

    def dicube_fast(rng):
        return fast[int(rng.integers(len(fast)))].image

    def pydicom_(rng):
        series = files["dicom"][rng.integers(len(files["dicom"]))]
        z0 = int(rng.integers(n - size + 1))
        return np.stack([pydicom.dcmread(f).pixel_array for f in series[z0:z0 + size]])

    def nibabel_(rng):
        path = files["nifti"][rng.integers(len(files["nifti"]))]
        z0 = int(rng.integers(n - size + 1))
        return np.asarray(nib.load(path).dataobj[..., z0:z0 + size])

    return {"dicube .dcbs": dicube_raw, "dicube .dcbs HU": dicube_hu,
            "dicube .dcbs codec=zstd": dicube_fast,
            "pydicom DICOM folder": pydicom_, "nibabel .nii.gz HU": nibabel_}


def _draw(args) -> int:
    key, name, count, seed = args
    rng = np.random.default_rng(seed)
    fn = _STATE[key][name]
    for _ in range(count):
        fn(rng)
    return count


def rates(key, seconds: float, repeat: int, pool=None, cold=None) -> dict:
    """Samples per second of every reader, interleaved; each reader's batch size chosen so
    one timed run lasts about ``seconds``. ``cold``: name -> files evicted from the page
    cache before each run of that reader (eviction not timed)."""
    seeds = itertools.count(1)
    workers = 1 if pool is None else 2

    def run(name, count):
        jobs = [(key, name, max(1, count // workers), next(seeds)) for _ in range(workers)]
        return sum(pool.map(_draw, jobs) if pool else map(_draw, jobs))

    counts = {}
    for name in _STATE[key]:
        run(name, workers)  # opens the files, fills the buffers
        if cold:
            evict(cold[name])
        t = time.perf_counter()
        probe = run(name, workers)
        per = (time.perf_counter() - t) / probe
        counts[name] = workers * max(1, max(workers, int(seconds / max(per, 1e-6))) // workers)
    before = {name: (lambda f=f: evict(f)) for name, f in cold.items()} if cold else None
    times = interleave({name: (lambda name=name: run(name, counts[name])) for name in counts},
                       repeat, warmup=0, before=before)
    return {name: [counts[name] / t for t in ts] for name, ts in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    series_arg(ap)
    ap.add_argument("--copies", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=1.0, help="length of one timed run")
    ap.add_argument("--repeat", type=int, default=5, help="rounds (default 5; --quick: 2)")
    ap.add_argument("--cold", action="store_true",
                    help="evict the files from the page cache before each timed run")
    args = ap.parse_args(argv)
    src = series_of(args)
    copies, seconds, repeat = (2, 0.05, 2) if args.quick else (args.copies, args.seconds,
                                                                 args.repeat)
    print_machine()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        files = prepare(src, Path(tmp), copies)
        os.sync()  # written pages must be clean to be evicted (--cold)
        sources = {"dicube .dcbs": files["dcbs"], "dicube .dcbs HU": files["dcbs"],
                   "dicube .dcbs codec=zstd": files["dcbs-zstd"],
                   "pydicom DICOM folder": [f for s in files["dicom"] for f in s],
                   "nibabel .nii.gz HU": files["nifti"]}
        slab = min(SLAB, files["frames"])
        print(f"{copies} copies of {src.name} ({files['frames']} slices) written and "
              f"sorted in {time.perf_counter() - t:.1f} s; page cache "
              f"{'evicted before each run' if args.cold else 'warm'}; readers interleaved, "
              f"{repeat} rounds of about {seconds:g} s")
        for label, size in (("slice", 1), (f"slab {slab}", slab)):
            _STATE[(size, None)] = make_samplers(files, size, None)
            _STATE[(size, 1)] = make_samplers(files, size, 1)
            with mp.get_context("fork").Pool(2) as pool:
                for mode, key, p in (("1 process", (size, None), None),
                                     ("2 workers", (size, 1), pool)):
                    res = rates(key, seconds, repeat, p, sources if args.cold else None)
                    ratios = []
                    for name, ref in (("dicube .dcbs", "pydicom DICOM folder"),
                                      ("dicube .dcbs codec=zstd", "pydicom DICOM folder"),
                                      ("dicube .dcbs HU", "nibabel .nii.gz HU")):
                        goal = GOALS["pydicom" if ref.startswith("pydicom") else "nibabel"]
                        ratios.append((f"{name} / {ref.split()[0]}"
                                       + (f" (goal >= {goal:g}x)" if size == slab > 1 else ""),
                                       name, ref))
                    print(f"\n{label}, {mode}:")
                    print_results(res, "samples/s", ratios, first="reader")
        print_load_after()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
