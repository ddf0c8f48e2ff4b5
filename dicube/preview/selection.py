"""Which slices a preview shows: radiological order, normalized z range, even sampling."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..exceptions import DicomCubeError

__all__ = ["radiological_order", "normalized_positions", "select_slices", "select_position"]

_EPS = 1e-9
#: Distances to a position closer than this are a tie (positions are in [0, 1]).
_TIE = 1e-6


def radiological_order(z: Sequence[Optional[float]],
                        instance: Optional[Sequence[Optional[float]]] = None) -> np.ndarray:
    """Indices that sort slices superior to inferior: patient z (LPS, +z = superior)
    descending, then InstanceNumber ascending, then the given order. Slices without a
    z come last."""
    n = len(z)
    zz = np.array([np.nan if v is None else float(v) for v in z], float)
    inst = np.array([np.nan if v is None else float(v) for v in (instance if instance is not None
                                                                 else [None] * n)], float)
    has_z = np.isfinite(zz)
    keys = (np.arange(n), np.where(np.isfinite(inst), inst, np.inf),
            np.where(has_z, -zz, 0.0), ~has_z)
    return np.lexsort(keys)  # last key is primary


def normalized_positions(z_sorted: Sequence[Optional[float]]) -> np.ndarray:
    """Position in [0, 1] of each slice along the sorted series: 0 at the most superior
    z, 1 at the most inferior; by rank when the slices have no usable z."""
    zz = np.array([np.nan if v is None else float(v) for v in z_sorted], float)
    n = len(zz)
    if n == 0:
        return np.zeros(0)
    if np.all(np.isfinite(zz)) and zz[0] - zz[-1] > _EPS:
        return np.clip((zz[0] - zz) / (zz[0] - zz[-1]), 0.0, 1.0)
    return np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)


def _check_unit(name: str, v: float) -> None:
    if not (0.0 <= v <= 1.0):
        raise DicomCubeError(f"{name} must be between 0.0 and 1.0, got {v}")


def select_slices(positions: np.ndarray, count: int, start: float = 0.0, end: float = 1.0) -> np.ndarray:
    """Up to ``count`` indices into the sorted series, evenly spaced over the slices whose
    normalized position lies in [start, end], always including the first and last of them;
    all of them when there are no more than ``count``."""
    _check_unit("start", start)
    _check_unit("end", end)
    if start > end:
        raise DicomCubeError(f"start ({start}) is after end ({end})")
    if count < 1:
        raise DicomCubeError(f"the mosaic needs at least one tile, got {count}")
    p = np.asarray(positions, float)
    inside = np.flatnonzero((p >= start - _EPS) & (p <= end + _EPS))
    if len(inside) <= count:
        return inside
    picks = np.rint(np.linspace(0, len(inside) - 1, count)).astype(np.int64)
    return inside[picks]


def select_position(positions: np.ndarray, position: float, offset: int = 0) -> int:
    """Index into the sorted series of the slice nearest ``position`` (0 = superior,
    1 = inferior), moved by ``offset`` slices and kept inside the series. Two slices
    equally near (within 1e-6, e.g. 0.5 of an even count) give the more superior one,
    whatever rounding put into the positions."""
    _check_unit("position", position)
    p = np.asarray(positions, float)
    if len(p) == 0:
        raise DicomCubeError("the series has no slices")
    d = np.abs(p - position)
    k = int(np.flatnonzero(d <= d.min() + _TIE)[0])
    return int(np.clip(k + int(offset), 0, len(p) - 1))
