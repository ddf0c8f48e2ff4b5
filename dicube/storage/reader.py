"""Random access to .dcbs files: the head in one read, any frame or slab in one more.

:class:`DcbsReader` opens version-2 files and the version-1 files of dicube 0.3.0
(see :mod:`dicube.storage.legacy_v1`) behind one interface. Reads go through a
:class:`~dicube.storage.sources.ByteSource` (``os.pread`` for a path, range requests for an
http(s):// or s3:// URL), so one reader may be shared between threads. A remote file's head
comes in one request; the frames of a selection in as few range requests as
:func:`~dicube.storage.ranges.coalesce` makes of them, issued in parallel (docs/remote.md).
"""
from __future__ import annotations

import os
import re
from typing import Optional, Sequence, Union

import numpy as np
import zstandard

from ..codecs import buffers, registry
from ..codecs.jph import crc32c
from ..exceptions import (
    CodecError,
    CodecUnavailableError,
    CorruptFileError,
    CubeFileNotFoundError,
    DataConsistencyError,
    FrameIndexError,
    InvalidCubeFileError,
    SourceNotFoundError,
)
from ..jsontext import parse_json
from .format import (
    ENC_ZSTD,
    FIRST_READ,
    FRAME_INDEX_DTYPE,
    SEC_INDEX,
    VERSION,
    Layout,
    Section,
    check_magic,
    parse_header,
    parse_table,
)
from . import limits
from .ranges import COALESCE_GAP, coalesce
from .sources import REMOTE_FIRST_READ, ByteSource, LocalFile, TransferStats, is_url, missing_local
from .sources import RemoteFile, Timeouts

#: "frame k" at the start of a codec error: k counts the frames decoded in that call.
_FRAME_NUMBER = re.compile(r"^frame (\d+)")

FrameSelection = Union[None, int, slice, range, Sequence[int], np.ndarray]


