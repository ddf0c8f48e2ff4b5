"""Serve single frames of a .dcbs/.dcba file as DICOM Part 10 instances, like a PACS backend.

:class:`DcbStreamingReader` turns frame ``i`` into the bytes of the source file of that
slice: the same data set element for element, with the stored HTJ2K codestream
encapsulated as-is (no decoding, no re-encoding), or Explicit/Implicit VR Little Endian
with the decoded stored values for systems without an HTJ2K decoder. JPEG XL frames
(.dcba) are served as HTJ2K Lossless re-encoded on the fly by default (pydicom and GDCM
cannot decode JPEG XL), and as JPEG XL Lossless (the stored codestream) only when asked.
Everything but the pixel data is encoded once per frame and syntax and cached, so a
served stored codestream costs one read and one join of bytes.
"""
from __future__ import annotations

import io
import operator
import os
import struct
import threading
import warnings
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

import numpy as np

from ..codecs import bounded, htj2k, jxl, registry
from ..codecs.jph import HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, encode_batch, read_header
from .export import (
    STORED_UNIT_TAGS,
    first_value,
    match_codestream,
    match_jxl,
    native_pixel_bytes,
    slice_header,
    syntax_name,
)
from ..core.io import _warn, meta_from_reader, pixel_header_from_reader
from .photometric import CONVERTED, output_photometric, set_pixel_module, to_output_colour
from .part10 import (
    EXPLICIT_LE,
    IMPLICIT_LE,
    SEQ_DELIM,
    PixelElement,
    basic_offset_table,
    dicube_file_meta,
    encode_part10_parts,
    fragment_pieces,
    native_pixel_head,
    pixel_element_bytes,
)
from ..exceptions import (
    ClosedReaderError,
    CodecError,
    CodecUnavailableError,
    ColourConversionWarning,
    DicomCubeError,
    DataConsistencyError,
    FrameIndexError,
    MetaDataError,
    MultiFrameInstanceError,
    UnsupportedTransferSyntaxError,
)
from .streaming_layout import frames_per_instance
from ..storage.format import SEC_INFO
from ..storage.reader import DcbsReader

__all__ = ["DcbStreamingReader"]

PIXEL_DATA = 0x7FE00010
NATIVE = (EXPLICIT_LE, IMPLICIT_LE)
#: JPEG XL Lossless (PS3.5 A.4.13): .dcba frames as stored, on request only.
JXL_LOSSLESS = jxl.TRANSFER_SYNTAX
# How a frame is served: its stored codestream encapsulated, decoded to native pixel
# data, or decoded and re-encoded as HTJ2K (JPEG XL frames).
_STORED, _NATIVE, _REENCODE = "stored", "native", "htj2k"
#: Pixel-value attributes in stored units (US/SS), converted for version-1 files.
_STORED_UNIT_TAGS = STORED_UNIT_TAGS
#: Codestream facts every frame of a multi-frame instance shares with its first.
_SAME = ("rows", "columns", "components", "bits_stored", "signed", "color_transform",
         "reversible")
#: Offset tables of the source's encapsulated fragments: never true of the frames served.
_SOURCE_OFFSETS = ("7FE00001", "7FE00002")
#: Largest offset a Basic Offset Table holds; past it, an Extended Offset Table.
_BOT_LIMIT = 0xFFFFFFFF


@dataclass(frozen=True)
class _Facts:
    """What the pixel module of a re-encoded HTJ2K frame depends on (a CodestreamInfo subset:
    dicube's encoder, reversible, no colour transform)."""

    bits_stored: int
    signed: bool
    components: int
    transfer_syntax: str
    color_transform: bool = False
    reversible: bool = True


@dataclass(frozen=True)
class _Prefix:
    """Cached per-frame output: the bytes before and after the pixel data element."""

    transfer_syntax: str
    before: bytes
    after: bytes
    pixel_tag: int
    pixel_vr: str
    image_pixel: Mapping[str, dict]  # group 0028 as emitted: how native pixel bytes are laid out
    source_pixel: Mapping[str, dict]  # the source's syntax and Photometric Interpretation


