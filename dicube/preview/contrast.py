"""Window (contrast) settings: anatomical presets, embedded, automatic, custom; windowing."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..exceptions import DicomCubeError
from ..windows import ALIASES, PRESETS, canonical_name, names

__all__ = ["PRESETS", "ALIASES", "Contrast", "parse_contrast", "auto_window", "apply_window"]

#: Percentiles of the auto window.
AUTO_PERCENTILES = (2.0, 98.0)


@dataclass(frozen=True)
class Contrast:
    """A parsed ``--contrast`` value: ``kind`` is "window" (preset or custom, with
    ``width``/``center``), "auto", or "embedded" (the file's window, else auto)."""

    kind: str
    width: Optional[float] = None
    center: Optional[float] = None
    name: str = ""


def parse_contrast(spec: Optional[str]) -> Contrast:
    """A preset of :mod:`dicube.windows` (``lung``, ``soft-tissue``, an alias such as
    ``soft``...), ``auto``, ``embedded`` or ``WW,WC`` (e.g. ``1500,-600``).
    None means the default: embedded, falling back to auto."""
    if spec is None:
        return Contrast("embedded", name="embedded")
    s = spec.strip().lower()
    preset = canonical_name(s)
    if preset is not None:
        return Contrast("window", *PRESETS[preset], preset)
    if s in ("auto", "embedded"):
        return Contrast(s, name=s)
    parts = s.split(",")
    if len(parts) == 2:
        try:
            ww, wc = float(parts[0]), float(parts[1])
        except ValueError:
            ww = float("nan")
        if np.isfinite(ww) and ww > 0 and np.isfinite(wc):
            return Contrast("window", ww, wc, f"{parts[0].strip()},{parts[1].strip()}")
    raise DicomCubeError(f"invalid contrast {spec!r}: use a preset ({names()}), auto, embedded, "
                         f"or WIDTH,CENTER with WIDTH > 0")


def auto_window(values: np.ndarray) -> Tuple[float, float]:
    """(width, centre) spanning the 2nd to 98th percentile of ``values``."""
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values.ravel()
    if finite.size == 0:
        return 1.0, 0.0
    lo, hi = np.percentile(finite, AUTO_PERCENTILES)
    return max(float(hi - lo), 1.0), float(lo + hi) / 2.0


def apply_window(values: np.ndarray, width: float, center: float) -> np.ndarray:
    """uint8 display values by the DICOM linear VOI function (PS3.3 C.11.2.1.2.1)::

        x <= c - 0.5 - (w-1)/2  -> 0
        x >  c - 0.5 + (w-1)/2  -> 255
        else                    -> ((x - (c - 0.5)) / (w - 1) + 0.5) * 255, rounded
    """
    v = np.asarray(values, np.float32)
    w1 = max(float(width) - 1.0, 1e-6)
    y = ((v - (np.float32(center) - np.float32(0.5))) / np.float32(w1) + np.float32(0.5)) * np.float32(255)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)
