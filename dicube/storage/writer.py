"""Write a version-2 .dcbs file from encoded frames and metadata sections."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import zstandard

from ..codecs.jph import crc32c
from .atomic import atomic_write
from .sources import ByteSource, LocalFile, TransferStats
from .format import (
    ENC_RAW,
    ENC_ZSTD,
    FRAME_INDEX_DTYPE,
    MAGIC,
    HEADER_SIZE,
    SEC_INDEX,
    SECTION_SIZE,
    Header,
    Section,
    pack_table,
)

#: zstd level for metadata sections (small, highly repetitive JSON).
ZSTD_LEVEL = 12


@dataclass
class FrameSet:
    """Encoded frames and what they decode to."""

    frames: Sequence[bytes]
    codec: int
    rows: int
    columns: int
    samples: int
    dtype: np.dtype
    bits_stored: int


def encode_section(kind: bytes, raw: bytes, compress: bool) -> Tuple[bytes, bytes, int, int]:
    """(kind, stored bytes, encoding, raw length) of one section."""
    if compress:
        return kind, zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(raw), ENC_ZSTD, len(raw)
    return kind, raw, ENC_RAW, len(raw)


def frame_index(frames: Sequence[bytes]) -> np.ndarray:
    """Index records (offset from the frames region, length, CRC-32C) of contiguous frames."""
    index = np.zeros(len(frames), FRAME_INDEX_DTYPE)
    lengths = np.fromiter((len(f) for f in frames), np.uint64, len(frames))
    index["length"] = lengths
    if len(frames):
        index["offset"][1:] = np.cumsum(lengths)[:-1]
    index["crc"] = [crc32c(f) for f in frames]
    return index


def build_head(fs: FrameSet, sections: Iterable[Tuple[bytes, bytes, bool]],
               magic: bytes = MAGIC) -> Tuple[bytes, int]:
    """The head (header, table, sections) for ``fs``; returns (head bytes, frames length).

    ``sections`` are (kind, raw bytes, compress) triples; the frame index is added last.
    """
    index = frame_index(fs.frames)
    frames_length = int(index["length"].sum()) if len(index) else 0
    encoded: List[Tuple[bytes, bytes, int, int]] = [encode_section(k, raw, c) for k, raw, c in sections]
    encoded.append((SEC_INDEX, index.tobytes(), ENC_RAW, index.nbytes))
    pos = HEADER_SIZE + SECTION_SIZE * len(encoded)
    table: List[Section] = []
    for kind, data, enc, raw_len in encoded:
        table.append(Section(kind, enc, pos, len(data), crc32c(data), raw_len))
        pos += len(data)
    pad = (-pos) % 8  # frames start 8-byte aligned
    head_length = pos + pad
    table_bytes = pack_table(table)
    header = Header(head_length, frames_length, head_length + frames_length, len(fs.frames),
                    fs.rows, fs.columns, fs.samples, fs.codec, np.dtype(fs.dtype).newbyteorder("<"),
                    fs.bits_stored, len(table), crc32c(table_bytes), magic)
    parts = [header.pack(crc32c), table_bytes] + [e[1] for e in encoded] + [b"\0" * pad]
    head = b"".join(parts)
    assert len(head) == head_length
    return head, frames_length


class _Memory(ByteSource):
    """The bytes of a file being written, when its temporary file cannot be reopened."""

    def __init__(self, name: str, data: bytes):
        self.name, self._data, self.size, self.stats = name, data, len(data), TransferStats()

    def pread(self, length: int, offset: int) -> bytes:
        self.stats.add(length)
        return self._data[offset:offset + length]


def _written(fh, path, parts: Sequence[bytes]) -> ByteSource:
    """The file just written to ``fh``, read back from disk (Linux: through /proc, since the
    temporary file is open write-only), else from the bytes written; named ``path``."""
    fh.flush()
    try:
        src = LocalFile(f"/proc/self/fd/{fh.fileno()}")
    except OSError:
        return _Memory(os.fspath(path), b"".join(parts))
    src.name = os.fspath(path)
    return src


def write_dcbs(path: "os.PathLike[str] | str", fs: FrameSet,
               sections: Iterable[Tuple[bytes, bytes, bool]], magic: bytes = MAGIC,
               check: Optional[Callable[[ByteSource], None]] = None) -> int:
    """Write a .dcbs (or, with ``magic``, .dcba/.dcbl) file atomically; return its size in bytes.

    ``check(source)``, when given, reads the complete file before it replaces ``path``; an
    exception it raises leaves ``path`` as it was (the temporary file is removed)."""
    head, frames_length = build_head(fs, sections, magic)
    with atomic_write(path) as fh:
        fh.write(head)
        fh.writelines(fs.frames)
        if check is not None:
            src = _written(fh, path, [head, *fs.frames])
            try:
                check(src)
            finally:
                src.close()
    return len(head) + frames_length
