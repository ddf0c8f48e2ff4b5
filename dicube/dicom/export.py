"""Export a DicomCubeImage as a folder of DICOM Part 10 files, one per source file.

Each file's data set is rebuilt from the DicomMeta (element for element as the source)
with the original stored pixel values. A small manifest (``.dicube-export.json``) lists
what was written, so a later export with ``overwrite=True`` replaces only those files.
"""
from __future__ import annotations

import json
import os
import posixpath
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import pixel_array
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
from ..codecs import jxl
from ..codecs.jph import (
    HAS_TLM,
    HTJ2K,
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    build_info,
    crc32c,
    encode_batch,
    read_header,
)
from ..exceptions import (
    CodecError,
    DataConsistencyError,
    DicomCubeError,
    MetaDataError,
    ColourConversionWarning,
    UnsafeTargetError,
    UnsupportedTransferSyntaxError,
    WriteError,
)
from ..storage.atomic import is_temp_name, write_error
from ..storage.target_dir import LINK_MESSAGE, TargetDir
from ..core.image import DicomCubeImage
from .part10 import SEQ_DELIM, PixelElement, dicube_file_meta, encapsulate_frames, encode_part10
from .photometric import (
    CONVERTED,
    output_photometric,
    pack_ybr_422,
    replace_group_0028,
    set_pixel_module,
    to_output_colour,
)

__all__ = ["save_to_dicom_folder", "check_transfer_syntax", "ExportedFiles", "MANIFEST"]

MANIFEST = ".dicube-export.json"
NATIVE = {ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian,
          DeflatedExplicitVRLittleEndian}
HTJ2K_SYNTAXES = {HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, HTJ2K}
#: Compressed syntaxes pydicom can encode losslessly (checked by decoding back).
PYDICOM_LOSSLESS = {RLELossless, JPEGLSLossless, JPEG2000Lossless}
#: JPEG XL Lossless (PS3.5 A.4.13): written on request only (pydicom and GDCM cannot
#: decode it), with dicube's JPEG XL encoder (the ``archive`` extra).
JXL_LOSSLESS = jxl.TRANSFER_SYNTAX
#: Pixel-value attributes in stored units (US/SS).
STORED_UNIT_TAGS = ("00280106", "00280107", "00280108", "00280109", "00280120", "00280121")
#: Syntaxes whose codestreams are always lossy (JPEG 1 DCT processes).
LOSSY_ONLY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"}
#: pydicom encoder plugins used, in order (not gdcm: its encoders abort the process on
#: some inputs, e.g. a 3x3 RGB image as RLE).
PLUGINS = {RLELossless: ("pylibjpeg", "pydicom"), JPEGLSLossless: ("pyjpegls",),
           JPEG2000Lossless: ("pylibjpeg",)}


# ------------------------------------------------------------------------ manifest
def _read_manifest(target: TargetDir) -> dict:
    try:
        with target.open_read(MANIFEST) as fh:
            doc = json.load(fh) if fh is not None else {}
        files = doc.get("files", {}) if isinstance(doc, dict) else {}
        return files if isinstance(files, dict) else {}
    except (OSError, ValueError, RecursionError):
        return {}


def _write_manifest(target: TargetDir, files: dict) -> None:
    doc = {"writer": f"dicube {__version__}", "files": files}
    target.write(MANIFEST, json.dumps(doc, indent=1, sort_keys=True).encode("utf-8"))


def _own(target: TargetDir, rel: str, entry) -> bool:
    """True if ``rel`` is a file we wrote and nobody changed since."""
    if not isinstance(entry, dict):
        return False
    with target.open_read(rel) as fh:
        if fh is None:
            return False
        if entry.get("pending"):  # an export stopped before listing it: ours if it is the
            return _sop_uid(fh) == entry.get("sop")  # instance planned under that name
        size = os.fstat(fh.fileno()).st_size
        return entry.get("size") == size and entry.get("crc32c") == crc32c(fh.read())


def _sop_uid(fh) -> Optional[str]:
    try:
        ds = pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=[0x00080018])
        return str(ds.SOPInstanceUID)
    except Exception:  # not DICOM, unreadable, no such element: not ours
        return None