class DcbsReader:
    """An open .dcbs file.

    >>> with DcbsReader("ct.dcbs") as r:
    ...     meta_json = r.section_json(b"META")
    ...     slab = r.read_frames(slice(10, 20))

    ``path`` is a local path, an http(s):// or s3:// URL, or an open
    :class:`~dicube.storage.sources.ByteSource` (which the caller keeps and closes). For a
    URL: ``first_read`` bytes (default 256 KiB) come with the first request, ``timeouts``
    (connect, read) seconds, ``request_size`` the largest range request,
    ``storage_options`` S3 settings (``endpoint``, ``region``, ``access_key_id``...; default:
    the AWS_* environment); ``stats`` (a
    :class:`~dicube.storage.sources.TransferStats`, also ``reader.stats``) counts bytes and
    requests. Frames of a selection closer than ``coalesce_gap`` bytes (default 1 MiB) are
    read with one request when the source is not a local file.

    Attributes: ``path``, ``version`` (1 or 2), ``layout`` (header, sections, frame index),
    ``frame_count``, ``frame_shape``, ``dtype``, ``warnings`` (what a legacy file lost).
    Every malformed, truncated or corrupt file raises a :class:`~dicube.exceptions.DicomCubeError`.
    """

    def __init__(self, path: "os.PathLike[str] | str | ByteSource", *,
                 first_read: Optional[int] = None, stats: Optional[TransferStats] = None,
                 timeouts: Timeouts = None, coalesce_gap: int = COALESCE_GAP,
                 request_size: Optional[int] = None, storage_options: Optional[dict] = None):
        if coalesce_gap < 0:
            raise ValueError(f"coalesce_gap must be >= 0, got {coalesce_gap}")
        self.coalesce_gap = int(coalesce_gap)
        remote = is_url(path)
        if first_read is None:
            first_read = REMOTE_FIRST_READ if remote else FIRST_READ
        if isinstance(path, ByteSource):  # e.g. a RemoteFile: the caller owns it
            self._src: Optional[ByteSource] = path
            self._owns_src = False
        elif remote:
            kw = {} if request_size is None else {"request_size": request_size}
            if storage_options:
                kw["storage_options"] = storage_options
            try:
                self._src = RemoteFile(path, prefetch=first_read, stats=stats, timeouts=timeouts, **kw)
            except SourceNotFoundError as exc:
                raise CubeFileNotFoundError(exc.reason, exc.path) from None
            self._owns_src = True
        else:
            try:
                self._src = LocalFile(path, stats=stats)
            except FileNotFoundError:  # "no such file or folder", a broken link...
                exc = missing_local(path)
                kind = CubeFileNotFoundError if isinstance(exc, SourceNotFoundError) \
                    else InvalidCubeFileError
                raise kind(exc.reason, exc.path) from None
            except OSError as exc:
                raise InvalidCubeFileError(f"cannot open: {exc.strerror}", os.fspath(path)) from exc
            self._owns_src = True
        self.path = self._src.name
        self._stats = self._src.stats
        try:
            self.size = self._src.size
            head = self.pread(min(first_read, self.size), 0)
            self.version = check_magic(head, self.path)
            self.warnings: list[str] = []
            if self.version == VERSION:
                self.layout = self._parse_v2(head)
            else:
                from .legacy_v1 import parse_v1

                self.layout, self.warnings = parse_v1(self, head)
            if self.layout.header.frame_count == 0:
                raise InvalidCubeFileError("the file holds no frames", self.path)
        except BaseException:
            self.close()
            raise

    # -- low level -------------------------------------------------------------------
    def pread(self, length: int, offset: int) -> bytes:
        """Exactly ``length`` bytes at ``offset``; a short file raises InvalidCubeFileError."""
        if self._src is None:
            raise InvalidCubeFileError("reader is closed", self.path)
        if length < 0 or offset < 0 or offset + length > self.size:
            raise InvalidCubeFileError(
                f"truncated: needs bytes {offset}..{offset + length} of a {self.size}-byte file",
                self.path)
        return self._src.pread(length, offset)

    def preadinto(self, buf, offset: int) -> None:
        """Fill the writable buffer ``buf`` from ``offset``."""
        mv = memoryview(buf).cast("B")
        if self._src is None:
            raise InvalidCubeFileError("reader is closed", self.path)
        if offset + len(mv) > self.size:
            raise InvalidCubeFileError(
                f"truncated: needs bytes {offset}..{offset + len(mv)} of a {self.size}-byte file",
                self.path)
        self._src.preadinto(mv, offset)

    @property
    def source(self) -> "ByteSource":
        """Where the bytes come from (its ``stats`` count what was read)."""
        return self._src

    @property
    def stats(self) -> TransferStats:
        """Bytes and requests read so far (shared with the source)."""
        return self._stats

    def close(self) -> None:
        """Close the file (idempotent); a source passed in by the caller stays open."""
        src, self._src = getattr(self, "_src", None), None
        if src is not None and getattr(self, "_owns_src", False):
            src.close()

    def __enter__(self) -> "DcbsReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    # -- head ------------------------------------------------------------------------
    def _parse_v2(self, head: bytes) -> Layout:
        header = parse_header(head, crc32c, self.path)
        if self.size != header.file_length:
            what = "truncated" if self.size < header.file_length else "has trailing bytes"
            raise InvalidCubeFileError(
                f"file {what}: {self.size} bytes, header says {header.file_length}", self.path)
        if header.head_length > len(head):
            head += self.pread(header.head_length - len(head), len(head))
        self._head = head
        layout = Layout(VERSION, header, parse_table(head, header, crc32c, self.path))
        for sec in layout.sections.values():  # the whole head is verified once, up front
            if crc32c(memoryview(head)[sec.offset:sec.offset + sec.length]) != sec.crc:
                raise CorruptFileError(
                    f"checksum mismatch in section {sec.kind.decode('latin-1')}", self.path)
        self.layout = layout
        sec = layout.sections.get(SEC_INDEX)
        if sec is None or sec.raw_length != header.frame_count * FRAME_INDEX_DTYPE.itemsize:
            raise InvalidCubeFileError("frame index does not match the frame count", self.path)
        raw = self.section_bytes(SEC_INDEX)
        if len(raw) != sec.raw_length:
            raise InvalidCubeFileError("frame index does not match the frame count", self.path)
        layout.index = _checked_index(np.frombuffer(raw, FRAME_INDEX_DTYPE), header.frames_length,
                                      self.path)
        return layout

    def _head_bytes(self, offset: int, length: int) -> bytes:
        head = getattr(self, "_head", None)
        if head is not None and offset + length <= len(head):
            return head[offset:offset + length]
        return self.pread(length, offset)

    @property
    def sections(self) -> dict:
        return self.layout.sections

    def section_bytes(self, kind: bytes) -> Optional[bytes]:
        """The decoded bytes of a metadata section (checksum verified), or None if absent."""
        sec: Optional[Section] = self.layout.sections.get(kind)
        if sec is None:
            return None
        data = self._head_bytes(sec.offset, sec.length)
        if sec.crc is not None and crc32c(data) != sec.crc:
            raise CorruptFileError(f"checksum mismatch in section {kind.decode('latin-1')}", self.path)
        if sec.encoding != ENC_ZSTD:
            return data
        name = kind.decode("latin-1")
        try:
            if self.version != VERSION:  # version 1 declares no size: a capped stream
                cap = limits.section_cap(len(data))
                out = _zstd_capped(data, cap)
                if out is None:
                    raise InvalidCubeFileError(
                        f"section {name} decodes to more than {cap} bytes, the limit for "
                        f"{len(data)} stored (see dicube.storage.limits)", self.path)
                return out
            size = zstandard.get_frame_parameters(data).content_size
            if size != zstandard.CONTENTSIZE_UNKNOWN and size != sec.raw_length:
                raise zstandard.ZstdError(f"zstd frame declares {size} bytes, the section table "
                                          f"{sec.raw_length}")
            if sec.raw_length == 0:  # decompress() would take 0 as "no limit"
                out = _zstd_capped(data, 0)
            else:
                out = zstandard.ZstdDecompressor().decompress(
                    data, max_output_size=sec.raw_length, allow_extra_data=False)
            if out is None or len(out) != sec.raw_length:
                raise zstandard.ZstdError(f"decoded size differs from the declared {sec.raw_length}")
            return out
        except zstandard.ZstdError as exc:
            raise CorruptFileError(f"section {name} does not decompress: {exc}", self.path) from exc

    def section_json(self, kind: bytes):
        """A JSON section parsed, or None if absent."""
        data = self.section_bytes(kind)
        if data is None or len(data) == 0:
            return None
        doc = parse_json(data, f"section {kind.decode('latin-1')}", self.path)
        if self.version != VERSION:
            from .legacy_v1 import check_section

            check_section(kind, doc, self)
        return doc

    # -- frames ----------------------------------------------------------------------
    @property
    def frame_count(self) -> int:
        return self.layout.header.frame_count

    @property
    def frame_shape(self) -> tuple:
        return self.layout.header.frame_shape

    @property
    def dtype(self) -> np.dtype:
        return self.layout.header.dtype.newbyteorder("=")

    @property
    def frame_codec(self) -> int:
        return self.layout.header.frame_codec

    def select(self, frames: FrameSelection) -> np.ndarray:
        """Frame numbers (int64 array) for a selection: None, int, slice, range or sequence
        of integers; anything else or a frame out of range raises FrameIndexError (an
        IndexError)."""
        n = self.frame_count
        if frames is None:
            return np.arange(n, dtype=np.int64)
        if isinstance(frames, slice):
            return np.arange(n, dtype=np.int64)[frames]
        if isinstance(frames, (int, np.integer)):
            frames = [int(frames)]
        sel = np.asarray(list(frames) if isinstance(frames, range) else frames)
        if sel.dtype == bool:
            raise FrameIndexError("boolean frame selections are not supported", self.path)
        if sel.size and sel.dtype.kind not in "iu":
            raise FrameIndexError(f"frame numbers must be integers, got {sel.dtype}", self.path)
        sel = sel.astype(np.int64, copy=False).reshape(-1)
        sel = np.where(sel < 0, sel + n, sel)
        if len(sel) and (sel.min() < 0 or sel.max() >= n):
            raise FrameIndexError(f"frame index out of range for {n} frames", self.path)
        return sel

    def _has_crc(self) -> bool:
        return self.version == VERSION

    def _check(self, buf, offsets, lengths, crcs, sel) -> None:
        mv = memoryview(buf)
        for k, (o, ln, c) in enumerate(zip(offsets.tolist(), lengths.tolist(), crcs.tolist())):
            if crc32c(mv[o:o + ln]) != c:
                raise CorruptFileError(f"checksum mismatch in frame {int(sel[k])}", self.path)

    def codestream(self, i: int) -> bytes:
        """The stored bytes of frame ``i`` (checksum verified); v1 empty frames give b''."""
        (i,) = self.select(i)
        rec = self.layout.index[i]
        length = int(rec["length"])
        if length == 0:
            return b""
        data = self.pread(length, self.layout.header.frames_offset + int(rec["offset"]))
        if self._has_crc() and crc32c(data) != int(rec["crc"]):
            raise CorruptFileError(f"checksum mismatch in frame {i}", self.path)
        return data

    def _read_region(self, rec: np.ndarray):
        """Read the bytes of the frames ``rec`` with as few reads as sensible.

        Returns (buffer, offsets into it). From a local file, a selection whose span is
        mostly needed is one contiguous read, a sparse one is read frame by frame into a
        packed buffer. From any other source (a remote object), frames less than
        ``coalesce_gap`` bytes apart share a run, and the runs are fetched at once.
        """
        base = self.layout.header.frames_offset
        offs = rec["offset"].astype(np.int64)
        lens = rec["length"].astype(np.int64)
        if not isinstance(self._src, LocalFile):
            runs, where = coalesce(offs, lens, self.coalesce_gap)
            if runs and base + runs[-1][1] > self.size:
                raise InvalidCubeFileError(
                    f"truncated: needs bytes up to {base + runs[-1][1]} of a {self.size}-byte file",
                    self.path)
            src = self._src
            if src is None:
                raise InvalidCubeFileError("reader is closed", self.path)
            buf = np.empty(sum(e - s for s, e in runs), np.uint8)
            src.fetch([(base + s, base + e) for s, e in runs], buf)
            return buf, where
        need = int(lens.sum())
        start, end = int(offs.min()), int((offs + lens).max())
        if end - start <= 2 * need + (1 << 20):
            buf = np.empty(end - start, np.uint8)
            self.preadinto(buf, base + start)
            return buf, offs - start
        buf = np.empty(need, np.uint8)
        packed = np.zeros(len(rec), np.int64)
        packed[1:] = np.cumsum(lens)[:-1]
        for o, ln, p in zip(offs.tolist(), lens.tolist(), packed.tolist()):
            if ln:
                self.preadinto(buf[p:p + ln], base + o)
        return buf, packed

    def read_frames(self, frames: FrameSelection = None, *, out: Optional[np.ndarray] = None,
                    num_threads: Optional[int] = None, verify: bool = True) -> np.ndarray:
        """Decode the selected frames into ``out`` (or a new array) of shape (n, rows, cols[, 3]).

        ``verify`` checks each frame's CRC-32C (version 2), or else the checksum embedded
        in an HTJ2K codestream while decoding (version-1 files have neither).
        """
        sel = self.select(frames)
        shape = (len(sel),) + self.frame_shape
        nbytes = len(sel) * int(np.prod(self.frame_shape)) * self.dtype.itemsize
        if len(sel):
            limits.check_decoded(nbytes, int(self.layout.index["length"][sel].sum()), self.path)
        if out is None:
            try:
                out = buffers.empty(shape, self.dtype)
            except MemoryError:
                raise limits.out_of_memory(nbytes, f"{len(sel)} frames", self.path) from None
        elif (out.shape != shape or out.dtype != self.dtype or not out.flags.c_contiguous
              or not out.flags.writeable):
            raise DataConsistencyError(
                f"out must be a writeable C-contiguous {self.dtype} array of shape {shape}, "
                f"got {out.dtype} {out.shape}", self.path)
        if len(sel) == 0:
            return out
        rec = self.layout.index[sel]
        empty = rec["length"] == 0
        if empty.any():  # only v1 files have empty frames
            out[empty] = 0
            keep = np.flatnonzero(~empty)
            if len(keep):
                out[keep] = self.read_frames(sel[keep], num_threads=num_threads, verify=verify)
            return out
        codec = registry.get(self.frame_codec)
        if codec is None:  # parse_header rejects unknown codecs; keep the guard
            raise InvalidCubeFileError(f"unknown frame codec {self.frame_codec}", self.path)
        try:
            bind = getattr(codec, "bind", None)  # per-file parameters (.dcbl: the LOSS section)
            self._decode(bind(self) if bind else codec, rec, sel, out, num_threads, verify)
        except CorruptFileError as exc:
            frame = getattr(exc, "frame", None)
            if frame is None:
                raise
            raise CorruptFileError(f"checksum mismatch in frame {int(sel[frame])}", self.path) from None
        except InvalidCubeFileError as exc:
            raise InvalidCubeFileError(exc.reason, self.path) from None
        except CodecError as exc:  # the codec counts frames within the selection
            reason = _FRAME_NUMBER.sub(
                lambda m: f"frame {int(sel[int(m[1])])}" if int(m[1]) < len(sel) else m[0],
                exc.reason, count=1)
            kind = CodecUnavailableError if isinstance(exc, CodecUnavailableError) else CodecError
            raise kind(f"cannot decode frames: {reason}", self.path) from exc
        except MemoryError:
            raise limits.out_of_memory(nbytes, f"decoding {len(sel)} frames", self.path) from None
        return out

    def _decode(self, codec, rec: np.ndarray, sel, out: np.ndarray, num_threads, verify: bool) -> None:
        """Decode frames ``rec`` of the index with ``codec`` (see :mod:`dicube.codecs.registry`),
        their CRC-32C checked first (by the codec's worker threads when it checks them).

        Local files are read by the codec itself when it can (HTJ2K, zstd planes: no buffer
        of the selection); an HTJ2K codestream outside the profile our writer produces makes
        it fall back to one buffer, whose out-of-profile frames are decoded isolated in a
        child process.
        """
        src = self._src  # kept: a close() by another thread must not pull it away mid-read
        if src is None:
            raise InvalidCubeFileError("reader is closed", self.path)
        crcs = rec["crc"] if verify and self._has_crc() else None
        if crcs is not None and codec.decode_file is not None and isinstance(src, LocalFile):
            if codec.decode_file(src.fileno(), self.layout.header.frames_offset, rec["offset"],
                                 rec["length"], out, crcs=crcs, num_threads=num_threads):
                src.stats.add(int(rec["length"].sum()), len(rec))
                return
        buf, offs = self._read_region(rec)
        lens = rec["length"]
        if crcs is not None and not codec.CHECKS_CRCS:
            self._check(buf, offs, lens, crcs, sel)
            crcs = None
        codec.decode(buf, offs, lens, out, crcs=crcs, num_threads=num_threads, verify=verify)


