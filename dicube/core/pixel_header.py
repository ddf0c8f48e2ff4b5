"""PixelDataHeader: how stored pixel values map to real values, plus display hints."""
from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Union

from ..exceptions import MetaDataError
from ..jsontext import parse_json

__all__ = ["PixelDataHeader"]

Number = Union[float, list]


@dataclass
class PixelDataHeader:
    """Pixel description of a volume.

    ``RescaleSlope``/``RescaleIntercept`` are a float when shared by all slices, or a
    list with one value per slice. ``OriginalPixelDtype`` is the dtype of the stored
    DICOM values; ``PixelDtype`` the dtype of ``raw_image`` (equal for DICOM input).
    """

    RescaleSlope: Number = 1.0
    RescaleIntercept: Number = 0.0
    OriginalPixelDtype: str = "uint16"
    PixelDtype: str = "uint16"
    WindowCenter: Optional[float] = None
    WindowWidth: Optional[float] = None
    MinVal: Optional[float] = None
    MaxVal: Optional[float] = None
    Extras: dict = field(default_factory=dict)

    @property
    def per_slice_rescale(self) -> bool:
        return isinstance(self.RescaleSlope, list) or isinstance(self.RescaleIntercept, list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def check(self, frame_count: Optional[int] = None) -> None:
        """Raise MetaDataError unless every value is usable: rescale values finite numbers
        (or lists of them, one per frame when ``frame_count`` is given), window and range
        values finite numbers or None, dtypes strings, Extras an object."""
        for name in ("RescaleSlope", "RescaleIntercept"):
            v = getattr(self, name)
            if isinstance(v, list):
                if not v or not all(map(_finite_number, v)):
                    bad = next((x for x in v if not _finite_number(x)), None)
                    raise MetaDataError(f"pixel header {name}: {_short(bad)} in the per-slice "
                                        "values is not a finite number" if v else
                                        f"pixel header {name} is an empty list")
                if frame_count is not None and len(v) != frame_count:
                    raise MetaDataError(f"pixel header {name} has {len(v)} values for "
                                        f"{frame_count} frames")
            elif not _finite_number(v):
                raise MetaDataError(f"pixel header {name} {_short(v)} is not a finite number "
                                    "or a list of them")
        for name in ("WindowCenter", "WindowWidth", "MinVal", "MaxVal"):
            v = getattr(self, name)
            if v is not None and not _finite_number(v):
                raise MetaDataError(f"pixel header {name} {_short(v)} is not a finite number")
        for name in ("OriginalPixelDtype", "PixelDtype"):
            if not isinstance(getattr(self, name), str):
                raise MetaDataError(f"pixel header {name} {_short(getattr(self, name))} is not "
                                    "a dtype name")
        if not isinstance(self.Extras, dict):
            raise MetaDataError(f"pixel header Extras {_short(self.Extras)} is not an object")

    @classmethod
    def from_dict(cls, d: dict, frame_count: Optional[int] = None) -> "PixelDataHeader":
        """The header of a :meth:`to_dict` document (unknown keys ignored), checked (see
        :meth:`check`); raises MetaDataError."""
        if not isinstance(d, dict):
            raise MetaDataError(f"pixel header is {_short(d)}, not a JSON object")
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        ph = cls(**known)
        ph.check(frame_count)
        return ph

    @classmethod
    def from_json(cls, s: str | bytes) -> "PixelDataHeader":
        return cls.from_dict(parse_json(s, "pixel header"))


def _finite_number(v: Any) -> bool:
    if not isinstance(v, numbers.Real) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer beyond any float
        return False


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."
