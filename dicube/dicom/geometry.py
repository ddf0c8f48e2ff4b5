"""Slice geometry from DICOM JSON headers: positions, orientation, ordering, Space.

Axis convention (spacetransformer): ``Space`` axes are (x, y, z) = (columns, rows,
slices), i.e. ``raw_image[k, j, i]`` is voxel ``(i, j, k)`` of the Space:

* x_orientation = ImageOrientationPatient[0:3] (direction of increasing column index),
  spacing x = PixelSpacing[1] (column spacing);
* y_orientation = ImageOrientationPatient[3:6] (direction of increasing row index),
  spacing y = PixelSpacing[0] (row spacing);
* z_orientation = x cross y (the slice normal), spacing z = median step of the slice
  positions projected on the normal; origin = ImagePositionPatient of the first slice.

Slices are sorted by ascending position along the normal, so the z spacing is positive
whatever order the files came in. A gantry tilt (slices shifted in-plane from one to the
next) keeps the normal as z axis; the shear is reported by QC, not represented in Space.
"""
from __future__ import annotations

from collections import Counter
from typing import Optional, Sequence

import numpy as np

__all__ = ["floats", "orientation", "position", "slice_normal", "sort_order",
           "frame_geometry", "build_space", "axes_from_iop"]

IPP, IOP, PIXEL_SPACING = "00200032", "00200037", "00280030"
INSTANCE, THICKNESS, BETWEEN = "00200013", "00180050", "00180088"
SHARED_FG, PER_FRAME_FG = "52009229", "52009230"
PLANE_POS, PLANE_ORI, PIXEL_MEASURES = "00209113", "00209116", "00289110"


def floats(elem: Optional[dict], n: Optional[int] = None) -> Optional[np.ndarray]:
    """Numeric values of a JSON element (DS strings parsed) or ``None``."""
    if not elem or "Value" not in elem:
        return None
    try:
        arr = np.array([float(str(v).strip()) for v in elem["Value"]], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if n is not None and arr.size != n:
        return None
    if not np.all(np.isfinite(arr)):
        return None
    return arr


def orientation(header: dict) -> Optional[np.ndarray]:
    return floats(header.get(IOP), 6)


def position(header: dict) -> Optional[np.ndarray]:
    return floats(header.get(IPP), 3)


def instance_number(header: dict) -> Optional[float]:
    v = floats(header.get(INSTANCE))
    return None if v is None or v.size == 0 else float(v[0])


def axes_from_iop(iop: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orthonormal right-handed (x, y, z) axes from ImageOrientationPatient."""
    x = np.asarray(iop[:3], dtype=np.float64)
    y = np.asarray(iop[3:6], dtype=np.float64)
    x = x / np.linalg.norm(x)
    y = y - x * np.dot(x, y)
    y = y / np.linalg.norm(y)
    return x, y, np.cross(x, y)


def slice_normal(iop: Sequence[float]) -> np.ndarray:
    return axes_from_iop(iop)[2]


def _reference_iop(headers: list[dict]) -> Optional[np.ndarray]:
    iops = [orientation(h) for h in headers]
    if any(o is None for o in iops) or not iops:
        return None
    counts = Counter(tuple(np.round(o, 4)) for o in iops)
    common = counts.most_common(1)[0][0]
    return next(o for o in iops if tuple(np.round(o, 4)) == common)


def sort_order(headers: list[dict]) -> list[int]:
    """Indices of ``headers`` sorted by position along the slice normal (ascending);
    InstanceNumber (then original order) when positions/orientation are missing."""
    n = len(headers)
    iop = _reference_iop(headers)
    pos = [position(h) for h in headers]
    inst = [instance_number(h) for h in headers]
    inst_key = [v if v is not None else float("inf") for v in inst]
    if iop is not None and all(p is not None for p in pos):
        try:
            normal = slice_normal(iop)
        except (FloatingPointError, ValueError):
            normal = None
        if normal is not None and np.all(np.isfinite(normal)):
            proj = [float(np.dot(p, normal)) for p in pos]
            return sorted(range(n), key=lambda i: (proj[i], inst_key[i], i))
    return sorted(range(n), key=lambda i: (inst_key[i], i))


def _first_item(elem: Optional[dict]) -> Optional[dict]:
    if not elem or elem.get("vr") != "SQ" or not elem.get("Value"):
        return None
    return elem["Value"][0]


def frame_geometry(header: dict, frames: int) -> tuple[Optional[np.ndarray],
                                                       Optional[np.ndarray],
                                                       Optional[np.ndarray]]:
    """(positions (F, 3), IOP (6,), PixelSpacing (2,)) of an enhanced multi-frame header
    from its functional groups; entries are ``None`` when unavailable."""
    shared = _first_item(header.get(SHARED_FG)) or {}
    per = (header.get(PER_FRAME_FG) or {}).get("Value") or []
    iop = orientation(_first_item(shared.get(PLANE_ORI)) or {})
    spacing = floats((_first_item(shared.get(PIXEL_MEASURES)) or {}).get(PIXEL_SPACING), 2)
    positions = []
    for item in per[:frames]:
        p = position(_first_item(item.get(PLANE_POS)) or {})
        positions.append(p)
        if iop is None:
            iop = orientation(_first_item(item.get(PLANE_ORI)) or {})
        if spacing is None:
            spacing = floats((_first_item(item.get(PIXEL_MEASURES)) or {}).get(PIXEL_SPACING), 2)
    pos = np.array(positions) if positions and all(p is not None for p in positions) \
        and len(positions) == frames else None
    return pos, iop, spacing


def build_space(shape_zyx: tuple[int, int, int], positions: Optional[np.ndarray],
                iop: Optional[np.ndarray], pixel_spacing: Optional[np.ndarray],
                fallback_step: Optional[float] = None):
    """spacetransformer ``Space`` for a volume of shape (slices, rows, columns)."""
    from spacetransformer import Space

    nz, ny, nx = shape_zyx
    if iop is not None:
        try:
            x, y, z = axes_from_iop(iop)
            if not np.all(np.isfinite(np.concatenate([x, y, z]))):
                raise ValueError
        except (ValueError, FloatingPointError):
            x, y, z = np.eye(3)
    else:
        x, y, z = np.eye(3)
    sy, sx = (float(pixel_spacing[0]), float(pixel_spacing[1])) if pixel_spacing is not None \
        else (1.0, 1.0)
    sz = None
    if positions is not None and len(positions) > 1:
        steps = np.abs(np.diff(positions @ z))
        steps = steps[steps > 1e-6]
        if steps.size:
            sz = float(np.median(steps))
    if sz is None:
        sz = float(fallback_step) if fallback_step and fallback_step > 0 else 1.0
    origin = positions[0] if positions is not None and len(positions) else np.zeros(3)
    return Space(shape=(int(nx), int(ny), int(nz)),
                 origin=tuple(float(v) for v in origin),
                 spacing=(sx if sx > 0 else 1.0, sy if sy > 0 else 1.0, sz),
                 x_orientation=tuple(float(v) for v in x),
                 y_orientation=tuple(float(v) for v in y),
                 z_orientation=tuple(float(v) for v in z))
