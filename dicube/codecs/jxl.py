"""JPEG XL lossless frames (ISO/IEC 18181), the codec of the archive variant (.dcba).

One JPEG XL image per frame (a bare codestream for 8-bit samples; for 16-bit ones the
container with a level-10 ``jxll`` box, which lossless coding beyond 12 bits needs), coded
through imagecodecs' libjxl (the optional
``archive`` extra: ``pip install dicube[archive]``). Measured on the shared CT (see
docs/variants.md): effort 5 gives a 20.6% better ratio than HTJ2K lossless (files 17%
smaller) and decodes at about 22 MB/s per core; effort 7 gains 0.6% and decodes 20% slower.

Samples: 8 and 16-bit integers, grey or RGB. JPEG XL holds unsigned samples only, so a
signed frame is stored offset by 2**(bits-1) (its sign bit flipped), the mapping being
fixed by the frame's type and ``bits`` alone. ``bits`` (the precision coded in the
stream) is the DICOM BitsStored when given, else the container width; libjxl wants at
least 9 bits for 16-bit samples.

Every encoder output must be checked with :func:`verify_batch` before it is stored: a
JPEG XL encoder that lost precision silently has been seen (Debian's cjxl 0.7, 12-bit PGM).
"""
from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, NamedTuple, Optional, Sequence

import numpy as np

from ..exceptions import CodecError, CodecUnavailableError
from .jph._options import thread_count

#: DICOM transfer syntax of these frames (JPEG XL Lossless, PS3.5 since 2024).
TRANSFER_SYNTAX = "1.2.840.10008.1.2.4.110"
#: Effort by measurement: the last step that still decodes >= 20 MB/s per core on CT.
DEFAULT_EFFORT = 5
#: pip extra that installs the backend.
EXTRA = "archive"

_DTYPES = tuple(np.dtype(t) for t in ("uint8", "int8", "uint16", "int16"))


def backend():
    """imagecodecs with a working JPEG XL codec; CodecUnavailableError naming the extra otherwise."""
    try:
        import imagecodecs
    except ImportError as exc:
        raise CodecUnavailableError(
            f"JPEG XL frames need imagecodecs: pip install 'dicube[{EXTRA}]' ({exc})") from None
    if not getattr(getattr(imagecodecs, "JPEGXL", None), "available", False):
        raise CodecUnavailableError(
            f"this imagecodecs build has no JPEG XL codec: pip install 'dicube[{EXTRA}]'")
    return imagecodecs


def library() -> str:
    """The JPEG XL library that codes the frames, e.g. "libjxl 0.11.2"."""
    ic = backend()
    try:
        return str(ic.jpegxl_version())
    except Exception:  # noqa: BLE001 - an imagecodecs without the version call
        return "libjxl (imagecodecs " + str(getattr(ic, "__version__", "?")) + ")"


def frame_bits(dtype, bits_stored: Optional[int] = None) -> int:
    """Precision coded in the stream for samples of ``dtype`` with DICOM BitsStored ``bits_stored``."""
    dt = _check_dtype(dtype)
    width = dt.itemsize * 8
    if bits_stored is None:
        return width
    bits = int(bits_stored)
    if not 1 <= bits <= width:
        raise CodecError(f"bits_stored {bits} does not fit {dt} samples")
    return max(bits, 9) if width == 16 else bits


def _check_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt.newbyteorder("=") not in _DTYPES:
        raise CodecError(f"JPEG XL lossless frames hold 8 or 16-bit integers, not {dt}")
    return dt.newbyteorder("=")


def _coded(volume: np.ndarray, bits: int) -> np.ndarray:
    """The unsigned samples coded in the streams; CodecError if a value needs more than bits."""
    dt = volume.dtype
    udt = np.dtype(f"u{dt.itemsize}")
    if dt.kind == "i":
        half = 1 << (bits - 1)
        lo, hi = int(volume.min()), int(volume.max())
        if lo < -half or hi >= half:
            raise CodecError(f"values {lo}..{hi} do not fit {bits} signed bits")
        return (volume.astype(np.int32) + half).astype(udt)
    if bits < dt.itemsize * 8 and int(volume.max()) >> bits:
        raise CodecError(f"values up to {int(volume.max())} do not fit {bits} bits")
    return volume


def _map(fn: Callable, items: Sequence, num_threads: Optional[int]) -> list:
    n = min(thread_count(num_threads), max(1, len(items)))
    if n == 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(n) as pool:  # imagecodecs releases the GIL while coding
        return list(pool.map(fn, items))


