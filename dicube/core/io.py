"""Save and load DicomCubeImage as .dcbs files: ``save``, ``load``, ``load_meta``.

Exports to DICOM folders and NIfTI live in :mod:`dicube.dicom.export` and
:mod:`dicube.core.nifti_io`.
"""
from __future__ import annotations

import contextlib
import json
import os
import warnings
from typing import Iterator, Optional

import numpy as np

from .. import __version__
from ..codecs import registry
from ..exceptions import (
    CodecError,
    DataConsistencyError,
    DicomCubeError,
    MetaDataError,
    WriteError,
)
from ..jsontext import parse_json
from ..storage.format import (
    CODEC_BOUNDED,
    SEC_LOSS,
    VARIANT_MAGICS,
    VARIANT_SUFFIXES,
    SEC_INFO,
    SEC_META,
    SEC_PIXEL,
    SEC_QC,
    SEC_SPACE,
)
from ..storage.atomic import write_error
from ..storage.reader import DcbsReader, FrameSelection
from ..storage.writer import FrameSet, write_dcbs
from .image import DicomCubeImage
from .pixel_header import PixelDataHeader

__all__ = ["save", "load", "load_meta", "load_qc_report", "encode_frames", "meta_from_reader",
           "qc_report_from_reader", "space_from_reader", "pixel_header_from_reader", "subset_space",
           "subset_pixel_header"]

FILE_TYPES = {"s": "speed (.dcbs, HTJ2K)", "a": "archive (.dcba, JPEG XL lossless)",
              "l": "lossy with a guaranteed error bound (.dcbl)"}
#: Default maximum error of file_type "l", in real units (HU for CT; under a third of CT noise).
DEFAULT_BOUND = 3
#: Frame codecs ``save`` offers (built in: HTJ2K, smallest, frames served as DICOM without
#: re-encoding; zstd byte planes, about 5x faster to decode, about 1.5x larger). Codecs
#: registered later (dicube.codecs.registry) are offered too.
FRAME_CODECS = ("htj2k", "zstd")


# ------------------------------------------------------------------------------ save
def _bits_stored(image: DicomCubeImage) -> Optional[int]:
    """DICOM BitsStored when shared by all slices (the codec checks the values fit)."""
    meta = image.dicom_meta
    if meta is None or not meta.is_shared("00280101"):
        return None
    v = meta.get_shared_value("00280101")
    return int(v) if isinstance(v, int) and 1 <= v <= image.raw_image.dtype.itemsize * 8 else None


def encode_frames(volume: np.ndarray, bits_stored: Optional[int] = None,
                  num_threads: Optional[int] = None, codec: str = "htj2k") -> FrameSet:
    """Encode a (frames, rows, columns[, 3]) volume with ``codec`` ("htj2k" or "zstd");
    sample types or values HTJ2K cannot hold fall back to zstd, floats to raw zstd."""
    vol = np.asarray(volume)
    if vol.ndim not in (3, 4) or (vol.ndim == 4 and vol.shape[-1] != 3) or 0 in vol.shape[:3]:
        raise DataConsistencyError(f"cannot store an image of shape {vol.shape}")
    chosen = registry.by_save_name(codec) if isinstance(codec, str) else None
    if chosen is None:
        names = registry.save_names()
        raise DataConsistencyError(f"unknown frame codec {codec!r} (use one of {names})")
    samples = 1 if vol.ndim == 3 else 3
    dt = vol.dtype.newbyteorder("=")
    while chosen is not None:  # each codec names the one to try when it cannot hold the samples
        done = chosen.encode(vol, bits_stored, num_threads)
        if done is not None:
            frames, used = done
            return FrameSet(frames, chosen.CODEC_ID, vol.shape[1], vol.shape[2], samples, dt, used)
        chosen = registry.get(chosen.FALLBACK) if chosen.FALLBACK is not None else None
    raise DataConsistencyError(f"no frame codec holds {vol.dtype} samples")


