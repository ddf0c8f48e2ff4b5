"""Encode a DICOM Part 10 file from DICOM JSON, element for element.

pydicom's writer drops group length elements (gggg,0000) and re-encodes values; this
writer emits every element of the JSON exactly (via :func:`encode_element`), in explicit
VR little endian (native or encapsulated pixel data), implicit VR little endian,
deflated explicit VR little endian or explicit VR big endian.
"""
from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from typing import Optional

from .. import __version__
from .dicom_json import encode_element, encodings_for
from ..exceptions import MetaDataError

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
DEFLATED = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1")
LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"})
UNDEFINED = 0xFFFFFFFF
SEQ_DELIM = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
#: Value widths swapped when writing big endian.
SWAP = {"US": 2, "SS": 2, "OW": 2, "AT": 2, "UL": 4, "SL": 4, "FL": 4, "OF": 4, "OL": 4,
        "FD": 8, "OD": 8, "SV": 8, "UV": 8, "OV": 8}
EXPLICIT_BE = "1.2.840.10008.1.2.2"
ITEM = (0xFFFE, 0xE000)

#: dicube's UID root: 2.25 (ISO/IEC 9834-8) with a UUID made once for this project.
UID_ROOT = "2.25.254286236653498796911119606391642045559"
#: Implementation Class UID of files dicube writes itself: one per release.
IMPLEMENTATION_CLASS_UID = ".".join([UID_ROOT, *(str(int(n)) for n in re.findall(r"\d+", __version__))])
#: Implementation Version Name (SH, at most 16 characters).
IMPLEMENTATION_VERSION_NAME = f"DICUBE_{__version__}"[:16]


@dataclass
class PixelElement:
    """Pixel data to append to the data set: native bytes or encapsulated items."""

    tag: int
    vr: str
    data: bytes
    encapsulated: bool = False


def dicube_file_meta(sop_class: Optional[str], sop_instance: Optional[str],
                     transfer_syntax: str) -> dict:
    """Group 0002 (DICOM JSON) of a file written by dicube: the instance's SOP Class and
    Instance UIDs, the transfer syntax and dicube's implementation UID and version name."""
    def ui(v):
        return {"vr": "UI", "Value": [str(v)]} if v else {"vr": "UI"}

    return {"00020001": {"vr": "OB", "InlineBinary": "AAE="},
            "00020002": ui(sop_class), "00020003": ui(sop_instance),
            "00020010": ui(transfer_syntax), "00020012": ui(IMPLEMENTATION_CLASS_UID),
            "00020013": {"vr": "SH", "Value": [IMPLEMENTATION_VERSION_NAME]}}


def fragment_pieces(frames: list) -> tuple:
    """(pieces, offsets): each frame as one fragment padded to even length, as pieces whose
    join is the items (item header 0, frame 0, padding 0 + item header 1, frame 1, ...,
    padding n; each frame a piece of its own, not copied), and each item's offset from the
    first (what a Basic or Extended Offset Table holds)."""
    pieces, offsets, pos, pad = [], [], 0, b""
    for f in frames:
        length = len(f) + len(f) % 2
        offsets.append(pos)
        pieces += [pad + struct.pack("<HHI", *ITEM, length), f]
        pad = b"\0" * (len(f) % 2)
        pos += 8 + length
    return pieces + [pad], offsets


def basic_offset_table(offsets: list) -> bytes:
    """The Basic Offset Table item holding ``offsets`` (empty: none)."""
    return struct.pack(f"<HHI{len(offsets)}I", *ITEM, 4 * len(offsets), *offsets)


def encapsulate_frames(frames: list) -> bytes:
    """Encapsulated pixel data items without the sequence delimiter: a Basic Offset Table
    with one offset per frame, then each frame as one fragment padded to even length."""
    pieces, offsets = fragment_pieces(frames)
    return b"".join([basic_offset_table(offsets), *pieces])


def _header(tag: int, vr: str, length: int, implicit: bool, big: bool = False) -> bytes:
    g, e = tag >> 16, tag & 0xFFFF
    o = ">" if big else "<"
    if implicit:
        return struct.pack(o + "HHI", g, e, length)
    if vr in LONG_VRS:
        return struct.pack(o + "HH2s2xI", g, e, vr.encode("ascii"), length)
    if length > 0xFFFF:  # too long for a short VR: only UN can hold it
        return struct.pack(o + "HH2s2xI", g, e, b"UN", length)
    return struct.pack(o + "HH2sH", g, e, vr.encode("ascii"), length)


def _swap(vr: str, raw: bytes) -> bytes:
    width = SWAP.get(vr)
    if not width or len(raw) % width:
        return raw
    import numpy as np

    return np.frombuffer(raw, f"<u{width}").astype(f">u{width}").tobytes()


def _charset(data: dict, encodings: list[str]) -> list[str]:
    """The encodings in force in ``data`` (its Specific Character Set, else ``encodings``)."""
    cs = data.get("00080005")
    if cs is None:
        return encodings
    raw = encode_element("CS", cs, encodings)
    value = raw.decode("latin_1").rstrip(" \0").split("\\")
    return encodings_for(value[0] if len(value) == 1 else value, encodings)