def encode_batch(volume, bits_stored: Optional[int] = None, effort: int = DEFAULT_EFFORT,
                 num_threads: Optional[int] = None) -> List[bytes]:
    """Encode a (frames, rows, columns[, 3]) volume, one lossless JPEG XL codestream per frame.

    Frames are coded in parallel on ``num_threads`` threads (default: all cores).
    """
    ic = backend()
    vol = np.asarray(volume)
    if vol.ndim not in (3, 4) or (vol.ndim == 4 and vol.shape[-1] != 3) or 0 in vol.shape:
        raise CodecError(f"cannot code an image of shape {vol.shape} as JPEG XL frames")
    dt = _check_dtype(vol.dtype)
    vol = np.ascontiguousarray(vol, dtype=dt)
    bits = frame_bits(dt, bits_stored)
    coded = _coded(vol, bits)
    bps = bits if dt.itemsize == 2 else None

    def one(k: int) -> bytes:
        try:
            return bytes(ic.jpegxl_encode(coded[k], lossless=True, effort=int(effort),
                                          bitspersample=bps, numthreads=1))
        except Exception as exc:  # imagecodecs.JpegxlError, ValueError
            raise CodecError(f"JPEG XL encoding of frame {k} failed: {exc}") from None

    return _map(one, range(vol.shape[0]), num_threads)


def decode_batch(frames: Sequence, out: np.ndarray, num_threads: Optional[int] = None,
                 bits_stored: Optional[int] = None) -> np.ndarray:
    """Decode one codestream per frame into ``out`` (frames, rows, columns[, 3]) of the
    stored type; CodecError if a stream is damaged or does not match ``out``'s frame shape.

    ``bits_stored`` must be the value given to :func:`encode_batch` for signed samples.
    """
    ic = backend()
    frames = list(frames)
    dt = _check_dtype(out.dtype)
    if out.dtype != dt or not out.flags.c_contiguous or not out.flags.writeable:
        raise CodecError("out must be a writeable C-contiguous native-endian array")
    if out.ndim not in (3, 4) or out.shape[0] != len(frames):
        raise CodecError(f"out of shape {out.shape} cannot hold {len(frames)} frames")
    bits = frame_bits(dt, bits_stored)
    udt = np.dtype(f"u{dt.itemsize}")
    target = out.view(udt)
    shape = out.shape[1:]

    def one(k: int) -> None:
        data = frames[k]
        try:
            # Read the size first: a damaged header must not make libjxl allocate a huge image.
            if not ic.jpegxl_check(data):
                raise ValueError("not a JPEG XL codestream")
            img = ic.jpegxl_decode(data, numthreads=1, out=target[k])
        except CodecError:
            raise
        except Exception as exc:  # imagecodecs.JpegxlError, ValueError (size or type mismatch)
            raise CodecError(f"frame {k}: damaged or foreign JPEG XL codestream ({exc})") from None
        if img.shape != shape or img.dtype != udt:
            raise CodecError(f"frame {k}: JPEG XL codestream holds {img.shape} {img.dtype}, "
                             f"expected {shape} {udt}")

    _map(one, range(len(frames)), num_threads)
    if dt.kind == "i":
        np.subtract(target, np.array(1 << (bits - 1), udt), out=target)  # wraps back to signed
    return out


def verify_batch(frames: Sequence, volume, bits_stored: Optional[int] = None,
                 num_threads: Optional[int] = None) -> None:
    """Decode every frame and compare it with ``volume``; CodecError naming the first frame
    that differs (an encoder that lost precision)."""
    vol = np.asarray(volume)
    got = decode_batch(frames, np.empty(vol.shape, _check_dtype(vol.dtype)), num_threads, bits_stored)
    check_exact(vol, got, "JPEG XL round trip")


def check_exact(volume: np.ndarray, got: np.ndarray, what: str) -> None:
    """CodecError naming the first frame where ``got`` differs from ``volume``."""
    vol = np.asarray(volume)
    if got.shape != vol.shape or got.dtype != vol.dtype:
        raise CodecError(f"{what} is not exact: {got.shape} {got.dtype} instead of "
                         f"{vol.shape} {vol.dtype}")
    bad = np.flatnonzero((got != vol).reshape(len(vol), -1).any(axis=1))
    if bad.size:
        raise CodecError(f"{what} is not exact: frame {int(bad[0])} differs "
                         f"({bad.size} frames of {len(vol)})")


