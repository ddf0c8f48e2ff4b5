"""DICOM rules for pixels that went through lossy coding (the .dcbl variant).

A .dcbl stores the source's values quantised with a guaranteed maximum error. Its DICOM
instances (export, streaming) carry the *rebuilt* values in the source's own pixel module
(same Bits Stored, Pixel Representation, Rescale Slope/Intercept), so any reader interprets
them as before; what changes is what PS3.3 asks of an image that was lossy compressed:

- Lossy Image Compression (0028,2110) ``01``; Lossy Image Compression Ratio (0028,2112) and
  Method (0028,2114) with this step's ratio and method appended to any earlier values
  (C.7.6.1.1.5); Derivation Description (0008,2111) naming the quantisation and bound, a
  Derivation Code Sequence (0008,9215) item (113040, DCM, "Lossy Compression").
- Image Type (0008,0008) value 1 ``DERIVED``.
- A new SOP Instance UID (and Media Storage SOP Instance UID) per instance and a new Series
  Instance UID: ``2.25.`` UUIDs derived from the source UID, the bound and the quantisation
  offset, so repeated saves of the same data agree, while another bound or offset (which
  rebuild other values) gets other UIDs. A lossy series never merges with its source in a PACS.
- Source Image Sequence (0008,2112): the source instance, with Purpose of Reference
  (0040,A170) = (121320, DCM, "Uncompressed predecessor"), appended to earlier items.

:func:`derive_meta` applies them to a series' metadata when the .dcbl is written, so the
file's META section already describes the lossy instances; :func:`stored_bound` turns an
error bound in real units (HU for CT) into stored units.
"""
from __future__ import annotations

import math
import numbers
import uuid
from typing import Optional, Sequence, Tuple

import numpy as np

from ..exceptions import DataConsistencyError

#: Lossy Image Compression Method defined terms (PS3.3 C.7.6.1.1.5.1) of the inner codecs.
METHODS = {"jxl": "ISO_18181_1", "htj2k": "ISO_15444_15"}
#: Purpose of Reference of the source in Source Image Sequence (DCM code 121320).
PREDECESSOR = ("121320", "DCM", "Uncompressed predecessor")
#: Derivation Code Sequence item (DCM code 113040).
LOSSY_DERIVATION = ("113040", "DCM", "Lossy Compression")

_ST_MAX = 1024  # Derivation Description is ST


def derived_uid(source_uid: str, bound: int, offset: int, what: str) -> str:
    """A ``2.25.`` UID (PS3.5 B.2, a name-based UUID) derived from ``source_uid``, the bound and the offset of
    the quantisation; ``what`` ("instance", "series") keeps the kinds apart."""
    name = f"dicube-lossy|{what}|{source_uid}|{bound}|{offset}"
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, name).int}"  # name-based UUID (X.667)


def stored_bound(bound, slopes: Sequence[float], rescaled: bool, modality: Optional[str],
                 rescale_type: Optional[str]) -> Tuple[int, str, float]:
    """(N in stored units, units, guaranteed real bound) for a maximum error ``bound``.

    With a modality rescale (``rescaled``), ``bound`` is in real units: N = floor(bound /
    max|slope|), so N stored units never exceed ``bound`` on any slice (the guaranteed
    bound N * max|slope| may be smaller than asked). Units: "HU" for CT, else the
    RescaleType, else "rescaled". Without a rescale, ``bound`` is in stored units and must
    be a whole number. DataConsistencyError when it is below one stored unit.
    """
    if isinstance(bound, (bool, np.bool_)) or not isinstance(bound, numbers.Real) \
            or not math.isfinite(bound) or bound <= 0:
        raise DataConsistencyError(f"the error bound must be a positive number, not {bound!r}")
    if not rescaled:
        if bound != int(bound):
            raise DataConsistencyError(f"the error bound {bound} must be a whole number of stored "
                                       "units (the image has no rescale)")
        return int(bound), "stored", float(int(bound))
    bound = float(bound)
    scale = max(abs(float(s)) for s in slopes) if slopes else 1.0
    if not math.isfinite(scale) or scale <= 0:
        raise DataConsistencyError(f"RescaleSlope {scale} cannot carry an error bound")
    n = int(math.floor(bound / scale + 1e-9))
    units = "HU" if (modality or "").upper() == "CT" else (rescale_type or "rescaled")
    if n < 1:
        raise DataConsistencyError(f"the error bound {bound} {units} is below one stored unit "
                                   f"(RescaleSlope {scale:g}): save losslessly instead")
    return n, units, n * scale