class DcbStreamingReader:
    """Per-frame DICOM Part 10 instances from a .dcbs file (version 2, or 1 of dicube 0.3.0).

    >>> with DcbStreamingReader("ct.dcbs") as stream:
    ...     data = stream.get_dicom_for_frame(0)                          # HTJ2K
    ...     plain = stream.get_dicom_for_frame(0, force_uncompressed=True)  # native

    File meta information holds the source's SOP Class and Instance UIDs and dicube's
    own Implementation Class UID and version name. One reader may be shared between
    threads; ``close()`` waits for calls in progress.
    """

    def __init__(self, path: "os.PathLike[str] | str", **source_options):
        # path: also an http(s):// or s3:// URL or a ByteSource; options as for DcbsReader
        self._reader = DcbsReader(path, **source_options)
        self.path = self._reader.path
        self._codec = registry.get(self._reader.frame_codec)  # known: the header was checked
        try:
            meta = meta_from_reader(self._reader)
            n = self._reader.frame_count
            self._per = frames_per_instance(meta, n, self.path)
            if self._per > 1 and self._reader.version == 1:
                raise MetaDataError(f"{len(meta)} source file(s) for {n} frames: dicube 0.3.0 "
                                    "files hold one frame per source file", self.path)
            self._meta = meta
            self._pixel_header = (pixel_header_from_reader(self._reader)
                                  if self._reader.version == 1 else None)
            _warn(self._reader)
        except BaseException:
            self._reader.close()
            raise
        self._cache: dict = {}          # (instance, transfer syntax) -> _Prefix; values immutable
        self._syntaxes = None           # available_transfer_syntaxes(), found once
        self._bits = None               # (series Bits Stored or 0,) for HTJ2K re-encoding
        self._plan = None               # (HTJ2K precision recorded by a .dcba,) or ()
        self._build_lock = threading.Lock()
        self._encoded: dict = {}  # element encodings shared by the frames' headers
        self._state = threading.Condition()
        self._busy = 0
        self._closed = False
        self._warned = False  # a colour conversion was reported

    # ------------------------------------------------------------------ basics
    @property
    def frame_count(self) -> int:
        """Number of frames of the file (of all its instances)."""
        return self._reader.frame_count

    @property
    def instance_count(self) -> int:
        """Number of DICOM instances (source files): ``frame_count`` for a series of
        single-frame instances, 1 for one multi-frame instance."""
        return len(self._meta)

    @property
    def frames_per_instance(self) -> int:
        """Frames of each instance (its Number of Frames; 1 for single-frame instances)."""
        return self._per

    def frames_of_instance(self, i: int) -> range:
        """The frame numbers (0-based, in the file) of instance ``i``; FrameIndexError
        when there is no instance ``i``."""
        i = self._index(i, self.instance_count, "instance")
        return range(i * self._per, (i + 1) * self._per)

    def instance_of_frame(self, k: int) -> int:
        """The instance holding frame ``k`` of the file."""
        return self._index(k, self.frame_count, "frame") // self._per

    def __len__(self) -> int:
        return self._reader.frame_count

    @property
    def version(self) -> int:
        """.dcbs layout version of the file (1 = dicube 0.3.0)."""
        return self._reader.version

    @property
    def meta(self):
        """The series' DicomMeta (source metadata, not adjusted for output)."""
        return self._meta

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def stats(self):
        """Bytes and requests read from the file so far (a TransferStats)."""
        return self._reader.stats

    def close(self) -> None:
        """Close the file once calls in progress on other threads have finished (idempotent)."""
        with self._state:
            self._closed = True
            while self._busy:
                self._state.wait()
        self._reader.close()

    def __enter__(self) -> "DcbStreamingReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - best effort
        reader = getattr(self, "_reader", None)
        if reader is not None:
            reader.close()

    def _enter(self, i, what: str = "frame") -> int:
        with self._state:
            if self._closed:
                raise ClosedReaderError("the streaming reader is closed", self.path)
            self._busy += 1
        try:
            if what == "frame":
                return self._frame_number(i)
            return self._index(i, self.instance_count, what)
        except BaseException:
            self._leave()
            raise

    def _leave(self) -> None:
        with self._state:
            self._busy -= 1
            if not self._busy:
                self._state.notify_all()

    def _frame_number(self, i) -> int:
        return self._index(i, self.frame_count, "frame")

    def _index(self, i, n: int, what: str) -> int:
        try:
            k = operator.index(i)
        except TypeError:
            raise TypeError(f"{what} numbers are integers, not {type(i).__name__}") from None
        if not -n <= k < n:
            raise FrameIndexError(f"{what} {k} out of range ({n} {what}s)", self.path)
        return k % n

    # ------------------------------------------------------------------ public API
    def available_transfer_syntaxes(self) -> tuple:
        """The transfer syntax UIDs frames of this file can be served in; the first is
        the one served by default.

        HTJ2K .dcbs: the stored codestreams' syntax (.202 or .201; .201 too for .202),
        Explicit and Implicit VR Little Endian. Other .dcbs codecs: the two native ones.
        .dcba: HTJ2K Lossless re-encoded on the fly (the syntax this build's encoder meets,
        as a .dcbs would have it), JPEG XL Lossless 1.2.840.10008.1.2.4.110 (the stored
        codestreams; for signed samples only where a modality rescale can describe the
        stored offset, see :func:`dicube.dicom.export.match_jxl`), then the native ones.
        .dcbl: the rebuilt values, HTJ2K Lossless re-encoded, then the native ones.
        """
        syntaxes = self._syntaxes
        if syntaxes is None:
            k = self._enter(0)
            try:
                syntaxes = self._syntaxes = self._find_syntaxes()
            finally:
                self._leave()
        return syntaxes

    def _find_syntaxes(self) -> tuple:
        codec_id = self._reader.frame_codec
        if self._codec.header is not None:
            try:
                first = self._codec.transfer_syntax(self._codestream_info(0, self._codestream(0)))
            except DicomCubeError:  # a damaged frame 0 must not make the others unservable:
                first = HTJ2K_LOSSLESS if self._codec.CODEC_ID == htj2k.CODEC_ID else None
            stored = (first,) if first else ()
            if first == HTJ2K_LOSSLESS_RPCL:
                stored += (HTJ2K_LOSSLESS,)
            return stored + NATIVE
        if codec_id not in (jxl.CODEC_ID, bounded.CODEC_ID):
            return NATIVE
        probe = np.zeros((1, 8, 8) + self._reader.frame_shape[2:], self._reader.dtype)
        ts = read_header(htj2k.encode(probe, None, 1)[0][0]).transfer_syntax
        reencoded = (ts,) + ((HTJ2K_LOSSLESS,) if ts == HTJ2K_LOSSLESS_RPCL else ())
        if codec_id == bounded.CODEC_ID:  # .dcbl: the rebuilt values, never the stored q frames
            return reencoded + NATIVE
        try:
            self._prefix(0, JXL_LOSSLESS, None)
            stored = (JXL_LOSSLESS,)
        except UnsupportedTransferSyntaxError:
            stored = ()
        try:
            jxl.backend()
        except CodecUnavailableError as exc:  # no decoder: only the stored frames can go out
            if stored:
                return stored
            raise CodecUnavailableError(exc.reason, self.path) from None
        return reencoded + stored + NATIVE

    def _mode(self, ts: str) -> str:
        """How frames are served in ``ts``; UnsupportedTransferSyntaxError when they cannot be."""
        if ts not in self.available_transfer_syntaxes():
            offered = ", ".join(syntax_name(t) for t in self._syntaxes)
            raise UnsupportedTransferSyntaxError(
                f"frames of this file cannot be served as {syntax_name(ts)} (available: {offered})",
                self.path)
        if ts in NATIVE:
            return _NATIVE
        if self._codec.header is None and ts != JXL_LOSSLESS:
            return _REENCODE
        return _STORED

    def _syntax(self, force_uncompressed: bool, transfer_syntax) -> str:
        if transfer_syntax is None:
            return EXPLICIT_LE if force_uncompressed else self.available_transfer_syntaxes()[0]
        ts = str(transfer_syntax).rstrip("\0 ")
        if force_uncompressed and ts not in NATIVE:
            raise ValueError(f"force_uncompressed=True contradicts transfer_syntax={ts!r}")
        return ts

    def get_dicom_for_frame(self, i: int, force_uncompressed: bool = False,
                            transfer_syntax: "str | None" = None) -> bytes:
        """The DICOM Part 10 bytes of frame ``i``.

        By default (:meth:`available_transfer_syntaxes` ``[0]``) the data set of the source
        file with the stored HTJ2K codestream encapsulated (Transfer Syntax
        1.2.840.10008.1.2.4.201, or .202 when the codestream meets that syntax); for a
        .dcba, the frame decoded and re-encoded as HTJ2K Lossless. ``force_uncompressed``
        gives Explicit VR Little Endian with the stored values (one frame is decoded);
        ``transfer_syntax`` names any syntax of :meth:`available_transfer_syntaxes`.
        Raises UnsupportedTransferSyntaxError (a syntax not available), FrameIndexError,
        ClosedReaderError, CorruptFileError (checksum mismatch) or CodecError.

        Frame ``i`` is instance ``i`` only when each instance is one frame; a file of
        multi-frame instances (:attr:`frames_per_instance` > 1) raises
        MultiFrameInstanceError: ask :meth:`get_dicom_for_instance` for the instance
        (:meth:`instance_of_frame`) holding the frame, or :meth:`get_pixel_data` for it.
        """
        k = self._enter(i)
        try:
            if self._per > 1:
                raise MultiFrameInstanceError(
                    f"frame {k} is frame {k % self._per + 1} of instance {k // self._per} "
                    f"({self._per} frames): use get_dicom_for_instance({k // self._per})",
                    self.path)
            ts = self._syntax(force_uncompressed, transfer_syntax)
            return b"".join(self.get_dicom_pieces(k, ts))
        finally:
            self._leave()

    def get_dicom_for_instance(self, i: int, force_uncompressed: bool = False,
                               transfer_syntax: "str | None" = None) -> bytes:
        """The DICOM Part 10 bytes of instance ``i`` (source file ``i``) with all its frames
        (:meth:`frames_of_instance`): the source's data set, Number of Frames included,
        with the frames concatenated (native syntaxes) or encapsulated one fragment per
        frame behind a Basic Offset Table (an Extended Offset Table past 4 GiB).
        Arguments and errors as :meth:`get_dicom_for_frame`, which it equals for
        single-frame instances."""
        k = self._enter(i, "instance")
        try:
            ts = self._syntax(force_uncompressed, transfer_syntax)
            return b"".join(self.get_dicom_pieces(k, ts))
        finally:
            self._leave()

    def get_dicom_pieces(self, i: int, transfer_syntax: "str | None" = None,
                         pixel_data=None) -> list:
        """:meth:`get_dicom_for_instance` of instance ``i`` as a list of bytes whose join is
        the instance, each frame's Pixel Data value (codestream or native pixels) one piece
        of its own, not copied: for servers sending many. ``pixel_data``: what
        :meth:`get_pixel_data` returned for the instance's frames in this syntax (kept by
        the caller; one bytes for a single-frame instance, else a sequence in frame
        order), so they are not read, decoded or coded again."""
        k = self._enter(i, "instance")
        try:
            ts = self._syntax(False, transfer_syntax)
            mode = self._mode(ts)
            frames = range(k * self._per, (k + 1) * self._per)
            if pixel_data is None:
                datas = [self._pixel_data(f, ts, mode) for f in frames]
            elif isinstance(pixel_data, (bytes, bytearray, memoryview)):
                datas = [pixel_data]
            else:
                datas = list(pixel_data)
            if len(datas) != len(frames):
                raise ValueError(f"instance {k} has {len(frames)} frame(s), "
                                 f"{len(datas)} pixel data value(s) given")
            prefix = self._cache.get((k, ts))
            if prefix is None:
                info = None
                if mode == _STORED and self._codec.header is not None:
                    info = self._codestream_info(frames[0], datas[0])
                elif mode == _REENCODE:
                    info = read_header(datas[0])
                prefix = self._prefix(k, ts, info)
            bits = first_value(prefix.image_pixel, "00280101") if mode == _REENCODE else None
            if bits is not None:
                for f, data in zip(frames, datas):
                    got = read_header(data).bits_stored
                    if got != bits:  # never by our encoder
                        raise CodecError(f"frame {f}: HTJ2K precision {got} differs from Bits "
                                         f"Stored {bits}", self.path)
            if len(datas) > 1:
                self._check_frames(frames, datas, mode, prefix)
        finally:
            self._leave()
        if mode == _NATIVE:
            head = native_pixel_head(prefix.pixel_tag, prefix.pixel_vr,
                                     sum(len(d) for d in datas), ts)
            return [prefix.before + head, *datas, prefix.after]
        return self._encapsulated_pieces(prefix, ts, datas)

    def _check_frames(self, frames, datas, mode: str, prefix: "_Prefix") -> None:
        """Every frame of a multi-frame instance fits the one pixel module of its header:
        native frames of one size, codestreams with the first one's geometry and syntax."""
        if mode == _NATIVE:
            sizes = {len(d) for d in datas}
            if len(sizes) > 1:
                raise DataConsistencyError(f"frames {frames[0]}-{frames[-1]}: native frames of "
                                           f"different sizes {sorted(sizes)}", self.path)
            return
        if mode == _STORED and self._codec.header is None:  # JPEG XL frames: no header facts
            return
        facts = None
        for f, data in zip(frames, datas):
            info = self._codestream_info(f, data) if mode == _STORED else read_header(data)
            got = tuple(getattr(info, a, None) for a in _SAME) + (
                self._codec.transfer_syntax(info) if mode == _STORED else info.transfer_syntax,)
            if facts is None:
                facts = got
            elif got != facts:
                what = ", ".join(f"{a} {x} (frame {frames[0]}: {y})"
                                 for a, x, y in zip(_SAME + ("syntax",), got, facts) if x != y)
                raise CodecError(f"frame {f}: its codestream differs from the first frame of "
                                 f"its instance: {what}", self.path)

    @staticmethod
    def _encapsulated_pieces(prefix: "_Prefix", ts: str, datas: list) -> list:
        """The instance with ``datas`` one fragment each, behind a Basic Offset Table (past
        4 GiB, PS3.5 A.4: an empty one and an Extended Offset Table)."""
        pieces, offsets = fragment_pieces(datas)
        before = prefix.before
        if sum(map(len, pieces)) <= _BOT_LIMIT:
            bot = basic_offset_table(offsets)
        else:
            bot = basic_offset_table([])
            lengths = [len(d) + len(d) % 2 for d in datas]
            eot = [struct.pack("<HH2s2xI", 0x7FE0, tag, b"OV", 8 * len(values))
                   + struct.pack(f"<{len(values)}Q", *values)
                   for tag, values in ((0x0001, offsets), (0x0002, lengths))]
            before = b"".join([before, *eot])
        opening = pixel_element_bytes(PixelElement(prefix.pixel_tag, "OB", b"", True), ts)
        return [b"".join([before, opening[:-len(SEQ_DELIM)], bot, pieces[0]]), *pieces[1:-1],
                b"".join([pieces[-1], SEQ_DELIM, prefix.after])]

    def get_pixel_data(self, i: int, transfer_syntax: "str | None" = None) -> bytes:
        """The Pixel Data value of frame ``i`` of the file in ``transfer_syntax``, as the
        instance holding it carries it: the frame's native pixel bytes, or its one
        codestream (not encapsulated, no padding) of an encapsulated syntax; the frames
        and bulk data of WADO-RS."""
        k = self._enter(i)
        try:
            ts = self._syntax(False, transfer_syntax)
            return self._pixel_data(k, ts, self._mode(ts))
        finally:
            self._leave()

    def _pixel_data(self, k: int, ts: str, mode: str) -> bytes:
        if mode == _STORED:
            return self._codestream(k)
        if mode == _REENCODE:
            return self._htj2k(k)
        i = k // self._per
        prefix = self._cache.get((i, ts)) or self._prefix(i, ts, None)
        return self._native_data(k, prefix)

    def get_dataset(self, i: int, force_uncompressed: bool = False,
                    transfer_syntax: "str | None" = None):
        """The pydicom Dataset (with ``file_meta``, without pixel data) of the instance
        :meth:`get_dicom_for_instance` returns for instance ``i`` with the same arguments."""
        import pydicom

        k = self._enter(i, "instance")
        try:
            prefix = self._prefix_of(k, self._syntax(force_uncompressed, transfer_syntax))
        finally:
            self._leave()
        return pydicom.dcmread(io.BytesIO(prefix.before + prefix.after))

    get_frame_dataset = get_dataset

    def get_json(self, i: int, transfer_syntax: "str | None" = None) -> dict:
        """The data set of the instance :meth:`get_dicom_for_instance` returns for instance
        ``i`` as DICOM JSON (the lossless form of :mod:`dicube.dicom.dicom_json`), without
        file meta information and pixel data; a new dict, tags ascending."""
        k = self._enter(i, "instance")
        try:
            prefix = self._prefix_of(k, self._syntax(False, transfer_syntax))
            header = slice_header(self._meta, k)[0]
        finally:
            self._leave()
        out = {key: v for key, v in header.items()
               if not key.startswith(("0002", "0028")) and int(key, 16) != prefix.pixel_tag}
        out.update(prefix.image_pixel)
        return dict(sorted(out.items()))

    def _prefix_of(self, k: int, ts: str) -> "_Prefix":
        mode = self._mode(ts)
        prefix = self._cache.get((k, ts))
        if prefix is None:
            f = k * self._per  # the instance's first frame
            if mode == _STORED and self._codec.header is not None:
                prefix = self._prefix(k, ts, self._codestream_info(f, self._codestream(f)))
            elif mode == _REENCODE:
                prefix = self._prefix(k, ts, self._reencoded_info(f))
            else:
                prefix = self._prefix(k, ts, None)
        return prefix

    # ------------------------------------------------------------------ frames
    def _codestream(self, k: int) -> bytes:
        data = self._reader.codestream(k)
        if not data:  # an empty frame of a version-1 file reads as zeros
            zeros = np.zeros((1,) + self._reader.frame_shape, self._reader.dtype)
            data = encode_batch(zeros, bits_stored=self._reader.layout.header.bits_stored or None)[0]
        return data

    def _codestream_info(self, k: int, data: bytes):
        try:
            return self._codec.header(data)
        except CodecError as exc:
            raise CodecError(f"frame {k}: {exc.reason}", self.path) from exc

    def _htj2k(self, k: int) -> bytes:
        """Frame ``k`` decoded and coded as HTJ2K (precision: the one the .dcba recorded for
        the HTJ2K frames of its .dcbs, else the series' Bits Stored when the values fit it,
        as ``save`` codes a .dcbs)."""
        frames = self._reader.read_frames([k], num_threads=1)
        bits = self._recorded_bits()
        if bits is not None:
            try:
                return encode_batch(frames, bits_stored=bits, num_threads=1)[0]
            except CodecError as exc:
                raise CodecError(f"frame {k}: its values do not fit the {bits} bits the file "
                                 f"records for HTJ2K ({exc.reason})", self.path) from exc
        done = htj2k.encode(frames, self._bits_stored(), 1)
        if done is None:  # cannot happen for the 8/16-bit samples JPEG XL frames hold
            raise CodecError(f"frame {k}: {frames.dtype} samples cannot be coded as HTJ2K",
                             self.path)
        return done[0][0]

    def _recorded_bits(self):
        """INFO ``codec.htj2k_bits`` of a .dcba (the HTJ2K precision of its .dcbs frames), or None."""
        if self._plan is None:
            plan = ()
            if self._reader.frame_codec == jxl.CODEC_ID and self._reader.version == 2:
                try:
                    info = self._reader.section_json(SEC_INFO)
                except DicomCubeError:
                    info = None
                codec = info.get("codec") if isinstance(info, dict) else None
                b = codec.get("htj2k_bits") if isinstance(codec, dict) else None
                if type(b) is int and 1 <= b <= self._reader.dtype.itemsize * 8:
                    plan = (b,)
            self._plan = plan
        return self._plan[0] if self._plan else None

    def _reencoded_info(self, k: int):
        """Facts of frame ``k`` re-encoded as HTJ2K, known without decoding it when the file
        records the precision (metadata requests need no frame), else by coding it."""
        bits = self._recorded_bits()
        if bits is None:
            return read_header(self._htj2k(k))
        return _Facts(bits, self._reader.dtype.kind == "i", 1 if len(self._reader.frame_shape) == 2
                      else 3, self.available_transfer_syntaxes()[0])

    def _bits_stored(self):
        if self._bits is None:
            v = self._meta.get_shared_value("00280101") if self._meta.is_shared("00280101") else None
            ok = isinstance(v, int) and 1 <= v <= self._reader.dtype.itemsize * 8
            self._bits = (v if ok else 0,)
        return self._bits[0] or None

    def _native_data(self, k: int, prefix: "_Prefix") -> bytes:
        frames = self._reader.read_frames([k], num_threads=1)
        try:
            frames, converted = to_output_colour(prefix.source_pixel, frames,
                                                 first_value(prefix.image_pixel, "00280004"))
            if converted and not self._warned:
                self._warned = True
                warnings.warn(CONVERTED.format(what=f"{self.path}: frame {k}"),
                              ColourConversionWarning, stacklevel=4)
            return native_pixel_bytes(prefix.image_pixel, frames, False, prefix.pixel_vr)
        except DataConsistencyError as exc:
            raise DataConsistencyError(f"frame {k}: {exc.reason}", self.path) from exc

    # ------------------------------------------------------------------ headers
    def _prefix(self, k: int, ts: str, info) -> _Prefix:
        with self._build_lock:
            prefix = self._cache.get((k, ts))
            if prefix is None:
                prefix = self._build(k, ts, info)
                self._cache[(k, ts)] = prefix
            return prefix

    def _build(self, k: int, ts: str, info) -> _Prefix:
        header, slice_info, preamble = slice_header(self._meta, k)
        source_pixel = MappingProxyType({key: header[key] for key in ("00020010", "00020002",
                                                                      "00080016", "00280004")
                                         if key in header})
        dtype = self._reader.dtype
        if self._reader.version == 1:
            _legacy_pixel_attributes(header, dtype, self._reader.layout.header.bits_stored,
                                     self._pixel_header, k)
        if ts == JXL_LOSSLESS:
            try:
                match_jxl(header, self._reader.layout.header.bits_stored or dtype.itemsize * 8,
                          dtype.kind == "i", len(self._reader.frame_shape) == 3)
            except UnsupportedTransferSyntaxError as exc:
                raise UnsupportedTransferSyntaxError(f"frame {k}: {exc.reason}", self.path) from exc
            tag, vr = PIXEL_DATA, "OB"
        elif ts not in NATIVE:
            stored = self._codec.transfer_syntax(info) if self._codec.header is not None \
                else info.transfer_syntax
            if stored is None:
                raise CodecError(f"frame {k}: the codestream meets no DICOM transfer syntax",
                                 self.path)
            if ts != stored and not (ts == HTJ2K_LOSSLESS and stored == HTJ2K_LOSSLESS_RPCL):
                raise UnsupportedTransferSyntaxError(
                    f"frame {k}: the codestream meets {syntax_name(stored)}, not {syntax_name(ts)}",
                    self.path)
            match_codestream(header, info)
            tag, vr = PIXEL_DATA, "OB"
        else:
            set_pixel_module(header, output_photometric(header, native=True),
                             implicit=ts == IMPLICIT_LE)
            tag = int(slice_info.get("pixel_tag") or "7FE00010", 16)
            vr = slice_info.get("pixel_vr") or ("OB" if dtype.itemsize == 1 else "OW")
            if self._reader.version == 1:
                vr = "OB" if dtype.itemsize == 1 else "OW"
            if ts == IMPLICIT_LE and dtype.itemsize > 1:
                vr = "OW"
        for key in _SOURCE_OFFSETS:
            header.pop(key, None)
        sop_class = first_value(header, "00020002") or first_value(header, "00080016")
        sop_instance = first_value(header, "00020003") or first_value(header, "00080018")
        for key in [key for key in header if key.startswith("0002")]:
            del header[key]
        header.update(dicube_file_meta(sop_class, sop_instance, ts))
        try:
            before, after = encode_part10_parts(header, tag, ts, preamble, self._encoded)
        except MetaDataError as exc:
            raise MetaDataError(f"frame {k}: {exc.reason}", self.path) from exc
        image_pixel = MappingProxyType({key: v for key, v in header.items() if key.startswith("0028")})
        return _Prefix(ts, before, after, tag, vr, image_pixel, source_pixel)


