"""Parse one DICOM file into DICOM JSON plus the location of its pixel data, in one pass.

Files in explicit VR little endian (native or encapsulated) are walked directly over their
bytes, which is several times faster than building pydicom elements. Any other encoding
(implicit VR, big endian, deflated, no preamble) is read by pydicom and converted from
its values. Both paths produce the same JSON (see :mod:`dicube.dicom.dicom_json`).
"""
from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pydicom
from pydicom.pixels import pixel_array

from ..exceptions import DamagedDicomError
from ..storage import limits
from .dicom_json import (
    PIXEL_TAGS,
    dataset_to_json,
    element_from_raw,
    element_from_value,
    encodings_for,
    single_codec,
)

__all__ = ["ParsedFile", "parse_file", "parse_bytes", "decode_pixels", "frame_count", "NotDicomError",
           "looks_like_dicom", "incomplete"]

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1")
LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR",
                      b"UT", b"SV", b"UV"})
UNDEFINED = 0xFFFFFFFF
_HH = struct.Struct("<HH")
_H = struct.Struct("<H")
_I = struct.Struct("<I")


class NotDicomError(Exception):
    """The file is not a DICOM file (nor a damaged one: see :func:`looks_like_dicom`)."""


class _Fallback(Exception):
    """The fast walker met something only pydicom handles; parse with pydicom instead."""


@dataclass
class ParsedFile:
    """One parsed DICOM file: its header as DICOM JSON and where its pixels are."""

    path: str
    header: dict                      # DICOM JSON, group 0002 first, pixel data excluded
    transfer_syntax: str
    preamble: Optional[bytes] = None  # kept only when not all zero
    pixel_tag: Optional[str] = None   # e.g. "7FE00010"
    pixel_vr: Optional[str] = None
    pixel_offset: int = -1            # byte offset of native pixel data in the file
    pixel_length: int = 0
    encapsulated: bool = False
    needs_pydicom: bool = False       # pixels must be decoded by pydicom
    extras: dict = field(default_factory=dict)

    def value(self, key: str, default=None):
        """First JSON value of a top-level element, or ``default``."""
        elem = self.header.get(key)
        if elem is None:
            return default
        v = elem.get("Value")
        return v[0] if v else default

    def values(self, key: str) -> Optional[list]:
        elem = self.header.get(key)
        return None if elem is None else elem.get("Value")


def _walk(buf: bytes, pos: int, end: int, encodings: list[str], out: dict,
          top: Optional[ParsedFile]) -> int:
    """Walk explicit VR little endian elements from ``pos`` into ``out``.

    Returns the position after the last element (after an item delimiter if one ends the
    item). ``top`` is the ParsedFile for the top-level dataset (pixel data handled there).
    """
    codec = single_codec(encodings)
    unpack_hh = _HH.unpack_from
    unpack_h = _H.unpack_from
    unpack_i = _I.unpack_from
    while pos < end:
        group, elem = unpack_hh(buf, pos)
        if group == 0xFFFE:
            if elem == 0xE00D:  # item delimitation
                return pos + 8
            raise _Fallback("unexpected item tag")
        vr = buf[pos + 4:pos + 6]
        if vr in LONG_VRS:
            length = unpack_i(buf, pos + 8)[0]
            pos += 12
        else:
            if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
                raise _Fallback("not explicit VR")
            length = unpack_h(buf, pos + 6)[0]
            pos += 8
        tag = (group << 16) | elem
        svr = vr.decode("ascii")
        if tag in PIXEL_TAGS and top is not None:
            top.pixel_tag = f"{tag:08X}"
            top.pixel_vr = svr
            if length == UNDEFINED:
                top.encapsulated = True
                top.pixel_offset = pos
                pos, done = _skip_items(buf, pos, end)
                top.pixel_length = pos - top.pixel_offset
                if not done:  # cut short (the length kept is what the items declare)
                    top.extras["unterminated"] = True
                    pos = max(pos, end)
            else:
                top.pixel_offset = pos
                top.pixel_length = length
                pos += length
            continue
        if svr == "SQ":
            items = []
            seq_end = end if length == UNDEFINED else pos + length
            while pos < seq_end:
                ig, ie = unpack_hh(buf, pos)
                ilen = unpack_i(buf, pos + 4)[0]
                pos += 8
                if ig != 0xFFFE:
                    raise _Fallback("bad sequence item")
                if ie == 0xE0DD:  # sequence delimitation
                    break
                if ie != 0xE000:
                    raise _Fallback("bad sequence item")
                item: dict = {}
                item_end = seq_end if ilen == UNDEFINED else pos + ilen
                pos = _walk(buf, pos, item_end, encodings, item, None)
                items.append(item)
            out[f"{tag:08X}"] = {"vr": "SQ", "Value": items}
            continue
        if length == UNDEFINED:
            raise _Fallback("undefined length non-sequence")
        if pos + length > end:
            raise _Fallback("truncated element")
        raw = buf[pos:pos + length]
        pos += length
        out[f"{tag:08X}"] = element_from_raw(svr, raw, codec, encodings)
        if tag == 0x00080005:
            text = raw.decode("latin_1").rstrip(" \x00").split("\\")
            encodings = encodings_for(text[0] if len(text) == 1 else text, encodings)
            codec = single_codec(encodings)
    return pos