# ------------------------------------------------------------------------ names
def _safe_name(name) -> Optional[str]:
    """``name`` as a relative path inside the export folder, or None when it cannot be one."""
    if not name or not isinstance(name, str) or "\0" in name:
        return None
    n = posixpath.normpath(name.replace("\\", "/"))
    if n.startswith(("/", "../")) or n in (".", "..") or n == MANIFEST or "/../" in n:
        return None
    try:
        parts = [os.fsencode(p) for p in n.split("/")]
    except UnicodeError:
        return None
    if any(len(p) > 255 for p in parts) or any(is_temp_name(p) for p in n.split("/")):
        return None
    return n


def _names(meta, count: int) -> list[str]:
    """The stored file names when all of them are usable, else 00001.dcm, 00002.dcm, ..."""
    stored = list(getattr(meta, "filenames", None) or [None] * count)
    names = [_safe_name(f) for f in stored]
    if len(names) == count and None not in names and _distinct(names):
        return names
    bad = next((f for f, n in zip(stored, names) if f is not None and n is None), None)
    if bad is not None or any(f is not None for f in stored):
        why = f"{bad!r} cannot be a file name inside the folder" if bad is not None else \
            "they are incomplete or not unique (case-insensitively)"
        warnings.warn(f"the stored file names are not used ({why}); files are numbered "
                      "00001.dcm, 00002.dcm, ... instead", UserWarning, stacklevel=3)
    width = max(5, len(str(count)))
    return [f"{i + 1:0{width}d}.dcm" for i in range(count)]


def _distinct(names: list[str]) -> bool:
    """No two names equal (case-insensitively) and none is a folder of another."""
    lower = [n.lower() for n in names]
    folders = {a for n in lower for a in _ancestors(n)}
    return len(set(lower)) == len(lower) and not folders & set(lower)


# ------------------------------------------------------------------------ pixels
def first_value(header: dict, key: str, default=None):
    """First value of a top-level JSON element as a Python value, or ``default``."""
    from .dicom_json import json_value_to_python

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


def native_pixel_bytes(header: dict, frames: np.ndarray, big_endian: bool, vr: str = "OW") -> bytes:
    """Native pixel bytes as ``header`` (group 0028 as written) describes them: planar
    colour, 1-bit packing, big endian 16-bit words, 4:2:2 chroma (packed exactly or not
    at all: DataConsistencyError)."""
    arr = frames
    if arr.ndim == 4 and first_value(header, "00280004") == "YBR_FULL_422":
        arr = pack_ybr_422(arr)
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


# ------------------------------------------------------------------ transfer syntaxes
def _name(ts: str) -> str:
    return f"{ts} ({UID(ts).name})" if UID(ts).name != ts else ts


def syntax_name(ts: Optional[str]) -> str:
    """``UID (name)`` of a transfer syntax, for messages."""
    return _name(str(ts)) if ts else "none"


def _no_tlm() -> str:
    return (f"{_name(HTJ2K_LOSSLESS_RPCL)} needs an OpenJPH that writes TLM markers (0.10 or "
            f"newer); this build has OpenJPH {build_info().openjph_version} (use "
            f"{_name(HTJ2K_LOSSLESS)}, or rebuild against a newer OpenJPH)")


def check_transfer_syntax(ts: str) -> None:
    """Raise UnsupportedTransferSyntaxError unless dicube can write ``ts`` at all (what
    the pixels allow is only known when encoding them), naming what is missing."""
    ts = str(ts)
    if ts in NATIVE or ts in (HTJ2K_LOSSLESS, HTJ2K):
        return
    if ts == HTJ2K_LOSSLESS_RPCL:
        if not HAS_TLM:
            raise UnsupportedTransferSyntaxError(_no_tlm())
        return
    if ts == JXL_LOSSLESS:
        try:
            jxl.backend()
        except CodecError as exc:
            raise UnsupportedTransferSyntaxError(f"{_name(ts)}: {exc.reason}") from None
        return
    if ts in PYDICOM_LOSSLESS:
        from pydicom.pixels import get_encoder

        enc = get_encoder(UID(ts))
        if not any(p in enc.available_plugins for p in PLUGINS[ts]):
            missing = "; ".join(enc.missing_dependencies) or "no encoder plugin"
            raise UnsupportedTransferSyntaxError(
                f"{_name(ts)} needs one of pydicom's encoder plugins {', '.join(PLUGINS[ts])}: "
                f"{missing}")
        return
    writable = sorted(NATIVE | {HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, HTJ2K, JXL_LOSSLESS}
                      | PYDICOM_LOSSLESS)
    raise UnsupportedTransferSyntaxError(
        f"{_name(ts)} cannot be written: dicube writes the stored values losslessly, in one "
        f"of {', '.join(writable)}")


