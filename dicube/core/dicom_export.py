"""Export a DicomCubeImage as a folder of DICOM Part 10 files, one per source file.

Each file's data set is rebuilt from the DicomMeta (element for element as the source)
with the original stored pixel values. A small manifest (``.dicube-export.json``) lists
what was written, so a later export with ``overwrite=True`` replaces only those files.
"""
from __future__ import annotations

import contextlib
import json
import os
import posixpath
from typing import Optional

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from .. import __version__
from ..codecs.jph import HTJ2K, HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, crc32c, encode_batch, read_header
from ..exceptions import CodecError, DataConsistencyError, DicomCubeError, MetaDataError
from ..storage.atomic import atomic_write
from .image import DicomCubeImage
from .part10 import SEQ_DELIM, PixelElement, dicube_file_meta, encapsulate_frames, encode_part10

__all__ = ["save_to_dicom_folder", "MANIFEST"]

MANIFEST = ".dicube-export.json"
NATIVE = {ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian,
          DeflatedExplicitVRLittleEndian}
HTJ2K_SYNTAXES = {HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, HTJ2K}
#: Compressed syntaxes pydicom can encode losslessly (checked by decoding back).
PYDICOM_LOSSLESS = {RLELossless, JPEGLSLossless, JPEG2000Lossless}


# ------------------------------------------------------------------------ manifest
def _file_crc(path: str) -> Optional[int]:
    try:
        with open(path, "rb") as fh:
            return crc32c(fh.read())
    except OSError:
        return None


def _read_manifest(folder: str) -> dict:
    try:
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as fh:
            doc = json.load(fh)
        files = doc.get("files", {})
        return files if isinstance(files, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_manifest(folder: str, files: dict) -> None:
    doc = {"writer": f"dicube {__version__}", "files": files}
    with atomic_write(os.path.join(folder, MANIFEST)) as fh:
        fh.write(json.dumps(doc, indent=1, sort_keys=True).encode("utf-8"))


def _own(folder: str, rel: str, entry) -> bool:
    """True if ``rel`` is a file we wrote and nobody changed since."""
    if not isinstance(entry, dict):
        return False
    path = os.path.join(folder, rel)
    if not os.path.isfile(path):
        return False
    if entry.get("pending"):  # an export stopped before listing it: ours if it is the
        return _sop_uid(path) == entry.get("sop")  # instance planned under that name
    return entry.get("crc32c") == _file_crc(path) and entry.get("size") == os.path.getsize(path)


def _sop_uid(path: str) -> Optional[str]:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[0x00080018])
        return str(ds.SOPInstanceUID)
    except Exception:  # not DICOM, unreadable, no such element: not ours
        return None


def _existing(folder: str) -> list[str]:
    out = []
    for root, dirs, files in os.walk(folder):
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), folder).replace(os.sep, "/")
            if rel != MANIFEST:
                out.append(rel)
    return out


# ------------------------------------------------------------------------ names
def _safe_name(name: Optional[str]) -> Optional[str]:
    if not name:
        return None
    n = posixpath.normpath(name.replace("\\", "/"))
    if n.startswith(("/", "../")) or n in (".", "..") or n == MANIFEST or "/../" in n:
        return None
    return n


def _names(meta, count: int) -> list[str]:
    names = [_safe_name(f) for f in (getattr(meta, "filenames", None) or [None] * count)]
    if len(names) != count or None in names or len(set(n.lower() for n in names)) != count:
        width = max(5, len(str(count)))
        return [f"{i + 1:0{width}d}.dcm" for i in range(count)]
    return names


# ------------------------------------------------------------------------ pixels
def first_value(header: dict, key: str, default=None):
    """First value of a top-level JSON element as a Python value, or ``default``."""
    from ..dicom.dicom_json import json_value_to_python

    v = json_value_to_python(header.get(key))
    if isinstance(v, list):
        v = v[0] if v else None
    return default if v in (None, "") else v