def _archive_frames(volume: np.ndarray, num_threads: Optional[int],
                    bits_stored: Optional[int] = None) -> tuple:
    """(FrameSet, INFO codec, check) of the archive variant: JPEG XL frames, or HTJ2K when
    those are smaller (:func:`dicube.codecs.jxl.archive_frames`), and the check for
    write_dcbs that decodes the written file and compares every frame (CodecError), in
    place of a check of the encoder output alone; DataConsistencyError for samples JPEG
    XL cannot hold (floats, 32-bit)."""
    from ..codecs.jxl import archive_frames, check_exact

    vol = np.asarray(volume)
    if vol.ndim not in (3, 4) or (vol.ndim == 4 and vol.shape[-1] != 3) or 0 in vol.shape[:3]:
        raise DataConsistencyError(f"cannot store an image of shape {vol.shape}")
    vol = vol.astype(vol.dtype.newbyteorder("="), copy=False)
    done = archive_frames(vol, bits_stored, num_threads, verify=False)
    if done is None:
        raise DataConsistencyError(f"the archive variant holds 8 or 16-bit integers, not {vol.dtype}")

    check = _written_check(lambda got: check_exact(vol, got, "the written .dcba"), num_threads)
    return FrameSet(done.frames, done.codec, vol.shape[1], vol.shape[2], 1 if vol.ndim == 3 else 3,
                    vol.dtype.newbyteorder("="), done.bits_stored), done.info, check


def _lossy_frames(image: DicomCubeImage, bound, inner: Optional[str], effort: Optional[int],
                  num_threads: Optional[int]):
    """(FrameSet, LOSS document, metadata of the lossy instances) of file_type "l": ``bound``
    in real units converted to stored units (:func:`dicube.dicom.lossy.stored_bound`)."""
    from ..codecs import bounded, jxl
    from ..dicom import lossy

    raw, ph, meta = image.raw_image, image.pixel_header, image.dicom_meta
    slope = ph.RescaleSlope if ph is not None else 1.0
    intercept = ph.RescaleIntercept if ph is not None else 0.0
    slopes = [float(s) for s in (slope if isinstance(slope, list) else [slope])]
    rescaled = any(s != 1 for s in slopes) or any(
        float(i) != 0 for i in (intercept if isinstance(intercept, list) else [intercept]))
    first = {}
    if meta is not None:
        rescaled = rescaled or "RescaleSlope" in meta or "RescaleIntercept" in meta
        first = {k: (meta.get_values(k)[0] if k in meta else None)
                 for k in ("Modality", "RescaleType")}
    n, units, real = lossy.stored_bound(bound, slopes, rescaled, first.get("Modality"),
                                        first.get("RescaleType"))
    if inner is None:
        try:
            jxl.backend()
            inner = "jxl"
        except CodecError as exc:
            warnings.warn(f"{exc.reason}; the quantised frames are coded with HTJ2K instead "
                          "(larger files)", UserWarning, stacklevel=3)
            inner = "htj2k"
    params, frames = bounded.encode_batch(raw, n, inner, jxl.DEFAULT_EFFORT if effort is None
                                          else effort, num_threads)
    vol = np.asarray(raw)
    fs = FrameSet(frames, CODEC_BOUNDED, vol.shape[1], vol.shape[2], 1 if vol.ndim == 3 else 3,
                  vol.dtype.newbyteorder("="), params.bits)
    ratio = vol.nbytes / sum(map(len, frames))
    doc = bounded.loss_document(params, ratio, units, real)
    if meta is not None:
        meta = lossy.derive_meta(meta, params.bound, params.offset, params.step, inner, ratio,
                                 units, real)
    return fs, doc, meta


def _written_check(compare, num_threads: Optional[int]):
    """check(source) for write_dcbs: decode every frame of the written file and hand them
    to ``compare`` (which raises when they are not what was meant)."""
    def check(source) -> None:
        with DcbsReader(source) as r:
            got = r.read_frames(num_threads=num_threads)
        compare(got)

    return check


_IMAGE_META = object()


def _sections(image: DicomCubeImage, fs: FrameSet, codec_info: Optional[dict] = None,
              meta=_IMAGE_META, extra=()) -> list:
    info = {"writer": f"dicube {__version__}", "shape": list(image.raw_image.shape),
            "dtype": str(fs.dtype), "frame_codec": fs.codec}
    if codec_info:
        info["codec"] = codec_info
    out = [(SEC_INFO, json.dumps(info).encode(), False), *extra]
    meta = image.dicom_meta if meta is _IMAGE_META else meta
    if meta is not None:
        out.append((SEC_META, meta.to_json().encode("utf-8"), True))
        try:
            from ..dicom.dicom_status import check_series

            report = check_series(meta)
            out.append((SEC_QC, report.to_json().encode("utf-8"), True))
        except Exception as exc:  # QC is informative; never block a save
            warnings.warn(f"series QC failed, saved without a QC report: {exc}", stacklevel=3)
    if image.space is not None:
        out.append((SEC_SPACE, image.space.to_json().encode("utf-8"), False))
    if image.pixel_header is not None:
        out.append((SEC_PIXEL, image.pixel_header.to_json().encode("utf-8"), False))
    return out