# -- the frame codec interface of dicube.codecs.registry (container codec 4, .dcba) ----
# Frames are coded at the container width (a signed frame offset by 2**(width-1)), so a
# reader needs nothing but the header's sample type to rebuild them.
CODEC_ID = 4
NAME = "jxl"
SAVE_NAME = None  # chosen by file_type "a", not by save(codec=...)
FALLBACK = None
CHECKS_CRCS = False
decode_file = None
header = None  # served re-encoded as HTJ2K by default (dicube.dicom.streaming): pydicom and GDCM cannot read JPEG XL


def encode(volume, bits_stored, num_threads):
    """JPEG XL frames of ``volume``, every one decoded and compared before it is returned;
    None for sample types JPEG XL cannot hold."""
    vol = np.ascontiguousarray(volume)
    if vol.dtype.newbyteorder("=") not in _DTYPES:
        return None
    vol = vol.astype(vol.dtype.newbyteorder("="), copy=False)
    frames = encode_batch(vol, num_threads=num_threads)
    verify_batch(frames, vol, num_threads=num_threads)
    return frames, vol.dtype.itemsize * 8


def decode(buffer, offsets, lengths, out, *, crcs=None, num_threads=None, verify=True) -> None:
    """Decode frame k from ``buffer[offsets[k]:offsets[k] + lengths[k]]`` into ``out[k]``
    (CRCs are checked by the reader before this is called)."""
    mv = memoryview(buffer)
    frames = [mv[o:o + n] for o, n in zip(np.asarray(offsets).tolist(), np.asarray(lengths).tolist())]
    decode_batch(frames, out, num_threads)


def transfer_syntax(facts):
    return None


def params(bits: int, signed: bool, effort: int = DEFAULT_EFFORT) -> dict:
    """What the writer records in INFO ``codec`` for these frames (docs/format.md);
    :func:`archive_frames` adds ``htj2k_bytes`` and ``htj2k_bits`` (the HTJ2K frames a
    .dcbs would hold: their size, and the precision served instances are re-encoded at)."""
    return {"name": NAME, "effort": int(effort), "bits": int(bits),
            "signed_offset": (1 << (bits - 1)) if signed else 0, "library": library()}


class ArchiveFrames(NamedTuple):
    """Frames chosen for a .dcba: container codec id, frames, header bits_stored, INFO codec."""

    codec: int
    frames: list
    bits_stored: int
    info: dict


def _stored_size(frames: Sequence) -> int:
    return sum(len(f) for f in frames)


class ArchiveFallbackWarning(UserWarning):
    """A .dcba keeps HTJ2K frames because JPEG XL would have been larger."""


def archive_frames(volume, bits_stored: Optional[int] = None,
                   num_threads: Optional[int] = None, verify: bool = True) -> Optional[ArchiveFrames]:
    """The frames of a .dcba: JPEG XL (every frame decoded and compared), unless the HTJ2K
    frames a .dcbs would hold (``bits_stored`` as ``save`` gives it) make a file no larger:
    then those, with an :class:`ArchiveFallbackWarning` and no INFO ``codec`` entry, so a
    .dcba is never larger than the .dcbs of the same image (the entry's bytes and the
    8-byte alignment are counted). None for sample types JPEG XL cannot hold. The HTJ2K
    encode costs about 5% of the JPEG XL one (docs/variants.md). ``verify=False`` leaves
    the decode-and-compare to the caller (``save`` checks the written file instead)."""
    import json

    from . import htj2k

    vol = np.asarray(volume)
    if vol.dtype.newbyteorder("=") not in _DTYPES:
        return None
    vol = np.ascontiguousarray(vol, dtype=vol.dtype.newbyteorder("="))
    if verify:
        frames, bits = encode(vol, None, num_threads)
    else:
        frames, bits = encode_batch(vol, num_threads=num_threads), vol.dtype.itemsize * 8
    other = htj2k.encode(vol, bits_stored, num_threads)
    info = params(bits, vol.dtype.kind == "i")
    if other is None:
        return ArchiveFrames(CODEC_ID, frames, bits, info)
    hb = info["htj2k_bytes"] = _stored_size(other[0])
    info["htj2k_bits"] = other[1]  # the precision streaming re-encodes frames at
    jb = _stored_size(frames)
    extra = len(json.dumps({"codec": info})) + 8  # INFO entry, alignment padding
    if jb + extra > hb:
        warnings.warn(f"JPEG XL frames would take {jb} bytes, HTJ2K {hb}: this .dcba keeps "
                      "the HTJ2K frames (frame codec 1), never larger than a .dcbs",
                      ArchiveFallbackWarning, stacklevel=3)
        return ArchiveFrames(htj2k.CODEC_ID, list(other[0]), other[1], {})
    return ArchiveFrames(CODEC_ID, frames, bits, info)