def _code(value: str, scheme: str, meaning: str) -> dict:
    return {"00080100": {"vr": "SH", "Value": [value]}, "00080102": {"vr": "SH", "Value": [scheme]},
            "00080104": {"vr": "LO", "Value": [meaning]}}


def _values(header: dict, tag: str) -> list:
    v = (header.get(tag) or {}).get("Value")
    return list(v) if isinstance(v, list) else []


def _ds(x: float) -> str:
    """A DS value (at most 16 characters) for a ratio."""
    return f"{x:.2f}" if x < 1e12 else f"{x:.6g}"


def derive_header(header: dict, bound: int, offset: int, step: int, method: str, ratio: float,
                  description: str) -> dict:
    """The DICOM JSON of one instance after lossy coding (see the module doc); ``header`` is
    not changed."""
    h = dict(header)
    h["00282110"] = {"vr": "CS", "Value": ["01"]}
    h["00282112"] = {"vr": "DS", "Value": _values(header, "00282112") + [_ds(ratio)]}
    h["00282114"] = {"vr": "CS", "Value": _values(header, "00282114") + [method]}
    old = [v for v in _values(header, "00082111") if isinstance(v, str) and v]
    h["00082111"] = {"vr": "ST", "Value": ["; ".join(old + [description])[-_ST_MAX:]]}
    h["00089215"] = {"vr": "SQ", "Value": _values(header, "00089215") + [_code(*LOSSY_DERIVATION)]}
    image_type = [v if isinstance(v, str) else "" for v in _values(header, "00080008")]
    h["00080008"] = {"vr": "CS", "Value": ["DERIVED"] + image_type[1:] if image_type
                     else ["DERIVED", "SECONDARY"]}
    sop = _values(header, "00080018")
    if sop and isinstance(sop[0], str):
        new = derived_uid(sop[0], bound, offset, "instance")
        h["00080018"] = {"vr": "UI", "Value": [new]}
        if "00020003" in header:
            h["00020003"] = {"vr": "UI", "Value": [new]}
        ref = {}
        cls = _values(header, "00080016")
        if cls and isinstance(cls[0], str):
            ref["00081150"] = {"vr": "UI", "Value": [cls[0]]}
        ref["00081155"] = {"vr": "UI", "Value": [sop[0]]}
        ref["0040A170"] = {"vr": "SQ", "Value": [_code(*PREDECESSOR)]}
        h["00082112"] = {"vr": "SQ", "Value": _values(header, "00082112") + [ref]}
    series = _values(header, "0020000E")
    if series and isinstance(series[0], str):
        h["0020000E"] = {"vr": "UI", "Value": [derived_uid(series[0], bound, offset, "series")]}
    return h


def derive_meta(meta, bound: int, offset: int, step: int, inner: str, ratio: float,
                units: str, real_bound: float):
    """A new DicomMeta describing the lossy instances of ``meta``'s series (module doc)."""
    from .dicom_meta import DicomMeta

    unit_text = "stored units" if units == "stored" else units
    description = (f"dicube .dcbl: values quantised to steps of {step} stored units, maximum "
                   f"error {real_bound:g} {unit_text}, then coded losslessly ({METHODS[inner]})")
    headers = [derive_header(meta.slice_json(i), bound, offset, step, METHODS[inner], ratio,
                             description) for i in range(len(meta))]
    return DicomMeta.from_json_headers(headers, list(meta.filenames), [dict(s) for s in meta.slice_info])
