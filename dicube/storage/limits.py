"""Limits a reader enforces on what a file or a server declares.

A hostile or damaged file may declare any size. Every declared size is checked against the
file's real size and against these limits before anything is allocated, so that opening a
file of ``S`` bytes costs O(S) plus a decoded volume that is plausible for the stored bytes.
``docs/format.md`` ("Limits a reader enforces") lists them with the measurements behind them.

The tunable limits are module attributes (``dicube.storage.limits.MAX_DECODE_RATIO = 0``);
an environment variable of the same role, when set, takes precedence. 0 disables a ratio check.
"""
from __future__ import annotations

import os

import numpy as np

from ..exceptions import DicomCubeError, InvalidCubeFileError

#: Largest rows / columns of a frame (DICOM Rows and Columns are 16-bit).
MAX_DIMENSION = 65535
#: Sample types a frame may decode to: numpy kinds (bool, signed, unsigned, float), widths.
SAMPLE_KINDS = "biuf"
SAMPLE_SIZES = (1, 2, 4, 8)

#: Any metadata section may decode to this many bytes whatever its stored size ...
SECTION_FREE_BYTES = 16 << 20
#: ... above that, to at most this many times its stored size (env DICUBE_MAX_SECTION_RATIO) ...
MAX_SECTION_RATIO = 100
#: ... and never to more than this.
MAX_SECTION_BYTES = 1 << 30

#: A frame read may decode to this many bytes whatever its stored size (env DICUBE_DECODE_FREE_BYTES) ...
DECODE_FREE_BYTES = 256 << 20
#: ... above that, to at most this many times the stored bytes of the frames read
#: (env DICUBE_MAX_DECODE_RATIO; 0 disables the check).
MAX_DECODE_RATIO = 1000

#: A deflated DICOM data set may inflate to DECODE_FREE_BYTES whatever its stored size, above
#: that to at most this many times its stored size (env DICUBE_MAX_INFLATE_RATIO; 0 disables).
MAX_INFLATE_RATIO = 100

#: Remote reads (HTTP, S3 and HTTP folder listings): seconds to connect (env DICUBE_CONNECT_TIMEOUT)
CONNECT_TIMEOUT = 10.0
#: and seconds a request may wait for its next bytes (env DICUBE_READ_TIMEOUT).
READ_TIMEOUT = 30.0
#: Largest HTTP directory index page read; entries and folder depth of one listing (HTTP, S3
#: and local folders, whose symbolic links may lead anywhere).
MAX_LISTING_BYTES = 32 << 20
MAX_LISTING_ENTRIES = 1_000_000
MAX_LISTING_DEPTH = 32

_ENV = {
    "MAX_SECTION_RATIO": "DICUBE_MAX_SECTION_RATIO",
    "DECODE_FREE_BYTES": "DICUBE_DECODE_FREE_BYTES",
    "MAX_DECODE_RATIO": "DICUBE_MAX_DECODE_RATIO",
    "MAX_INFLATE_RATIO": "DICUBE_MAX_INFLATE_RATIO",
    "CONNECT_TIMEOUT": "DICUBE_CONNECT_TIMEOUT",
    "READ_TIMEOUT": "DICUBE_READ_TIMEOUT",
}


def get(name: str) -> float:
    """The value of limit ``name``: its environment variable if set, else the module attribute."""
    var = _ENV.get(name)
    text = os.environ.get(var, "").strip() if var else ""
    if not text:
        return globals()[name]
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise DicomCubeError(f"environment variable {var}={text!r}: expected a number >= 0")
    return value


def _mib(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def section_cap(stored: int) -> int:
    """Most bytes a metadata section of ``stored`` bytes may decode to."""
    ratio = get("MAX_SECTION_RATIO")
    cap = max(SECTION_FREE_BYTES, ratio * stored) if ratio else MAX_SECTION_BYTES
    return int(min(cap, MAX_SECTION_BYTES))


def check_section(kind: bytes, raw_length: int, stored: int, path) -> None:
    """Refuse a section declaring more decoded bytes than :func:`section_cap` allows."""
    cap = section_cap(stored)
    if raw_length > cap:
        raise InvalidCubeFileError(
            f"section {kind.decode('latin-1')} declares {raw_length} decoded bytes for {stored} "
            f"stored, above the limit of {cap} (MAX_SECTION_RATIO "
            f"{get('MAX_SECTION_RATIO'):g}:1 above {_mib(SECTION_FREE_BYTES)}, "
            f"at most {_mib(MAX_SECTION_BYTES)}; env DICUBE_MAX_SECTION_RATIO)", path)


def check_geometry(rows: int, columns: int, samples: int, dtype: np.dtype, path) -> None:
    """Refuse a frame shape or sample type no DICOM image (or reader) has."""
    if not (1 <= rows <= MAX_DIMENSION and 1 <= columns <= MAX_DIMENSION) or samples not in (1, 3):
        raise InvalidCubeFileError(
            f"frame shape {rows}x{columns}x{samples} outside 1..{MAX_DIMENSION} rows and "
            f"columns, 1 or 3 samples", path)
    check_dtype(dtype, path)


def check_dtype(dtype: np.dtype, path) -> None:
    """Refuse a sample type that is not a plain number (object, string, record, ...)."""
    if dtype.kind not in SAMPLE_KINDS or dtype.itemsize not in SAMPLE_SIZES or dtype.shape:
        raise InvalidCubeFileError(f"unsupported sample type {dtype.str!r}", path)


def check_decoded(nbytes: int, stored: int, path) -> None:
    """Refuse to decode ``stored`` bytes of frames into ``nbytes`` when that is implausible:
    above DECODE_FREE_BYTES and more than MAX_DECODE_RATIO times the stored bytes
    (a decompression bomb, like Pillow's MAX_IMAGE_PIXELS)."""
    free = get("DECODE_FREE_BYTES")
    ratio = get("MAX_DECODE_RATIO")
    if nbytes > free and ratio and nbytes > ratio * stored:
        raise InvalidCubeFileError(
            f"frames of {stored} stored bytes declare {nbytes} decoded bytes "
            f"({_mib(nbytes)}), more than {ratio:g} times their size: refused as a likely "
            f"decompression bomb (limits MAX_DECODE_RATIO={ratio:g} above "
            f"DECODE_FREE_BYTES={_mib(free)}; env DICUBE_MAX_DECODE_RATIO=0 disables)", path)


def inflate_cap(stored: int) -> float:
    """Most bytes ``stored`` bytes of a deflated DICOM data set may inflate to (inf: no limit)."""
    ratio = get("MAX_INFLATE_RATIO")
    return max(get("DECODE_FREE_BYTES"), ratio * stored) if ratio else float("inf")


def out_of_memory(nbytes: int, what: str, path) -> DicomCubeError:
    """The error for a MemoryError while allocating a validated ``nbytes``."""
    return DicomCubeError(f"not enough memory for {what} ({nbytes} bytes, {_mib(nbytes)})", path)