def _zstd_capped(data, cap: int) -> Optional[bytes]:
    """The first zstd frame of ``data`` decoded, or None when it holds more than ``cap`` bytes
    (never more than ``cap`` + 1 MiB held)."""
    chunks, total = [], 0
    with zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=False) as r:
        while True:
            chunk = r.read(min(1 << 20, cap + 1 - total))
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > cap:
                return None
            chunks.append(chunk)


def _checked_index(index: np.ndarray, frames_length: int, path) -> np.ndarray:
    """A version-2 frame index, refused unless its frames are non-empty, in order and
    contiguous, exactly filling the frames region (so no two entries share a byte)."""
    offs, lens = index["offset"], index["length"]
    fl = frames_length
    if len(index) and (int(offs.max()) > fl or int(lens.max()) > fl or (lens == 0).any()):
        raise InvalidCubeFileError("frame index points outside the frames region", path)
    ends = offs + lens  # no overflow: both terms are at most frames_length
    if len(index) and (int(offs[0]) != 0 or (offs[1:] != ends[:-1]).any() or int(ends[-1]) != fl):
        bad = np.flatnonzero(offs[1:] != ends[:-1])
        where = f"frame {int(bad[0]) + 1}" if len(bad) else "the first or last frame"
        raise InvalidCubeFileError(
            f"frame index entries overlap or are out of order ({where}): frames must be "
            "stored contiguously in index order", path)
    return index