def match_codestream(header: dict, info) -> None:
    """Set the pixel module attributes of ``header`` that must agree with an encapsulated
    codestream (``info``: :func:`dicube.codecs.jph.read_header`): Bits Stored, High Bit,
    Pixel Representation, and for colour the Photometric Interpretation of full-resolution
    samples (YBR_RCT/YBR_ICT when the codestream has the colour transform) and Planar
    Configuration 0."""
    def us(v: int) -> dict:
        return {"vr": "US", "Value": [int(v)]}

    if info.bits_stored != first_value(header, "00280101"):
        header["00280101"] = us(info.bits_stored)
        header["00280102"] = us(info.bits_stored - 1)
    if "00280103" in header and int(info.signed) != first_value(header, "00280103"):
        header["00280103"] = us(int(info.signed))
    if info.components == 3:
        pi = ("YBR_RCT" if info.reversible else "YBR_ICT") if info.color_transform \
            else output_photometric(header, native=False)
        set_pixel_module(header, pi, 0)


def _ds_text(v: float) -> str:
    from pydicom.valuerep import format_number_as_ds

    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else format_number_as_ds(float(v))


def match_jxl(header: dict, bits: int, signed: bool, colour: bool) -> None:
    """Set the pixel module of ``header`` for an encapsulated dicube JPEG XL codestream
    (:mod:`dicube.codecs.jxl`: ``bits`` coded, unsigned; signed samples stored offset by
    2**(bits-1)).

    PS3.5 8.2.15: the pixel attributes must agree with the codestream, and a JPEG XL
    codestream has no sign. So Bits Stored/High Bit follow ``bits``, and a signed frame is
    described as what the codestream holds: Pixel Representation 0, RescaleIntercept
    lowered by 2**(bits-1) x RescaleSlope and the stored-unit attributes (smallest/largest
    value, padding) raised by 2**(bits-1): every real (rescaled) value is unchanged.
    UnsupportedTransferSyntaxError where that cannot be said: signed samples without
    RescaleIntercept (e.g. MR) or with a Modality LUT / Real World Value Mapping on stored
    values, colour other than RGB.
    """
    def us(v: int) -> dict:
        return {"vr": "US", "Value": [int(v)]}

    if colour:
        pi = output_photometric(header, native=False)
        if pi != "RGB":
            raise UnsupportedTransferSyntaxError(f"{_name(JXL_LOSSLESS)}: dicube's JPEG XL frames "
                                                 f"carry colour as RGB, these are {pi}")
        set_pixel_module(header, pi, 0)
    new = {k: v for k, v in header.items() if k.startswith("0028") and k != "00280000"}
    new["00280101"], new["00280102"] = us(bits), us(bits - 1)
    if signed:
        why = "no RescaleIntercept to describe the stored offset" if "00281052" not in header \
            else "a Modality LUT Sequence maps the stored values" if "00283000" in header \
            else "a Real World Value Mapping maps the stored values" if "00409096" in header \
            else None
        if why is None:
            half = 1 << (bits - 1)
            slope = float(first_value(header, "00281053", 1))
            target = float(first_value(header, "00281052", 0)) - half * slope
            text = _ds_text(target)
            if float(text) != target:
                why = f"RescaleIntercept {target!r} does not fit a DS value"
        if why is not None:
            raise UnsupportedTransferSyntaxError(
                f"{_name(JXL_LOSSLESS)} holds unsigned samples only and signed ones cannot be "
                f"relabelled here: {why}")
        new["00281052"] = {"vr": "DS", "Value": [text]}
        new["00280103"] = us(0)
        for key in STORED_UNIT_TAGS:
            elem = header.get(key)
            if elem is None:
                continue
            values = elem.get("Value") or []
            if all(isinstance(v, int) and 0 <= v + half < 2 * half for v in values):
                new[key] = {"vr": "US", "Value": [v + half for v in values]}
            else:
                del new[key]
    replace_group_0028(header, new)