def encode_dataset(data: dict, encodings: list[str], implicit: bool, out: bytearray,
                   big: bool = False, cache: Optional[dict] = None) -> None:
    """Append the elements of DICOM JSON ``data`` (ascending tags) to ``out``
    (little endian, or explicit VR big endian when ``big``).

    ``cache`` (a dict kept by the caller) holds each element's encoding keyed by its tag and
    the very element object: the slices of a series share their common element objects, so
    each is encoded once per series (element objects are never changed in place)."""
    encodings = _charset(data, encodings)
    flags = (tuple(encodings), implicit, big)
    for key in sorted(data, key=lambda k: int(k, 16)):
        elem = data[key]
        if cache is not None:
            hit = cache.get(key)
            if hit is not None and hit[0] is elem and hit[1] == flags:
                out += hit[2]
                continue
            start = len(out)
            encode_dataset({key: elem}, list(encodings), implicit, out, big)
            cache[key] = (elem, flags, bytes(out[start:]))
            continue
        tag = int(key, 16)
        vr = elem.get("vr", "UN")
        if vr == "SQ" and "InlineBinary" not in elem:
            body = bytearray()
            for item in elem.get("Value") or []:
                content = bytearray()
                encode_dataset(item, encodings, implicit, content, big)
                body += struct.pack(">HHI" if big else "<HHI", 0xFFFE, 0xE000, len(content))
                body += content
            out += _header(tag, "SQ", len(body), implicit, big) + body
            continue
        try:
            raw = encode_element(vr, elem, encodings)
        except (ValueError, TypeError, struct.error, LookupError) as exc:
            raise MetaDataError(f"element {key} ({vr}) cannot be encoded: {exc}") from exc
        if big:
            raw = _swap(vr, raw)
        out += _header(tag, vr, len(raw), implicit, big) + raw


def file_meta_bytes(meta: dict) -> bytes:
    """Group 0002 (always explicit VR little endian), group length recomputed if absent."""
    body = bytearray()
    rest = {k: v for k, v in meta.items() if k != "00020000"}
    encode_dataset(rest, ["iso8859"], False, body)
    gl = meta.get("00020000")
    length = len(body) if gl is None else None
    if gl is not None:
        value = gl.get("Value") or [len(body)]
        length = int(value[0])
    return _header(0x00020000, "UL", 4, False) + struct.pack("<I", length) + bytes(body)


def pixel_element_bytes(pixel: PixelElement, transfer_syntax: str) -> bytes:
    """The encoded pixel data element (with its sequence delimiter when encapsulated)."""
    if pixel.encapsulated:
        implicit = transfer_syntax == IMPLICIT_LE
        return b"".join([_header(pixel.tag, "OB", UNDEFINED, implicit), pixel.data, SEQ_DELIM])
    # native pixel bytes come already in the syntax's byte order
    return native_pixel_head(pixel.tag, pixel.vr, len(pixel.data), transfer_syntax) + pixel.data


def native_pixel_head(tag: int, vr: str, length: int, transfer_syntax: str) -> bytes:
    """The tag, VR and length that precede ``length`` native pixel bytes."""
    return _header(tag, vr, length, transfer_syntax == IMPLICIT_LE,
                   transfer_syntax == EXPLICIT_BE)


def _split_body(header: dict, pixel_tag: Optional[int], transfer_syntax: str,
                cache: Optional[dict] = None) -> tuple[dict, bytes, bytes]:
    """(file meta JSON, data set bytes before the pixel element, bytes after it)."""
    cut = pixel_tag if pixel_tag is not None else 1 << 32
    meta = {k: v for k, v in header.items() if k.startswith("0002")}
    low_json = {k: v for k, v in header.items() if not k.startswith("0002") and int(k, 16) < cut}
    high_json = {k: v for k, v in header.items() if int(k, 16) > cut}
    implicit = transfer_syntax == IMPLICIT_LE
    big = transfer_syntax == EXPLICIT_BE
    low, high = bytearray(), bytearray()
    encode_dataset(low_json, ["iso8859"], implicit, low, big, cache)
    if high_json:  # e.g. Data Set Trailing Padding: same character set, after the pixels
        encode_dataset(high_json, _charset(low_json, ["iso8859"]), implicit, high, big)
    return meta, bytes(low), bytes(high)


def encode_part10_parts(header: dict, pixel_tag: Optional[int], transfer_syntax: str,
                        preamble: Optional[bytes] = None, cache: Optional[dict] = None
                        ) -> tuple[bytes, bytes]:
    """``(before, after)``: the file of :func:`encode_part10` is
    ``before + pixel_element_bytes(pixel, transfer_syntax) + after`` for a pixel element
    of tag ``pixel_tag``; elements with higher tags (e.g. Data Set Trailing Padding) are
    in ``after``. Not for deflated syntaxes, whose data set is compressed as a whole.
    ``cache``: see :func:`encode_dataset`."""
    if transfer_syntax in DEFLATED:
        raise ValueError("a deflated data set cannot be split around its pixel data")
    meta, low, high = _split_body(header, pixel_tag, transfer_syntax, cache)
    return _preamble(preamble) + b"DICM" + file_meta_bytes(meta) + low, high


def _preamble(preamble: Optional[bytes]) -> bytes:
    return preamble if preamble and len(preamble) == 128 else b"\0" * 128


def encode_part10(header: dict, pixel: Optional[PixelElement], transfer_syntax: str,
                  preamble: Optional[bytes] = None) -> bytes:
    """A complete Part 10 file: preamble, 'DICM', file meta, data set with pixel data.

    ``header`` is the slice's DICOM JSON with group 0002 (its Transfer Syntax UID must be
    ``transfer_syntax``).
    """
    meta, low, high = _split_body(header, pixel.tag if pixel else None, transfer_syntax)
    pix = pixel_element_bytes(pixel, transfer_syntax) if pixel is not None else b""
    body = low + pix + high
    if transfer_syntax in DEFLATED:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        body = c.compress(body) + c.flush()
        if len(body) % 2:
            body += b"\0"
    return _preamble(preamble) + b"DICM" + file_meta_bytes(meta) + body