def _skip_items(buf: bytes, pos: int, end: int) -> tuple[int, bool]:
    """Skip encapsulated pixel data fragments: (position after the delimiter, True), or
    (the end the fragments seen declare, False) when the buffer ends before the delimiter."""
    while pos + 8 <= end:
        group, elem = _HH.unpack_from(buf, pos)
        length = _I.unpack_from(buf, pos + 4)[0]
        pos += 8
        if group == 0xFFFE and elem == 0xE0DD:
            return pos, True
        if group != 0xFFFE or elem != 0xE000 or length == UNDEFINED:
            raise _Fallback("bad encapsulated pixel data")
        pos += length
    return pos, False


def _file_meta(buf: bytes) -> tuple[dict, int]:
    """The file meta elements (group 0002 after "DICM") as DICOM JSON, and where they end."""
    header: dict = {}
    pos = 132
    # file meta information: explicit VR little endian, group 0002 only
    while pos + 8 <= len(buf):
        group = _H.unpack_from(buf, pos)[0]
        if group != 2:
            break
        elem = _H.unpack_from(buf, pos + 2)[0]
        vr = buf[pos + 4:pos + 6]
        if vr in LONG_VRS:
            length = _I.unpack_from(buf, pos + 8)[0]
            pos += 12
        else:
            length = _H.unpack_from(buf, pos + 6)[0]
            pos += 8
        if length == UNDEFINED:
            raise _Fallback("undefined length in file meta")
        header[f"0002{elem:04X}"] = element_from_raw(vr.decode("ascii"), buf[pos:pos + length],
                                                   "latin_1", ["iso8859"])
        pos += length
    return header, pos


def _ts(header: dict) -> str:
    ts_elem = header.get("00020010", {}).get("Value")
    return ts_elem[0].rstrip("\x00 ") if ts_elem else ""


def _check_inflated_size(path: str, buf: bytes) -> None:
    """Refuse a deflated data set that inflates beyond :func:`limits.inflate_cap` (a
    decompression bomb) before pydicom inflates it whole: count the bytes in chunks."""
    try:
        header, pos = _file_meta(buf)
    except Exception:  # noqa: BLE001 - damaged meta: pydicom reports it
        return
    if _ts(header) not in DEFLATED:
        return
    stored = len(buf) - pos
    cap = limits.inflate_cap(stored)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    data, total = memoryview(buf)[pos:], 0
    try:
        while data and total <= cap:
            total += len(inflater.decompress(data, 1 << 20))
            data = inflater.unconsumed_tail
            if inflater.eof:
                break
    except zlib.error:
        return  # pydicom reports the damaged stream
    if total > cap:
        raise DamagedDicomError(
            f"deflated data set of {stored} bytes inflates to more than {int(cap)} bytes: refused "
            f"as a likely decompression bomb (limits MAX_INFLATE_RATIO="
            f"{limits.get('MAX_INFLATE_RATIO'):g} above DECODE_FREE_BYTES; env "
            "DICUBE_MAX_INFLATE_RATIO=0 disables)", path)


def _parse_fast(path: str, buf: bytes) -> ParsedFile:
    preamble = buf[:128]
    header, pos = _file_meta(buf)
    ts = _ts(header)
    if not ts or ts in (IMPLICIT_LE, EXPLICIT_BE) or ts in DEFLATED:
        raise _Fallback("transfer syntax needs pydicom")
    pf = ParsedFile(path, header, ts, preamble if any(preamble) else None)
    _walk(buf, pos, len(buf), ["iso8859"], header, pf)
    pf.needs_pydicom = pf.encapsulated or ts != EXPLICIT_LE
    return pf