def _jxl_frames(frames: np.ndarray, header: dict) -> list[bytes]:
    """JPEG XL Lossless codestreams of ``frames`` (checked by decoding back); sets the pixel
    module of ``header`` (:func:`match_jxl`)."""
    ts = JXL_LOSSLESS
    dt = frames.dtype.newbyteorder("=")
    if dt.kind not in "iu" or dt.itemsize > 2:
        raise UnsupportedTransferSyntaxError(f"{_name(ts)}: dicube codes 8 or 16-bit integers, "
                                             f"not {frames.dtype}")
    bits = dt.itemsize * 8
    match_jxl(header, bits, dt.kind == "i", frames.ndim == 4)
    vol = np.ascontiguousarray(frames, dtype=dt)
    try:
        streams = jxl.encode_batch(vol)
        jxl.verify_batch(streams, vol)
    except CodecError as exc:
        raise UnsupportedTransferSyntaxError(f"{_name(ts)}: {exc.reason}") from exc
    return streams


def _htj2k_frames(frames: np.ndarray, header: dict, ts: str) -> list[bytes]:
    bits = first_value(header, "00280101")
    try:
        return encode_batch(frames, bits_stored=int(bits) if bits else None)
    except CodecError:
        try:
            return encode_batch(frames)
        except CodecError as exc:
            raise UnsupportedTransferSyntaxError(
                f"{_name(ts)} cannot hold these pixels losslessly: {exc.reason}") from exc


