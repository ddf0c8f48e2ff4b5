"""Stored values to float: rescale (slope/intercept, per slice when it varies) and windowing."""
from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np

from ..core.pixel_header import PixelDataHeader
from ..exceptions import DataConsistencyError
from ..windows import PRESETS, lookup, names

__all__ = ["WINDOW_PRESETS", "WindowSpec", "resolve_window", "to_float"]

#: CT windows as (width, center) in Hounsfield units: the shared table of
#: :mod:`dicube.windows` (also used by previews), with its sources.
WINDOW_PRESETS = PRESETS

#: a preset name, "dicom" (the file's own WindowWidth/WindowCenter) or (width, center)
WindowSpec = Union[None, str, Tuple[float, float]]


def resolve_window(spec: WindowSpec, header: Optional[PixelDataHeader] = None,
                   path=None) -> Optional[Tuple[float, float]]:
    """(width, center) for a window spec: a preset name or alias of :mod:`dicube.windows`
    (any case, ``soft_tissue`` = ``soft-tissue``), "dicom" (``header``'s window) or a pair."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec == "dicom":
            w = None if header is None else (header.WindowWidth, header.WindowCenter)
            if w is None or w[0] is None or w[1] is None:
                raise DataConsistencyError("the file stores no WindowWidth/WindowCenter", path)
            width, center = (float(v[0] if isinstance(v, list) else v) for v in w)
        else:
            preset = lookup(spec)
            if preset is None:
                raise ValueError(f"unknown window preset {spec!r} (known: {names()}, dicom)")
            width, center = preset
    else:
        width, center = (float(v) for v in spec)
    if not width > 0:
        raise ValueError(f"window width must be positive, got {width}")
    return width, center


def to_float(raw: np.ndarray, header: Optional[PixelDataHeader], out: np.ndarray,
             window: Optional[Tuple[float, float]] = None) -> np.ndarray:
    """Write into ``out`` the real values of ``raw`` (frames first), computed exactly as
    :meth:`DicomCubeImage.get_fdata`; with ``window`` (width, center) then mapped
    linearly onto [0, 1] and clipped. ``header``'s per-slice lists must match ``raw``."""
    dtype = out.dtype.type
    slope = 1.0 if header is None or header.RescaleSlope is None else header.RescaleSlope
    inter = 0.0 if header is None or header.RescaleIntercept is None else header.RescaleIntercept
    shape = (-1,) + (1,) * (out.ndim - 1)

    def per_frame(v) -> np.ndarray:
        return np.asarray(v, dtype=dtype).reshape(shape) if isinstance(v, list) else dtype(v)

    if window is not None:  # one multiply-add: (raw * slope + inter - low) / width
        width, center = window
        low = center - width / 2
        a = (np.asarray(slope, np.float64) / width).tolist()
        b = ((np.asarray(inter, np.float64) - low) / width).tolist()
        np.multiply(raw, per_frame(a), out=out, dtype=dtype, casting="unsafe")
        out += per_frame(b)
        np.clip(out, 0, 1, out=out)
        return out
    # the operations of DicomCubeImage.get_fdata, with the cast fused into the first one
    if isinstance(slope, list) or slope != 1:
        np.multiply(raw, per_frame(slope), out=out, dtype=dtype, casting="unsafe")
        if isinstance(inter, list) or inter:
            out += per_frame(inter)
    elif isinstance(inter, list) or inter:
        np.add(raw, per_frame(inter), out=out, dtype=dtype, casting="unsafe")
    else:
        np.copyto(out, raw, casting="unsafe")
    return out