def _us(v: int) -> dict:
    return {"vr": "US", "Value": [int(v)]}


def _ds(v: float) -> dict:
    from pydicom.valuerep import format_number_as_ds

    f = float(v)
    return {"vr": "DS", "Value": [str(int(f)) if f.is_integer() and abs(f) < 1e15
                                  else format_number_as_ds(f)]}


def _legacy_pixel_attributes(header: dict, dtype: np.dtype, bits: int, ph, k: int) -> None:
    """Describe the frames of a version-1 file, which hold values rescaled by dicube 0.3.0:
    stored value x pixel-header slope + intercept = the source's real value."""
    slope = getattr(ph, "RescaleSlope", 1.0) if ph is not None else 1.0
    inter = getattr(ph, "RescaleIntercept", 0.0) if ph is not None else 0.0
    slope = float(slope[k] if isinstance(slope, list) else slope)
    inter = float(inter[k] if isinstance(inter, list) else inter)
    old_slope = float(first_value(header, "00281053", 1) or 1)
    old_inter = float(first_value(header, "00281052", 0) or 0)
    signed = dtype.kind == "i"
    bits = bits or dtype.itemsize * 8
    header["00280100"] = _us(dtype.itemsize * 8)
    header["00280101"] = _us(bits)
    header["00280102"] = _us(bits - 1)
    header["00280103"] = _us(int(signed))
    if "00281053" in header or "00281052" in header or (slope, inter) != (1.0, 0.0):
        header["00281052"] = _ds(inter)
        header["00281053"] = _ds(slope)
    info = np.iinfo(dtype) if dtype.kind in "iu" else None
    for key in _STORED_UNIT_TAGS:  # values in stored units: convert exactly, else drop
        elem = header.get(key)
        if elem is None or elem.get("vr") not in ("US", "SS") or not elem.get("Value"):
            continue
        new = [(v * old_slope + old_inter - inter) / slope for v in elem["Value"]]
        if info is None or any(not float(x).is_integer() or not info.min <= x <= info.max
                               for x in new):
            del header[key]
        else:
            header[key] = {"vr": "SS" if signed else "US", "Value": [int(x) for x in new]}
