"""Which Photometric Interpretation describes the pixels dicube writes back as DICOM.

dicube stores the values pydicom decodes with ``as_rgb=False``: no colour conversion, but
a compressed source comes out of its decoder, and the decoder may already have changed
the colour layout:

- JPEG with YBR_FULL_422 (chroma subsampled inside the JPEG stream): the decoder
  upsamples (interpolates) the chroma, so the values are full-resolution YBR_FULL.
  PS3.5 8.2.1 and PS3.3 C.7.6.3.1.2: decompressed, such an image is YBR_FULL (or RGB
  after a conversion, which would round and change the values). Re-packing it as native
  YBR_FULL_422 would drop every second chroma sample.
- JPEG 2000 / HTJ2K with YBR_RCT or YBR_ICT: the decoder undoes the multi-component
  transform, so the values are RGB.

A native YBR_FULL_422 source is stored with each chroma pair replicated, which packs
back exactly, so native output keeps it (the file is then byte-identical to the source).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..exceptions import DataConsistencyError

__all__ = ["stored_photometric", "output_photometric", "ybr_full_allowed", "to_output_colour",
           "set_pixel_module", "pack_ybr_422", "pixel_difference", "ybr_to_rgb"]

NATIVE_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
                             "1.2.840.10008.1.2.1.99"})
#: JPEG 1 lossy processes: always lossy (DCT), whatever the file says.
JPEG_LOSSY = frozenset({"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"})
PI, PLANAR, LOSSY, LOSSY_METHOD = "00280004", "00280006", "00282110", "00282114"
NO_YBR_FULL = frozenset({"1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.3.1",
                         "1.2.840.10008.5.1.4.1.1.6", "1.2.840.10008.5.1.4.1.1.3",
                         "1.2.840.10008.5.1.4.1.1.7.4"})
VL_IMAGES = "1.2.840.10008.5.1.4.1.1.77.1."

# PS3.3 C.7.6.3.1.2: (Y, Cb, Cr) = M @ (R, G, B) + offset, for 8-bit samples
YBR_FULL = np.array([[0.2990, 0.5870, 0.1140],
                     [-0.1687, -0.3313, 0.5000],
                     [0.5000, -0.4187, -0.0813]])
YBR_PARTIAL = np.array([[0.2568, 0.5041, 0.0979],
                        [-0.1482, -0.2910, 0.4392],
                        [0.4392, -0.3678, -0.0714]])
#: The YBR interpretations whose stored samples are still YBR (YBR_ICT and YBR_RCT are RGB
#: once the JPEG 2000 decoder has undone the transform: see :func:`stored_photometric`).
YBR_TRANSFORMS = {"YBR_FULL": (YBR_FULL, (0.0, 128.0, 128.0)),
                  "YBR_FULL_422": (YBR_FULL, (0.0, 128.0, 128.0)),
                  "YBR_PARTIAL_422": (YBR_PARTIAL, (16.0, 128.0, 128.0)),
                  "YBR_PARTIAL_420": (YBR_PARTIAL, (16.0, 128.0, 128.0))}


def _value(header: dict, key: str):
    v = (header.get(key) or {}).get("Value")
    v = v[0] if isinstance(v, list) and v else None
    return v.strip(" \0") if isinstance(v, str) else v


def source_syntax(header: dict) -> Optional[str]:
    """The source file's Transfer Syntax UID (group 0002 of the stored metadata)."""
    return _value(header, "00020010")


def stored_photometric(header: dict) -> Optional[str]:
    """Photometric Interpretation of the values dicube stores for a source described by
    ``header`` (DICOM JSON with group 0002): pydicom's decoded values, ``as_rgb=False``."""
    pi = _value(header, PI)
    ts = source_syntax(header)
    if pi == "YBR_FULL_422":
        return "YBR_FULL"  # native: chroma pairs replicated on load; JPEG: upsampled
    if pi in ("YBR_RCT", "YBR_ICT") and ts not in NATIVE_SYNTAXES:
        return "RGB"  # the JPEG 2000 decoder undid the colour transform
    return pi


