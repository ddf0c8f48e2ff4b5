"""Craft hostile .dcbs files and codestreams whose checksums all match.

An attacker (or a writer bug) can recompute every CRC, so the tests build such files
from real ones here: parse a file into header fields, sections and frames, change any of
them, and write it back with the section table, frame index, header and (optionally) the
codestreams' embedded checksums recomputed. Written from docs/format.md, independently
of dicube's writer.

>>> c = Crafted.read(path)
>>> c.frames[1] = set_codestream_byte(c.frames[1], 66, 0)   # QCD Sqcd
>>> c.write(tmp_path / "bad.dcbs")
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import zstandard

from dicube.codecs.jph import crc32c

HEADER = struct.Struct("<8sIIQQQIIIHH4sHHI56xI")
SECTION = struct.Struct("<4sIQQII")
INDEX = np.dtype([("offset", "<u8"), ("length", "<u8"), ("crc", "<u4"), ("reserved", "<u4")])
HEADER_FIELDS = ("magic", "version", "header_size", "head_length", "frames_length", "file_length",
                 "frame_count", "rows", "columns", "samples", "frame_codec", "dtype", "bits_stored",
                 "section_count", "table_crc", "header_crc")


@dataclass
class CraftedSection:
    kind: bytes
    encoding: int  # 0 raw, 1 zstd
    stored: bytes  # the bytes as stored in the file
    raw_length: int

    @property
    def raw(self) -> bytes:
        if self.encoding == 1:
            return zstandard.ZstdDecompressor().decompressobj().decompress(self.stored)
        return self.stored


@dataclass
class Crafted:
    """A version-2 .dcbs file taken apart; ``to_bytes`` puts it back with fresh CRCs."""

    header: dict
    sections: list = field(default_factory=list)  # CraftedSection, in table order (FIDX excluded)
    frames: list = field(default_factory=list)  # bytes of each frame
    #: Replace the computed frame index (records relative to the frames region); CRCs are
    #: still recomputed unless ``keep_index_crcs``.
    index: Optional[np.ndarray] = None
    keep_index_crcs: bool = False
    #: Header fields forced after the layout was computed (e.g. {"rows": 65535}).
    header_overrides: dict = field(default_factory=dict)

    @classmethod
    def read(cls, path) -> "Crafted":
        data = Path(path).read_bytes()
        header = dict(zip(HEADER_FIELDS, HEADER.unpack_from(data, 0)))
        sections, index = [], None
        for i in range(header["section_count"]):
            kind, enc, off, length, _crc, raw = SECTION.unpack_from(data, 128 + 32 * i)
            if kind == b"FIDX":
                index = np.frombuffer(data[off:off + length], INDEX).copy()
                continue
            sections.append(CraftedSection(kind, enc, data[off:off + length], raw))
        base = header["head_length"]
        frames = [data[base + int(r["offset"]): base + int(r["offset"]) + int(r["length"])] for r in index]
        return cls(header, sections, frames)

    def section(self, kind: bytes) -> CraftedSection:
        return next(s for s in self.sections if s.kind == kind)

    def set_section(self, kind: bytes, raw: bytes, *, encoding: Optional[int] = None,
                    raw_length: Optional[int] = None, stored: Optional[bytes] = None) -> None:
        """Replace a section's content (compressed as before unless ``encoding``/``stored``)."""
        try:
            sec = self.section(kind)
        except StopIteration:
            sec = CraftedSection(kind, 0, b"", 0)
            self.sections.append(sec)
        sec.encoding = sec.encoding if encoding is None else encoding
        if stored is None:
            stored = zstandard.ZstdCompressor().compress(raw) if sec.encoding == 1 else raw
        sec.stored = stored
        sec.raw_length = len(raw) if raw_length is None else raw_length

    def to_bytes(self) -> bytes:
        frames = [bytes(f) for f in self.frames]
        if self.index is None:
            index = np.zeros(len(frames), INDEX)
            lengths = np.array([len(f) for f in frames], np.uint64)
            index["length"] = lengths
            index["offset"][1:] = np.cumsum(lengths)[:-1]
            index["crc"] = [crc32c(f) for f in frames]
        else:
            index = self.index.copy()
        blob = b"".join(frames)
        if not self.keep_index_crcs:
            index["crc"] = [crc32c(blob[int(r["offset"]):int(r["offset"]) + int(r["length"])])
                            for r in index]
        entries = [(s.kind, s.encoding, s.stored, s.raw_length) for s in self.sections]
        entries.append((b"FIDX", 0, index.tobytes(), index.nbytes))
        pos = 128 + 32 * len(entries)
        table = b""
        for kind, enc, stored, raw_len in entries:
            table += SECTION.pack(kind, enc, pos, len(stored), crc32c(stored), raw_len)
            pos += len(stored)
        pad = (-pos) % 8
        h = dict(self.header)
        h.update(head_length=pos + pad, frames_length=len(blob), file_length=pos + pad + len(blob),
                 frame_count=len(index), section_count=len(entries), table_crc=crc32c(table))
        h.update(self.header_overrides)
        body = HEADER.pack(*(h[k] for k in HEADER_FIELDS[:-1]), 0)[:-4]
        header = body + struct.pack("<I", crc32c(body) if "header_crc" not in self.header_overrides
                                    else self.header_overrides["header_crc"])
        return header + table + b"".join(e[2] for e in entries) + b"\0" * pad + blob

    def write(self, path) -> Path:
        Path(path).write_bytes(self.to_bytes())
        return Path(path)


_CHECKSUM = re.compile(rb"\xff\x64(..)\x00\x01dicube-crc32c:([0-9a-f]{8})", re.S)


def fix_codestream_checksum(cs: bytes) -> bytes:
    """Recompute dicube's embedded CRC-32C (COM segment) of an HTJ2K codestream, if it has one."""
    m = _CHECKSUM.search(cs)
    if m is None:
        return cs
    begin, end = m.start(), m.end()
    crc = crc32c(cs[:begin] + cs[end:])
    return cs[:m.start(2)] + b"%08x" % crc + cs[m.end(2):]


def set_codestream_bytes(cs: bytes, offset: int, value: bytes, *, fix_checksum: bool = True) -> bytes:
    """``cs`` with ``value`` written at ``offset`` (and its embedded checksum recomputed)."""
    out = cs[:offset] + value + cs[offset + len(value):]
    return fix_codestream_checksum(out) if fix_checksum else out


def set_codestream_byte(cs: bytes, offset: int, value: int, *, fix_checksum: bool = True) -> bytes:
    return set_codestream_bytes(cs, offset, bytes([value]), fix_checksum=fix_checksum)
