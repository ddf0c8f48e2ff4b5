"""What a viewer shows of the stored samples: YBR to RGB, palette colour to RGB,
MONOCHROME1 inverted, colour at its full sample range.

What the stored samples of each Photometric Interpretation are, and their YBR to RGB
conversion, is defined once in :mod:`dicube.dicom.photometric`; this module adds what
is particular to showing them (palette tables, the display range).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..dicom.photometric import YBR_PARTIAL, ybr_to_rgb

__all__ = ["Photometric", "photometric", "to_display"]

log = logging.getLogger("dicube.preview")

_YBR_PARTIAL = YBR_PARTIAL  # the matrix of PS3.3 C.7.6.3.1.2 (tests build samples with it)
_LUT_TAGS = ("00281101", "00281102", "00281103", "00281201", "00281202", "00281203")
_MAX_LUT_BYTES = 2 * 65536  # 65536 entries of 16 bits: the most a descriptor can declare


@dataclass(frozen=True)
class Photometric:
    """How stored samples become display values: ``name`` (PhotometricInterpretation,
    "" when absent), ``bits`` (BitsStored), ``palette`` ((entries, 3) RGB table and the
    first index it maps) for PALETTE COLOR."""

    name: str = ""
    bits: int = 8
    palette: Optional[Tuple[np.ndarray, int]] = None

    @property
    def inverted(self) -> bool:
        """MONOCHROME1: the lowest value is white."""
        return self.name == "MONOCHROME1"

    @property
    def reducible(self) -> bool:
        """Whether pixels may be averaged before :func:`to_display` (not palette indices)."""
        return self.name != "PALETTE COLOR"

    def full_range(self) -> Tuple[float, float]:
        """(width, centre) spanning every value of a colour sample, as a viewer shows it."""
        bits = self.bits
        if self.palette is not None:
            bits = 8 if int(self.palette[0].max(initial=0)) <= 255 else 16
        return float(2 ** bits), float(2 ** (bits - 1))


def _value(header: dict, tag: str):
    v = (header.get(tag) or {}).get("Value")
    return v[0] if isinstance(v, list) and v else None


def _palette(header: dict, where: str) -> Optional[Tuple[np.ndarray, int]]:
    """The RGB lookup table of a PALETTE COLOR header, or None (with a log line) when it
    has none that is usable: segmented tables are not expanded (their size is unbounded)."""
    elems = {t: header.get(t) for t in _LUT_TAGS}
    if any(not isinstance(e, dict) for e in elems.values()):
        log.warning("%s: PALETTE COLOR without (non-segmented) lookup tables: shown in grey", where)
        return None
    if any(len(str(elems[t].get("InlineBinary", ""))) > _MAX_LUT_BYTES * 4 // 3 + 4
           for t in _LUT_TAGS[3:]):
        log.warning("%s: palette lookup table larger than 65536 entries: shown in grey", where)
        return None
    try:
        import pydicom
        from pydicom.pixels import apply_color_lut

        ds = pydicom.Dataset.from_json(elems)
        first = int(ds.RedPaletteColorLookupTableDescriptor[1])
        entries = int(ds.RedPaletteColorLookupTableDescriptor[0]) or 65536
        index = np.arange(first, first + entries, dtype=np.uint16 if first + entries <= 65536
                          else np.uint32)
        lut = np.asarray(apply_color_lut(index, ds)).reshape(-1, 3)
        if len(lut) == 0:
            raise ValueError("empty table")
        return lut, first
    except Exception as exc:  # pydicom raises many types for malformed tables
        log.warning("%s: unusable palette lookup table (%s): shown in grey", where, exc)
        return None


def photometric(header: Optional[dict], where: str = "") -> Photometric:
    """The :class:`Photometric` of a DICOM JSON header (None: greyscale, 8 bits)."""
    if not header:
        return Photometric()
    name = str(_value(header, "00280004") or "").strip().upper()
    try:
        bits = int(_value(header, "00280101") or _value(header, "00280100") or 8)
    except (TypeError, ValueError):
        bits = 8
    bits = min(max(bits, 1), 32)
    palette = _palette(header, where) if name == "PALETTE COLOR" else None
    return Photometric(name, bits, palette)


def to_display(values: np.ndarray, p: Photometric) -> np.ndarray:
    """float32 display samples of one frame: RGB (rows, columns, 3) for colour, else the
    values unchanged (windowing, and MONOCHROME1 inversion, come later)."""
    if p.palette is not None and values.ndim == 2:
        lut, first = p.palette
        idx = np.clip(np.rint(values) - first, 0, len(lut) - 1).astype(np.intp)
        return lut[idx].astype(np.float32)
    if values.ndim != 3 or values.shape[-1] != 3:
        return values
    rgb = ybr_to_rgb(values, p.name, p.bits)
    return values if rgb is None else rgb