def ybr_full_allowed(header: dict) -> bool:
    """False for the IODs whose Photometric Interpretation is an enumerated list without
    YBR_FULL (US Image and US Multi-frame, PS3.3 C.8.5.6.1.2; Multi-frame True Color
    Secondary Capture; the VL images, 77.1.x), as dciodvfy checks them."""
    sop = str(_value(header, "00080016") or _value(header, "00020002") or "")
    return sop not in NO_YBR_FULL and not sop.startswith(VL_IMAGES)


def output_photometric(header: dict, native: bool, convert: bool = True) -> Optional[str]:
    """Photometric Interpretation of the stored values written as native pixel data
    (``native``) or as a codestream of full-resolution samples without colour transform.
    Decompressed YBR_FULL_422 becomes RGB in native output (see :func:`to_output_colour`)
    where the IOD does not allow YBR_FULL, unless ``convert`` is False."""
    pi = _value(header, PI)
    if native and pi == "YBR_FULL_422" and source_syntax(header) in NATIVE_SYNTAXES:
        return pi  # packed back exactly: the source's own bytes
    out = stored_photometric(header)
    if native and convert and out == "YBR_FULL" != pi and not ybr_full_allowed(header):
        return "RGB"
    return out


def to_output_colour(header: dict, frames: np.ndarray, photometric: Optional[str]
                     ) -> tuple[np.ndarray, bool]:
    """(frames in ``photometric``, whether they were converted): stored YBR_FULL values
    written as RGB go through pydicom's YBR_FULL -> RGB conversion (what pydicom shows
    for the source), which rounds; other values are returned as they are."""
    if photometric != "RGB" or stored_photometric(header) != "YBR_FULL" or frames.ndim != 4:
        return frames, False
    if frames.dtype != np.uint8:
        raise DataConsistencyError(f"YBR_FULL {frames.dtype} pixels cannot be converted to RGB")
    from pydicom.pixels import convert_color_space

    return convert_color_space(frames, "YBR_FULL", "RGB"), True


def ybr_to_rgb(values: np.ndarray, photometric: str, bits: int = 8) -> Optional[np.ndarray]:
    """float32 RGB of (..., 3) stored samples in the YBR ``photometric`` (PS3.3
    C.7.6.3.1.2 inverted, scaled to ``bits`` and clipped to its range, not rounded), or
    None when the samples of that interpretation are not YBR."""
    if photometric not in YBR_TRANSFORMS:
        return None
    m, offset = YBR_TRANSFORMS[photometric]
    scale = 2.0 ** (bits - 8)
    inv = np.linalg.inv(m).astype(np.float32)
    ybr = values.astype(np.float32) - np.float32(scale) * np.asarray(offset, np.float32)
    rgb = ybr @ inv.T
    return np.clip(rgb, 0, 2.0 ** bits - 1, out=rgb)


CONVERTED = ("{what} of an IOD that does not allow YBR_FULL: the decompressed YCbCr pixels "
             "are written as RGB with pydicom's conversion (what pydicom shows for the "
             "source; it rounds, so the stored YCbCr values are not in these files; an "
             "HTJ2K export keeps them)")


def set_pixel_module(header: dict, photometric: Optional[str], planar: Optional[int] = None,
                     implicit: bool = False) -> None:
    """Set Photometric Interpretation (and Planar Configuration when given) in ``header``
    (DICOM JSON) for the pixel data written; a JPEG-lossy source gets Lossy Image
    Compression 01 if it did not say so. A group length (0028,0000) follows the change."""
    group = {k: v for k, v in header.items() if k.startswith("0028") and k != "00280000"}
    new = dict(group)
    if photometric is not None and _value(header, PI) != photometric:
        new[PI] = {"vr": "CS", "Value": [photometric]}
    if planar is not None and PLANAR in header and _value(header, PLANAR) != planar:
        new[PLANAR] = {"vr": "US", "Value": [planar]}
    if source_syntax(header) in JPEG_LOSSY and LOSSY not in header:
        new[LOSSY] = {"vr": "CS", "Value": ["01"]}
        new.setdefault(LOSSY_METHOD, {"vr": "CS", "Value": ["ISO_10918_1"]})
    if new != group:
        replace_group_0028(header, new, implicit)


