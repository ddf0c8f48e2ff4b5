"""Layout of the version-2 .dcbs container: fixed header, section table, frame index.

See ``docs/format.md`` for the normative description. Summary::

    [fixed header, 128 B][section table, 32 B x S][sections ...][frames ...]
    |<------------------------- head ------------------------->|<- frames ->|

All integers are little-endian. Every metadata section and every frame carries a
CRC-32C; the fixed header carries the CRC-32C of itself and of the section table.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np

from ..codecs import registry
from ..exceptions import CorruptFileError, InvalidCubeFileError
from . import limits

#: Magic of the speed (HTJ2K) variant.
MAGIC = b"DCMCUBES"
#: Magic of the lossless archive variant (JPEG XL frames, codec 4).
MAGIC_ARCHIVE = b"DCMCUBEA"
#: Magic of the lossy variant with a guaranteed error bound (codec 5 and a LOSS section).
MAGIC_LOSSY = b"DCMCUBEL"
#: Magics written and read, by file_type letter; the archive and lossy variants exist in
#: version 2 only.
VARIANT_MAGICS = {"s": MAGIC, "a": MAGIC_ARCHIVE, "l": MAGIC_LOSSY}
#: File name suffix of each variant.
VARIANT_SUFFIXES = {"s": ".dcbs", "a": ".dcba", "l": ".dcbl"}
#: Other magics of the dicube family (never produced: no codec for them yet).
OTHER_MAGICS = {b"DCMCUBE\0": "base"}
VERSION = 2
LEGACY_VERSION = 1

#: Fixed header: magic, version, header size, head length, frames length, file length,
#: frame count, rows, columns, samples, frame codec, dtype, bits stored, section count,
#: table CRC, reserved, header CRC.
HEADER = struct.Struct("<8sIIQQQIIIHH4sHHI56xI")
HEADER_SIZE = HEADER.size  # 128
assert HEADER_SIZE == 128

#: One section table entry: kind, encoding, offset, length, CRC-32C, raw (decoded) length.
SECTION = struct.Struct("<4sIQQII")
SECTION_SIZE = SECTION.size  # 32
assert SECTION_SIZE == 32

#: Section encodings.
ENC_RAW = 0
ENC_ZSTD = 1

#: Section kinds.
SEC_INFO = b"INFO"  # UTF-8 JSON: writer, image attributes needed to rebuild the image
SEC_META = b"META"  # DicomMeta as DICOM JSON (zstd)
SEC_SPACE = b"SPAC"  # spacetransformer Space JSON (x, y, z axis order)
SEC_PIXEL = b"PIXH"  # PixelDataHeader JSON
SEC_QC = b"QCRP"  # series QC report JSON (zstd)
SEC_INDEX = b"FIDX"  # frame index (FRAME_INDEX_DTYPE records)
SEC_LOSS = b"LOSS"  # bounded-error parameters of a .dcbl (raw JSON, dicube.codecs.bounded)

#: Frame codecs (each a module of dicube.codecs, found by id in dicube.codecs.registry).
CODEC_HTJ2K = 1  # one lossless HTJ2K codestream per frame
CODEC_ZSTD = 2  # raw little-endian samples of one frame, zstd-compressed
CODEC_ZSTD_PLANES = 3  # byte planes of one frame's samples, zstd-compressed (fast to decode)
CODEC_JXL = 4  # one lossless JPEG XL codestream per frame (.dcba)
CODEC_BOUNDED = 5  # quantised values (error <= bound) in a lossless codestream per frame (.dcbl)
CODEC_NAMES = {CODEC_HTJ2K: "htj2k", CODEC_ZSTD: "zstd", CODEC_ZSTD_PLANES: "zstd-planes",
               CODEC_JXL: "jxl", CODEC_BOUNDED: "bounded"}

#: One frame index record: offset from the start of the frames region, length, CRC-32C.
FRAME_INDEX_DTYPE = np.dtype([("offset", "<u8"), ("length", "<u8"), ("crc", "<u4"), ("reserved", "<u4")])

#: Size of the first read of a file: usually the whole head.
FIRST_READ = 64 * 1024


@dataclass
class Header:
    """The fixed header of a version-2 file."""

    head_length: int
    frames_length: int
    file_length: int
    frame_count: int
    rows: int
    columns: int
    samples: int
    frame_codec: int
    dtype: np.dtype
    bits_stored: int
    section_count: int
    table_crc: int = 0
    magic: bytes = MAGIC

    @property
    def variant(self) -> str:
        """The file_type letter of the magic ("s", "a" or "l")."""
        return next(k for k, v in VARIANT_MAGICS.items() if v == self.magic)

    @property
    def frames_offset(self) -> int:
        return self.head_length

    @property
    def frame_shape(self) -> tuple:
        s = (self.rows, self.columns)
        return s if self.samples == 1 else s + (self.samples,)

    def pack(self, crc32c) -> bytes:
        dt = self.dtype.str.encode("ascii").ljust(4, b"\0")
        body = HEADER.pack(self.magic, VERSION, HEADER_SIZE, self.head_length, self.frames_length,
                           self.file_length, self.frame_count, self.rows, self.columns,
                           self.samples, self.frame_codec, dt, self.bits_stored,
                           self.section_count, self.table_crc, 0)
        return body[:-4] + struct.pack("<I", crc32c(body[:-4]))


@dataclass
class Section:
    """Where one metadata section lies and how it is encoded."""

    kind: bytes
    encoding: int
    offset: int
    length: int
    crc: Optional[int]  # None: not checksummed (version-1 files)
    raw_length: int


@dataclass
class Layout:
    """Everything the head of a file says, whatever its version."""

    version: int
    header: Header
    sections: Dict[bytes, Section] = field(default_factory=dict)
    index: Optional[np.ndarray] = None  # FRAME_INDEX_DTYPE, absolute offsets resolved later


def check_magic(head: bytes, path=None) -> int:
    """Return the format version of a file whose first bytes are ``head``, or raise."""
    if len(head) < 12:
        raise InvalidCubeFileError(f"file too short for a dicube header ({len(head)} bytes)", path)
    magic = head[:8]
    if magic not in VARIANT_MAGICS.values():
        if magic in OTHER_MAGICS:
            raise InvalidCubeFileError(
                f"{OTHER_MAGICS[magic]} dicube files ({magic!r}) are not supported", path)
        raise InvalidCubeFileError(f"not a dicube file (magic {magic!r})", path)
    version = struct.unpack_from("<I", head, 8)[0]
    if version not in (LEGACY_VERSION, VERSION) or (magic != MAGIC and version != VERSION):
        raise InvalidCubeFileError(f"unknown .dcbs format version {version}", path)
    return version


def parse_header(head: bytes, crc32c, path=None) -> Header:
    """Parse and verify the fixed version-2 header from the first bytes of a file."""
    if len(head) < HEADER_SIZE:
        raise InvalidCubeFileError(f"truncated header ({len(head)} of {HEADER_SIZE} bytes)", path)
    fields = HEADER.unpack_from(head, 0)
    (magic, _version, header_size, head_length, frames_length, file_length, frame_count, rows,
     columns, samples, codec, dt, bits, section_count, table_crc, header_crc) = fields
    if crc32c(head[:HEADER_SIZE - 4]) != header_crc:
        raise CorruptFileError("header checksum mismatch", path)
    try:
        dtype = np.dtype(dt.rstrip(b"\0").decode("ascii"))
    except (TypeError, ValueError, UnicodeError):
        raise InvalidCubeFileError(f"unknown sample type {dt!r}", path) from None
    h = Header(head_length, frames_length, file_length, frame_count, rows, columns, samples,
               codec, dtype, bits, section_count, table_crc, magic)
    problems = []
    if header_size != HEADER_SIZE:
        problems.append(f"header size {header_size}")
    if head_length < HEADER_SIZE + section_count * SECTION_SIZE:
        problems.append(f"head length {head_length}")
    if file_length != head_length + frames_length:
        problems.append(f"file length {file_length} != {head_length} + {frames_length}")
    if not registry.known(codec):
        problems.append(f"frame codec {codec}")
    elif (codec == CODEC_BOUNDED) != (magic == MAGIC_LOSSY):  # lossy frames are always labelled
        problems.append(f"frame codec {codec} in a {magic.decode('latin-1')} file")
    if frame_count > frames_length:  # every frame holds at least one byte
        problems.append(f"{frame_count} frames in {frames_length} bytes")
    if problems:
        raise InvalidCubeFileError("inconsistent header: " + ", ".join(problems), path)
    if frame_count:
        limits.check_geometry(rows, columns, samples, dtype, path)
    return h


def pack_table(sections: list) -> bytes:
    return b"".join(SECTION.pack(s.kind, s.encoding, s.offset, s.length, s.crc, s.raw_length)
                    for s in sections)


def parse_table(head: bytes, header: Header, crc32c, path=None) -> Dict[bytes, Section]:
    """Parse and verify the section table that follows the fixed header."""
    end = HEADER_SIZE + header.section_count * SECTION_SIZE
    if len(head) < end:
        raise InvalidCubeFileError("truncated section table", path)
    table = head[HEADER_SIZE:end]
    if crc32c(table) != header.table_crc:
        raise CorruptFileError("section table checksum mismatch", path)
    out: Dict[bytes, Section] = {}
    for i in range(header.section_count):
        kind, enc, off, length, crc, raw = SECTION.unpack_from(table, i * SECTION_SIZE)
        name = kind.decode("latin-1")
        if off < end or off + length > header.head_length:
            raise InvalidCubeFileError(f"section {name} lies outside the head", path)
        if enc == ENC_ZSTD:
            limits.check_section(kind, raw, length, path)
        elif enc != ENC_RAW:
            raise InvalidCubeFileError(f"section {name} has unknown encoding {enc}", path)
        elif raw != length:
            raise InvalidCubeFileError(f"uncompressed section {name} stores {length} bytes but "
                                       f"declares {raw} decoded bytes", path)
        out[kind] = Section(kind, enc, off, length, crc, raw)
    return out