def _one_line(exc: Exception, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _pydicom_compress(header: dict, frames: np.ndarray, ts: str) -> bytes:
    """Encapsulated pixel data in ``ts`` made by pydicom's encoders (``header``: group 0028
    as written), checked by decoding back; UnsupportedTransferSyntaxError when they cannot
    encode these pixels losslessly or would change the pixel attributes."""
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
    arr = frames if len(frames) > 1 else frames[0]
    errors = []
    for plugin in PLUGINS[ts]:  # never gdcm: its encoders can abort the process
        try:
            ds.compress(UID(ts), arr, encoding_plugin=plugin, generate_instance_uid=False)
        except Exception as exc:  # noqa: BLE001 - plugin missing, unsupported bit depth...
            errors.append(f"{plugin}: {_one_line(exc)}")
            continue
        changed = sorted(str(e.keyword) for e in ds if e.tag != 0x7FE00010
                         and before.get(e.tag) != e.value)
        if changed:
            errors.append(f"{plugin}: the encoder changes {', '.join(changed)}")
        elif not np.array_equal(pixel_array(ds, as_rgb=False).reshape(arr.shape), arr):
            errors.append(f"{plugin}: the pixels decoded back differ")
        else:
            return bytes(ds.PixelData)
        for e in list(ds):  # restore the attributes for the next plugin
            if e.tag != 0x7FE00010 and e.tag not in before:
                del ds[e.tag]
        for tag, value in before.items():
            ds[tag].value = value
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    texts = [e.split(": ", 1) for e in errors]
    if len({t for _, t in texts}) == 1:  # every plugin said the same
        errors = [f"{', '.join(p for p, _ in texts)}: {texts[0][1]}"]
    raise UnsupportedTransferSyntaxError(
        f"{_name(ts)} cannot hold these pixels losslessly ({'; '.join(errors)})")


def _pixel(header: dict, info: dict, frames: np.ndarray, ts: str) -> tuple[PixelElement, bool]:
    """(The pixel data element for ``frames`` in syntax ``ts``, whether the colours were
    converted for the IOD); sets the pixel module attributes of ``header`` to describe it.
    UnsupportedTransferSyntaxError when ``ts`` cannot hold these pixels unchanged."""
    tag = int(info.get("pixel_tag") or "7FE00010", 16)
    vr = info.get("pixel_vr") or ("OB" if frames.dtype.itemsize == 1 else "OW")
    implicit = ts == ImplicitVRLittleEndian
    if ts in NATIVE:
        pi = output_photometric(header, native=True)
        frames, converted = to_output_colour(header, frames, pi)
        set_pixel_module(header, pi, implicit=implicit)
        data = native_pixel_bytes(header, frames, ts == ExplicitVRBigEndian, vr)
        return PixelElement(tag, vr, data), converted
    colour = frames.ndim == 4
    if tag != 0x7FE00010:
        raise UnsupportedTransferSyntaxError(f"{_name(ts)}: pixel data in ({tag >> 16:04X},"
                                             f"{tag & 0xFFFF:04X}) can only be written native")
    if ts == JXL_LOSSLESS:
        return PixelElement(0x7FE00010, "OB", encapsulate_frames(_jxl_frames(frames, header)),
                            True), False
    if ts in HTJ2K_SYNTAXES:
        streams = _htj2k_frames(frames, header, ts)
        met = read_header(streams[0]).transfer_syntax or HTJ2K_LOSSLESS
        if ts == HTJ2K_LOSSLESS_RPCL and met != ts:
            raise UnsupportedTransferSyntaxError(
                _no_tlm() if not HAS_TLM else f"{_name(ts)}: the codestreams meet only {_name(met)}")
        match_codestream(header, read_header(streams[0]))
        return PixelElement(0x7FE00010, "OB", encapsulate_frames(streams), True), False
    pi = output_photometric(header, native=False)
    if ts == JPEG2000Lossless and first_value(header, "00280004") == "YBR_RCT":
        pi = "YBR_RCT"  # pydicom's encoder applies the reversible colour transform again
    set_pixel_module(header, pi, 0 if colour and ts != RLELossless else None)
    data = _pydicom_compress(header, frames, ts)
    if data.endswith(SEQ_DELIM):  # PixelElement adds its own delimiter
        data = data[:-len(SEQ_DELIM)]
    return PixelElement(tag, "OB", data, True), False


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


def _default_syntaxes(source: Optional[str]) -> list[str]:
    """The syntaxes tried for ``transfer_syntax=None``: the source's when it can be
    written losslessly, then HTJ2K Lossless for an HTJ2K source, then Explicit VR LE."""
    tried = [source] if source in NATIVE or source in HTJ2K_SYNTAXES or source in PYDICOM_LOSSLESS \
        else []
    if source in HTJ2K_SYNTAXES and source != HTJ2K_LOSSLESS:
        tried.append(HTJ2K_LOSSLESS)
    return tried + [ExplicitVRLittleEndian]


@dataclass
class Written:
    """One exported file: its bytes, syntax, the source's syntax, why that was not used
    (None when it was or a syntax was asked for), whether colours were converted."""

    data: bytes
    transfer_syntax: str
    source_syntax: Optional[str]
    reason: Optional[str]
    converted: bool


def _file_bytes(image: DicomCubeImage, meta, k: int, frames: np.ndarray,
               transfer_syntax: Optional[str]) -> Written:
    """The Part 10 file of slice ``k`` (see :class:`Written`)."""
    header, info, preamble = slice_header(meta, k)
    source = first_value(header, "00020010")
    source = str(source).rstrip("\0 ") if source else None
    frames = _stored_values(image, header, frames)
    tried = [str(transfer_syntax)] if transfer_syntax is not None else _default_syntaxes(source)
    why = None if transfer_syntax is not None or source in tried else \
        "lossy, written decompressed" if source in LOSSY_ONLY else \
        "dicube does not write it; written decompressed"
    for n, ts in enumerate(tried):
        out = dict(header)
        try:
            pixel, converted = _pixel(out, info, frames, ts)
        except UnsupportedTransferSyntaxError as exc:
            if n + 1 == len(tried):
                raise
            why = exc.reason
            continue
        if ts != source:
            out["00020010"] = {"vr": "UI", "Value": [ts]}
            out.pop("00020000", None)  # recomputed for the new file meta
        return Written(encode_part10(out, pixel, ts, preamble), ts, source, why, converted)
    raise AssertionError("unreachable")


class ExportedFiles(list):
    """The paths written by :func:`save_to_dicom_folder` (a list), with per file
    ``transfer_syntaxes`` (written), ``source_syntaxes`` and ``reasons`` (why the
    source's syntax was not used, None when it was or when a syntax was asked for)."""

    def __init__(self, paths=()):
        super().__init__(paths)
        self.transfer_syntaxes: list = []
        self.source_syntaxes: list = []
        self.reasons: list = []

    def changed_syntaxes(self) -> dict:
        """``{(source syntax, written syntax, reason): file count}`` where they differ."""
        out: dict = {}
        for key in zip(self.source_syntaxes, self.transfer_syntaxes, self.reasons):
            if key[0] != key[1]:
                out[key] = out.get(key, 0) + 1
        return out


def save_to_dicom_folder(image: DicomCubeImage, folder: "os.PathLike[str] | str", *,
                         transfer_syntax: Optional[str] = None,
                         overwrite: bool = False) -> "ExportedFiles":
    """Write one DICOM Part 10 file per source file of ``image``; return their paths
    (an :class:`ExportedFiles` list, which also says the syntax of each file).

    Data sets equal the source files element for element, pixel values are the stored
    values, SOP Instance UIDs and file meta are kept, file names follow the source when
    known. ``transfer_syntax=None`` writes the source's syntax when the stored values can
    be written in it losslessly (native syntaxes, HTJ2K, RLE/JPEG-LS/JPEG 2000 lossless
    through pydicom's encoders), else Explicit VR Little Endian (HTJ2K Lossless first for
    an HTJ2K source): a lossy source (JPEG baseline, ...) is written decompressed, as its
    decoder gives it. A named ``transfer_syntax`` that cannot be produced, or cannot hold
    the pixels unchanged, raises UnsupportedTransferSyntaxError.

    Decompressed colour follows PS3.5 8.2.1: a JPEG YBR_FULL_422 source becomes YBR_FULL
    (its decoder upsampled the chroma), a JPEG 2000 YBR_RCT/YBR_ICT source RGB outside
    JPEG 2000 (see :mod:`dicube.dicom.photometric`); Lossy Image Compression is kept.

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
    if transfer_syntax is not None:
        check_transfer_syntax(str(transfer_syntax))
    folder = os.fspath(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise WriteError("exists and is not a folder", folder)
    names = _names(meta, n)
    try:
        with TargetDir(folder) as target:
            return _export(image, meta, target, names, per, transfer_syntax, overwrite)
    except OSError as exc:  # not expected: TargetDir names the file in its own errors
        raise write_error(exc, folder) from exc


def _ancestors(rel: str) -> list[str]:
    """``a``, ``a/b`` for ``a/b/c``."""
    parts = rel.split("/")[:-1]
    return ["/".join(parts[:i + 1]) for i in range(len(parts))]


def _export(image: DicomCubeImage, meta, target: TargetDir, names: list[str], per: int,
            transfer_syntax: Optional[str], overwrite: bool) -> ExportedFiles:
    raw = image.raw_image
    existing, links = target.walk()
    on_the_way = {MANIFEST} | {a for rel in names for a in [rel, *_ancestors(rel)]}
    unsafe = sorted(set(links) & on_the_way)
    if unsafe:  # before anything is written
        raise UnsafeTargetError(LINK_MESSAGE, target.shown(unsafe[0]))
    if (existing or links) and not overwrite:
        raise DicomCubeError(f"folder is not empty ({len(existing) + len(links)} files); "
                             "pass overwrite=True to replace files exported before", target.path)
    old = _read_manifest(target)
    own = {rel for rel in existing if _own(target, rel, old.get(rel))}
    foreign = set(existing) - own
    clash = sorted(set(names) & foreign) + sorted(
        {a for rel in names for a in _ancestors(rel)} & set(existing))
    if clash:
        raise DicomCubeError(f"would overwrite files not written by dicube: {clash[:5]}", target.path)

    uids = meta.get_values("SOPInstanceUID")
    planned = {rel: {"pending": True, "sop": None if uids[k] is None else str(uids[k])}
               for k, rel in enumerate(names)}
    _write_manifest(target, {**{r: old[r] for r in own}, **planned})
    written: dict = {}
    paths = ExportedFiles()
    converted = 0
    try:
        for k, rel in enumerate(names):
            w = _file_bytes(image, meta, k, raw[k * per:(k + 1) * per], transfer_syntax)
            target.write(rel, w.data)
            written[rel] = {"size": len(w.data), "crc32c": crc32c(w.data)}
            paths.append(target.shown(rel))
            paths.transfer_syntaxes.append(w.transfer_syntax)
            paths.source_syntaxes.append(w.source_syntax)
            paths.reasons.append(w.reason)
            converted += w.converted
    finally:
        done = len(written) == len(names)
        kept = {r: old[r] for r in own if r not in written}
        if done:  # success: remove our stale files of an earlier export
            for rel in list(kept):
                if rel not in planned and target.unlink(rel):
                    kept.pop(rel)
        try:
            if kept or written or existing or links:
                _write_manifest(target, {**kept, **written})
            else:  # nothing written into an empty folder: leave it empty (a rerun may go)
                target.unlink(MANIFEST)
        except (WriteError, OSError):
            if done:  # else the error that stopped the export is the one to report
                raise
    if converted:
        files = f"{converted} of {len(names)} files" if converted < len(names) else \
            ("1 file" if converted == 1 else f"{converted} files")
        warnings.warn(CONVERTED.format(what=f"{target.path}: {files}"),
                      ColourConversionWarning, stacklevel=3)
    return paths
