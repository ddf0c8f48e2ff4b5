"""Bounded-error frames, the codec of the lossy variant (.dcbl).

Each stored value x is quantised to q = floor((x - offset + N) / (2N + 1)) and rebuilt as
min(offset + (2N + 1) * q, high), so no pixel moves by more than N stored units (N =
``bound``; for CT with RescaleSlope 1, N HU). ``offset`` and ``high`` are the volume's
minimum and maximum, so padding and air come back exact and no rebuilt value leaves the
source's range (it still fits its BitsStored). The quantised values q are then coded losslessly (JPEG XL by default,
HTJ2K as the fallback inner codec); in DICOM the step folds into RescaleSlope and the
offset into RescaleIntercept (:func:`dicom_rescale`), so q stays a standard lossless image.

Measured on the shared CT (docs/variants.md): at N = 3 the frames take 0.39x the size of
HTJ2K lossless with JPEG XL effort 5 inside (JPEG-LS near-lossless: 0.46x).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..exceptions import CodecError, ErrorBoundError
from . import jxl

#: Inner lossless codecs of the quantised values.
INNER_CODECS = ("jxl", "htj2k")
DEFAULT_BOUND = 3
MAX_BOUND = 32767
_DTYPES = tuple(np.dtype(t) for t in ("uint8", "int8", "uint16", "int16"))


@dataclass(frozen=True)
class BoundedParams:
    """What a file records to rebuild the values: x' = min(offset + step * q, high)."""

    bound: int      # maximum absolute error N, stored units
    step: int       # 2N + 1
    offset: int     # stored value of q = 0
    bits: int       # precision of q as coded
    dtype: str      # numpy type string of the rebuilt (stored) samples, e.g. "<i2"
    inner: str      # "jxl" or "htj2k"
    high: Optional[int] = None  # largest source value (rebuilt values are clipped to it)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BoundedParams":
        """Validated parameters read from a file; CodecError on anything inconsistent."""
        try:
            p = cls(**{k: d[k] for k in ("bound", "step", "offset", "bits", "dtype", "inner", "high")})
            ints = all(isinstance(getattr(p, k), int) and not isinstance(getattr(p, k), bool)
                       for k in ("bound", "step", "offset", "bits", "high"))
            dt = np.dtype(p.dtype) if isinstance(p.dtype, str) else None
        except (KeyError, TypeError, ValueError) as exc:
            raise CodecError(f"bad bounded-error parameters {_short(d)}: {exc}") from None
        if not (ints and dt is not None and dt.newbyteorder("=") in _DTYPES
                and 1 <= p.bound <= MAX_BOUND and p.step == 2 * p.bound + 1
                and 1 <= p.bits <= 16 and p.inner in INNER_CODECS):
            raise CodecError(f"bad bounded-error parameters {_short(d)}")
        info = np.iinfo(dt)
        # offset..high inside the type, and bits exactly what the writer derives from them:
        # this also keeps step * q far inside int32 when rebuilding
        if not (info.min <= p.offset <= p.high <= info.max
                and p.bits == max(1, ((p.high - p.offset + p.bound) // p.step).bit_length())):
            raise CodecError(f"bad bounded-error parameters {_short(d)}: range "
                             f"{p.offset}..{p.high} and {p.bits} bits disagree")
        return p

    @property
    def qdtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.bits <= 8 else np.uint16)


def _short(d) -> str:
    text = repr(d)
    return text if len(text) <= 300 else text[:300] + "..."


def _check(volume) -> np.ndarray:
    vol = np.asarray(volume)
    if vol.dtype.newbyteorder("=") not in _DTYPES:
        raise CodecError(f"bounded-error frames hold 8 or 16-bit integers, not {vol.dtype}")
    if vol.ndim not in (3, 4) or (vol.ndim == 4 and vol.shape[-1] != 3) or 0 in vol.shape:
        raise CodecError(f"cannot code an image of shape {vol.shape} as bounded-error frames")
    return vol.astype(vol.dtype.newbyteorder("="), copy=False)


def quantise(volume, bound: int = DEFAULT_BOUND, inner: str = "jxl") -> Tuple[np.ndarray, BoundedParams]:
    """(q, params): the quantised values (uint8 or uint16) and what rebuilds the volume."""
    vol = _check(volume)
    if isinstance(bound, bool) or not isinstance(bound, (int, np.integer)) or not 1 <= bound <= MAX_BOUND:
        raise CodecError(f"the error bound must be an integer from 1 to {MAX_BOUND}, not {bound!r}")
    if inner not in INNER_CODECS:
        raise CodecError(f"unknown inner codec {inner!r} (use one of {INNER_CODECS})")
    n = int(bound)
    step = 2 * n + 1
    offset, high = int(vol.min()), int(vol.max())
    q = (vol.astype(np.int32) - (offset - n)) // step
    bits = max(1, int(q.max()).bit_length())
    params = BoundedParams(n, step, offset, bits, vol.dtype.str, inner, high)
    return q.astype(params.qdtype), params


def dequantise(q: np.ndarray, params: BoundedParams, out: Optional[np.ndarray] = None) -> np.ndarray:
    """offset + step * q, clipped to ``high`` and the stored type (clipping only moves a
    value towards the original, which lies inside both), written into ``out`` when given."""
    dt = np.dtype(params.dtype)
    info = np.iinfo(dt)
    top = info.max if params.high is None else min(info.max, params.high)
    q = np.asarray(q)
    if out is None:
        out = np.empty(q.shape, dt)
    elif out.shape != q.shape or not out.flags.c_contiguous or not out.flags.writeable:
        raise CodecError(f"out must be a writeable C-contiguous array of shape {q.shape}")
    for src, dst in zip(q.reshape((-1,) + q.shape[-2:]), out.reshape((-1,) + q.shape[-2:])):
        x = src.astype(np.int32)  # frame by frame: in cache, about 3x faster than at once
        x *= params.step
        x += params.offset
        np.clip(x, info.min, top, out=x)
        dst[...] = x
    return out


def check_bound(original, rebuilt, bound: int) -> None:
    """ErrorBoundError naming the first frame and pixel where |rebuilt - original| > bound."""
    a = np.asarray(original)
    b = np.asarray(rebuilt)
    if a.shape != b.shape:
        raise ErrorBoundError(f"rebuilt shape {b.shape} differs from the original {a.shape}")
    err = np.abs(a.astype(np.int32) - b.astype(np.int32))
    worst = int(err.max()) if err.size else 0
    if worst > bound:
        where = tuple(int(i) for i in np.unravel_index(int(err.argmax()), err.shape))
        raise ErrorBoundError(f"error {worst} at frame {where[0]}, pixel {where[1:]} exceeds "
                              f"the bound {bound}")


def encode_batch(volume, bound: int = DEFAULT_BOUND, inner: str = "jxl",
                 effort: int = jxl.DEFAULT_EFFORT,
                 num_threads: Optional[int] = None) -> Tuple[BoundedParams, List[bytes]]:
    """Quantise a (frames, rows, columns[, 3]) volume with error bound ``bound`` and code q
    losslessly, one codestream per frame. Returns the parameters to record and the frames.
    Check the result with :func:`verify_batch` before storing it."""
    q, params = quantise(volume, bound, inner)
    if inner == "jxl":
        frames = jxl.encode_batch(q, bits_stored=params.bits, effort=effort, num_threads=num_threads)
    else:
        from . import jph

        frames = jph.encode_batch(q, bits_stored=params.bits, num_threads=num_threads)
    return params, frames


def decode_batch(frames: Sequence, params: BoundedParams, out: np.ndarray,
                 num_threads: Optional[int] = None) -> np.ndarray:
    """Decode the frames into ``out`` (frames, rows, columns[, 3]) of the stored type."""
    frames = list(frames)
    if out.dtype.newbyteorder("=") != np.dtype(params.dtype).newbyteorder("="):
        raise CodecError(f"out has type {out.dtype}, the frames rebuild {params.dtype}")
    if out.ndim not in (3, 4) or out.shape[0] != len(frames):
        raise CodecError(f"out of shape {out.shape} cannot hold {len(frames)} frames")
    q = np.empty(out.shape, params.qdtype)
    if params.inner == "jxl":
        jxl.decode_batch(frames, q, num_threads, bits_stored=params.bits)
    else:
        from . import jph

        if not frames:
            raise CodecError("no codestreams to decode")
        jph.decode_batch(frames, out=q, num_threads=num_threads)
    if int(q.max(initial=0)) >> params.bits:
        raise CodecError(f"decoded values exceed the recorded {params.bits} bits")
    return dequantise(q, params, out)


def verify_batch(frames: Sequence, params: BoundedParams, volume,
                 num_threads: Optional[int] = None) -> np.ndarray:
    """Decode every frame and prove the bound on every pixel (ErrorBoundError otherwise);
    returns the rebuilt volume."""
    vol = _check(volume)
    got = decode_batch(frames, params, np.empty(vol.shape, vol.dtype), num_threads)
    check_bound(vol, got, params.bound)
    return got


def dicom_rescale(params: BoundedParams, slope: float = 1.0, intercept: float = 0.0) -> Tuple[float, float]:
    """(RescaleSlope, RescaleIntercept) of a DICOM instance whose stored values are q:
    real value = slope * (offset + step * q) + intercept (without the dtype clipping,
    which only ever applies within the bound)."""
    return slope * params.step, intercept + slope * params.offset


# -- the frame codec interface of dicube.codecs.registry (container codec 5, .dcbl) ----
# The frames need the file's LOSS section to be rebuilt: the reader asks bind(reader) for a
# codec holding the validated parameters before decoding.
CODEC_ID = 5
NAME = "bounded"
SAVE_NAME = None  # chosen by file_type "l" with a bound, never by save(codec=...)
FALLBACK = None
CHECKS_CRCS = False
decode_file = None
header = None  # served decoded (the rebuilt values, as the source's pixel module describes them)
#: Section kind of the parameters (raw JSON: BoundedParams.to_dict() + ratio, units, real_bound).
SECTION = b"LOSS"
#: Largest LOSS section read (its JSON is about 200 bytes).
MAX_SECTION_BYTES = 4096


def encode(volume, bits_stored, num_threads):
    return None  # lossy: only with an explicit bound (dicube.save(file_type="l", bound=N))


def decode(buffer, offsets, lengths, out, *, crcs=None, num_threads=None, verify=True) -> None:
    raise CodecError("bounded-error frames need the parameters of the file's LOSS section")


def transfer_syntax(facts):
    return None


def loss_document(params: BoundedParams, ratio: float, units: str, real_bound: float) -> dict:
    """The LOSS section of a file: the parameters, raw/stored ratio of the frames, and the
    guaranteed maximum error ``real_bound`` in ``units`` ("HU", a RescaleType, "stored")."""
    return {**params.to_dict(), "ratio": round(float(ratio), 4), "units": units,
            "real_bound": float(real_bound)}


def parse_loss(doc, dtype, bits_stored: int) -> Tuple[BoundedParams, dict]:
    """(params, the other LOSS fields) of a file whose header declares samples of ``dtype``
    and q of ``bits_stored`` bits; CodecError on anything missing, inconsistent or hostile."""
    if not isinstance(doc, dict):
        raise CodecError(f"LOSS section is not a JSON object: {_short(doc)}")
    try:
        params = BoundedParams.from_dict(doc)
    except CodecError as exc:
        raise CodecError(f"LOSS section: {exc.reason}") from None
    if np.dtype(params.dtype).newbyteorder("=") != np.dtype(dtype).newbyteorder("="):
        raise CodecError(f"LOSS section rebuilds {params.dtype}, the header declares {np.dtype(dtype)}")
    if params.bits != bits_stored:
        raise CodecError(f"LOSS section codes {params.bits} bits, the header declares {bits_stored}")
    ratio, units, real = doc.get("ratio"), doc.get("units"), doc.get("real_bound")
    number = (int, float)
    if not (isinstance(ratio, number) and not isinstance(ratio, bool) and 0 < ratio < 1e9
            and isinstance(units, str) and 0 < len(units) <= 64
            and isinstance(real, number) and not isinstance(real, bool) and 0 < real < 1e12):
        raise CodecError(f"bad LOSS section ratio, units or real_bound: {_short(doc)}")
    return params, {"ratio": float(ratio), "units": units, "real_bound": float(real)}


class _Bound:
    """Codec 5 with one file's parameters (what :func:`bind` returns)."""

    CODEC_ID, NAME, SAVE_NAME, FALLBACK, CHECKS_CRCS = CODEC_ID, NAME, None, None, False
    decode_file = None
    header = None

    def __init__(self, params: BoundedParams):
        self.params = params

    def decode(self, buffer, offsets, lengths, out, *, crcs=None, num_threads=None, verify=True) -> None:
        mv = memoryview(buffer)
        frames = [mv[o:o + n] for o, n in zip(np.asarray(offsets).tolist(), np.asarray(lengths).tolist())]
        decode_batch(frames, self.params, out, num_threads)

    transfer_syntax = staticmethod(transfer_syntax)


def bind(reader) -> _Bound:
    """The codec of ``reader``'s frames (a DcbsReader of a .dcbl), its LOSS section
    validated against the header; CodecError when missing or inconsistent."""
    sec = reader.sections.get(SECTION)
    if sec is None:
        raise CodecError("bounded-error frames without a LOSS section")
    if sec.encoding != 0 or sec.length > MAX_SECTION_BYTES:
        raise CodecError(f"LOSS section of {sec.length} bytes (encoding {sec.encoding}): at most "
                         f"{MAX_SECTION_BYTES} raw bytes expected")
    h = reader.layout.header
    return _Bound(parse_loss(reader.section_json(SECTION), h.dtype, h.bits_stored)[0])