def _stored_values(image: DicomCubeImage, header: dict, frames: np.ndarray) -> np.ndarray:
    """Frames as the data set describes them; converts pixels that were rescaled before
    storing (version-1 files): stored = (real - intercept) / slope, exactly or not at all."""
    ph = image.pixel_header
    slope = getattr(ph, "RescaleSlope", 1.0)
    inter = getattr(ph, "RescaleIntercept", 0.0)
    if isinstance(slope, list) or isinstance(inter, list) or "00281053" not in header \
            and "00281052" not in header:
        return frames
    d_slope = float(first_value(header, "00281053", 1))
    d_inter = float(first_value(header, "00281052", 0))
    if (float(slope), float(inter)) == (d_slope, d_inter):
        return frames
    real = frames.astype(np.float64) * float(slope) + float(inter)
    stored = (real - d_inter) / d_slope
    bits = int(first_value(header, "00280100", frames.dtype.itemsize * 8))
    signed = int(first_value(header, "00280103", 0)) == 1
    dt = np.dtype(f"{'i' if signed else 'u'}{max(1, bits // 8)}")
    rounded = np.rint(stored)
    info = np.iinfo(dt)
    if (rounded != stored).any() or rounded.min() < info.min or rounded.max() > info.max:
        raise DataConsistencyError("stored values cannot be recovered exactly from the rescaled "
                                   "pixels and the DICOM rescale attributes")
    return rounded.astype(dt)