def save(image: DicomCubeImage, path: "os.PathLike[str] | str", file_type: Optional[str] = None,
         num_threads: Optional[int] = None, codec: str = "htj2k", *,
         overwrite: bool = True, bound=None, inner: Optional[str] = None,
         effort: Optional[int] = None) -> int:
    """Write ``image`` to a .dcbs file atomically; return the file size in bytes.

    ``overwrite=True`` (the default, as in earlier releases) replaces an existing file;
    ``overwrite=False`` raises :class:`~dicube.exceptions.WriteError` when ``path`` exists,
    before anything is encoded (``dicube convert`` saves this way unless ``--overwrite``).

    ``file_type`` "s" is the speed format (lossless frames), "a" the lossless archive
    (JPEG XL frames, every one decoded and compared before writing; needs
    ``pip install 'dicube[archive]'``), "l" lossy with a guaranteed maximum error; None
    (default): by the suffix (.dcba "a", .dcbl "l", else "s").

    File type "l" (.dcbl): every pixel is within ``bound`` (default 3) of the source, in real
    units when the image has a modality rescale (HU for CT: the bound in stored units is
    floor(bound / max|RescaleSlope|), so it holds on every slice), else in stored units (a
    whole number). Values are quantised to steps of 2N+1 and coded losslessly by ``inner``
    ("jxl", JPEG XL at ``effort`` 5, the default when imagecodecs is installed, else "htj2k"
    with a warning). The written file is decoded and every pixel compared before it replaces
    ``path``: a broken bound raises ErrorBoundError and leaves ``path`` as it was. The stored
    metadata describes the lossy instances (LossyImageCompression 01, new UIDs, the source
    referenced: :mod:`dicube.dicom.lossy`). ``codec`` "htj2k" (default) stores HTJ2K
    codestreams, the smallest files, served as DICOM without re-encoding; "zstd" stores
    zstd-compressed byte planes, several times faster to decode and about 1.5x larger
    (for training copies). Frames are encoded on ``num_threads`` threads (default: all cores).
    """
    if file_type is None:
        name = os.fspath(path).lower()
        file_type = next((t for t, sfx in VARIANT_SUFFIXES.items() if name.endswith(sfx)), "s")
    if file_type not in FILE_TYPES:
        raise DicomCubeError(f"file_type {file_type!r} is not implemented (use 's', 'a' or 'l')", path)
    if file_type != "l" and (bound is not None or inner is not None):
        raise DicomCubeError(f"bound and inner apply to file_type 'l' (.dcbl), not {file_type!r}", path)
    if not isinstance(image, DicomCubeImage):
        raise DataConsistencyError(f"expected a DicomCubeImage, got {type(image).__name__}", path)
    if not overwrite and os.path.lexists(path):
        raise WriteError("already exists (pass overwrite=True to replace it)", path)
    raw = image.raw_image
    meta = image.dicom_meta
    if meta is not None and len(meta) not in (raw.shape[0], 1):
        raise DataConsistencyError(f"{len(meta)} metadata slices for {raw.shape[0]} frames", path)
    codec_info, check, sections = None, None, None
    try:
        if file_type == "a":
            fs, codec_info, check = _archive_frames(raw, num_threads, _bits_stored(image))
        elif file_type == "l":
            fs, loss, lossy_meta = _lossy_frames(image, DEFAULT_BOUND if bound is None else bound,
                                                 inner, effort, num_threads)
            sections = _sections(image, fs, {"name": "bounded", "inner": loss["inner"]}, lossy_meta,
                                 [(SEC_LOSS, json.dumps(loss).encode(), False)])
            from ..codecs.bounded import check_bound

            check = _written_check(lambda got: check_bound(raw, got, loss["bound"]), num_threads)
        else:
            fs = encode_frames(raw, _bits_stored(image), num_threads, codec)
    except (CodecError, DataConsistencyError) as exc:  # name the file being written
        raise type(exc)(exc.reason, path) from None
    try:
        return write_dcbs(path, fs, sections or _sections(image, fs, codec_info),
                          VARIANT_MAGICS[file_type], check=check)
    except OSError as exc:
        raise write_error(exc, path) from exc
    except CodecError as exc:  # the saved file broke the bound (or did not decode)
        raise type(exc)(exc.reason, path) from None


