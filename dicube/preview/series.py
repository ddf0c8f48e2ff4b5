"""A series to preview: slice positions, window, and pixels of chosen slices only.

:class:`DcbsSeries` reads a .dcbs head (one read, or one range request when remote) and
then only the chosen frames, decoded at reduced resolution (skipped wavelet levels) when
the tiles are small. :class:`DicomSeries` reads the first bytes of every file (enough for
the header up to the pixel data, more only when needed), then the rest of the chosen
files only, in parallel.
"""
from __future__ import annotations

import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..exceptions import DicomCubeError, DicomReadError, MultipleSeriesError
from ..storage.sources import (ByteSource, LocalFile, TransferStats, is_url, list_folder,
                               open_source)
from .colour import Photometric, photometric, to_display

__all__ = ["Series", "DcbsSeries", "DicomSeries", "open_series", "reduce_for", "header_z",
           "IO_THREADS", "HEADER_PREFETCH"]

log = logging.getLogger("dicube.preview")

#: Parallel requests for remote reads.
IO_THREADS = 8
#: First bytes fetched of each DICOM file for its header (grown x4 until the pixel data tag).
HEADER_PREFETCH = 16 * 1024


def reduce_for(shape: Tuple[int, int], levels: int, width: int, height: int) -> int:
    """Most wavelet levels that can be skipped while the image stays at least ``width``
    x ``height`` (each level halves rows and columns, rounding up)."""
    rows, cols = shape
    k = 0
    while k < levels and -(-cols // 2 ** (k + 1)) >= width and -(-rows // 2 ** (k + 1)) >= height:
        k += 1
    return k


def _num(v, default: float) -> float:
    if isinstance(v, list):
        v = v[0] if v else None
    try:
        return float(v) if v not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _pmap(fn, items: Sequence, parallel: bool) -> list:
    if not parallel or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(min(IO_THREADS, len(items))) as ex:
        return list(ex.map(fn, items))


def header_z(header: dict, frames: int = 1) -> List[Optional[float]]:
    """Patient z of each frame of one DICOM JSON header: ImagePositionPatient (per frame
    in an enhanced multi-frame file), else SliceLocation; None when neither is given.

    The one rule for every source: a .dcbs (from its stored metadata) and its DICOM folder
    get the same z values, hence the same order and the same chosen slices; and a cine
    without positions is shown in frame order, not in the order of a made-up geometry."""
    from ..dicom import geometry

    if frames > 1:
        pos, _, _ = geometry.frame_geometry(header, frames)
        return [float(p[2]) for p in pos] if pos is not None else [None] * frames
    ipp = geometry.position(header)
    if ipp is not None:
        return [float(ipp[2])]
    loc = geometry.floats(header.get("00201041"))
    return [float(loc[0])] if loc is not None and loc.size else [None]


def _meta_z(meta, n: int) -> List[Optional[float]]:
    """:func:`header_z` of each of the ``n`` frames of a .dcbs described by ``meta``."""
    if len(meta) == n:  # only the elements header_z reads, not each whole slice header
        tags = ("00200032", "00201041")
        return [header_z({t: meta.get_element(t, i) for t in tags})[0] for i in range(n)]
    if len(meta) == 1:  # one multi-frame file; frames stored ascending (see dicom_io)
        z = header_z(meta.slice_json(0), n)
        return z[::-1] if meta.slice_info[0].get("frame_order") == "reversed" else z
    return [None] * n


class Series:
    """Slices of one series in the source's own order.

    ``z`` (patient z, mm, or None; see :func:`header_z`) and ``instance``
    (InstanceNumber or None) per slice; ``frame_shape``; ``embedded_window`` ((width,
    centre) from the file, or None); ``photometric`` (of the first slice: colour,
    MONOCHROME1); ``stats`` counts bytes and requests; :meth:`read` returns display
    samples (rescaled float32; RGB for colour).
    """

    location: str
    stats: TransferStats
    z: List[Optional[float]]
    instance: List[Optional[float]]
    frame_shape: tuple
    embedded_window: Optional[Tuple[float, float]] = None
    photometric: Photometric = Photometric()

    def __len__(self) -> int:
        return len(self.z)

    def read(self, slices: Sequence[int], width: int, height: int) -> List[np.ndarray]:
        """Rescaled (RescaleSlope/Intercept) float32 pixels of ``slices``, colour converted
        to RGB (:func:`~dicube.preview.colour.to_display`), each at least ``width`` x
        ``height`` when the source can decode at reduced resolution."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class DcbsSeries(Series):
    """A .dcbs file (local path, URL, or ByteSource)."""

    def __init__(self, location, stats: Optional[TransferStats] = None):
        from ..core.io import pixel_header_from_reader, space_from_reader
        from ..storage.format import FIRST_READ
        from ..storage.reader import DcbsReader

        self._src = open_source(location, prefetch=FIRST_READ, stats=stats)
        self.location = self._src.name
        self.stats = self._src.stats
        self.remote = not isinstance(location, (str, os.PathLike)) or is_url(location)
        try:
            self.reader = DcbsReader(self._src)
            self._init_meta(space_from_reader(self.reader), pixel_header_from_reader(self.reader))
        except BaseException:
            self._src.close()
            raise

    def _init_meta(self, space, ph) -> None:
        from ..core.io import meta_from_reader

        r = self.reader
        n = r.frame_count
        self.frame_shape = r.frame_shape
        meta = meta_from_reader(r)
        if meta is not None:
            self.z = _meta_z(meta, n)
            self.photometric = photometric(meta.slice_json(0), self.location)
        elif space is not None and space.shape[2] == n:  # no metadata: the stored geometry
            step = float(space.spacing[2]) * float(space.z_orientation[2])
            self.z = [float(space.origin[2]) + i * step for i in range(n)]
        else:
            self.z = [None] * n
        self.instance = [None] * n  # frames are stored in slice order: the index breaks ties
        self._slope, self._intercept = 1.0, 0.0
        if ph is not None:
            self._slope, self._intercept = ph.RescaleSlope, ph.RescaleIntercept
            if ph.WindowWidth and ph.WindowCenter is not None and ph.WindowWidth > 0:
                self.embedded_window = (float(ph.WindowWidth), float(ph.WindowCenter))

    def _rescale(self, i: int, a: np.ndarray) -> np.ndarray:
        s = self._slope[i] if isinstance(self._slope, list) else self._slope
        b = self._intercept[i] if isinstance(self._intercept, list) else self._intercept
        out = a.astype(np.float32)
        if s != 1:
            out *= np.float32(s)
        if b != 0:
            out += np.float32(b)
        return out

    def read(self, slices: Sequence[int], width: int, height: int) -> List[np.ndarray]:
        from ..codecs.jph import decode_batch, read_header
        from ..storage.format import CODEC_HTJ2K

        slices = [int(i) for i in slices]
        if not slices:
            return []
        r = self.reader
        arr = None
        if r.frame_codec == CODEC_HTJ2K:
            streams = _pmap(r.codestream, slices, self.remote)
            if all(len(s) for s in streams):  # legacy v1 files may have empty frames
                info = read_header(streams[0])
                k = reduce_for((info.rows, info.columns), info.levels, width, height)
                k = k if self.photometric.reducible else 0
                log.info("decoding %d frames at 1/%d resolution", len(streams), 2 ** k)
                arr = decode_batch(streams, reduce=k)
        if arr is None:
            arr = r.read_frames(slices)
        return [to_display(self._rescale(i, a), self.photometric) for i, a in zip(slices, arr)]

    def close(self) -> None:
        self.reader.close()
        self._src.close()


class _Instance:
    """One DICOM file: its source, the bytes fetched so far, its parsed header."""

    __slots__ = ("location", "size", "src", "buf", "pf")

    def __init__(self, src: ByteSource, buf: bytes, pf):
        self.location, self.size, self.buf, self.pf = src.name, src.size, buf, pf
        # local files are reopened for their pixels: a large folder must not hold all open
        self.src: Optional[ByteSource] = None if isinstance(src, LocalFile) else src
        if self.src is None:
            src.close()

    def rest(self, stats: TransferStats) -> bytes:
        """The whole file: the bytes not fetched yet are read in one more request."""
        if len(self.buf) < self.size:
            src = self.src or open_source(self.location, stats=stats)
            try:
                self.buf += src.pread(self.size - len(self.buf), len(self.buf))
            finally:
                if src is not self.src:
                    src.close()
        return self.buf


def _fetch_header(location: str, stats: TransferStats) -> Optional[_Instance]:
    """Fetch the first bytes of a file until its header up to the pixel data parses.
    None for non-DICOM and non-image files."""
    from ..dicom.file_parser import NotDicomError, parse_bytes

    src = open_source(location, prefetch=HEADER_PREFETCH, stats=stats)
    have = min(HEADER_PREFETCH, src.size)
    buf = src.pread(have, 0)
    while True:
        pf, damage = None, None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pf, _ = parse_bytes(location, buf)
        except (NotDicomError, DicomCubeError, ValueError, KeyError, IndexError, EOFError) as exc:
            pf, damage = None, exc if isinstance(exc, DicomCubeError) else None
        if pf is not None and pf.pixel_tag is not None:
            return _Instance(src, buf, pf)
        if len(buf) >= src.size:
            src.close()
            if damage is not None:  # a preview shows what it can, but says what it left out
                log.warning("%s: left out of the preview: %s", location, damage.reason)
            return None
        more = min(len(buf) * 4, src.size) - len(buf)
        log.debug("%s: header not complete in %d bytes, fetching %d more", location, len(buf), more)
        buf += src.pread(more, len(buf))


HTJ2K_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
                            "1.2.840.10008.1.2.4.203"})


def _first(elem_value):
    return elem_value[0] if isinstance(elem_value, list) and elem_value else None


def _attr(pf, frame: int, macro: str, tag: str):
    """A value of the file's top level, else of an enhanced file's functional groups
    (per-frame item ``frame``, then shared) inside the macro sequence ``macro``."""
    v = pf.value(tag)
    if v is not None:
        return v
    for fg, idx in (("52009230", frame), ("52009229", 0)):
        items = pf.values(fg) or []
        item = items[idx] if idx < len(items) and isinstance(items[idx], dict) else {}
        inner = _first((item.get(macro) or {}).get("Value")) or {}
        got = _first((inner.get(tag) or {}).get("Value"))
        if got is not None:
            return got
    return None


def _htj2k_reduced(it: _Instance, buf: bytes, frame: int, width: int, height: int) -> Optional[np.ndarray]:
    """Frame ``frame`` of an HTJ2K file decoded with as many wavelet levels skipped as the
    tile size allows; None when the file is not HTJ2K or our decoder refuses it."""
    from ..codecs.jph import imdecode_jph, read_header
    from ..exceptions import CodecError

    pf = it.pf
    if not pf.encapsulated or pf.transfer_syntax not in HTJ2K_SYNTAXES:
        return None
    try:
        import pydicom.encaps

        value = memoryview(buf)[pf.pixel_offset:pf.pixel_offset + pf.pixel_length]
        nf = max(1, int(_num(pf.value("00280008"), 1)))
        cs = pydicom.encaps.get_frame(bytes(value), frame, number_of_frames=nf)
        if cs.endswith(b"\xff\xd9\x00"):  # the even-length padding of the DICOM item
            cs = cs[:-1]
        info = read_header(cs)
        k = reduce_for((info.rows, info.columns), info.levels, width, height)
        return imdecode_jph(cs, reduce=k)
    except (CodecError, ValueError, KeyError, IndexError) as exc:
        log.debug("%s: reduced HTJ2K decode failed (%s), decoding in full", it.location, exc)
        return None


class DicomSeries(Series):
    """A folder (local path, s3:// prefix, or http(s):// folder with a directory index)
    of DICOM files of one series (``series_uid`` chooses one when it holds several)."""

    def __init__(self, location: str, series_uid: Optional[str] = None,
                 stats: Optional[TransferStats] = None):
        self.location = location
        self.stats = stats or TransferStats()
        self.remote = is_url(location)
        entries = list_folder(location, self.stats)
        if not entries:
            raise DicomReadError("no files found", location)
        found = _pmap(lambda e: _fetch_header(e.location, self.stats), entries, True)
        items = [it for it in found if it is not None]
        if not items:
            raise DicomReadError("no DICOM image files found", location)
        uids = sorted({str(it.pf.value("0020000E", "")).strip() for it in items})
        if series_uid is not None:
            items = [it for it in items if str(it.pf.value("0020000E", "")).strip() == series_uid]
            if not items:
                raise DicomReadError(f"series {series_uid} not found", location)
        elif len(uids) > 1:
            raise MultipleSeriesError(f"{len(uids)} series found: {', '.join(uids)}", location,
                                      series=uids)
        self._items = items
        log.info("%s: %d DICOM headers read (%d bytes, %d requests)", location, len(items),
                 self.stats.bytes, self.stats.requests)
        first = items[0].pf
        rows, cols, spp = first.value("00280010"), first.value("00280011"), first.value("00280002", 1)
        self.frame_shape = (int(rows), int(cols)) + ((int(spp),) if spp and int(spp) > 1 else ())
        #: (file, frame) of each slice: multi-frame files give one slice per frame
        self._slices: List[Tuple[int, int]] = []
        self.z, self.instance = [], []
        from ..dicom.file_parser import frame_count

        for k, it in enumerate(items):
            inst = _num(it.pf.value("00200013"), np.nan)
            for f, z in enumerate(header_z(it.pf.header, frame_count(it.pf))):
                self._slices.append((k, f))
                self.z.append(z)
                self.instance.append(inst + f / 1e4 if np.isfinite(inst) else None)
        ww = _num(_attr(first, 0, "00289132", "00281051"), np.nan)
        wc = _num(_attr(first, 0, "00289132", "00281050"), np.nan)
        if np.isfinite(ww) and ww > 0 and np.isfinite(wc):
            self.embedded_window = (ww, wc)
        self._photometric = {0: photometric(first.header, items[0].location)}
        self.photometric = self._photometric[0]

    def _file_photometric(self, k: int) -> Photometric:
        if k not in self._photometric:
            self._photometric[k] = photometric(self._items[k].pf.header, self._items[k].location)
        return self._photometric[k]

    def _file_pixels(self, k: int, frames: List[int], width: int, height: int) -> dict:
        from ..dicom.file_parser import decode_pixels

        it = self._items[k]
        buf = it.rest(self.stats)
        colour = self._file_photometric(k)
        out = {}
        for f in frames:
            arr = _htj2k_reduced(it, buf, f, width, height) if colour.reducible else None
            if arr is None:
                break
            out[f] = arr
        if len(out) < len(frames):
            try:
                full = decode_pixels(it.pf, buf, None)
            except Exception as exc:  # pydicom's decoders raise many types
                raise DicomReadError(f"cannot decode pixel data: {exc}", it.location) from exc
            out = {f: full[f] for f in frames}
        result = {}
        for f, arr in out.items():
            v = arr.astype(np.float32)
            s = _num(_attr(it.pf, f, "00289145", "00281053"), 1.0)
            b = _num(_attr(it.pf, f, "00289145", "00281052"), 0.0)
            if s != 1:
                v *= np.float32(s)
            if b != 0:
                v += np.float32(b)
            result[f] = to_display(v, colour)
        return result

    def read(self, slices: Sequence[int], width: int, height: int) -> List[np.ndarray]:
        wanted: dict = {}
        for i in slices:
            k, f = self._slices[int(i)]
            wanted.setdefault(k, []).append(f)
        files = list(wanted)
        done = _pmap(lambda k: self._file_pixels(k, wanted[k], width, height), files, True)
        by_file = dict(zip(files, done))
        return [by_file[self._slices[int(i)][0]][self._slices[int(i)][1]] for i in slices]

    def close(self) -> None:
        for it in self._items:
            if it.src is not None:
                it.src.close()


def _is_dcbs_file(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(7) == b"DCMCUBE"
    except OSError:
        return False


def open_series(location: str, series_uid: Optional[str] = None,
                stats: Optional[TransferStats] = None) -> Series:
    """A .dcbs file or a DICOM series folder, local or remote (http(s)://, s3://)."""
    if is_url(location):
        if location.rstrip("/").lower().endswith(".dcbs"):
            return DcbsSeries(location, stats)
        return DicomSeries(location, series_uid, stats)
    if os.path.isdir(location):
        return DicomSeries(location, series_uid, stats)
    if not os.path.exists(location):
        raise DicomCubeError("no such file or folder", location)
    if _is_dcbs_file(location):
        return DcbsSeries(location, stats)
    return DicomSeries(location, series_uid, stats)
