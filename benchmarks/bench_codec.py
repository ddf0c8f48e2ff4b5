"""HTJ2K codec benchmark on a whole real CT series.

usage: python benchmarks/bench_codec.py [SERIES_FOLDER] [--repeat N] [--quick]   (default: sample_200)

Prints: (1) compression ratios; (2) encode and decode throughput of dicube's codec, single
thread and all cores, beside imagecodecs' HTJ2K on the same frames and the `ojph_expand`
command-line tool per frame (its process start-up subtracted; Debian's binary, whose
OpenJPH version is printed: it need not be the one dicube is built against); the
contenders of each table run interleaved, reported as median (min-max) with ratios of
medians and per-pair min-max; (3) a sweep of decomposition levels and code-block sizes.
MB/s = raw stored pixel bytes per second.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pydicom

from _common import (interleave, openjph_build, print_load_after, print_machine, print_results, print_table,
                     rates, series_arg, series_of, tool_version)
from dicube.codecs.jph import decode_batch, encode_batch, imencode_jph

CORES = len(os.sched_getaffinity(0))
DC = f"dicube (OpenJPH {openjph_build()[0]})"


def load_series(folder: Path):
    datasets = [pydicom.dcmread(p) for p in sorted(folder.iterdir()) if p.is_file()]
    volume = np.stack([ds.pixel_array for ds in datasets])
    return volume, int(datasets[0].BitsStored)


class OjphExpand:
    """Runs of `ojph_expand` over sample frames and over a 1x1 image (its start-up)."""

    def __init__(self, exe: str, frames, tmp: str, sample: int):
        self.exe, self.paths = exe, []
        for i, f in enumerate(frames[:sample]):
            p = Path(tmp, f"{i}.j2c")
            p.write_bytes(f)
            self.paths.append(p)
        self.tiny = Path(tmp, "tiny.j2c")
        self.tiny.write_bytes(imencode_jph(np.zeros((1, 1), np.uint16), checksum=False))

    def run(self, items) -> None:
        for p in items:
            subprocess.run([self.exe, "-i", str(p), "-o", str(p.with_suffix(".raw"))], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def frames(self) -> None:
        self.run(self.paths)

    def startup(self) -> None:
        self.run([self.tiny] * len(self.paths))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    series_arg(ap)
    ap.add_argument("--repeat", type=int, default=7, help="rounds (default 7; --quick: 2)")
    args = ap.parse_args(argv)
    folder = series_of(args)
    repeat = 2 if args.quick else args.repeat
    exe = shutil.which("ojph_expand")
    exe_version = tool_version(exe) if exe else None
    print_machine("; ojph_expand: " + (f"{exe}, OpenJPH {exe_version}" if exe else "not found"))
    volume, bits = load_series(folder)
    mb = volume.nbytes / 1e6
    print(f"series {folder.name}: {volume.shape} {volume.dtype}, BitsStored {bits}, {mb:.1f} MB raw; "
          f"interleaved, {repeat} rounds\n")

    frames = encode_batch(volume, bits_stored=bits, num_threads=1)
    sizes = [[DC, volume.nbytes / sum(map(len, frames))]]
    out = np.empty_like(volume)
    enc = {f"{DC} encode, 1 thread": lambda: encode_batch(volume, bits_stored=bits, num_threads=1),
           f"{DC} encode, {CORES} threads":
               lambda: encode_batch(volume, bits_stored=bits, num_threads=CORES)}
    dec = {f"{DC} decode, 1 thread": lambda: decode_batch(frames, out, num_threads=1),
           f"{DC} decode, {CORES} threads": lambda: decode_batch(frames, out, num_threads=CORES)}
    enc_ratios = [(f"dicube encode {CORES} threads / 1 thread", f"{DC} encode, {CORES} threads",
                   f"{DC} encode, 1 thread")]
    dec_ratios = [(f"dicube decode {CORES} threads / 1 thread", f"{DC} decode, {CORES} threads",
                   f"{DC} decode, 1 thread")]
    try:
        import imagecodecs

        ic_label = f"imagecodecs {imagecodecs.__version__} (OpenJPH {imagecodecs.htj2k_version().split()[-1]})"
        ic = [imagecodecs.htj2k_encode(f) for f in volume]  # single-threaded (see docs)
        sizes.append([ic_label, volume.nbytes / sum(map(len, ic))])
        enc[f"{ic_label} encode"] = lambda: [imagecodecs.htj2k_encode(f) for f in volume]
        dec[f"{ic_label} decode"] = lambda: [imagecodecs.htj2k_decode(c, out=out[i])
                                             for i, c in enumerate(ic)]
        dec[f"{DC} decoding imagecodecs' codestreams, 1 thread"] = (
            lambda: decode_batch(ic, out, num_threads=1, isolate=False))
        enc_ratios.append(("dicube 1 thread / imagecodecs encode", f"{DC} encode, 1 thread",
                           f"{ic_label} encode"))
        dec_ratios.append(("dicube 1 thread / imagecodecs decode", f"{DC} decode, 1 thread",
                           f"{ic_label} decode"))
    except ImportError:
        print("imagecodecs not installed: its rows are left out\n")

    enc_t = interleave(enc, repeat)
    with tempfile.TemporaryDirectory() as tmp:
        ojph = None
        if exe:
            ojph = OjphExpand(exe, frames, tmp, 8 if args.quick else 40)
            dec["ojph_expand frames"] = ojph.frames
            dec["ojph_expand start-up"] = ojph.startup
        dec_t = interleave(dec, repeat)
    assert np.array_equal(out, volume)
    dec_mbs = rates(dec_t, mb)
    if ojph:  # per frame, start-up of the same round subtracted
        n = len(ojph.paths)
        fmb = volume[0].nbytes / 1e6
        net = [fmb / max((a - b) / n, 1e-9) for a, b in
               zip(dec_t.pop("ojph_expand frames"), dec_t.pop("ojph_expand start-up"))]
        del dec_mbs["ojph_expand frames"], dec_mbs["ojph_expand start-up"]
        label = f"ojph_expand, OpenJPH {exe_version}, per frame, start-up subtracted"
        dec_mbs[label] = net
        dec_ratios.append(("dicube 1 thread / ojph_expand decode", f"{DC} decode, 1 thread", label))

    print_table(["codec", "compression ratio (raw / codestreams)"], sizes)
    print("\nEncode (higher is faster):")
    print_results(rates(enc_t, mb), "MB/s", enc_ratios, first="encoder")
    print("\nDecode (higher is faster):")
    print_results(dec_mbs, "MB/s", dec_ratios, first="decoder")

    print("\nSweep (ratio over the series; decode MB/s single thread, configurations interleaved):")
    sub = volume[:: max(1, len(volume) // 50)]
    sub_mb = sub.nbytes / 1e6
    levels_list = (4, 5) if args.quick else (3, 4, 5, 6, 7)
    blocks = ((64, 64), (32, 32)) if args.quick else ((64, 64), (32, 32), (128, 32), (32, 128),
                                                       (16, 16))
    sizes, runs = {}, {}
    o = np.empty_like(sub)
    for levels in levels_list:
        for block in blocks:
            fr = encode_batch(sub, bits_stored=bits, levels=levels, block_size=block,
                              num_threads=CORES)
            key = f"levels {levels}, code block {block[0]}x{block[1]}"
            sizes[key] = sub.nbytes / sum(map(len, fr))
            runs[key] = lambda fr=fr: decode_batch(fr, o, num_threads=1)
    sweep = rates(interleave(runs, max(2, repeat // 2)), sub_mb)
    print_results(sweep, "MB/s", first="configuration", extra={k: [v] for k, v in sizes.items()},
                  extra_headers=["compression ratio"])
    tight = int(volume.max()).bit_length() if volume.min() >= 0 else bits
    print()
    print_table(["bits_stored (levels 5, 64x64)", "compression ratio"],
                [[f"{b} ({tag})", sub.nbytes / sum(map(len, encode_batch(sub, bits_stored=b,
                                                                           num_threads=CORES)))]
                 for tag, b in (("tight", tight), ("16", 16))])
    print_load_after()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