def _check_lengths(ds: pydicom.Dataset) -> None:
    """pydicom reads a value cut short by the end of the file without a word: refuse it."""
    for part in (ds.file_meta, ds):
        for tag in part.keys():
            raw = part.get_item(tag, keep_deferred=True)
            value = getattr(raw, "value", None)
            length = getattr(raw, "length", None)
            if isinstance(value, bytes) and isinstance(length, int) and \
                    length != UNDEFINED and len(value) < length:
                raise NotDicomError(f"truncated: element ({tag >> 16:04X},{tag & 0xFFFF:04X}) "
                                    f"has {len(value)} of its {length} bytes")


def _parse_pydicom(path: str, buf: bytes) -> tuple[ParsedFile, pydicom.Dataset]:
    try:
        ds = pydicom.dcmread(io.BytesIO(buf))
    except Exception as exc:  # pydicom raises many types on garbage input
        raise NotDicomError(str(exc) or type(exc).__name__) from exc
    if not ds.file_meta and len(ds) == 0:
        raise NotDicomError("empty dataset")
    _check_lengths(ds)
    header: dict = {}
    try:  # pydicom converts elements lazily: damaged values raise here (any type)
        for elem in ds.file_meta:
            header[f"{elem.tag:08X}"] = element_from_value(elem, ["iso8859"])
        header.update(dataset_to_json(ds))
    except Exception as exc:  # noqa: BLE001
        raise NotDicomError(f"{type(exc).__name__}: {exc}") from exc
    ts = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "")
    preamble = getattr(ds, "preamble", None)
    pf = ParsedFile(path, header, ts, preamble if preamble and any(preamble) else None,
                    needs_pydicom=True)
    for tag in PIXEL_TAGS:
        if tag in ds:
            pf.pixel_tag = f"{tag:08X}"
            pf.pixel_vr = str(ds[tag].VR)
    return pf, ds


def _is_vr(b: bytes) -> bool:
    return len(b) == 2 and 65 <= b[0] <= 90 and 65 <= b[1] <= 90


def looks_like_dicom(buf: bytes) -> bool:
    """Whether bytes that failed to parse are a damaged DICOM file rather than another kind
    of file: "DICM" at byte 128; a file meta element at byte 132 (damaged prefix); a data
    set without preamble (group 0002 or 0008 element at byte 0); nothing but zero bytes."""
    if buf[128:132] == b"DICM" or (128 < len(buf) < 132 and b"DICM".startswith(buf[128:])):
        return True
    if buf[132:134] == b"\x02\x00" and _is_vr(buf[136:138]):
        return True
    if len(buf) >= 8 and buf[:2] in (b"\x02\x00", b"\x08\x00") and buf[3] == 0 and (
            _is_vr(buf[4:6]) or _I.unpack_from(buf, 4)[0] < min(len(buf), 1024)):
        return True
    return _all_zero(buf)


def _all_zero(buf: bytes) -> bool:
    return len(buf) > 0 and buf[0] == 0 and buf[-1] == 0 and buf.count(0) == len(buf)


def parse_bytes(path: str, buf: bytes) -> tuple[ParsedFile, Optional[pydicom.Dataset]]:
    """Parse the bytes of a DICOM file. Returns the ParsedFile and, when pydicom had to
    read the file, its Dataset (reused for pixel decoding).

    Raises :class:`NotDicomError` for content that is not DICOM at all, and
    :class:`~dicube.exceptions.DamagedDicomError` (naming ``path``) for a damaged DICOM
    file (see :func:`looks_like_dicom`). The pixel data is not checked: see :func:`incomplete`.
    """
    if len(buf) >= 132 and buf[128:132] == b"DICM":
        try:
            return _parse_fast(path, buf), None
        except Exception:  # noqa: BLE001 - anything unusual: pydicom decides
            pass
        _check_inflated_size(path, buf)
    try:
        return _parse_pydicom(path, buf)
    except NotDicomError as exc:
        if looks_like_dicom(buf):
            what = "only zero bytes" if _all_zero(buf) else f"damaged DICOM file: {exc}"
            raise DamagedDicomError(what, path) from None
        raise