# ------------------------------------------------------------------------------ load
def meta_from_reader(reader: DcbsReader, lazy: bool = False):
    """The DicomMeta of an open file (version 1 metadata converted), or None.

    The metadata is validated here, once, against the DICOM JSON model and the file's
    frame count (see :mod:`dicube.dicom.meta_validation`): a malformed file raises
    MetaDataError naming the file and the element, before anything is built from it.
    ``lazy``: each per-slice element is parsed and validated when first used instead
    (:meth:`DicomMeta.from_json_lazy`; the rest is checked here).
    """
    from ..dicom.dicom_meta import DicomMeta
    from ..dicom.meta_validation import check_model

    n = reader.frame_count
    if reader.version == 1:
        from ..storage.legacy_v1 import SEC_META_V1, merged_to_headers

        doc = reader.section_json(SEC_META_V1)
        if doc is None:
            return None
        with _naming_file(reader, "metadata"):
            headers, notes = merged_to_headers(doc)
            meta = DicomMeta.from_json_headers(headers)
            if len(meta) not in (n, 1):
                raise MetaDataError(f"metadata of {len(meta)} slices for {n} frames")
            check_model(meta.shared, meta.per_slice, len(meta))
        reader.warnings.extend(notes)
        return meta
    data = reader.section_bytes(SEC_META)
    if data is None:
        return None
    if lazy:
        meta = DicomMeta.from_json_lazy(data, n, reader.path)
        if meta is not None:
            return meta
    doc = parse_json(data, "section META", reader.path)
    with _naming_file(reader, "metadata"):
        return DicomMeta.from_dict(doc, frame_count=n)


@contextlib.contextmanager
def _naming_file(reader: DcbsReader, what: str) -> Iterator[None]:
    """Errors while building ``what`` from a file's content become MetaDataError naming the
    file (MetaDataError raised inside keeps its reason)."""
    try:
        yield
    except MetaDataError as exc:
        raise MetaDataError(exc.reason, reader.path) from exc
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise MetaDataError(f"invalid {what}: {exc!r}", reader.path) from None


def _with_read_report(reader: DcbsReader, meta):
    """``meta`` with the files skipped or deduplicated when its series was read from DICOM
    (kept in the saved QC report), so that ``get_dicom_status`` still reports them."""
    if meta is None or SEC_QC not in reader.sections:
        return meta
    from ..dicom.dicom_status import DicomStatus

    found = {DicomStatus.UNREADABLE_FILES: [], DicomStatus.DUPLICATE_FILES: []}
    for issue in qc_report_from_reader(reader).issues:
        found.get(issue.status, []).extend(issue.files)
    unreadable, dups = found.values()
    if unreadable or dups:
        meta.read_report = {"unreadable": [list(f) for f in unreadable],
                            "duplicates": [[a, why.removeprefix("identical copy of ")] for a, why in dups]}
    return meta


def _warn(reader: DcbsReader) -> None:
    for w in reader.warnings:
        warnings.warn(f"{reader.path}: {w}", UserWarning, stacklevel=3)


def load_meta(path: "os.PathLike[str] | str", **source_options):
    """The DicomMeta of a .dcbs file (None if it has none), reading only the file's head
    (for a URL: one request in the common case). ``path`` and ``source_options`` as for
    :func:`load`. Per-slice elements are parsed and validated when first used: a damaged
    one raises MetaDataError (naming the file and the element) then."""
    with DcbsReader(path, **source_options) as reader:
        meta = _with_read_report(reader, meta_from_reader(reader, lazy=True))
        _warn(reader)
        return meta


def load_qc_report(path: "os.PathLike[str] | str", **source_options):
    """The series QC report stored in a .dcbs file (QCReport), or None (``path`` and
    ``source_options`` as for :func:`load`)."""
    with DcbsReader(path, **source_options) as reader:
        return qc_report_from_reader(reader)


def qc_report_from_reader(reader: DcbsReader):
    """The QC report of an open file (QCReport, validated), or None."""
    from ..dicom.dicom_status import QCReport
    from ..dicom.meta_validation import check_qc_document

    d = reader.section_json(SEC_QC)
    if d is None:
        return None
    with _naming_file(reader, "QC report"):
        check_qc_document(d)
        return QCReport.from_dict(d)


def space_from_reader(reader: DcbsReader):
    """The spacetransformer Space of an open file (validated: finite values, and for
    version 2 a shape of (columns, rows, frames)), or None."""
    from spacetransformer import Space

    from ..dicom.meta_validation import check_space_document

    data = reader.section_bytes(SEC_SPACE)
    if not data:
        return None
    doc = parse_json(data, "section SPAC", reader.path)
    rows, cols = reader.frame_shape[:2]
    try:
        check_space_document(doc, (cols, rows, reader.frame_count) if reader.version != 1 else None)
        return Space.from_dict(doc)
    except MetaDataError as exc:
        raise MetaDataError(exc.reason, reader.path) from exc
    except Exception as exc:  # spacetransformer raises its own validation errors
        raise MetaDataError(f"invalid space section: {exc}", reader.path) from exc