def replace_group_0028(header: dict, new: dict, implicit: bool = False) -> None:
    """Replace the group 0028 elements of ``header`` by ``new`` (a whole group), keeping a
    (0028,0000) group length right."""
    from .part10 import encode_dataset

    group = {k: v for k, v in header.items() if k.startswith("0028") and k != "00280000"}
    length = header.get("00280000")
    if length and length.get("Value"):
        sizes = []
        for g in (group, new):
            out = bytearray()
            encode_dataset(g, ["iso8859"], implicit, out)
            sizes.append(len(out))
        header["00280000"] = {"vr": "UL", "Value": [int(length["Value"][0]) + sizes[1] - sizes[0]]}
    for key in set(group) - set(new):
        del header[key]
    header.update(new)


def pack_ybr_422(arr: np.ndarray) -> np.ndarray:
    """(frames, rows, cols, 3) YBR with each chroma pair replicated (as loaded from a native
    YBR_FULL_422 source) -> the stored Y0 Y1 Cb Cr order of PS3.3 C.7.6.3.1.2. Raises
    DataConsistencyError when a pair's chroma differ (they would be lost)."""
    if arr.shape[2] % 2:
        raise DataConsistencyError(f"YBR_FULL_422 needs an even number of columns, not "
                                   f"{arr.shape[2]}")
    even, odd = arr[:, :, 0::2, 1:], arr[:, :, 1::2, 1:]
    if not np.array_equal(even, odd):
        raise DataConsistencyError(
            "the pixels are not YBR_FULL_422 (the chroma of some pixel pairs differ) and "
            "cannot be written as such without changing them; export them as HTJ2K")
    packed = np.empty(arr.shape[:2] + (arr.shape[2] // 2, 4), arr.dtype)
    packed[..., 0] = arr[:, :, 0::2, 0]
    packed[..., 1] = arr[:, :, 1::2, 0]
    packed[..., 2] = even[..., 0]
    packed[..., 3] = even[..., 1]
    return packed


def pixel_difference(source, exported) -> Optional[str]:
    """None when two DICOM files (paths, file objects or pydicom Datasets) hold the same
    pixels, value for value, as pydicom decodes them without colour conversion, in the
    Photometric Interpretation each decoded array is in; else what differs.

    Meant to check an export against its source (a JPEG YBR_FULL_422 source and its
    YBR_FULL export compare equal: both decode to the same full-resolution YBR values; an
    export converted to RGB for its IOD is compared with pydicom's RGB of the source)."""
    import pydicom
    from pydicom.pixels import pixel_array

    arrays, kinds, sets = [], [], []
    for src in (source, exported):
        ds = src if isinstance(src, pydicom.Dataset) else pydicom.dcmread(src)
        header = {"00020010": {"Value": [str(ds.file_meta.TransferSyntaxUID)]},
                  PI: {"Value": [str(ds.get("PhotometricInterpretation", ""))]}}
        sets.append(ds)
        arrays.append(pixel_array(ds, as_rgb=False))
        kinds.append(stored_photometric(header))
    (a, b), (pa, pb) = arrays, kinds
    if (pa, pb) == ("YBR_FULL", "RGB"):  # converted for the IOD: pydicom's RGB of the source
        a, pa = pixel_array(sets[0], as_rgb=True), "RGB"
    if pa != pb:
        return f"decoded colour spaces differ: {pa} != {pb}"
    if a.shape != b.shape:
        return f"shapes differ: {a.shape} != {b.shape}"
    if a.dtype != b.dtype and not np.array_equal(a.astype(np.int64), b.astype(np.int64)):
        return f"dtypes differ: {a.dtype} != {b.dtype}"
    if not np.array_equal(a, b):
        diff = np.abs(a.astype(np.int64) - b.astype(np.int64))
        return f"{int((diff > 0).sum())} samples differ, by up to {int(diff.max())}"
    return None
