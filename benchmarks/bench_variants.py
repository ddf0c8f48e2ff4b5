"""Frame codecs of the three dicube variants on a real CT series: size and speed.

usage: python benchmarks/bench_variants.py [SERIES_FOLDER] [--repeat N] [--every K] [--effort E] [--quick]
(default: the shared sample_200 CT; --quick: sample_10, one round)

Contenders: HTJ2K lossless as .dcbs writes it; the zstd byte-plane training codec;
JPEG XL lossless (.dcba, imagecodecs' libjxl, effort E); bounded-error quantisation to
steps of 2N+1 + JPEG XL (.dcbl) for N = 1, 2, 3, 5 stored units; and for reference at N = 3
quantisation + HTJ2K and JPEG-LS near-lossless (DICOM .81; pyjpegls encodes, imagecodecs'
CharLS decodes).

Prints: (1) size of each contender relative to HTJ2K lossless and the raw/compressed ratio,
on the whole series (all cores, one encode each; lossy rows also show the largest error
found on any pixel); (2) encode and decode MB/s per core (one thread) on every K-th slice,
contenders interleaved, median with min-max. MB/s = raw stored pixel bytes per second.
(3) The variant files end to end, all cores: ``dicube.save`` (.dcbs HTJ2K, .dcbs zstd,
.dcba with its never-larger HTJ2K comparison, .dcbl at the default bound) and
``dicube.load`` MB/s, file sizes (every loaded file compared with the source; .dcbl within
its bound); (4) the streaming reader: ms per served frame of a .dcbs (stored HTJ2K) and a
.dcba (HTJ2K re-encoded, the default; JPEG XL .110 as stored; Explicit VR LE).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import warnings

import numpy as np

from _common import (interleave, print_load_after, print_machine, print_results, print_table, rates,
                     series_arg, series_of)

import dicube
from dicube.codecs import bounded, jph, jxl
from dicube.codecs.jph import decode_regions
from dicube.codecs.zstd_planes import ZSTD_PLANES, encode_planes_batch

BOUNDS = (1, 2, 3, 5)


def _planes_decode(frames, out, threads):
    buf = b"".join(frames)
    lens = np.array([len(f) for f in frames], np.uint64)
    offs = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.uint64)
    return decode_regions(buf, offs, lens, out, num_threads=threads, codec=ZSTD_PLANES)


def _jpegls(vol, n, threads):
    """JPEG-LS NEAR=n through pyjpegls (CharLS) given the bits the data really uses (coding
    12-bit data as 16-bit costs 10-20%); unsigned data only, as DICOM JPEG-LS wants."""
    import jpeg_ls

    if vol.dtype.kind != "u":
        raise SystemExit("the JPEG-LS reference row wants unsigned samples")
    bits = max(2, int(vol.max()).bit_length())
    return [bytes(jpeg_ls.encode_buffer(f.tobytes(), f.shape[0], f.shape[1], 1, bits, lossy_error=n))
            for f in vol]


def _jpegls_decode(frames, out, threads):
    import imagecodecs

    for k, f in enumerate(frames):
        imagecodecs.jpegls_decode(f, out=out[k])
    return out


def contenders(effort: int, bits: int):
    """name -> (encode(vol, threads) -> (frames, state), decode(frames, state, out, threads), bound)."""
    c = {
        "HTJ2K (.dcbs)": (lambda v, t: (jph.encode_batch(v, bits_stored=bits, num_threads=t), None),
                          lambda f, s, o, t: jph.decode_batch(f, out=o, num_threads=t), 0),
        "zstd planes": (lambda v, t: (encode_planes_batch(v, num_threads=t), None),
                        lambda f, s, o, t: _planes_decode(f, o, t), 0),
        f"JPEG XL e{effort} (.dcba)": (
            lambda v, t: (jxl.encode_batch(v, bits_stored=bits, effort=effort, num_threads=t), None),
            lambda f, s, o, t: jxl.decode_batch(f, o, t, bits_stored=bits), 0),
    }
    for n in BOUNDS:
        c[f"bounded N={n} + JXL e{effort}"] = (
            lambda v, t, n=n: tuple(reversed(bounded.encode_batch(v, n, effort=effort, num_threads=t))),
            lambda f, s, o, t: bounded.decode_batch(f, s, o, t), n)
    c["bounded N=3 + HTJ2K"] = (
        lambda v, t: tuple(reversed(bounded.encode_batch(v, 3, inner="htj2k", num_threads=t))),
        lambda f, s, o, t: bounded.decode_batch(f, s, o, t), 3)
    c["JPEG-LS NEAR=3 (.81)"] = (lambda v, t: (_jpegls(v, 3, t), None),
                                 lambda f, s, o, t: _jpegls_decode(f, o, t), 3)
    return c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    series_arg(ap)
    ap.add_argument("--repeat", type=int, default=3, help="timed rounds (default 3)")
    ap.add_argument("--every", type=int, default=10, help="time every K-th slice (default 10)")
    ap.add_argument("--effort", type=int, default=jxl.DEFAULT_EFFORT, help="JPEG XL effort")
    args = ap.parse_args()
    folder = series_of(args)
    repeat, every = (1, 1) if args.quick else (args.repeat, args.every)

    img = dicube.load_from_dicom_folder(folder)
    vol = np.ascontiguousarray(img.raw_image)
    if vol.dtype not in (np.uint16, np.int16, np.uint8):
        sys.exit(f"this benchmark wants 8/16-bit grey frames, not {vol.dtype}")
    bits = vol.dtype.itemsize * 8
    cores = len(os.sched_getaffinity(0))
    print_machine(f", imagecodecs {__import__('imagecodecs').__version__} "
                  f"({__import__('imagecodecs').jpegxl_version()})")
    print(f"series: {folder} {vol.shape} {vol.dtype}, {vol.nbytes / 1e6:.1f} MB raw; "
          f"speeds on every {every}th slice, one thread")
    codecs = contenders(args.effort, bits)

    # (1) sizes on the whole series, all cores; every lossy pixel checked
    rows, base = [], None
    for name, (enc, dec, bound) in codecs.items():
        frames, state = enc(vol, cores)
        got = dec(frames, state, np.empty_like(vol), cores)
        err = int(np.abs(got.astype(np.int32) - vol.astype(np.int32)).max())
        if err > bound:
            sys.exit(f"{name}: error {err} exceeds its bound {bound}")
        size = sum(map(len, frames))
        base = base or size
        rows.append([name, f"{size / base:.3f}", f"{vol.nbytes / size:.3f}", err])
    print()
    print_table(["codec", "size / HTJ2K", "raw / size", "max error"], rows)

    # (2) speeds per core, interleaved
    sub = np.ascontiguousarray(vol[::every])
    mb = sub.nbytes / 1e6
    encoded = {name: enc(sub, 1) for name, (enc, _, _) in codecs.items()}
    out = np.empty_like(sub)
    enc_t = interleave({n: (lambda e=e: e(sub, 1)) for n, (e, _, _) in codecs.items()},
                       repeat=repeat, warmup=0)
    dec_t = interleave({n: (lambda d=d, s=encoded[n]: d(s[0], s[1], out, 1))
                        for n, (_, d, _) in codecs.items()}, repeat=repeat, warmup=1)
    enc_r, dec_r = rates(enc_t, mb), rates(dec_t, mb)
    print()
    print("encode, one thread:")
    print_results(enc_r, "MB/s")
    print()
    print("decode, one thread:")
    names = list(codecs)
    print_results(dec_r, "MB/s", ratios=[(f"{n} / HTJ2K", n, names[0]) for n in names[1:3]])
    med = {n: statistics.median(v) for n, v in dec_r.items()}
    print(f"\nJPEG XL e{args.effort} decode per core: {med[names[2]]:.1f} MB/s (goal >= 20)")
    files_end_to_end(img, repeat)
    print_load_after()


FILES = {".dcbs (HTJ2K)": ("x.dcbs", {}), ".dcbs (zstd planes)": ("z.dcbs", {"codec": "zstd"}),
         ".dcba (JPEG XL e5)": ("x.dcba", {}), ".dcbl (bound 3)": ("x.dcbl", {"file_type": "l"})}


def files_end_to_end(img, repeat: int) -> None:
    """(3) save/load MB/s and sizes of the variant files; (4) streaming ms per frame."""
    import inspect

    from dicube.dicom import DcbStreamingReader

    files = dict(FILES)
    if "l" not in getattr(dicube.core.io, "FILE_TYPES", {}) or \
            "bound" not in inspect.signature(dicube.save).parameters:
        files.pop(".dcbl (bound 3)")
    vol = img.raw_image
    mb = vol.nbytes / 1e6
    tmp = tempfile.mkdtemp(prefix="bench_variants_")
    try:
        paths = {n: os.path.join(tmp, f) for n, (f, _) in files.items()}

        def saver(n):
            def run():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    dicube.save(img, paths[n], **files[n][1])
            return run

        save_t = interleave({n: saver(n) for n in files}, repeat=repeat, warmup=0)
        sizes = {n: os.path.getsize(p) for n, p in paths.items()}
        for n, p in paths.items():  # every file decodes to the source (within the bound)
            got = dicube.load(p).raw_image
            err = int(np.abs(got.astype(np.int32) - vol.astype(np.int32)).max())
            if err > (3 if "dcbl" in n else 0):
                sys.exit(f"{n}: loaded pixels differ from the source by {err}")
        load_t = interleave({n: (lambda p=p: dicube.load(p)) for n, p in paths.items()},
                            repeat=repeat, warmup=1)
        base = sizes[".dcbs (HTJ2K)"]
        print()
        print(f"(3) files end to end, all cores ({vol.shape[0]} slices, {mb:.1f} MB raw):")
        print_table(["file", "bytes", "size / .dcbs", "raw / size"],
                    [[n, sizes[n], f"{sizes[n] / base:.3f}", f"{vol.nbytes / sizes[n]:.3f}"]
                     for n in files])
        print()
        print("save (dicube.save, all cores):")
        print_results(rates(save_t, mb), "MB/s")
        print()
        print("load (dicube.load, all cores):")
        print_results(rates(load_t, mb), "MB/s",
                      ratios=[(".dcba / .dcbs load", ".dcba (JPEG XL e5)", ".dcbs (HTJ2K)")])

        # (4) streaming: one served frame, the middle one, interleaved
        k = vol.shape[0] // 2
        ra, rs = DcbStreamingReader(paths[".dcba (JPEG XL e5)"]), DcbStreamingReader(paths[".dcbs (HTJ2K)"])
        with ra, rs:
            serve = {".dcbs default (stored HTJ2K)": lambda: rs.get_dicom_for_frame(k),
                     ".dcba default (HTJ2K re-encoded)": lambda: ra.get_dicom_for_frame(k),
                     ".dcba JPEG XL .110 (stored)": lambda: ra.get_dicom_for_frame(
                         k, transfer_syntax=jxl.TRANSFER_SYNTAX),
                     ".dcba Explicit VR LE": lambda: ra.get_dicom_for_frame(k, force_uncompressed=True)}
            stream_t = interleave(serve, repeat=max(5, 3 * repeat), warmup=1)
        print()
        print(f"(4) streaming one frame ({vol[0].nbytes / 1e3:.0f} kB raw), ms per instance:")
        print_results({n: [1e3 * t for t in v] for n, v in stream_t.items()}, "ms")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