def _pack_ybr_422(arr: np.ndarray) -> np.ndarray:
    """(frames, rows, cols, 3) YBR with each chroma pair replicated (as loaded) -> the
    stored Y0 Y1 Cb Cr order of PS3.3 C.7.6.3.1.2, two pixels per four samples."""
    packed = np.empty(arr.shape[:2] + (arr.shape[2] // 2, 4), arr.dtype)
    packed[..., 0] = arr[:, :, 0::2, 0]
    packed[..., 1] = arr[:, :, 1::2, 0]
    packed[..., 2] = arr[:, :, 0::2, 1]
    packed[..., 3] = arr[:, :, 0::2, 2]
    return packed


def native_pixel_bytes(header: dict, frames: np.ndarray, big_endian: bool, vr: str = "OW") -> bytes:
    """Native pixel bytes as the source encoded them (planar colour, 1-bit packing,
    big endian 16-bit words, 4:2:2 chroma)."""
    arr = frames
    if arr.ndim == 4 and first_value(header, "00280004") == "YBR_FULL_422" and arr.shape[2] % 2 == 0:
        arr = _pack_ybr_422(arr)
    if arr.ndim == 4 and int(first_value(header, "00280006", 0)) == 1:
        arr = arr.transpose(0, 3, 1, 2)  # colour-by-plane
    if int(first_value(header, "00280100", 8 * arr.dtype.itemsize)) == 1:
        data = np.packbits(np.ascontiguousarray(arr).reshape(-1).astype(bool), bitorder="little")
        data = data.tobytes()
    else:
        dt = arr.dtype.newbyteorder(">" if big_endian else "<")
        data = np.ascontiguousarray(arr, dtype=dt).tobytes()
    if len(data) % 2:
        data += b"\0"
    if big_endian and vr == "OW" and arr.dtype.itemsize == 1:  # OW is 16-bit words
        data = np.frombuffer(data, "<u2").astype(">u2").tobytes()
    return data


def _htj2k_frames(frames: np.ndarray, header: dict) -> tuple[list[bytes], str]:
    bits = first_value(header, "00280101")
    try:
        streams = encode_batch(frames, bits_stored=int(bits) if bits else None)
    except CodecError:
        streams = encode_batch(frames)
    return streams, read_header(streams[0]).transfer_syntax or HTJ2K_LOSSLESS


def _target_syntax(source: Optional[str], requested: Optional[str]) -> str:
    if requested is not None:
        return str(requested)
    if source in NATIVE or source in HTJ2K_SYNTAXES or source in PYDICOM_LOSSLESS:
        return source
    return ExplicitVRLittleEndian


def _pydicom_compress(header: dict, frames: np.ndarray, ts: str) -> Optional[bytes]:
    """Encapsulated pixel data in ``ts`` made by pydicom's encoders, or None when they
    cannot encode these pixels losslessly (checked by decoding back)."""
    ds = Dataset()
    for kw, key in (("Rows", "00280010"), ("Columns", "00280011"), ("SamplesPerPixel", "00280002"),
                    ("BitsAllocated", "00280100"), ("BitsStored", "00280101"),
                    ("HighBit", "00280102"), ("PixelRepresentation", "00280103"),
                    ("PhotometricInterpretation", "00280004"), ("PlanarConfiguration", "00280006")):
        v = first_value(header, key)
        if v is not None:
            setattr(ds, kw, v)
    if len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    before = {e.tag: e.value for e in ds}
    try:
        arr = frames if len(frames) > 1 else frames[0]
        ds.compress(UID(ts), arr, generate_instance_uid=False)
        if {e.tag: e.value for e in ds if e.tag != 0x7FE00010} != before:
            return None  # the encoder changed pixel attributes: not the source data set
        if not np.array_equal(ds.pixel_array.reshape(arr.shape), arr):
            return None
    except Exception:  # no plugin, unsupported bit depth, ...
        return None
    return bytes(ds.PixelData)


def _pixel(header: dict, info: dict, frames: np.ndarray, ts: str) -> tuple[PixelElement, str]:
    """The pixel data element for ``frames`` in syntax ``ts`` (or the syntax used instead)."""
    tag = int(info.get("pixel_tag") or "7FE00010", 16)
    vr = info.get("pixel_vr") or ("OB" if frames.dtype.itemsize == 1 else "OW")
    if ts in HTJ2K_SYNTAXES:
        streams, met = _htj2k_frames(frames, header)
        used = ts if ts in (HTJ2K, met) or (ts == HTJ2K_LOSSLESS and met == HTJ2K_LOSSLESS_RPCL) \
            else met
        return PixelElement(0x7FE00010, "OB", encapsulate_frames(streams), True), used
    if ts in PYDICOM_LOSSLESS and tag == 0x7FE00010:
        data = _pydicom_compress(header, frames, ts)
        if data is not None:
            if data.endswith(SEQ_DELIM):  # PixelElement adds its own delimiter
                data = data[:-len(SEQ_DELIM)]
            return PixelElement(tag, "OB", data, True), ts
        ts = ExplicitVRLittleEndian
    if ts not in NATIVE:
        ts = ExplicitVRLittleEndian
    return PixelElement(tag, vr, native_pixel_bytes(header, frames, ts == ExplicitVRBigEndian, vr)), ts


def slice_header(meta, k: int) -> tuple[dict, dict, Optional[bytes]]:
    """(DICOM JSON with group 0002, slice info, preamble or None) of slice ``k`` of a
    DicomMeta; a slice without file meta (version-1 files) gets dicube's own."""
    import base64

    header = dict(meta.slice_json(k))
    slice_info = getattr(meta, "slice_info", None) or []
    info = slice_info[k] if k < len(slice_info) else {}
    if not any(key.startswith("0002") for key in header):  # e.g. metadata of a version-1 file
        header.update(dicube_file_meta(first_value(header, "00080016"),
                                       first_value(header, "00080018"), ExplicitVRLittleEndian))
    pre = info.get("preamble")
    return header, info, base64.b64decode(pre) if pre else None


def _file_bytes(image: DicomCubeImage, meta, k: int, frames: np.ndarray,
                transfer_syntax: Optional[str]) -> bytes:
    header, info, preamble = slice_header(meta, k)
    source = first_value(header, "00020010")
    source = str(source).rstrip("\0 ") if source else None
    frames = _stored_values(image, header, frames)
    pixel, used = _pixel(header, info, frames, _target_syntax(source, transfer_syntax))
    if used != source:
        header["00020010"] = {"vr": "UI", "Value": [used]}
        header.pop("00020000", None)  # recomputed for the new file meta
    return encode_part10(header, pixel, used, preamble)


def save_to_dicom_folder(image: DicomCubeImage, folder: "os.PathLike[str] | str", *,
                         transfer_syntax: Optional[str] = None, overwrite: bool = False) -> list[str]:
    """Write one DICOM Part 10 file per source file of ``image``; return their paths.

    Data sets equal the source files element for element, pixel values are the stored
    values, SOP Instance UIDs and file meta are kept, file names follow the source when
    known. ``transfer_syntax`` defaults to the source's when it can be written losslessly
    (native syntaxes, HTJ2K with our codestreams, RLE/JPEG-LS/JPEG 2000 lossless through
    pydicom), else Explicit VR Little Endian; pass an HTJ2K UID to get HTJ2K.

    A non-empty ``folder`` is refused unless ``overwrite=True``; even then only files this
    function wrote before (listed in its manifest and unchanged) are replaced or removed.
    """
    meta = image.dicom_meta
    if meta is None or len(meta) == 0:
        raise MetaDataError("the image has no DICOM metadata to export")
    raw = image.raw_image
    n = len(meta)
    if raw.shape[0] % n:
        raise DataConsistencyError(f"{raw.shape[0]} frames cannot be split over {n} files")
    per = raw.shape[0] // n
    folder = os.fspath(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise DicomCubeError("exists and is not a folder", folder)
    try:
        return _export(image, meta, folder, per, transfer_syntax, overwrite)
    except OSError as exc:
        where = exc.filename if isinstance(exc.filename, str) else folder
        raise DicomCubeError(f"cannot write: {exc.strerror or exc}", where) from exc


def _export(image: DicomCubeImage, meta, folder: str, per: int, transfer_syntax: Optional[str],
            overwrite: bool) -> list[str]:
    raw = image.raw_image
    n = len(meta)
    os.makedirs(folder, exist_ok=True)
    names = _names(meta, n)
    old = _read_manifest(folder)
    existing = _existing(folder)
    if existing and not overwrite:
        raise DicomCubeError(f"folder is not empty ({len(existing)} files); "
                             "pass overwrite=True to replace files exported before", folder)
    own = {rel for rel in existing if _own(folder, rel, old.get(rel))}
    foreign = set(existing) - own
    clash = sorted(set(names) & foreign) + sorted(
        d for d in {posixpath.dirname(x) for x in names} if d and os.path.isfile(os.path.join(folder, d)))
    if clash:
        raise DicomCubeError(f"would overwrite files not written by dicube: {clash[:5]}", folder)

    uids = meta.get_values("SOPInstanceUID")
    planned = {rel: {"pending": True, "sop": None if uids[k] is None else str(uids[k])}
               for k, rel in enumerate(names)}
    _write_manifest(folder, {**{r: old[r] for r in own}, **planned})
    written: dict = {}
    paths = []
    try:
        for k, rel in enumerate(names):
            data = _file_bytes(image, meta, k, raw[k * per:(k + 1) * per], transfer_syntax)
            path = os.path.join(folder, *rel.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with atomic_write(path) as fh:
                fh.write(data)
            written[rel] = {"size": len(data), "crc32c": crc32c(data)}
            paths.append(path)
    finally:
        kept = {r: old[r] for r in own if r not in written}
        if len(written) == len(names):  # success: remove our stale files of an earlier export
            for rel in list(kept):
                if rel not in planned:
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(folder, rel))
                    kept.pop(rel)
        _write_manifest(folder, {**kept, **written})
    return paths