def pixel_header_from_reader(reader: DcbsReader) -> Optional[PixelDataHeader]:
    """The PixelDataHeader of an open file (how its frame values map to real values)."""
    d = reader.section_json(SEC_PIXEL)
    if d is None:
        return None
    with _naming_file(reader, "pixel header section"):
        return PixelDataHeader.from_dict(d, frame_count=reader.frame_count)


def subset_space(space, sel: np.ndarray, n: int):
    """The Space of frames ``sel`` of an ``n``-frame ``space``: the same space when ``sel``
    is every frame in order, None when ``space`` is None, ``sel`` is empty or its frames
    are not evenly spaced (a reversed or strided selection gets a flipped or wider z)."""
    if space is None or (len(sel) == n and (sel == np.arange(n)).all()):
        return space
    if len(sel) == 0:
        return None
    step = int(sel[1] - sel[0]) if len(sel) > 1 else 1
    if step == 0 or (len(sel) > 1 and (np.diff(sel) != step).any()):
        return None
    from spacetransformer import Space

    z = np.asarray(space.z_orientation, float)
    origin = np.asarray(space.origin, float) + sel[0] * space.spacing[2] * z
    sign = 1.0 if step > 0 else -1.0
    return Space(shape=(space.shape[0], space.shape[1], len(sel)), origin=tuple(origin.tolist()),
                 spacing=(space.spacing[0], space.spacing[1], abs(step) * space.spacing[2]),
                 x_orientation=space.x_orientation, y_orientation=space.y_orientation,
                 z_orientation=tuple((sign * z).tolist()))


def subset_pixel_header(ph: Optional[PixelDataHeader], sel: np.ndarray):
    """The pixel header of frames ``sel`` (per-slice rescale values follow the selection)."""
    if ph is None or not ph.per_slice_rescale:
        return ph
    d = ph.to_dict()
    for k in ("RescaleSlope", "RescaleIntercept"):
        if isinstance(d[k], list):
            d[k] = [d[k][int(i)] for i in sel]
    return PixelDataHeader.from_dict(d)


def load(path: "os.PathLike[str] | str", frames: FrameSelection = None,
         num_threads: Optional[int] = None, out: Optional[np.ndarray] = None,
         **source_options) -> DicomCubeImage:
    """Load a .dcbs file (version 2, or version 1 of dicube 0.3.0) as a DicomCubeImage.

    ``path``: a local path, an http(s):// or s3:// URL (ranged reads; see docs/remote.md),
    or an open :class:`~dicube.storage.sources.ByteSource`. ``source_options`` go to
    :class:`~dicube.storage.reader.DcbsReader`: ``stats`` (a TransferStats counting bytes
    and requests), ``timeouts``, ``coalesce_gap``, ``first_read``, ``request_size``,
    ``storage_options`` (S3 settings; default: the AWS_* environment).

    ``frames`` selects frames (int, slice, range or index sequence; default all); the
    metadata, space and per-slice rescale follow the selection. Frames are decoded on
    ``num_threads`` threads (default: all cores) into ``out`` when given (a C-contiguous
    array of the right shape and dtype; reusing one saves fresh-memory costs).
    """
    with DcbsReader(path, **source_options) as reader:
        sel = reader.select(frames)
        meta = _with_read_report(reader, meta_from_reader(reader))  # the head, checked first
        space = space_from_reader(reader)
        ph = pixel_header_from_reader(reader)
        raw = reader.read_frames(sel, out=out, num_threads=num_threads)
        _warn(reader)
        n = reader.frame_count
    whole = frames is None or (len(sel) == n and (sel == np.arange(n)).all())
    if not whole:
        if meta is not None and len(meta) == n:
            meta = meta.subset(sel.tolist())
        space = subset_space(space, sel, n)
        ph = subset_pixel_header(ph, sel)
    if ph is None:
        ph = PixelDataHeader(OriginalPixelDtype=str(raw.dtype), PixelDtype=str(raw.dtype))
    try:
        return DicomCubeImage(raw, ph, meta, space)
    except DicomCubeError as exc:  # the file's parts disagree: name the file
        raise MetaDataError(exc.reason, reader.path) from exc
