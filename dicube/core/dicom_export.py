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
    if entry.get("pending"):
        return True
    return entry.get("crc32c") == _file_crc(path) and entry.get("size") == os.path.getsize(path)


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
def _stored_values(image: DicomCubeImage, ds: Dataset, frames: np.ndarray) -> np.ndarray:
    """Frames as the data set describes them; converts files whose pixels were rescaled
    before storing (version-1 files): stored = (real - intercept) / slope."""
    ph = image.pixel_header
    slope = getattr(ph, "RescaleSlope", 1.0)
    inter = getattr(ph, "RescaleIntercept", 0.0)
    if isinstance(slope, list) or isinstance(inter, list):
        return frames
    d_slope = float(ds.get("RescaleSlope", 1) or 1)
    d_inter = float(ds.get("RescaleIntercept", 0) or 0)
    if (float(slope), float(inter)) == (d_slope, d_inter):
        return frames
    real = frames.astype(np.float64) * float(slope) + float(inter)
    stored = (real - d_inter) / d_slope
    bits = int(ds.get("BitsAllocated", frames.dtype.itemsize * 8))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    dt = np.dtype(f"{'i' if signed else 'u'}{max(1, bits // 8)}")
    rounded = np.rint(stored)
    info = np.iinfo(dt)
    if (rounded != stored).any() or rounded.min() < info.min or rounded.max() > info.max:
        raise DataConsistencyError("stored values cannot be recovered exactly from the rescaled "
                                   "pixels and the DICOM rescale attributes")
    return rounded.astype(dt)


def _native_bytes(ds: Dataset, frames: np.ndarray, big_endian: bool) -> bytes:
    arr = frames
    if arr.ndim == 4 and int(ds.get("PlanarConfiguration", 0)) == 1:
        arr = arr.transpose(0, 3, 1, 2)  # colour-by-plane
    dt = arr.dtype.newbyteorder(">" if big_endian else "<")
    data = np.ascontiguousarray(arr, dtype=dt).tobytes()
    return data + b"\0" if len(data) % 2 else data


def _htj2k_frames(frames: np.ndarray, ds: Dataset) -> tuple[list[bytes], str]:
    bits = ds.get("BitsStored")
    try:
        streams = encode_batch(frames, bits_stored=int(bits) if bits else None)
    except CodecError:
        streams = encode_batch(frames)
    return streams, read_header(streams[0]).transfer_syntax or HTJ2K_LOSSLESS


# ------------------------------------------------------------------------ syntax
def _target_syntax(source: Optional[str], requested: Optional[str]) -> str:
    if requested is not None:
        return str(requested)
    if source in NATIVE or source in HTJ2K_SYNTAXES or source in PYDICOM_LOSSLESS:
        return source
    return ExplicitVRLittleEndian


def _encode(ds: Dataset, frames: np.ndarray, ts: str, pixel_tag: int, pixel_vr: str) -> str:
    """Put pixel data into ``ds`` in syntax ``ts``; returns the syntax actually used."""
    from pydicom.dataelem import DataElement
    from pydicom.encaps import encapsulate

    if ts in HTJ2K_SYNTAXES:
        streams, met = _htj2k_frames(frames, ds)
        used = ts if ts == HTJ2K or ts == met or (ts == HTJ2K_LOSSLESS and met == HTJ2K_LOSSLESS_RPCL) \
            else met
        ds[0x7FE00010] = DataElement(0x7FE00010, "OB", encapsulate(streams, has_bot=True),
                                     is_undefined_length=True)
        return used
    if ts in PYDICOM_LOSSLESS and pixel_tag == 0x7FE00010:
        try:
            ds[0x7FE00010] = DataElement(0x7FE00010, pixel_vr or "OW",
                                         _native_bytes(ds, frames, False))
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.compress(UID(ts), encoding_plugin="", generate_instance_uid=False)
            back = ds.pixel_array
            want = frames if int(ds.get("NumberOfFrames", 1) or 1) > 1 else frames[0]
            if np.array_equal(back.reshape(want.shape), want):
                return ts
        except Exception:  # no encoder for this data: fall back to uncompressed
            pass
        ts = ExplicitVRLittleEndian
    if ts not in NATIVE:
        raise DicomCubeError(f"cannot write transfer syntax {ts} losslessly")
    ds[pixel_tag] = DataElement(pixel_tag, pixel_vr or ("OB" if frames.dtype.itemsize == 1 else "OW"),
                                _native_bytes(ds, frames, ts == ExplicitVRBigEndian))
    return ts


def _dataset(image: DicomCubeImage, meta, k: int, frames: np.ndarray,
             transfer_syntax: Optional[str]) -> Dataset:
    ds = meta.index(k)
    info = meta.slice_info[k] if k < len(getattr(meta, "slice_info", [])) else {}
    pixel_tag = int(info.get("pixel_tag") or "7FE00010", 16)
    pixel_vr = info.get("pixel_vr")
    fm = getattr(ds, "file_meta", None)
    if fm is None or len(fm) == 0:  # e.g. metadata of a version-1 file
        fm = FileMetaDataset()
        fm.MediaStorageSOPClassUID = ds.get("SOPClassUID", "")
        fm.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", "")
        fm.TransferSyntaxUID = ExplicitVRLittleEndian
        from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

        fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.file_meta = fm
    source = str(fm.get("TransferSyntaxUID", "") or "").rstrip("\0 ") or None
    frames = _stored_values(image, ds, frames)
    ts = _target_syntax(source, transfer_syntax)
    used = _encode(ds, frames, ts, pixel_tag, pixel_vr)
    ds.file_meta.TransferSyntaxUID = UID(used)
    if getattr(ds, "preamble", None) is None:
        ds.preamble = b"\0" * 128
    return ds


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

    planned = {rel: {"pending": True} for rel in names}
    _write_manifest(folder, {**{r: old[r] for r in own}, **planned})
    written: dict = {}
    paths = []
    try:
        for k, rel in enumerate(names):
            ds = _dataset(image, meta, k, raw[k * per:(k + 1) * per], transfer_syntax)
            path = os.path.join(folder, *rel.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with atomic_write(path) as fh:
                pydicom.dcmwrite(fh, ds, enforce_file_format=False)
            written[rel] = {"size": os.path.getsize(path), "crc32c": _file_crc(path)}
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
