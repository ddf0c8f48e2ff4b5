"""HTJ2K codec benchmark on a whole real CT series.

usage: python benchmarks/bench_codec.py [SERIES_FOLDER]   (default: sample_200)

Prints: (1) compression ratio and encode/decode throughput of dicube's codec, single
thread and all cores, beside imagecodecs' HTJ2K (OpenJPH 0.26) on the same frames and
Debian's ojph_expand (the same OpenJPH as ours) per frame; (2) a sweep of decomposition
levels and code-block sizes (ratio). MB/s = raw stored pixel bytes per second.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom

from _common import best_of, print_table, series_folder
from dicube.codecs.jph import OPENJPH_VERSION, decode_batch, encode_batch, imdecode_jph, imencode_jph

CORES = len(os.sched_getaffinity(0))


def load_series(folder: Path):
    datasets = [pydicom.dcmread(p) for p in sorted(folder.iterdir()) if p.is_file()]
    volume = np.stack([ds.pixel_array for ds in datasets])
    return volume, int(datasets[0].BitsStored)


def ojph_expand_seconds(frames, sample: int = 40) -> float | None:
    """Per-frame decode time of Debian's ojph_expand, less its process start-up."""
    exe = shutil.which("ojph_expand")
    if not exe:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, f in enumerate(frames[:sample]):
            p = Path(tmp, f"{i}.j2c")
            p.write_bytes(f)
            paths.append(p)
        tiny = Path(tmp, "tiny.j2c")
        tiny.write_bytes(imencode_jph(np.zeros((1, 1), np.uint16), checksum=False))

        def run(items):
            t = time.perf_counter()
            for p in items:
                subprocess.run([exe, "-i", str(p), "-o", str(p.with_suffix(".raw"))], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return time.perf_counter() - t

        startup = min(run([tiny] * 10) / 10 for _ in range(2))
        total = min(run(paths) for _ in range(2))
        return total / len(paths) - startup


def main() -> None:
    folder = series_folder()
    volume, bits = load_series(folder)
    mb = volume.nbytes / 1e6
    print(f"series {folder.name}: {volume.shape} {volume.dtype}, BitsStored {bits}, {mb:.1f} MB raw; "
          f"OpenJPH {OPENJPH_VERSION}; {CORES} cores\n")

    rows = []
    frames = encode_batch(volume, bits_stored=bits, num_threads=1)
    ratio = volume.nbytes / sum(map(len, frames))
    out = np.empty_like(volume)
    enc1 = best_of(lambda: encode_batch(volume, bits_stored=bits, num_threads=1), 3)
    encn = best_of(lambda: encode_batch(volume, bits_stored=bits, num_threads=CORES), 3)
    dec1 = best_of(lambda: decode_batch(frames, out, num_threads=1), 5)
    decn = best_of(lambda: decode_batch(frames, out, num_threads=CORES), 5)
    assert np.array_equal(out, volume)
    rows.append(["dicube (OpenJPH %s)" % OPENJPH_VERSION, ratio, mb / enc1, mb / encn, mb / dec1, mb / decn])

    try:
        import imagecodecs

        ic = [imagecodecs.htj2k_encode(f) for f in volume]  # single-threaded (see docs)
        ic_ratio = volume.nbytes / sum(map(len, ic))
        ic_enc = best_of(lambda: [imagecodecs.htj2k_encode(f) for f in volume], 3)
        ic_dec = best_of(lambda: [imagecodecs.htj2k_decode(c, out=out[i]) for i, c in enumerate(ic)], 5)
        assert np.array_equal(out, volume)
        rows.append([f"imagecodecs {imagecodecs.__version__} (OpenJPH {imagecodecs.htj2k_version()})",
                     ic_ratio, mb / ic_enc, "-", mb / ic_dec, "-"])
        ours_on_ic = best_of(lambda: decode_batch(ic, out, num_threads=1, isolate=False), 5)
        rows.append(["dicube decoding imagecodecs' codestreams", ic_ratio, "-", "-", mb / ours_on_ic, "-"])
    except ImportError:
        pass
    per_frame = ojph_expand_seconds(frames)
    if per_frame:
        rows.append([f"ojph_expand {OPENJPH_VERSION} (Debian CLI, start-up subtracted)", ratio, "-", "-",
                     volume[0].nbytes / 1e6 / per_frame, "-"])
    print_table(["codec", "ratio", "enc MB/s 1T", f"enc MB/s {CORES}T", "dec MB/s 1T", f"dec MB/s {CORES}T"], rows)
    print(f"\ndecode speed-up with {CORES} threads: {dec1 / decn:.2f}x; encode: {enc1 / encn:.2f}x")

    print("\nSweep (ratio over the whole series; decode MB/s single thread):")
    sweep = []
    sub = volume[:: max(1, len(volume) // 50)]
    sub_mb = sub.nbytes / 1e6
    for levels in (3, 4, 5, 6, 7):
        for block in ((64, 64), (32, 32), (128, 32), (32, 128), (16, 16)):
            fr = encode_batch(sub, bits_stored=bits, levels=levels, block_size=block, num_threads=CORES)
            o = np.empty_like(sub)
            t = best_of(lambda: decode_batch(fr, o, num_threads=1), 2)
            sweep.append([levels, f"{block[0]}x{block[1]}", sub.nbytes / sum(map(len, fr)), sub_mb / t])
    for tag, b in (("tight", int(volume.max()).bit_length() if volume.min() >= 0 else bits), ("16", 16)):
        fr = encode_batch(sub, bits_stored=b, num_threads=CORES)
        sweep.append([5, f"64x64, bits_stored={b} ({tag})", sub.nbytes / sum(map(len, fr)), "-"])
    print_table(["levels", "code block", "ratio", "dec MB/s 1T"], sweep)


if __name__ == "__main__":
    main()