def _is_image_class(uid) -> bool:
    if not isinstance(uid, str) or not uid:
        return False
    try:
        return "Image Storage" in pydicom.uid.UID(uid.rstrip("\x00 ")).name
    except Exception:  # noqa: BLE001 - an invalid UID string
        return False


def incomplete(pf: ParsedFile, size: int) -> Optional[str]:
    """Why a parsed file of ``size`` bytes is not complete (None when it looks complete):
    pixel data running past the end of the file or without its delimiter, no pixel data
    in an image (SOP class "... Image Storage"), or no SOP class and no pixel data at all
    (a header cut short). Pixel data shorter than the image needs fails when decoded."""
    if pf.pixel_tag is None:
        sop = pf.value("00080016") or pf.value("00020002")
        if not sop:
            return "no SOP Class UID and no pixel data (file cut short?)"
        if _is_image_class(sop):
            return "image without pixel data (file cut short?)"
        return None
    if pf.pixel_offset >= 0:
        end = pf.pixel_offset + pf.pixel_length
        if pf.extras.get("unterminated"):
            return f"truncated: encapsulated pixel data not terminated ({size} bytes)"
        if end > size:
            return f"truncated: pixel data needs {end} bytes, the file has {size}"
    return None


def parse_file(path: str | os.PathLike, *, with_pixels: bool = True
               ) -> tuple[ParsedFile, Optional[np.ndarray]]:
    """Parse a DICOM file; return the ParsedFile and (if asked) its pixel array.

    The pixel array has shape (frames, rows, columns[, samples]) and the dtype of
    pydicom's ``pixel_array``. Raises :class:`NotDicomError` for non-DICOM files.
    """
    path = os.fspath(path)
    with open(path, "rb") as fh:
        buf = fh.read()
    pf, ds = parse_bytes(path, buf)
    if not with_pixels or pf.pixel_tag is None:
        return pf, None
    try:
        return pf, decode_pixels(pf, buf, ds)
    except Exception as exc:  # noqa: BLE001 - decoders of any plugin
        raise DamagedDicomError(f"cannot decode pixel data: {exc}", path) from exc


def _native_dtype(pf: ParsedFile) -> Optional[np.dtype]:
    """dtype for the simple native case pydicom decodes as a plain reinterpretation."""
    if pf.needs_pydicom or pf.pixel_tag != "7FE00010":
        return None
    spp = pf.value("00280002", 1)
    ba = pf.value("00280100")
    bs = pf.value("00280101")
    pr = pf.value("00280103", 0)
    if spp != 1 or ba not in (8, 16, 32) or bs != ba or pr not in (0, 1):
        return None
    return np.dtype(f"<{'iu'[pr == 0]}{ba // 8}")


def frame_count(pf: ParsedFile) -> int:
    nf = pf.value("00280008")
    try:
        return max(1, int(str(nf).strip())) if nf not in (None, "") else 1
    except ValueError:
        return 1


def decode_pixels(pf: ParsedFile, buf: bytes, ds: Optional[pydicom.Dataset] = None
                  ) -> np.ndarray:
    """Pixel array of a parsed file, bit-identical to pydicom's ``pixel_array`` without
    colour conversion, shaped (frames, rows, columns[, samples])."""
    dtype = _native_dtype(pf)
    frames = frame_count(pf)
    rows, cols = pf.value("00280010"), pf.value("00280011")
    if dtype is not None and rows and cols:
        count = frames * rows * cols
        if pf.pixel_length >= count * dtype.itemsize:
            arr = np.frombuffer(buf, dtype, count=count, offset=pf.pixel_offset)
            return arr.reshape(frames, rows, cols).astype(dtype.newbyteorder("="), copy=False)
    if ds is None:
        ds = pydicom.dcmread(io.BytesIO(buf))
    # as_rgb=False: YBR data stays in its colour space (4:2:2 chroma replicated, which is
    # exact to undo) instead of a rounding YBR -> RGB conversion.
    arr = pixel_array(ds, as_rgb=False)
    if not arr.dtype.isnative:  # big endian input: same values, native byte order
        arr = arr.astype(arr.dtype.newbyteorder("="))
    nf = frame_count(pf)
    spp = pf.value("00280002", 1) or 1
    if nf == 1 and arr.ndim == (2 if spp == 1 else 3):
        arr = arr[np.newaxis]
    return arr
